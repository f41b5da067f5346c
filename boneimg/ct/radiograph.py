"""Osteolytic lesions on 2-D X-ray radiographs (Faxitron-style): dark holes in bright bone.

Steps of :func:`analyze_radiograph`:

1. The image is smoothed (Gaussian, ``smooth_sigma_um``) and the soft tissue is removed: the
   bone signal is the image minus the soft-tissue level around the bone, interpolated under it
   (the bone is found roughly as what rises above a grey opening with a square of side
   ``2 * background_radius_um``, wider than any bone; the background is the Gaussian-weighted
   mean of the pixels outside it).
2. Bone outline: the bone signal above Otsu's threshold, closed with a disc of
   ``outline_closing_um`` and with its holes filled (a lytic hole inside the bone is inside
   the outline).
3. Expected bone signal: with a reference (the mirrored contralateral limb, or a baseline of
   the same limb, aligned) its bone signal; without one, the bone's own signal along its long
   axis with dips shorter than ``expected_length_um`` bridged (a grey closing along the axis,
   found from the outline, marks them; each is bridged by a straight line between the bone on
   its two sides; across the axis the profile of a long bone is not flat, along it it is; one
   straight bone per image is assumed, so give a reference for a whole bent limb).
4. Lytic pixels lie inside the outline (of the image or the reference) and are darker than
   expected by more than ``k`` robust SDs of the difference and by at least ``min_loss_pct`` %
   of the expected bone signal (radiolucent: about half the bone along the ray gone). Each
   such core grows, by at most three smoothing sigmas (its blurred rim), to where its loss
   falls to ``edge_pct`` % of the lesion's depth (the middle of the rim, where a hand tracing
   puts the edge). Lesions are the connected
   components of at least ``min_lesion_area_mm2``.
"""

from dataclasses import dataclass, field
import math

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from ..errors import BoneImgError
from ..io.image import Image, as_image
from .masks import remove_small

EIGHT = np.ones((3, 3), bool)
RADIOGRAPH_DEFAULTS = {
    "bone_bright": True,
    "k": 3.0,
    "min_loss_pct": 50.0,
    "edge_pct": 50.0,
    "min_lesion_area_mm2": 0.005,
    "smooth_sigma_um": None,
    "background_radius_um": 1000.0,
    "outline_closing_um": 100.0,
    "expected_length_um": 1000.0,
}


@dataclass
class RadiographResult:
    """Result of :func:`analyze_radiograph`.

    Attributes
    ----------
    lesions : ndarray of uint8, shape (H, W)
        1 on lytic pixels, 0 elsewhere.
    bone : ndarray of bool, shape (H, W)
        Inside the bone outline.
    measurements : dict
        ``Lytic.Ar_mm2`` (total lytic area), ``Lytic.N`` (number of lesions),
        ``Lytic.Ar/B.Ar_pct``, ``B.Ar_mm2`` (area inside the bone outline), ``Lytic.Ar.max_mm2``.
    mode : str
        "reference" or "no-reference".
    parameters : dict
    pixel_size_um : tuple of float
    notes : dict
        Measurement -> why it is NaN, and what the analysis assumed.
    """

    lesions: np.ndarray
    bone: np.ndarray
    measurements: dict
    mode: str
    parameters: dict
    pixel_size_um: tuple
    notes: dict = field(default_factory=dict)


def analyze_radiograph(image, *, pixel_size_um=None, reference=None, **params):
    """Bone outline and osteolytic lesions of a radiograph (see the module notes).

    Parameters
    ----------
    image : Image or ndarray of shape (H, W)
        Grey-value radiograph, bone bright (pass ``bone_bright=False`` for raw detector images
        where bone is dark); any integer or float dtype.
    pixel_size_um : float or (float, float), optional
        Pixel size in µm (overrides the Image's); required when the image does not carry it.
    reference : Image or ndarray of shape (H, W), optional
        The expected limb, aligned with the image: the mirrored contralateral limb or a
        baseline of the same limb, same shape.
    **params
        Any of :data:`RADIOGRAPH_DEFAULTS`: ``bone_bright``; ``k`` (SDs below the expected
        bone); ``min_loss_pct`` (% of the expected bone signal lost); ``edge_pct`` (% of
        the lesion's depth at its edge); ``min_lesion_area_mm2``;
        ``smooth_sigma_um`` (default: one pixel); ``background_radius_um``,
        ``outline_closing_um`` and ``expected_length_um`` in µm.

    Returns
    -------
    RadiographResult

    Raises
    ------
    BoneImgError
        Unknown parameter, an image that is not a 2-D grey image, unknown pixel size, or a
        reference of another shape.
    """
    p = _parameters(params)
    img = as_image(image, pixel_size_um=pixel_size_um)
    if img.axes != "yx":
        raise BoneImgError(f"analyze_radiograph needs a 2-D grey image, got axes {img.axes!r}",
                           path=img.path)
    spacing = img.require_spacing("analyze_radiograph")
    notes = {}
    signal = _bone_signal(_grey(img.data, p), spacing, p)
    bone = _outline(signal, spacing, p)
    if reference is not None:
        mode = "reference"
        ref = _reference_grey(reference, img.spatial_shape, p)
        expected = _bone_signal(ref, spacing, p)
        bone |= _outline(expected, spacing, p)
    else:
        mode = "no-reference"
        expected = _expected_along_axis(signal, bone, spacing, p["expected_length_um"])
        notes["expected"] = ("expected bone from the image itself: dips along the long axis shorter "
                             "than expected_length_um bridged")
    loss = expected - signal
    lytic = np.zeros(bone.shape, bool)
    sd = float("nan")
    if bone.any():
        sd = 1.4826 * float(np.median(np.abs(loss[bone] - np.median(loss[bone]))))
        core = bone & (loss > p["k"] * sd) & (loss >= p["min_loss_pct"] / 100 * expected)
        # the blurred rim of a hole is a few smoothing sigmas wide: grow no further
        rim = ndi.binary_dilation(core, EIGHT, iterations=max(2, math.ceil(3 * _sigma_um(p, spacing) / min(spacing))))
        lytic = _to_half_depth(core, loss, bone & rim, p["edge_pct"] / 100)
        pixel_mm2 = spacing[0] * spacing[1] / 1e6
        lytic = remove_small(lytic, math.ceil(p["min_lesion_area_mm2"] / pixel_mm2), structure=EIGHT)
    measurements = _measure(lytic, bone, spacing, notes)
    parameters = {**p, "loss_sd": sd}
    return RadiographResult(lytic.astype(np.uint8), bone, measurements, mode, parameters, tuple(spacing), notes)


