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
from .pixels import covered_fraction, near_mask

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
    # cores are deep inside the matrix: a coarse distance serves; the thin soft band is exact
    cores = candidates & ~near_mask(nuclear, spacing, bone_core_um)
    cores = morphology.remove_small_objects(cores, max_size=_pixels(min_bone_um2 / 4, spacing))
    # soft tissue between nuclei, not so close that the blurred nuclear edge tints it
    soft = candidates & ndi.binary_dilation(nuclear, _disk(3.0, spacing)) & ~ndi.binary_dilation(
        nuclear, _disk(1.0, spacing))
    empty = np.zeros(stained.shape, bool)
    if cores.sum() < 50 or soft.sum() < 50:
        return empty, {"bone_core_px": int(cores.sum()), "note": "no nucleus-free tissue large enough to be bone"}
    features = ndi.gaussian_filter(od, (*_sigma(1.0, spacing), 0)).reshape(-1, 3)
    colour, info = _bone_colour(features, cores, soft, min_separation)
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
    # without a TRAP stain to exclude them, osteoclasts of nearly the matrix colour are found here
    cells = _cells_of_matrix_colour(features, bone, nuclear, cores, spacing) if exclude is None else None
    if cells is not None:
        bone &= ~cells
        info["matrix_coloured_cells_px"] = int(cells.sum())
    bone = morphology.remove_small_holes(bone, max_size=_pixels(max_lacuna_um2, spacing))
    bone = ndi.gaussian_filter(bone.astype(np.float32), _sigma(1.0, spacing)) > 0.5
    bone = morphology.remove_small_objects(bone, max_size=_pixels(min_bone_um2, spacing))
    return bone, info


def _cells_of_matrix_colour(features, bone, nuclear, cores, spacing, *, min_nucleus_um2=20.0, min_separation=1.5):
    """Cells whose cytoplasm has nearly the matrix colour (osteoclasts on H&E), lying on bone.

    Their nuclei are enclosed by bone-coloured pixels, and larger than osteocyte nuclei
    (`min_nucleus_um2`). A discriminant trained on the bone-coloured pixels around those
    nuclei against bone cores far from them tells the cytoplasm by its paler eosin; the pieces
    of that colour that touch such a nucleus are the cells. None when there are no such nuclei
    or the two colours are not `min_separation` pooled SDs apart.
    """
    labels, n = ndi.label(nuclear)
    if n == 0:
        return None
    area = np.bincount(labels.ravel(), minlength=n + 1) * spacing[0] * spacing[1]
    half_width = np.zeros(n + 1)
    half_width[1:] = ndi.maximum(ndi.distance_transform_edt(nuclear, sampling=spacing), labels, np.arange(1, n + 1))
    # the ring 1.5-3 µm out: nearer, the blurred nucleus tints the cytoplasm
    outer, inner = (ndi.grey_dilation(labels, footprint=_disk(r, spacing)) for r in (3.0, 1.5))
    ring = np.where(inner == 0, outer, 0)
    enclosed = covered_fraction(ring, bone, n)
    # osteocyte nuclei, also enclosed by matrix, are small and flat
    seeds = (area >= min_nucleus_um2) & (half_width >= 1.75) & (enclosed >= 0.5)
    seeds[0] = False
    if not seeds.any():
        return None
    from_seeds = ndi.distance_transform_edt(~seeds[labels], sampling=spacing)
    near, far = bone & (from_seeds <= 4.0), cores & bone & (from_seeds > 15.0)
    if near.sum() < 50 or far.sum() < 50:
        return None
    weights, level = _discriminant(features, near.ravel(), far.ravel())
    score = (features @ weights).reshape(bone.shape)
    spread = math.sqrt(float(weights @ np.cov(features[far.ravel()], rowvar=False) @ weights))
    if (float(score[near].mean()) - level) * 2 / max(spread, 1e-12) < min_separation:
        return None
    cytoplasm = bone & (ndi.gaussian_filter((score > level).astype(np.float32), _sigma(1.0, spacing)) > 0.5)
    pieces, m = ndi.label(cytoplasm)
    touching = np.zeros(m + 1, bool)
    touching[pieces[ndi.binary_dilation(seeds[labels], iterations=2) & cytoplasm]] = True
    touching[0] = False
    return touching[pieces]


