"""Test setup shared by every package's tests."""

import os

# highway-env renders black frames with the "dummy" SDL driver; "offscreen" draws for real.
os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
