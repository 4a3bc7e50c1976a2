"""``python -m drivelab.benchmarks.cli``: the same as the ``drivelab`` command."""

import sys

from drivelab.benchmarks.cli import main

sys.exit(main())
