"""Synthetic bone images with exact ground truth, made from a seed at a given pixel size.

Every size is given in µm and converted through the pixel size, so the same call at 0.25 and
0.5 µm/px draws the same tissue at two magnifications.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from boneimg.io.image import Image

# Optical-density vectors (R, G, B) of hematoxylin and eosin, Ruifrok & Johnston 2001.
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
EOSIN_OD = np.array([0.07, 0.99, 0.11])
REGION_NAMES = {0: "background", 1: "bone", 2: "marrow", 3: "tumour"}


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


def _blobs(shape, rng, scale_px, fraction):
    """A random smooth binary pattern covering about `fraction` of the array."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape), scale_px)
    return noise > np.quantile(noise, 1.0 - fraction)


def _place_nuclei(labels, allowed, rng, diameter_px, density, first_label):
    """Draw non-overlapping elliptical nuclei inside `allowed`; return (label, y, x) placed.

    Nuclei keep a one-pixel gap between them so each one is a separate object in the truth.
    """
    h, w = allowed.shape
    n_target = int(density * allowed.sum() / (np.pi * (diameter_px / 2) ** 2))
    reach = int(np.ceil(diameter_px * 0.6)) + 2
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    placed, label = [], first_label
    for _ in range(n_target * 4):
        if len(placed) >= n_target:
            break
        cy, cx = int(rng.integers(reach, h - reach)), int(rng.integers(reach, w - reach))
        a = diameter_px / 2 * rng.uniform(0.85, 1.15)
        b = a * rng.uniform(0.65, 1.0)
        theta = rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        body = (u / a) ** 2 + (v / b) ** 2 <= 1
        margin = (u / (a + 1.5)) ** 2 + (v / (b + 1.5)) ** 2 <= 1
        window = (slice(cy - reach, cy + reach + 1), slice(cx - reach, cx + reach + 1))
        if not allowed[window][body].all() or labels[window][margin].any():
            continue
        labels[window][body] = label
        placed.append((label, cy, cx))
        label += 1
    return placed


def he_section(shape=(512, 512), pixel_size_um=0.5, *, seed=0):
    """A synthetic H&E-stained bone section with tumour, marrow and trabecular bone.

    Parameters
    ----------
    shape : tuple of int
        Image size (rows, columns) in pixels.
    pixel_size_um : float
        Pixel size in µm; tissue structures keep their physical size.
    seed : int
        Seed of the random generator; the same seed gives the same image.

    Returns
    -------
    Synthetic
        ``truth`` holds ``regions`` (0 background, 1 bone, 2 marrow, 3 tumour), ``nuclei``
        (int32 labels), ``nucleus_class`` (label -> "tumour" or "marrow").
    """
    rng = np.random.default_rng(seed)
    um = 1.0 / pixel_size_um
    tissue = ndi.binary_fill_holes(_blobs(shape, rng, 60 * um, 0.85))
    bone = _blobs(shape, rng, 12 * um, 0.5) ^ _blobs(shape, rng, 12 * um, 0.5)
    bone = ndi.binary_opening(bone & tissue, iterations=max(1, int(3 * um))) & _blobs(shape, rng, 40 * um, 0.45)
    tumour = _blobs(shape, rng, 35 * um, 0.3) & tissue & ~bone
    regions = np.zeros(shape, np.uint8)
    regions[tissue] = 2
    regions[bone] = 1
    regions[tumour] = 3

    nuclei = np.zeros(shape, np.int32)
    interior = ndi.binary_erosion(regions == 3, iterations=2)
    tumour_cells = _place_nuclei(nuclei, interior, rng, 9 * um, 0.55, 1)
    marrow_cells = _place_nuclei(nuclei, ndi.binary_erosion(regions == 2, iterations=2), rng, 6 * um, 0.3,
                                 len(tumour_cells) + 1)
    nucleus_class = {lab: "tumour" for lab, _, _ in tumour_cells} | {lab: "marrow" for lab, _, _ in marrow_cells}

    texture = ndi.gaussian_filter(rng.standard_normal(shape), 1.5 * um)
    eosin = np.select([regions == 1, regions == 3, regions == 2], [0.55, 0.3, 0.2], 0.0) + 0.04 * texture
    hema = np.where(regions > 0, 0.08, 0.0) + np.where(nuclei > 0, 0.9, 0.0)
    hema = ndi.gaussian_filter(hema, 0.4 * um) + 0.04 * texture * (nuclei > 0)
    od = hema[..., None] * HEMATOXYLIN_OD + np.clip(eosin, 0, None)[..., None] * EOSIN_OD
    rgb = 250.0 * 10.0 ** (-od) + rng.normal(0, 3, (*shape, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    image = Image(rgb, "yxc", (pixel_size_um, pixel_size_um), "brightfield",
                  {"format": "synthetic", "generator": "he_section", "seed": seed})
    return Synthetic(image, {"regions": regions, "nuclei": nuclei, "nucleus_class": nucleus_class})


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
