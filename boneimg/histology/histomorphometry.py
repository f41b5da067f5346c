"""Histomorphometry of a section: areas, perimeters and osteoclast indices in ASBMR symbols.

Perimeters are traced with sub-pixel accuracy and measured in µm along the outline; counting
pixel edges would over-estimate a diagonal or curved surface by up to 41 %. The outline is a
chain of short straight pieces, and a part of it (the surface under osteoclasts, the
tumour–bone interface) is the pieces whose midpoints satisfy a condition, so every perimeter
symbol comes from one tracing.

A piece is "within d µm of tumour" (or of an osteoclast) when tumour lies within d µm of it
*in sight*: the straight path to the nearest tumour pixel does not pass through bone. A plain
Euclidean distance reaches through thin trabeculae and counts the far side of a trabecula,
which faces marrow, as interface.
"""

from dataclasses import dataclass
import math

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import measure

from ..errors import BoneImgError

# SectionResult.regions codes
BACKGROUND, BONE, SOFT, TUMOUR = 0, 1, 2, 3

#: Measurement keys of a section, in report order.
SYMBOLS = (
    "T.Ar_mm2", "B.Ar_mm2", "B.Ar/T.Ar_pct", "B.Pm_mm", "Tu.Ar_mm2", "Tu.Ar/T.Ar_pct", "TBI.Pm_mm",
    "N.TumourCells", "N.Oc", "N.Oc/B.Pm_per_mm", "Oc.Pm_mm", "Oc.S/BS_pct", "N.Oc.TBI",
    "N.Oc/TBI.Pm_per_mm", "N.Oc/T.Ar_per_mm2",
)
_OSTEOCLAST_SYMBOLS = ("N.Oc", "N.Oc/B.Pm_per_mm", "Oc.Pm_mm", "Oc.S/BS_pct", "N.Oc.TBI",
                       "N.Oc/TBI.Pm_per_mm", "N.Oc/T.Ar_per_mm2")


@dataclass(frozen=True)
class Outline:
    """The outline of a mask as short straight pieces.

    Attributes
    ----------
    midpoints : ndarray of shape (K, 2)
        Midpoint (row, column) of each piece, in pixels.
    lengths_um : ndarray of shape (K,)
        Length of each piece in µm.
    """

    midpoints: np.ndarray
    lengths_um: np.ndarray

    def length_um(self, where=None):
        """Total length in µm, of all pieces or of those where `where` (bool, shape (K,)) holds."""
        return float(self.lengths_um.sum() if where is None else self.lengths_um[where].sum())


def _spacing(spacing_um):
    sy, sx = (float(spacing_um),) * 2 if np.isscalar(spacing_um) else map(float, spacing_um)
    if not (sy > 0 and sx > 0 and math.isfinite(sy) and math.isfinite(sx)):
        raise BoneImgError(f"spacing_um must be positive and finite (µm), got {spacing_um!r}")
    return sy, sx


def outline(mask, spacing_um):
    """Trace the outline of a 2-D mask with sub-pixel accuracy.

    The mask is smoothed with a Gaussian of one pixel and traced at level 0.5 (marching
    squares); this places the outline between the pixel centres along the true edge, so a
    digitised disk of radius r gives 2πr within 1 % from r = 5 px on. The image frame is not
    a surface: outlines end where the mask meets the border.

    Parameters
    ----------
    mask : ndarray of shape (M, N), bool
    spacing_um : float or (float, float)
        Pixel size (row, column) in µm.

    Returns
    -------
    Outline
    """
    return _trace(mask, spacing_um)[0]


def _trace(mask, spacing_um):
    """The :class:`Outline` of `mask` and the smoothed mask it was traced on (None if trivial)."""
    sy, sx = _spacing(spacing_um)
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise BoneImgError(f"mask must be 2-D, got shape {mask.shape}")
    empty = Outline(np.zeros((0, 2)), np.zeros(0))
    if not mask.any() or mask.all():
        return empty, None
    # The smoothing is a sub-pixel edge reconstruction, not a physical filter: one pixel.
    smooth = ndi.gaussian_filter(mask.astype(np.float32), 1.0, mode="nearest")
    midpoints, lengths = [], []
    for contour in measure.find_contours(smooth, 0.5):
        steps = np.diff(contour, axis=0)
        midpoints.append(contour[:-1] + steps / 2)
        lengths.append(np.hypot(steps[:, 0] * sy, steps[:, 1] * sx))
    if not midpoints:
        return empty, smooth
    return Outline(np.concatenate(midpoints), np.concatenate(lengths)), smooth


def perimeter_um(mask, spacing_um):
    """Length in µm of the outline of `mask` (see :func:`outline`), the image frame excluded."""
    return outline(mask, spacing_um).length_um()


def edge_pixels(mask):
    """(row, column) of the pixels of `mask` with a 4-neighbour outside it: the nearest pixel
    of `mask` to any point outside it is one of these."""
    mask = np.asarray(mask, bool)
    inner = mask.copy()  # erosion by a cross, outside the image counting as mask; slices are fast
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return np.argwhere(mask & ~inner)


