"""Synthetic histology sections (H&E) with exact ground truth."""

import numpy as np
from scipy import ndimage as ndi

from boneimg.io.image import Image

from .synthetic import Synthetic, blobs

# Optical-density vectors (R, G, B) of hematoxylin and eosin, Ruifrok & Johnston 2001.
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
EOSIN_OD = np.array([0.07, 0.99, 0.11])
REGION_NAMES = {0: "background", 1: "bone", 2: "marrow", 3: "tumour"}


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
    tissue = ndi.binary_fill_holes(blobs(shape, rng, 60 * um, 0.85))
    bone = blobs(shape, rng, 12 * um, 0.5) ^ blobs(shape, rng, 12 * um, 0.5)
    bone = ndi.binary_opening(bone & tissue, iterations=max(1, int(3 * um))) & blobs(shape, rng, 40 * um, 0.45)
    tumour = blobs(shape, rng, 35 * um, 0.3) & tissue & ~bone
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
