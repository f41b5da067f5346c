"""Synthetic micro-CT long-bone phantoms and radiographs with exact ground truth."""

import numpy as np
from scipy import ndimage as ndi

from boneimg.io.image import Image

from .synthetic import Synthetic


def ct_long_bone(shape=(96, 128, 128), voxel_size_um=10.0, *, seed=0):
    """A synthetic micro-CT volume of a long bone: cortical shell with trabeculae at one end.

    Parameters
    ----------
    shape : tuple of int
        Volume size (z, y, x) in voxels; the shaft runs along z.
    voxel_size_um : float
        Isotropic voxel size in µm; bone dimensions are fixed in µm.
    seed : int

    Returns
    -------
    Synthetic
        uint8 grey values with scanner-like blur and noise; ``truth`` holds ``bone``,
        ``cortical`` and ``trabecular`` boolean masks.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    r_um = np.hypot(y - cy, x - cx) * voxel_size_um
    outer_um = 0.42 * min(shape[1:]) * voxel_size_um
    cortex_um = max(2.5 * voxel_size_um, 0.12 * outer_um)
    cortical = (r_um <= outer_um) & (r_um > outer_um - cortex_um)
    marrow = r_um <= outer_um - cortex_um
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 40.0 / voxel_size_um)
    sheets = np.abs(noise) < 0.12 * noise.std() * 2.5
    metaphysis = z < shape[0] * 0.5
    trabecular = sheets & marrow & metaphysis
    bone = cortical | trabecular
    grey = np.where(bone, 190.0, np.where(r_um <= outer_um, 45.0, 15.0))
    grey = ndi.gaussian_filter(grey, 0.8) + rng.normal(0, 8, shape)
    volume = np.clip(grey, 0, 255).astype(np.uint8)
    image = Image(volume, "zyx", (voxel_size_um,) * 3, "ct",
                  {"format": "synthetic", "generator": "ct_long_bone", "seed": seed})
    return Synthetic(image, {"bone": bone, "cortical": cortical, "trabecular": trabecular})


def radiograph(phantom, *, attenuation_per_mm=8.0):
    """Project a synthetic CT phantom along y into a 2-D radiograph (bone is bright).

    Parameters
    ----------
    phantom : Synthetic
        Result of :func:`ct_long_bone`.
    attenuation_per_mm : float
        Linear attenuation of bone in 1/mm.

    Returns
    -------
    Synthetic
        uint16 image of shape (z, x) with the phantom's spacing; ``truth["bone"]`` is the
        projected bone outline.
    """
    dz, dy, dx = phantom.image.spacing_um
    path_mm = phantom.truth["bone"].sum(axis=1) * dy / 1000.0
    signal = 1.0 - np.exp(-attenuation_per_mm * path_mm)
    image = np.round(signal * 60000).astype(np.uint16)
    meta = {"format": "synthetic", "generator": "radiograph", "projection_axis": "y"}
    return Synthetic(Image(image, "yx", (dz, dx), "radiograph", meta), {"bone": path_mm > 0})