def _parameters(params):
    unknown = sorted(set(params) - set(RADIOGRAPH_DEFAULTS))
    if unknown:
        raise BoneImgError(
            f"unknown analyze_radiograph parameter(s) {unknown}; valid: {sorted(RADIOGRAPH_DEFAULTS)}")
    p = {**RADIOGRAPH_DEFAULTS, **params}
    if not isinstance(p["bone_bright"], bool):
        raise BoneImgError(f"bone_bright must be True or False, got {p['bone_bright']!r}")
    for key, value in p.items():
        if key == "bone_bright" or (key == "smooth_sigma_um" and value is None):
            continue
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0):
            raise BoneImgError(f"{key} must be a finite number >= 0, got {value!r}")
    return p


def _sigma_um(p, spacing):
    """Gaussian smoothing in µm: one pixel unless given."""
    return min(spacing) if p["smooth_sigma_um"] is None else p["smooth_sigma_um"]


def _grey(data, p):
    data = np.asarray(data)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
            or data.dtype == bool):
        raise BoneImgError(f"radiograph grey values must be integers or floats, got dtype {data.dtype}")
    grey = data.astype(np.float32)
    if not np.isfinite(grey).all():
        raise BoneImgError("the radiograph holds NaN or infinite values")
    return grey if p["bone_bright"] else -grey


def _reference_grey(reference, shape, p):
    data = reference.data if isinstance(reference, Image) else reference
    data = np.asarray(data)
    if data.shape != shape:
        raise BoneImgError(
            f"the reference has shape {data.shape} but the image has shape {shape}; give the "
            "mirrored contralateral limb or the baseline radiograph aligned on the same grid")
    return _grey(data, p)


def _bone_signal(grey, spacing, p):
    """Smoothed image minus the soft tissue around the bone, interpolated under it.

    Bone is first found roughly as what rises above a grey opening wider than the bone; the
    soft-tissue background under it is then the Gaussian-weighted mean of the pixels around
    it (normalised convolution with sigma ``background_radius_um / 2``).
    """
    sigma_um = _sigma_um(p, spacing)
    if sigma_um > 0:
        grey = ndi.gaussian_filter(grey, [sigma_um / s for s in spacing])
    size = [2 * max(1, round(p["background_radius_um"] / s)) + 1 for s in spacing]
    rise = grey - ndi.grey_opening(grey, size=size, mode="nearest")
    if np.ptp(rise) == 0:
        return rise
    rough = rise > filters.threshold_otsu(rise)
    rough = ndi.binary_dilation(rough, _ellipse(*[max(1, round(p["outline_closing_um"] / s)) for s in spacing]))
    if rough.all():
        return rise
    soft = (~rough).astype(np.float32)
    sigma = [p["background_radius_um"] / 2 / s for s in spacing]
    weight = ndi.gaussian_filter(soft, sigma, mode="nearest")
    background = ndi.gaussian_filter(grey * soft, sigma, mode="nearest") / np.maximum(weight, 1e-6)
    return grey - background


def _outline(signal, spacing, p):
    """Inside the bone outline: signal above Otsu's threshold, closed, holes filled."""
    if np.ptp(signal) == 0:
        return np.zeros(signal.shape, bool)
    bone = signal > filters.threshold_otsu(signal)
    radius = [max(1, round(p["outline_closing_um"] / s)) for s in spacing]
    disc = _ellipse(*radius)
    pad = max(radius)
    bone = ndi.binary_closing(np.pad(bone, pad), disc)[pad:-pad, pad:-pad]
    return ndi.binary_fill_holes(bone)


