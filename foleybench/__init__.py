"""foleybench: one harness to score video-to-audio and audio-to-video generators."""
__version__ = "0.1.0"
