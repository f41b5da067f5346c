"""Osteoclasts in TRAP-stained sections and cultures: whole TRAP-positive cells, not nuclei.

An osteoclast is one cell however many nuclei it holds, so cells are segmented from the TRAP
stain (fast red violet / fast garnet reaction product) as whole objects and never seeded from
nuclei: nucleus-seeded segmenters split a multinucleated cell into as many objects as it has
nuclei, which is the classic failure. Touching cells are split only where their outline narrows
to a neck (distance-transform watershed with a minimum depth in µm). Nuclei are then counted
inside each cell, and a cell lies on bone when its edge comes within a tolerance in µm of the
bone surface.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import filters, measure, morphology, segmentation, transform

from .. import _validate
from ..errors import BoneImgError
from .histomorphometry import TUMOUR, _spacing, edge_pixels
from .pixels import covered_fraction, near_mask

_STAINED_OD = 0.1  # summed optical density of stained cells against glass (cultures)
_CULTURE_NECK_RATIO = 0.85  # touching cultured cells part where the outline narrows to 85 % of the smaller

#: Columns of the osteoclast table, in order.
COLUMNS = ("label", "x", "y", "area_um2", "n_nuclei", "on_bone", "bone_gap_um", "at_tumour", "counted",
           "trap_od")


@dataclass(eq=False)
class Osteoclasts:
    """Osteoclasts found in one image.

    Attributes
    ----------
    labels : ndarray of shape (M, N), int32
        0 = none, one id per TRAP-positive cell (the ``label`` column of `table`).
    nuclei : ndarray of shape (M, N), int32, or None
        The nuclei counted in the cells (:func:`cell_nuclei`), near the cells only.
    table : pandas.DataFrame
        One row per cell: ``label``; ``x``, ``y`` (centroid, pixels); ``area_um2``;
        ``n_nuclei``; ``on_bone`` (edge within `contact_um` of bone); ``bone_gap_um`` (edge
        to bone surface, inf without bone); ``at_tumour`` (most of the cell lies in tumour);
        ``counted`` (counts in N.Oc: enough nuclei, and on bone unless a culture);
        ``trap_od`` (mean TRAP optical density).
    parameters : dict
        The parameters used, with units, and the TRAP threshold reached.
    """

    labels: np.ndarray
    nuclei: object
    table: pd.DataFrame
    parameters: dict = field(default_factory=dict)

    @property
    def count(self):
        """Number of counted osteoclasts (N.Oc)."""
        return int(self.table["counted"].sum())


def trap_threshold(trap, tissue=None, *, floor=0.1):
    """Optical density that marks a pixel as surely TRAP-positive (a cell's core), per image.

    Half of Otsu's threshold over the pixels above `floor`: Otsu splits the stained cells
    from the pale bleed of hematoxylin-dense nuclei into the TRAP channel, and half of it still
    catches faintly stained cells. Never under twice `floor`.

    Parameters
    ----------
    trap : ndarray of shape (M, N)
        TRAP optical density.
    tissue : ndarray of shape (M, N), bool, optional
        Pixels to consider (default all).
    floor : float
        Optical density below which a pixel is never TRAP-positive.
    """
    values = np.asarray(trap)[tissue] if tissue is not None else np.asarray(trap).ravel()
    values = values[values > floor]
    if values.size < 100 or np.ptp(values) < 1e-3:
        return 2 * floor
    return max(2 * floor, 0.5 * float(filters.threshold_otsu(values)))


def _trap_positive(smooth, seed_level, floor, hematoxylin=None):
    """TRAP-positive pixels: grown from cores above `seed_level` down to half each cell's staining.

    Taking each cell's edge at half its own median stain puts the edge where the blurred stain
    step is, for faint and strong cells alike.
    """
    cores = smooth > seed_level
    if hematoxylin is not None:
        cores &= smooth > hematoxylin
    seeds, n = ndi.label(cores)
    if n == 0:
        return np.zeros(smooth.shape, bool)
    grown = segmentation.watershed(-smooth, seeds, mask=smooth > floor)
    median = np.zeros(n + 1, np.float32)
    median[1:] = ndi.median(smooth[cores], seeds[cores], np.arange(1, n + 1))  # seed pixels only: fast
    return (grown > 0) & (smooth >= np.maximum(0.5 * median[grown], floor))


def find_osteoclasts(trap, spacing_um, *, bone=None, nuclei_labels=None, regions=None, tissue=None, hematoxylin=None,
                     optical_density=None,
                     threshold="auto", floor=0.1, smoothing_um=0.5, min_area_um2=50.0, max_hole_um2=250.0, split_um=1.5,
                     contact_um=3.0, min_nuclei=1, culture=False):
    """Segment TRAP-positive cells as whole objects and describe them.

    Parameters
    ----------
    trap : ndarray of shape (M, N)
        TRAP optical density (from :func:`boneimg.histology.stains.separate_stains`).
    spacing_um : float or (float, float)
        Pixel size in µm.
    bone : ndarray of shape (M, N), bool, optional
        Bone matrix; without it no cell is on bone.
    nuclei_labels : ndarray of shape (M, N), int, optional
        Nucleus labels (:func:`boneimg.segment_nuclei`); a nucleus with at least half its area
        in a cell belongs to it.
    regions : ndarray of shape (M, N), int, optional
        Region map (3 = tumour), for the ``at_tumour`` column.
    tissue : ndarray of shape (M, N), bool, optional
        Where to pick the automatic threshold (default everywhere).
    hematoxylin : ndarray of shape (M, N), optional
        Hematoxylin optical density; a cell's core must hold more TRAP than hematoxylin, so
        dense nuclei bleeding into the TRAP channel start no cell.
    threshold : "auto" or float
        TRAP optical density of a cell's core ("auto": :func:`trap_threshold`); each cell
        extends to where its stain falls to half its median.
    floor : float
        TRAP optical density below which a pixel is never part of a cell.
    smoothing_um : float
        Gaussian smoothing of the TRAP image before thresholding, µm (evens out granules).
    min_area_um2 : float
        Smaller TRAP-positive objects (granules, debris, mononuclear cells) are dropped, µm².
    max_hole_um2 : float
        Holes up to this area inside a cell (its nuclei, which hold no TRAP) are filled, µm².
    split_um : float
        Touching cells are split where the outline narrows by at least this much (depth of
        the neck in the distance to the edge, µm); 0 never splits.
    contact_um : float
        A cell whose edge lies within this distance of bone is on bone, µm.
    min_nuclei : int
        Fewest nuclei for a cell to count as an osteoclast (1 for sections, 3 for cultures).
    culture : bool
        A cell culture: cells count without bone contact. With `optical_density`, a cell
        extends from its TRAP-positive core over the stained area around it (the spread, pale
        cytoplasm of a cultured osteoclast), and its unstained nuclei, pale ovals in the
        cytoplasm, are counted as well as hematoxylin-stained ones.
    optical_density : ndarray of shape (M, N), optional
        Summed (R + G + B) optical density, used in cultures.

    Returns
    -------
    Osteoclasts
    """
    trap = np.asarray(trap, np.float32)
    _validate.number("contact_um", contact_um)
    if isinstance(min_nuclei, bool) or not isinstance(min_nuclei, (int, np.integer)) or min_nuclei < 0:
        raise BoneImgError(f"min_nuclei must be a whole number >= 0, got {min_nuclei!r}")
    for name, array in (("bone", bone), ("regions", regions)):
        if array is not None and np.shape(array) != trap.shape:
            raise BoneImgError(f"{name} must have the TRAP image's shape {trap.shape}, got {np.shape(array)}")
    cells = segment_cells(
        trap, spacing_um, nuclei_labels=nuclei_labels, tissue=tissue, hematoxylin=hematoxylin,
        optical_density=optical_density, threshold=threshold, floor=floor, smoothing_um=smoothing_um,
        min_area_um2=min_area_um2, max_hole_um2=max_hole_um2, split_um=split_um, culture=culture)
    return describe_cells(cells, spacing_um, trap, bone=bone, regions=regions, contact_um=contact_um,
                          min_nuclei=min_nuclei, culture=culture)


def describe_cells(cells, spacing_um, trap, *, bone, regions, contact_um, min_nuclei, culture):
    """Osteoclasts from the output of :func:`segment_cells` (`cells`): their table
    (:func:`osteoclast_table`) and the parameters of both steps. Parameters are as for
    :func:`find_osteoclasts`."""
    labels, nuclei, parameters = cells
    table = osteoclast_table(labels, spacing_um, nuclei=nuclei, bone=bone, regions=regions, contact_um=contact_um,
                             min_nuclei=min_nuclei, culture=culture, trap=trap)
    return Osteoclasts(labels, nuclei, table, {**parameters, "contact_um": contact_um,
                                               "min_nuclei": int(min_nuclei), "culture": bool(culture)})


def segment_cells(trap, spacing_um, *, nuclei_labels=None, tissue=None, hematoxylin=None, optical_density=None,
                  threshold="auto", floor=0.1, smoothing_um=0.5, min_area_um2=50.0, max_hole_um2=250.0, split_um=1.5,
                  culture=False):
    """The TRAP-positive cells and their nuclei, without the table (:func:`find_osteoclasts`).

    For a caller that describes the cells later, once bone and regions are known
    (:func:`osteoclast_table`). Parameters are as for :func:`find_osteoclasts`.

    Returns
    -------
    labels : ndarray of shape (M, N), int32
    nuclei : ndarray of shape (M, N), int32, or None
    parameters : dict
    """
    trap = np.asarray(trap, np.float32)
    if trap.ndim != 2:
        raise BoneImgError(f"trap must be a 2-D optical-density image, got shape {trap.shape}")
    sy, sx = _spacing(spacing_um)
    for name, value in (("smoothing_um", smoothing_um), ("min_area_um2", min_area_um2),
                        ("max_hole_um2", max_hole_um2), ("split_um", split_um)):
        _validate.number(name, value)
    for name, array in (("nuclei_labels", nuclei_labels), ("tissue", tissue)):
        if array is not None and np.shape(array) != trap.shape:
            raise BoneImgError(f"{name} must have the TRAP image's shape {trap.shape}, got {np.shape(array)}")
    pixel_um2 = sy * sx
    smooth = ndi.gaussian_filter(trap, (smoothing_um / sy, smoothing_um / sx)) if smoothing_um else trap
    floor = _validate.number("floor", floor, strict=True)
    level = trap_threshold(smooth, tissue, floor=floor) if threshold == "auto" else _validate.number("threshold", threshold, strict=True)
    hema_smooth = None
    if hematoxylin is not None:
        hematoxylin = np.asarray(hematoxylin, np.float32)
        if hematoxylin.shape != trap.shape:
            raise BoneImgError(f"hematoxylin must have the TRAP image's shape {trap.shape}, got {hematoxylin.shape}")
        hema_smooth = ndi.gaussian_filter(hematoxylin, (smoothing_um / sy, smoothing_um / sx))
    cells = _trap_positive(smooth, level, floor, hema_smooth)
    density = None
    if culture and optical_density is not None:
        density = ndi.gaussian_filter(np.asarray(optical_density, np.float32), (0.5 / sy, 0.5 / sx))
        density -= glass_density(density, (sy, sx))
        cores, _ = ndi.label(cells)
        cells = segmentation.watershed(-smooth, cores, mask=density > _STAINED_OD) > 0
    nuclei = cell_nuclei(hematoxylin, (sy, sx), nuclei_labels=nuclei_labels, within=near_mask(cells, (sy, sx), 6.0))
    if density is not None:
        nuclei = _with_pale_nuclei(nuclei, density, cells, (sy, sx))
    if nuclei is not None:  # a cell's nuclei hold no TRAP: put them back into it
        cells |= _owners(nuclei, ndi.label(cells)[0], (sy, sx))[nuclei] > 0
    cells = morphology.remove_small_holes(cells, max_size=int(max_hole_um2 / pixel_um2))
    cells = morphology.remove_small_objects(cells, max_size=int(min_area_um2 / pixel_um2))
    if culture:  # spread cells of every size: relative necks, and every cell holds a nucleus
        labels = _split(cells, (sy, sx), split_um, min_area_um2, neck_ratio=_CULTURE_NECK_RATIO,
                        nuclei=None if nuclei is None else nuclei > 0)
    else:
        labels = _split(cells, (sy, sx), split_um, min_area_um2)
    parameters = {"threshold_od": round(level, 4), "threshold": threshold, "floor_od": floor,
                  "smoothing_um": smoothing_um,
                  "min_area_um2": min_area_um2, "max_hole_um2": max_hole_um2, "split_um": split_um}
    return labels, nuclei, parameters


def glass_density(density, spacing_um, *, block_um=8.0, window_um=400.0, quantile=10):
    """Optical density of the bare glass around each pixel: uneven illumination (darker image
    corners, up to 0.1 summed optical density) would otherwise read as pale stained cytoplasm.

    The `quantile` percentile of 8 µm block medians over a 400 µm window, smoothed: wide
    enough that a window is never mostly cell even beside a spread osteoclast 250 µm across.
    """
    spacing = _spacing(spacing_um)
    block = tuple(max(1, round(block_um / s)) for s in spacing)
    coarse = measure.block_reduce(density, block, np.median)
    size = tuple(max(1, round(window_um / block_um)) for _ in spacing)
    level = ndi.percentile_filter(coarse, quantile, size=size, mode="reflect")
    level = ndi.gaussian_filter(level, [n / 4 for n in size], mode="reflect")
    return transform.resize(level, density.shape, order=1, mode="edge").astype(np.float32)


def cell_nuclei(hematoxylin, spacing_um, *, nuclei_labels=None, within=None, min_nucleus_um2=10.0):
    """Nuclei to count in TRAP-positive cells: hematoxylin blobs, or the given nucleus labels.

    With `hematoxylin` (from the TRAP/hematoxylin separation) the nuclei are its blobs: a
    nucleus segmenter working from an H&E stain model both misses the pale nuclei of an
    osteoclast and finds false ones in its red cytoplasm. A pixel is nuclear above a third of
    the median hematoxylin of `nuclei_labels` (0.25 without them; osteoclast nuclei are paler
    than the marrow's) after a 0.5 µm smoothing, and touching nuclei are split at necks 1 µm
    deep; `within` (bool mask) limits the search. Without `hematoxylin`, `nuclei_labels` is
    returned (None if that is None too).

    Returns
    -------
    ndarray of shape (M, N), int32, or None
    """
    if hematoxylin is None:
        return None if nuclei_labels is None else np.asarray(nuclei_labels)
    spacing = _spacing(spacing_um)
    hematoxylin = np.asarray(hematoxylin, np.float32)
    nuclear = None if nuclei_labels is None else np.asarray(nuclei_labels) > 0
    level = 0.25 if nuclear is None or not nuclear.any() else max(0.15, float(np.median(hematoxylin[nuclear])) / 3)
    smooth = ndi.gaussian_filter(hematoxylin, tuple(0.5 / s for s in spacing))
    blobs = _split((smooth > level) if within is None else (smooth > level) & within, spacing, 1.0, min_nucleus_um2)
    small = np.bincount(blobs.ravel()) * spacing[0] * spacing[1] < min_nucleus_um2
    small[0] = True
    return segmentation.relabel_sequential(np.where(small[blobs], 0, blobs))[0]


def _with_pale_nuclei(nuclei, density, cells, spacing, *, size_um2=(15.0, 120.0), contrast=0.3):
    """Add the unstained nuclei of cultured cells to `nuclei`: round spots at least `contrast`
    paler than the cytoplasm around them (black top-hat over 12 µm), of nucleus size, enclosed
    by the cell (a 1.5 µm ring around them lies in it)."""
    radius = tuple(max(1, round(6.0 / s)) for s in spacing)
    yy, xx = np.mgrid[-radius[0]:radius[0] + 1, -radius[1]:radius[1] + 1]
    around = ndi.grey_closing(density, footprint=(yy / radius[0]) ** 2 + (xx / radius[1]) ** 2 <= 1)
    pale = cells & (around - density > contrast * around)
    if nuclei is not None:
        pale &= nuclei == 0
    spots, n = ndi.label(pale)
    if n == 0:
        return nuclei
    props = measure.regionprops(spots, spacing=spacing)
    size = tuple(2 * max(1, round(1.5 / s)) + 1 for s in spacing)
    ring = np.where(spots == 0, ndi.grey_dilation(spots, size=size), 0)
    enclosed = covered_fraction(ring, cells, n)
    keep = np.zeros(n + 1, bool)
    for p in props:
        keep[p.label] = (size_um2[0] <= p.area <= size_um2[1] and p.solidity > 0.85
                         and p.eccentricity < 0.9 and enclosed[p.label] > 0.95)
    spots = segmentation.relabel_sequential(np.where(keep[spots], spots, 0))[0]
    if nuclei is None:
        return spots
    return np.where(spots > 0, spots + int(nuclei.max()), nuclei)


def _owners(nuclei, cells, spacing):
    """The cell (label in `cells`, 0 none) each nucleus belongs to, as an array indexed by nucleus.

    A nucleus belongs to the cell covering half of it or more, or else to the cell covering
    half or more of a 1 µm ring around it (a nucleus holds no TRAP, so it is a hole or a notch
    in its cell's TRAP-positive area).
    """
    n = int(nuclei.max(initial=0))
    owner = np.zeros(n + 1, np.int64)
    if n == 0 or not cells.any():
        return owner
    size = tuple(2 * max(1, round(1.0 / s)) + 1 for s in spacing)
    ring = np.where(nuclei == 0, ndi.grey_dilation(nuclei, size=size), 0)
    stride = int(cells.max()) + 1
    for part in (ring, nuclei):  # the nucleus' own pixels decide where both apply
        inside = part > 0
        keys, overlap = np.unique(part[inside].astype(np.int64) * stride + cells[inside], return_counts=True)
        nucleus, cell = np.divmod(keys, stride)
        total = np.bincount(part[inside], minlength=n + 1)
        major = (cell > 0) & (2 * overlap >= total[nucleus])
        owner[nucleus[major]] = cell[major]
    return owner


def _split(cells, spacing, split_um, min_area_um2, *, neck_ratio=None, nuclei=None):
    """Label the cells, splitting touching ones at necks at least `split_um` deep (or, with
    `neck_ratio`, necks at most that fraction of the lower dome's height); with `nuclei`
    (bool mask) a piece holding no nucleus is a lobe of its neighbour, not a cell."""
    components, n = ndi.label(cells)
    if split_um <= 0 or n == 0:
        return components.astype(np.int32)
    out = np.zeros(cells.shape, np.int32)
    count = 0
    for index, box in enumerate(ndi.find_objects(components), 1):  # one cell cluster at a time: fast
        padded = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        pieces = _split_one(components[padded] == index, spacing, split_um, min_area_um2, neck_ratio,
                            None if nuclei is None else nuclei[padded])
        out[padded] += np.where(pieces > 0, pieces + count, 0).astype(np.int32)
        count += int(pieces.max())
    return out


def _split_one(mask, spacing, split_um, min_area_um2, neck_ratio=None, nuclei=None):
    """Pieces (labels 1..k) of one connected cell cluster, split at necks (see :func:`_split`)."""
    depth = ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1]
    # Relative necks are absolute ones in log(depth): a neck at most r x the top is a dome
    # rising log(1/r) above it. Cultured cells span 10-250 µm, so no one depth in µm fits all.
    if neck_ratio:
        surface, h = np.log(np.maximum(depth, min(spacing) / 2)), -np.log(neck_ratio)
    else:
        surface, h = depth, split_um
    # One marker per dome of the surface rising h or more above the necks around it: the cap
    # of the dome above (its top - h) is one connected region, where the tops alone
    # (skimage's h_maxima) may be several pixels apart on a symmetric dome.
    residue = surface - morphology.reconstruction(surface - h, surface)
    caps, n_caps = ndi.label(residue > 1e-6, structure=np.ones((3, 3)))
    if n_caps <= 1:
        return mask.astype(np.int32)
    height = np.zeros(n_caps + 1)
    height[1:] = ndi.maximum(residue, caps, np.arange(1, n_caps + 1))
    markers = np.where(height[caps] >= h - 1e-6, caps, 0)
    pieces = segmentation.watershed(-depth, markers, mask=mask)
    # a piece smaller than a cell (or holding no nucleus) is a lobe of its neighbour, unless
    # the whole cluster is such a piece
    area = np.bincount(pieces.ravel()) * spacing[0] * spacing[1]
    lobe = area < min_area_um2
    if nuclei is not None:
        lobe |= np.bincount(pieces.ravel(), weights=nuclei.ravel(), minlength=area.size) == 0
    lobe[0] = False
    if lobe.any() and not lobe[1:].all():
        pieces = segmentation.watershed(-depth, np.where(lobe[pieces], 0, pieces), mask=mask)
    return segmentation.relabel_sequential(pieces)[0].astype(np.int32)


def osteoclast_table(labels, spacing_um, *, nuclei=None, bone=None, regions=None, contact_um=3.0, min_nuclei=1,
                     culture=False, trap=None):
    """One row per labelled cell: position, size, nuclei, bone contact and whether it counts.

    Parameters are as for :func:`find_osteoclasts`; `labels` is the cell label image,
    `nuclei` the nucleus labels to count (:func:`cell_nuclei`) and `trap` (optional) the TRAP
    optical density averaged into ``trap_od``.
    """
    sy, sx = _spacing(spacing_um)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not ids.size:
        return _empty_table()
    props = measure.regionprops_table(labels, properties=("label", "centroid", "area"))
    table = pd.DataFrame({"label": props["label"].astype(np.int32), "x": props["centroid-1"],
                          "y": props["centroid-0"], "area_um2": props["area"] * sy * sx})
    counts = np.zeros(int(labels.max()) + 1, np.int64)
    if nuclei is not None:
        owner = _owners(np.asarray(nuclei), labels, (sy, sx))
        np.add.at(counts, owner[owner > 0], 1)
    table["n_nuclei"] = counts[table["label"]]
    if bone is not None and np.any(bone):
        table["bone_gap_um"] = _gaps_um(labels, np.asarray(bone, bool), (sy, sx))[table["label"]]
    else:
        table["bone_gap_um"] = np.inf
    table["on_bone"] = table["bone_gap_um"] <= contact_um
    if regions is not None:
        in_tumour = ndi.sum_labels(np.asarray(regions) == TUMOUR, labels, table["label"])
        table["at_tumour"] = 2 * np.asarray(in_tumour) > table["area_um2"] / (sy * sx)
    else:
        table["at_tumour"] = False
    enough = table["n_nuclei"] >= min_nuclei
    table["counted"] = enough if culture else enough & table["on_bone"]
    table["trap_od"] = ndi.mean(trap, labels, table["label"]) if trap is not None else np.nan
    return table[list(COLUMNS)]


def _gaps_um(labels, bone, spacing):
    """Gap in µm from each cell (indexed by label) to bone: the distance between the nearest
    pixel centres less one pixel (pixel centres one pixel apart are edges touching), >= 0."""
    gap = np.full(int(labels.max()) + 1, np.inf)
    cells = labels > 0
    edges = edge_pixels(cells)  # the nearest pixel of a cell to anything outside it is on its edge
    scale = np.array(spacing)
    distance, _ = cKDTree(edge_pixels(bone) * scale).query(edges * scale)
    owner = labels[edges[:, 0], edges[:, 1]]
    np.minimum.at(gap, owner, distance - min(spacing))
    gap[np.unique(labels[cells & bone])] = 0.0  # a cell overlapping bone touches it
    return np.maximum(gap, 0.0)


def _empty_table():
    dtypes = {"label": np.int32, "x": float, "y": float, "area_um2": float, "n_nuclei": np.int64, "on_bone": bool,
              "bone_gap_um": float, "at_tumour": bool, "counted": bool, "trap_od": float}
    return pd.DataFrame({name: pd.Series([], dtype=dtypes[name]) for name in COLUMNS})
