"""Tissue regions of a bone section: no tissue, bone matrix, marrow and soft tissue, tumour.

- Tissue: optical density above that of glass; holes the size of adipocytes and vessels are
  tissue, larger empty areas are not.
- Bone matrix: homogeneous, nucleus-free tissue. Cores are tissue farther than a few µm from
  any nucleus; a linear discriminant on colour (optical density), trained on those cores
  against the soft tissue around nuclei of the same image, then draws the bone edge. This
  works whatever the matrix is stained with (eosin, fast green, a pale hematoxylin tint).
- Tumour: dense sheets of large nuclei. Where most of the nuclear area within a window of
  some tens of µm belongs to nuclei larger than marrow nuclei (or to nuclei a classifier calls
  tumour), the soft tissue is tumour.
- Marrow and other soft tissue: the rest of the tissue.
"""

import math

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology

from ..errors import BoneImgError
from .histomorphometry import BONE, SOFT, TUMOUR, _spacing

#: Default parameters of :func:`find_regions`, with their units in the names.
DEFAULTS = {
    "tissue_od": 0.08,
    "max_hole_um2": 5000.0,
    "min_tissue_um2": 500.0,
    "bone_core_um": 6.0,
    "min_bone_um2": 200.0,
    "max_lacuna_um2": 150.0,
    "min_separation": 3.0,
    "tumour_nucleus_um": 7.5,
    "tumour_window_um": 12.0,
    "min_tumour_um2": 1500.0,
}


def _sigma(um, spacing):
    return tuple(um / s for s in spacing)


def _pixels(area_um2, spacing):
    return max(1, int(area_um2 / (spacing[0] * spacing[1])))


def find_tissue(od, spacing_um, *, tissue_od=0.08, max_hole_um2=5000.0, min_tissue_um2=500.0):
    """Tissue mask from optical density.

    Parameters
    ----------
    od : ndarray of shape (M, N, 3)
        Optical density per channel (:func:`boneimg.histology.stains.optical_density`).
    spacing_um : float or (float, float)
    tissue_od : float
        Summed optical density (R + G + B, smoothed over 1 µm) above which a pixel is tissue.
    max_hole_um2 : float
        Empty areas enclosed by tissue up to this size (adipocytes, vessels) are tissue; empty
        areas reaching the image border never are.
    min_tissue_um2 : float
        Smaller pieces of tissue (dust, debris) are dropped.

    Returns
    -------
    tissue : ndarray of shape (M, N), bool
        Tissue including its filled holes.
    stained : ndarray of shape (M, N), bool
        Tissue pixels that are themselves stained (the holes excluded).
    """
    spacing = _spacing(spacing_um)
    density = ndi.gaussian_filter(od.sum(axis=-1), _sigma(1.0, spacing))
    stained = morphology.remove_small_objects(density > tissue_od, max_size=_pixels(min_tissue_um2, spacing))
    # Glass reaching the image border may extend beyond it: only enclosed holes are filled.
    holes, n = ndi.label(~stained)
    area = np.bincount(holes.ravel(), minlength=n + 1)
    fill = area <= _pixels(max_hole_um2, spacing)
    fill[0] = False
    fill[np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))] = False
    return stained | fill[holes], stained


def _discriminant(features, first, second):
    """Fisher's linear discriminant between two pixel sets: (weights, midpoint threshold)."""
    a, b = features[first], features[second]
    covariance = (np.cov(a, rowvar=False) * (len(a) - 1) + np.cov(b, rowvar=False) * (len(b) - 1)) / (
        len(a) + len(b) - 2)
    covariance += np.eye(features.shape[1]) * 1e-6  # a stain absent from the image is a flat axis
    weights = np.linalg.solve(covariance, a.mean(axis=0) - b.mean(axis=0))
    return weights, float(weights @ (a.mean(axis=0) + b.mean(axis=0)) / 2)


