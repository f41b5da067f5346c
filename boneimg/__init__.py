"""boneimg: image analysis for bone-metastasis research, in physical units.

>>> import boneimg as bi
>>> img = bi.load("section.ome.tif")          # doctest: +SKIP
>>> img.spacing_um                            # doctest: +SKIP
(0.5, 0.5)

The analysis functions are imported on first use, so ``import boneimg`` (and every command
line call) stays fast and never pulls in torch.
"""

import importlib

from ._version import __version__
from .errors import BoneImgError, CalibrationWarning
from .io import Image, load

# public name -> module that defines it
_LAZY = {
    "segment_nuclei": "boneimg.histology.nuclei",
    "Nuclei": "boneimg.histology.nuclei",
    "analyze_section": "boneimg.histology.section",
    "SectionResult": "boneimg.histology.section",
    "bone_morphometry": "boneimg.ct.morphometry",
    "analyze_ct": "boneimg.ct.lesions",
    "CTResult": "boneimg.ct.lesions",
    "analyze_radiograph": "boneimg.ct.radiograph",
    "RadiographResult": "boneimg.ct.radiograph",
    "run_study": "boneimg.study",
    "Study": "boneimg.study",
}

__all__ = ["BoneImgError", "CalibrationWarning", "Image", "__version__", "load", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'boneimg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
