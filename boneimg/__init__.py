"""boneimg: image analysis for bone-metastasis research, in physical units.

>>> import boneimg as bi
>>> img = bi.load("section.ome.tif")          # doctest: +SKIP
>>> img.spacing_um                            # doctest: +SKIP
(0.5, 0.5)
"""

from ._version import __version__
from .errors import BoneImgError, CalibrationWarning
from .io import Image, load

__all__ = ["BoneImgError", "CalibrationWarning", "Image", "__version__", "load"]