def find_bone(od, stained, nuclear, spacing_um, *, exclude=None, bone_core_um=6.0, min_bone_um2=200.0,
              max_lacuna_um2=150.0, min_separation=3.0):
    """Bone matrix: homogeneous nucleus-free tissue, its edge drawn by colour.

    Parameters
    ----------
    od : ndarray of shape (M, N, 3)
        Optical density per channel.
    stained : ndarray of shape (M, N), bool
        Stained tissue (:func:`find_tissue`).
    nuclear : ndarray of shape (M, N), bool
        Nucleus pixels.
    spacing_um : float or (float, float)
    exclude : ndarray of shape (M, N), bool, optional
        Pixels that are never bone (TRAP-positive cells).
    bone_core_um : float
        Tissue farther than this from every nucleus is surely bone; it trains the colour model.
    min_bone_um2 : float
        Smaller pieces of bone are dropped.
    max_lacuna_um2 : float
        Holes in bone up to this size (osteocyte lacunae) are bone.
    min_separation : float
        Bone and soft-tissue colours closer than this (in pooled standard deviations of the
        discriminant) give no bone, with a note.

    Returns
    -------
    bone : ndarray of shape (M, N), bool
    info : dict
        ``bone_core_px`` (number of core pixels), ``bone_separation`` (distance between the
        bone and soft-tissue colour classes in pooled standard deviations) and a ``note``
        when colour was not used or no bone was found.
    """
    spacing = _spacing(spacing_um)
    candidates = stained & ~nuclear if exclude is None else stained & ~nuclear & ~exclude
    from_nuclei = ndi.distance_transform_edt(~nuclear, sampling=spacing) if nuclear.any() else np.full(
        nuclear.shape, np.inf)
    cores = candidates & (from_nuclei > bone_core_um)
    cores = morphology.remove_small_objects(cores, max_size=_pixels(min_bone_um2 / 4, spacing))
    # soft tissue between nuclei, not so close that the blurred nuclear edge tints it
    soft = candidates & (from_nuclei > 1.0) & (from_nuclei <= 3.0)
    empty = np.zeros(stained.shape, bool)
    if cores.sum() < 50 or soft.sum() < 50:
        return empty, {"bone_core_px": int(cores.sum()), "note": "no nucleus-free tissue large enough to be bone"}
    colour, info = _bone_colour(od, cores, soft, spacing, min_separation)
    info["bone_core_px"] = int(cores.sum())
    if colour is None:
        return empty, info
    # Matrix is nucleus-free over more than a cell's width: keep the bone-coloured pixels a
    # disk of bone_core_um diameter fits in, which cuts the strands of cytoplasm between
    # nuclei that share the matrix colour, and the pieces that hold a core.
    disk = _disk(bone_core_um / 2, spacing)
    coloured = candidates & colour
    bone = ndi.binary_opening(coloured, disk)
    pieces, n = ndi.label(bone)
    holding = np.zeros(n + 1, bool)
    holding[np.unique(pieces[cores & bone])] = True
    bone = holding[pieces] & bone  # the pieces that hold a core
    # The opening also rounds the corners of the matrix: give back the bone-coloured pixels
    # within the disk's reach; the arcs of nuclei facing the surface go with a 1 µm smoothing.
    bone = coloured & ndi.binary_dilation(bone, disk)
    bone = morphology.remove_small_holes(bone, max_size=_pixels(max_lacuna_um2, spacing))
    bone = ndi.gaussian_filter(bone.astype(np.float32), _sigma(1.0, spacing)) > 0.5
    bone = morphology.remove_small_objects(bone, max_size=_pixels(min_bone_um2, spacing))
    return bone, info


def _bone_colour(od, cores, soft, spacing, min_separation):
    """Pixels of bone colour, from a linear discriminant trained on this image.

    Returns None when the matrix colour is not apart from the soft tissue's by
    `min_separation` pooled standard deviations.
    """
    features = ndi.gaussian_filter(od, (*_sigma(1.0, spacing), 0)).reshape(-1, 3)
    first, second = cores.ravel(), soft.ravel()
    weights, level = _discriminant(features, first, second)
    score = features @ weights
    # Nucleus-free soft tissue (a cell-poor seam along the bone) sits among the cores: train
    # again on the cores and soft pixels the first model agrees with.
    first, second = first & (score > level), second & (score <= level)
    separation = 0.0
    if first.sum() >= 50 and second.sum() >= 50:
        weights, level = _discriminant(features, first, second)
        score = features @ weights
        spread = math.sqrt(float(weights @ np.cov(features[second], rowvar=False) @ weights))
        separation = 2 * (float(score[first].mean()) - level) / max(spread, 1e-12)
    info = {"bone_separation": round(separation, 2)}
    if separation < min_separation:
        # Nucleus-free soft tissue (tumour cytoplasm, fibrous tissue) would pass for bone on
        # structure alone; better no bone than a wrong surface.
        info["note"] = (f"no bone found: nucleus-free tissue has the colour of soft tissue ({separation:.1f} SD "
                        f"apart, fewer than min_separation={min_separation:g})")
        return None, info
    return (score > level).reshape(cores.shape), info


def _disk(radius_um, spacing):
    """Elliptical structuring element of `radius_um` on a grid of `spacing`."""
    ry, rx = (max(1, int(round(radius_um / s))) for s in spacing)
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return (yy / ry) ** 2 + (xx / rx) ** 2 <= 1