def within_sight(line, target, within_um, spacing_um, bone_smooth):
    """Which outline pieces have a pixel of `target` within `within_um` µm, not behind bone.

    Parameters
    ----------
    line : Outline
        The bone outline.
    target : ndarray of shape (M, N), bool
        Tumour, or the cells covering the surface.
    within_um : float
        Largest gap from a piece to the target, µm (from the piece's midpoint to the nearest
        target pixel centre, less half a pixel: the midpoint lies half a pixel from the pixel
        centres on either side of the edge).
    spacing_um : (float, float)
    bone_smooth : ndarray of shape (M, N) or None
        The smoothed bone mask the outline was traced on (bone above 0.5); the straight path
        from a piece to its nearest target pixel must stay out of it beyond the first pixel.
        None skips that test (a tolerance of a few µm cannot reach across a trabecula).

    Returns
    -------
    ndarray of shape (K,), bool
    """
    sy, sx = spacing_um
    k = len(line.midpoints)
    pixels = edge_pixels(target)
    if k == 0 or not len(pixels):
        return np.zeros(k, bool)
    scale = np.array([sy, sx])
    half_px = 0.5 * min(sy, sx)
    gap, nearest = cKDTree(pixels * scale).query(line.midpoints * scale, distance_upper_bound=within_um + half_px)
    near = gap - half_px <= within_um
    if bone_smooth is None:
        return near
    # sample the path from each near piece to its target pixel every half pixel, from one pixel out
    start, end = line.midpoints[near], pixels[nearest[near]].astype(float)
    span = np.hypot(*(end - start).T)
    steps = np.arange(1.0, max(float(span.max(initial=0.0)), 1.0), 0.5)
    t = np.minimum(steps[None, :] / np.maximum(span[:, None], 1e-9), 1.0)
    path = start[:, None, :] + t[..., None] * (end - start)[:, None, :]
    inside = ndi.map_coordinates(bone_smooth, path.reshape(-1, 2).T, order=1, mode="nearest").reshape(t.shape) > 0.5
    near[np.flatnonzero(near)] = ~inside.any(axis=1)
    return near


def section_measurements(regions, spacing_um, *, n_tumour_cells, osteoclasts=None, osteoclast_labels=None,
                         contact_um=3.0, interface_um=10.0):
    """Histomorphometry of one section from its region map and objects.

    Parameters
    ----------
    regions : ndarray of shape (M, N), int
        0 no tissue, 1 bone, 2 marrow and other soft tissue, 3 tumour.
    spacing_um : float or (float, float)
        Pixel size in µm.
    n_tumour_cells : int
        Number of tumour-cell nuclei.
    osteoclasts : pandas.DataFrame, optional
        One row per osteoclast with the columns ``label``, ``counted`` (bool: counts in N.Oc)
        and ``at_tumour`` (bool); None when the stain shows no osteoclasts (H&E), which makes
        every osteoclast symbol NaN.
    osteoclast_labels : ndarray of shape (M, N), int, optional
        Label image of the osteoclasts in `osteoclasts`.
    contact_um : float
        Bone surface within this distance of a counted osteoclast is osteoclast surface
        (Oc.S), µm.
    interface_um : float
        Bone surface within this distance of tumour, in sight (not through bone), is
        tumour–bone interface (TBI.Pm), µm.

    Returns
    -------
    measurements : dict
        Symbol -> value for every key in :data:`SYMBOLS`; areas in mm², lengths in mm.
    notes : dict
        Symbol -> why its value is NaN.
    """
    regions = np.asarray(regions)
    sy, sx = _spacing(spacing_um)
    if osteoclasts is not None and osteoclast_labels is None:
        raise BoneImgError("osteoclast_labels is needed with an osteoclast table")
    mm2 = sy * sx * 1e-6
    tissue_mm2 = np.count_nonzero(regions) * mm2
    bone = regions == BONE
    tumour = regions == TUMOUR
    bone_outline, bone_smooth = _trace(bone, (sy, sx))
    bone_mm = bone_outline.length_um() / 1000
    at_tumour = within_sight(bone_outline, tumour, interface_um, (sy, sx), bone_smooth)
    tbi_mm = bone_outline.length_um(at_tumour) / 1000
    notes = {}
    m = {symbol: math.nan for symbol in SYMBOLS}

    def ratio(symbol, numerator, denominator, scale, why):
        if denominator > 0:
            m[symbol] = scale * numerator / denominator
        else:
            notes[symbol] = why

    no_tissue = "no tissue in the image"
    no_bone = "no bone surface in the section"
    no_tbi = "no tumour–bone interface in the section"
    m.update({"T.Ar_mm2": tissue_mm2, "B.Ar_mm2": np.count_nonzero(bone) * mm2, "B.Pm_mm": bone_mm,
              "Tu.Ar_mm2": np.count_nonzero(tumour) * mm2, "TBI.Pm_mm": tbi_mm,
              "N.TumourCells": int(n_tumour_cells)})
    ratio("B.Ar/T.Ar_pct", m["B.Ar_mm2"], tissue_mm2, 100, no_tissue)
    ratio("Tu.Ar/T.Ar_pct", m["Tu.Ar_mm2"], tissue_mm2, 100, no_tissue)
    if osteoclasts is None:
        for symbol in _OSTEOCLAST_SYMBOLS:
            notes[symbol] = "osteoclasts are counted on TRAP-stained sections only"
        return m, notes

    counted = osteoclasts.loc[osteoclasts["counted"].astype(bool)]
    n_oc = len(counted)
    n_tbi = int(counted["at_tumour"].astype(bool).sum())
    covering = np.isin(osteoclast_labels, counted["label"].to_numpy())
    on_surface = within_sight(bone_outline, covering, contact_um, (sy, sx), None)
    oc_mm = bone_outline.length_um(on_surface) / 1000
    m.update({"N.Oc": n_oc, "Oc.Pm_mm": oc_mm, "N.Oc.TBI": n_tbi})
    ratio("N.Oc/B.Pm_per_mm", n_oc, bone_mm, 1, no_bone)
    ratio("Oc.S/BS_pct", oc_mm, bone_mm, 100, no_bone)
    ratio("N.Oc/TBI.Pm_per_mm", n_tbi, tbi_mm, 1, no_tbi)
    ratio("N.Oc/T.Ar_per_mm2", n_oc, tissue_mm2, 1, no_tissue)
    return m, notes