def _ellipse(ry, rx):
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return (yy / ry) ** 2 + (xx / rx) ** 2 <= 1


def _expected_along_axis(signal, bone, spacing, length_um):
    """The bone signal with dips along the bone's long axis shorter than `length_um` bridged.

    The long axis is the direction of the outline's long edges: the eigenvector of the
    structure tensor of the outline (summed over the image) across which the outline varies
    least. One straight bone per image is assumed. A grey closing along the axis finds the
    dips; each is then bridged by a straight line between the bone on its two sides (the
    closing alone fills at the darker side's level, too low where the bone brightens along the
    axis, as towards the metaphysis).
    """
    if not bone.any():
        return signal.copy()
    outline = ndi.gaussian_filter(bone.astype(np.float32), 2.0)
    rows = ndi.sobel(outline, axis=0) / spacing[0]
    cols = ndi.sobel(outline, axis=1) / spacing[1]
    tensor = np.array([[np.sum(rows * rows), np.sum(rows * cols)], [np.sum(rows * cols), np.sum(cols * cols)]])
    _, vectors = np.linalg.eigh(tensor)
    axis = vectors[:, 0]  # (row, column) in µm: the direction of least change
    angle = math.degrees(math.atan2(axis[0] / spacing[0], axis[1] / spacing[1]))
    # turn the long axis onto the columns, close along them, turn back
    turn = 90.0 - angle
    rotated = ndi.rotate(signal, turn, reshape=True, order=1, mode="nearest")
    length_px = max(3, int(round(length_um / float(np.mean(spacing)))))
    closed = _bridge_dips(rotated, ndi.grey_closing(rotated, size=(length_px, 1), mode="nearest"))
    back = ndi.rotate(closed, -turn, reshape=True, order=1, mode="nearest")
    offset = [(b - s) // 2 for b, s in zip(back.shape, signal.shape)]
    return back[offset[0]:offset[0] + signal.shape[0], offset[1]:offset[1] + signal.shape[1]]


def _bridge_dips(profile, closed):
    """`closed` with each dip it filled (where it lies above `profile`, along axis 0) replaced
    by a straight line between `profile` on the dip's two sides (one side at the array's edge)."""
    rows = np.arange(profile.shape[0])[:, None]
    dip = closed > profile
    rim = ~dip
    above = np.maximum.accumulate(np.where(rim, rows, -1), axis=0)
    below = np.minimum.accumulate(np.where(rim, rows, profile.shape[0])[::-1], axis=0)[::-1]
    has_above, has_below = above >= 0, below < profile.shape[0]
    top = np.take_along_axis(profile, np.clip(above, 0, None), axis=0)
    bottom = np.take_along_axis(profile, np.clip(below, None, profile.shape[0] - 1), axis=0)
    t = (rows - above) / np.maximum(below - above, 1)
    line = np.where(has_above & has_below, top + (bottom - top) * t, np.where(has_above, top, bottom))
    return np.where(dip & (has_above | has_below), line, closed)


def _to_half_depth(core, loss, allowed, edge_fraction):
    """Grow each lesion core, within `allowed`, to where the loss falls to `edge_fraction` of
    the lesion's depth.

    The depth is the 90th percentile of the loss in the core, so a lesion's edge is the middle
    of its blurred rim (as drawn by hand), whatever the soft tissue under the bone adds. Core
    pixels shallower than the edge level stay in the lesion, so every core pixel seeds the growth.
    """
    labels, _ = ndi.label(core, structure=EIGHT)
    lytic = core.copy()
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        seed = labels == index
        depth = np.percentile(loss[box][seed[box]], 90)
        # the seed is part of the grown mask, so no seed pixel falls on the background label 0
        grown, _ = ndi.label(seed | (allowed & (loss >= edge_fraction * depth)), structure=EIGHT)
        lytic |= np.isin(grown, np.unique(grown[seed]))
    return lytic


def _measure(lytic, bone, spacing, notes):
    pixel_mm2 = spacing[0] * spacing[1] / 1e6
    labels, n = ndi.label(lytic)
    bone_mm2 = float(bone.sum()) * pixel_mm2
    lytic_mm2 = float(lytic.sum()) * pixel_mm2
    values = {"Lytic.Ar_mm2": lytic_mm2, "Lytic.N": int(n), "B.Ar_mm2": bone_mm2,
              "Lytic.Ar.max_mm2": float(np.bincount(labels.ravel())[1:].max()) * pixel_mm2 if n else 0.0}
    if bone_mm2 > 0:
        values["Lytic.Ar/B.Ar_pct"] = 100 * lytic_mm2 / bone_mm2
    else:
        values["Lytic.Ar/B.Ar_pct"] = float("nan")
        notes["Lytic.Ar/B.Ar_pct"] = "no bone outline found"
    return values
