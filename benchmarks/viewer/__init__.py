"""The episode viewer: a pygame window when there is a display, else an MP4 (imageio-ffmpeg)."""
