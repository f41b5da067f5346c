"""Reading images with their physical spacing, and writing results atomically."""

from .image import Image, as_image
from .load import load

__all__ = ["Image", "as_image", "load"]
