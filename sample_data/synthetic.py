"""What every synthetic generator shares: the result type and smooth random patterns.

Every size is given in µm and converted through the pixel size, so the same call at 0.25 and
0.5 µm/px draws the same tissue at two magnifications.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from boneimg.io.image import Image


@dataclass
class Synthetic:
    """A synthetic image and its ground truth.

    Attributes
    ----------
    image : Image
        The image, with its spacing in µm and modality.
    truth : dict
        Exact ground truth (masks, label images, tables, parameters); keys depend on the kind.
    """

    image: Image
    truth: dict = field(default_factory=dict)


def blobs(shape, rng, scale_px, fraction):
    """A random smooth binary pattern covering about `fraction` of the array."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape), scale_px)
    return noise > np.quantile(noise, 1.0 - fraction)
