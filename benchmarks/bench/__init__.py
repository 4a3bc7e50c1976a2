"""Benchmark and suite scripts: each module is one `drivelab bench ...` command (``configure(parser, command)``)."""
