"""A pygame window that shows frames as they are made, and whether one can be opened at all.

pygame is imported only when a window opens, so importing this module (and running headless)
never touches SDL.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

# SDL drivers that open no window: "offscreen" (what tests and CI use headless) and the other,
# black-frame driver some setups still export; either way there is no screen to show.
HEADLESS_SDL_DRIVERS = ("offscreen", "dummy")
WINDOW_FRAMES_PER_S = 15


def display_available() -> bool:
    """A window can be opened: an X or Wayland display and a real SDL video driver."""
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return has_display and os.environ.get("SDL_VIDEODRIVER", "") not in HEADLESS_SDL_DRIVERS


@contextlib.contextmanager
def live_window(title: str) -> Iterator[Callable[[np.ndarray], None]]:
    """A pygame window; yields a callable that shows one RGB frame (H, W, 3).

    The window opens with the first frame (its size is the frame's). Closing it raises
    ``KeyboardInterrupt``, which stops the episode like Ctrl-C.
    """
    import pygame

    pygame.init()
    clock = pygame.time.Clock()
    screen = None

    def show(frame: np.ndarray) -> None:
        nonlocal screen
        if screen is None:
            screen = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
            pygame.display.set_caption(title)
            log.info("showing %s in a window (%dx%d, SDL video driver %s)",
                     title, frame.shape[1], frame.shape[0], pygame.display.get_driver())
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                raise KeyboardInterrupt
        screen.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        clock.tick(WINDOW_FRAMES_PER_S)

    try:
        yield show
    finally:
        pygame.quit()