def _bone_colour(features, cores, soft, min_separation):
    """Pixels of bone colour, from a linear discriminant on `features` (smoothed optical
    density, one row per pixel) trained on this image.

    Returns None when the matrix colour is not apart from the soft tissue's by
    `min_separation` pooled standard deviations.
    """
    # Trained on every other row and column where both classes are plentiful: a quarter of the
    # work, the same means and covariances.
    k = 2 if min(cores[::2, ::2].sum(), soft[::2, ::2].sum()) >= 1000 else 1
    train = features.reshape(*cores.shape, -1)[::k, ::k].reshape(-1, features.shape[1])
    first, second = cores[::k, ::k].ravel(), soft[::k, ::k].ravel()
    weights, level = _discriminant(train, first, second)
    score = train @ weights
    # Nucleus-free soft tissue (a cell-poor seam along the bone) sits among the cores: train
    # again on the cores and soft pixels the first model agrees with.
    first, second = first & (score > level), second & (score <= level)
    separation = 0.0
    if first.sum() >= 50 and second.sum() >= 50:
        weights, level = _discriminant(train, first, second)
        score = train @ weights
        spread = math.sqrt(float(weights @ np.cov(train[second], rowvar=False) @ weights))
        separation = 2 * (float(score[first].mean()) - level) / max(spread, 1e-12)
    info = {"bone_separation": round(separation, 2)}
    if separation < min_separation:
        # Nucleus-free soft tissue (tumour cytoplasm, fibrous tissue) would pass for bone on
        # structure alone; better no bone than a wrong surface.
        info["note"] = (f"no bone found: nucleus-free tissue has the colour of soft tissue ({separation:.1f} SD "
                        f"apart, fewer than min_separation={min_separation:g})")
        return None, info
    return (features @ weights > level).reshape(cores.shape), info


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
    voting = soft if ignore is None else soft & ~ignore
    sigma = _sigma(tumour_window_um, spacing)
    large = _blur(lookup[nuclei_labels] & nuclear, sigma)
    every = _blur(nuclear, sigma)
    around = _blur(voting, sigma)
    # Decided on the pooled fields, not only in soft tissue: tumour on both sides of a
    # trabecula is one tumour, so the slivers it leaves between surviving trabeculae (which
    # hold much of the tumour-bone interface) are not dropped as small pieces.
    near_soft = around > 0.1  # bone up to about two windows thick is bridged, thicker is not
    tumour = near_soft & (large > 0.5 * every) & (every > 0.15 * np.maximum(around, 1e-6))
    tumour = morphology.remove_small_holes(tumour, max_size=_pixels(min_tumour_um2, spacing))
    pieces, n = ndi.label(tumour)
    area = np.bincount(pieces[soft], minlength=n + 1)  # tumour area is the soft tissue in a piece
    keep = area >= _pixels(min_tumour_um2, spacing)
    keep[0] = False
    return keep[pieces] & soft


def _blur(mask, sigma):
    """Gaussian smoothing of a mask with a wide `sigma` (pixels per axis), on a coarser grid.

    A window of several µm varies slowly: block means of about a quarter of sigma, blurred
    there by the rest of sigma and interpolated back, equal the full-grid filter within a
    few thousandths at a fraction of the cost.
    """
    k = max(1, int(min(sigma) // 4))
    values = np.asarray(mask, np.float32)
    if k == 1:
        return ndi.gaussian_filter(values, sigma)
    h, w = values.shape
    padded = np.pad(values, ((0, -h % k), (0, -w % k)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).mean(axis=(1, 3))
    # a block mean is itself a blur of variance (k² - 1) / 12 pixels²
    rest = tuple(math.sqrt(max(s * s - (k * k - 1) / 12, 0.0)) / k for s in sigma)
    small = ndi.gaussian_filter(blocks, rest, mode="nearest")
    return ndi.zoom(small, k, order=1, mode="nearest", grid_mode=True)[:h, :w]


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
    near_bone = near_mask(bone, spacing, 4.0)  # only pooled over the tumour window: coarse is enough
    tumour = find_tumour(tissue & ~bone, nuclei_labels, nuclei_table, spacing,
                         ignore=near_bone if exclude is None else near_bone | exclude,
                         tumour_nucleus_um=p["tumour_nucleus_um"], tumour_window_um=p["tumour_window_um"],
                         min_tumour_um2=p["min_tumour_um2"])
    if exclude is not None and tumour.any():
        # a TRAP+ cell against tumour is part of the tumour-bone interface, as in a tracing
        cells, n = ndi.label(exclude & tissue & ~bone)
        touching = np.zeros(n + 1, bool)
        touching[cells[ndi.binary_dilation(tumour)]] = True
        touching[0] = False
        tumour |= touching[cells]
    regions = np.zeros(tissue.shape, np.uint8)
    regions[tissue] = SOFT
    regions[bone] = BONE
    regions[tumour] = TUMOUR
    return regions, {**p, **info}