def find_tumour(soft, nuclei_labels, nuclei_table, spacing_um, *, ignore=None, tumour_nucleus_um=7.5,
                tumour_window_um=12.0, min_tumour_um2=1500.0):
    """Tumour: soft tissue where most of the nuclear area belongs to large (or tumour-typed) nuclei.

    Parameters
    ----------
    soft : ndarray of shape (M, N), bool
        Soft tissue (tissue that is not bone).
    nuclei_labels : ndarray of shape (M, N), int
    nuclei_table : pandas.DataFrame
        ``label`` and ``area_um2``; ``cell_type`` when a classifier ran ("tumour" rows count).
    spacing_um : float or (float, float)
    ignore : ndarray of shape (M, N), bool, optional
        Nuclei here do not vote (the lining cells on bone, the nuclei of osteoclasts), so
        tumour reaches the bone it grows against.
    tumour_nucleus_um : float
        Nuclei with a larger equivalent diameter are tumour-like (marrow nuclei are 4–7 µm,
        carcinoma nuclei 8–15 µm). Not used when the table has ``cell_type``.
    tumour_window_um : float
        Standard deviation of the Gaussian window the nuclear area is pooled over.
    min_tumour_um2 : float
        Smaller tumour areas are dropped, and holes this small in tumour filled.

    Returns
    -------
    ndarray of shape (M, N), bool
    """
    spacing = _spacing(spacing_um)
    if not len(nuclei_table):
        return np.zeros(soft.shape, bool)
    if "cell_type" in nuclei_table:
        tumour_like = nuclei_table["cell_type"].eq("tumour").to_numpy()
    else:
        diameter = 2 * np.sqrt(nuclei_table["area_um2"].to_numpy() / np.pi)
        tumour_like = diameter >= tumour_nucleus_um
    lookup = np.zeros(max(int(nuclei_labels.max()), int(nuclei_table["label"].max())) + 1, bool)
    lookup[nuclei_table["label"].to_numpy()[tumour_like]] = True
    nuclear = (nuclei_labels > 0) if ignore is None else (nuclei_labels > 0) & ~ignore
    sigma = _sigma(tumour_window_um, spacing)
    large = ndi.gaussian_filter((lookup[nuclei_labels] & nuclear).astype(np.float32), sigma)
    every = ndi.gaussian_filter(nuclear.astype(np.float32), sigma)
    voting = soft if ignore is None else soft & ~ignore
    density = every / np.maximum(ndi.gaussian_filter(voting.astype(np.float32), sigma), 1e-6)
    tumour = soft & (large > 0.5 * every) & (density > 0.15)
    tumour = morphology.remove_small_holes(tumour, max_size=_pixels(min_tumour_um2, spacing)) & soft
    return morphology.remove_small_objects(tumour, max_size=_pixels(min_tumour_um2, spacing))


def find_regions(od, spacing_um, *, nuclei_labels, nuclei_table, exclude=None, culture=False, **params):
    """Region map of a section: 0 no tissue, 1 bone, 2 marrow and soft tissue, 3 tumour.

    Parameters
    ----------
    od : ndarray of shape (M, N, 3)
        Optical density per channel.
    spacing_um : float or (float, float)
    nuclei_labels : ndarray of shape (M, N), int
    nuclei_table : pandas.DataFrame
    exclude : ndarray of shape (M, N), bool, optional
        Pixels that are never bone (TRAP-positive cells).
    culture : bool
        Cells on a dish: the stained area is cells (2); no bone or tumour is looked for.
    **params
        Any of :data:`DEFAULTS`.

    Returns
    -------
    regions : ndarray of shape (M, N), uint8
    info : dict
        Parameters used and what the bone colour model found.
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise BoneImgError(f"unknown region parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    for name, value in p.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
            raise BoneImgError(f"{name} must be a non-negative number, got {value!r}")
    spacing = _spacing(spacing_um)
    tissue, stained = find_tissue(od, spacing, tissue_od=p["tissue_od"], max_hole_um2=p["max_hole_um2"],
                                  min_tissue_um2=p["min_tissue_um2"])
    nuclear = (nuclei_labels > 0) & tissue
    if culture:
        regions = np.where(tissue, SOFT, 0).astype(np.uint8)
        return regions, {**p, "note": "cell culture: no bone or tumour looked for"}
    bone, info = find_bone(od, stained, nuclear, spacing, exclude=exclude, bone_core_um=p["bone_core_um"],
                           min_bone_um2=p["min_bone_um2"], max_lacuna_um2=p["max_lacuna_um2"],
                           min_separation=p["min_separation"])
    near_bone = ndi.distance_transform_edt(~bone, sampling=spacing) <= 4.0 if bone.any() else bone
    tumour = find_tumour(tissue & ~bone, nuclei_labels, nuclei_table, spacing,
                         ignore=near_bone if exclude is None else near_bone | exclude,
                         tumour_nucleus_um=p["tumour_nucleus_um"], tumour_window_um=p["tumour_window_um"],
                         min_tumour_um2=p["min_tumour_um2"])
    regions = np.zeros(tissue.shape, np.uint8)
    regions[tissue] = SOFT
    regions[bone] = BONE
    regions[tumour] = TUMOUR
    return regions, {**p, **info}
