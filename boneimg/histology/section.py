"""Analysis of one H&E- or TRAP-stained bone section: regions, cells and histomorphometry.

>>> import boneimg as bi
>>> result = bi.analyze_section("tibia_trap.ome.tif", stain="trap")   # doctest: +SKIP
>>> result.measurements["N.Oc/B.Pm_per_mm"]                           # doctest: +SKIP
"""

from dataclasses import dataclass, field
import math

import numpy as np
import pandas as pd
from skimage import segmentation

from .._version import __version__
from ..errors import BoneImgError
from ..io.image import as_image
from . import regions as _regions
from . import nuclei as _nuclei
from . import stains as _stains
from .histomorphometry import BONE, TUMOUR, section_measurements
from .osteoclasts import _empty_table, describe_cells, segment_cells
from .pixels import downsample, read_block, to_rgb8, white_level

STAINS = ("auto", "he", "trap")
_OSTEOCLAST_OPTIONS = ("threshold", "floor", "smoothing_um", "min_area_um2", "max_hole_um2", "split_um")
_OFF_PLANE = 0.15  # optical density this far out of the two-stain plane (relative) is a third stain
_BAND_PX = 4_000_000  # working pixels resampled at a time
_SAMPLE_PX = 300_000  # working pixels the stain is decided from


@dataclass(eq=False)
class SectionResult:
    """What :func:`analyze_section` found in one section.

    Attributes
    ----------
    regions : ndarray of shape (M, N), uint8
        0 no tissue, 1 bone, 2 marrow and other soft tissue, 3 tumour.
    nuclei : Nuclei
        All nuclei found (:func:`boneimg.segment_nuclei`).
    osteoclasts : pandas.DataFrame
        One row per TRAP-positive cell: ``label``, ``x``, ``y`` (pixels), ``area_um2``,
        ``n_nuclei``, ``on_bone``, ``bone_gap_um``, ``at_tumour``, ``counted``, ``trap_od``;
        empty on H&E.
    osteoclast_labels : ndarray of shape (M, N), int32
        The cells of `osteoclasts` (all 0 on H&E).
    measurements : dict
        ASBMR symbol -> value (:data:`boneimg.histology.histomorphometry.SYMBOLS`); NaN where
        it does not apply, with the reason in `notes`.
    notes : dict
        Symbol (or topic, e.g. ``"stain"``) -> explanation.
    stain : str
        The stain analysed ("he" or "trap"), decided from the colour when "auto" was asked.
    stain_vectors : StainVectors or None
        The stain vectors used (None for a greyscale image).
    pixel_size_um : tuple of float
    parameters : dict
        Everything that produced the result: boneimg version, every parameter with its unit,
        stain vectors, thresholds reached, and the nucleus segmentation's own parameters.
    """

    regions: np.ndarray
    nuclei: object
    osteoclasts: pd.DataFrame
    osteoclast_labels: np.ndarray
    measurements: dict
    notes: dict
    stain: str
    stain_vectors: object
    pixel_size_um: tuple
    parameters: dict = field(default_factory=dict)

    def overlay(self, image):
        """A quality-control picture: `image` (RGB uint8) with region edges and osteoclasts drawn.

        Bone edges white, tumour edges yellow, counted osteoclasts green, other TRAP+ cells
        red, nuclei in tumour cyan.
        """
        rgb = np.array(image, copy=True)
        if rgb.shape[:2] != self.regions.shape or rgb.ndim != 3:
            raise BoneImgError(f"image must be RGB of shape {(*self.regions.shape, 3)}, got {rgb.shape}")
        rgb = rgb[..., :3]
        rgb[segmentation.find_boundaries(self.nuclei.labels * (self.regions == TUMOUR))] = (0, 220, 220)
        rgb[segmentation.find_boundaries(self.regions == BONE)] = (255, 255, 255)
        rgb[segmentation.find_boundaries(self.regions == TUMOUR)] = (255, 220, 0)
        counted = np.isin(self.osteoclast_labels, self.osteoclasts.loc[self.osteoclasts["counted"], "label"])
        cells = segmentation.find_boundaries(self.osteoclast_labels)
        rgb[cells] = (255, 0, 0)
        rgb[cells & counted] = (0, 230, 0)
        return rgb


def _working_rgb(img, grid):
    """The image on the working grid as float32 RGB in [0, 1], and whether it was greyscale.

    Read and resampled (anti-aliased) in bands of rows, so a lazy (dask) image is never held
    whole at full resolution. Greyscale is repeated into three channels, RGBA composited on
    white, wider integers scaled by the bit depth in use (a 12-bit camera in a 16-bit file).
    """
    data = img.data
    if data.dtype == bool or data.dtype.kind not in "uf":
        raise BoneImgError(f"expected an image of unsigned integers or floats, got dtype {data.dtype}",
                           path=img.path)
    white = white_level(data)
    out = np.empty(grid.shape + (3,), np.float32)
    factor, (h, w) = grid.factor, grid.input_shape
    k = grid.block  # an integer factor is an exact mean over k x k blocks, several times cheaper
    reach = 0 if k else int(math.ceil(2 * factor))
    band = max(1, _BAND_PX // max(1, grid.shape[1]))
    for y0 in range(0, grid.shape[0], band):
        y1 = min(y0 + band, grid.shape[0])
        iy0 = y0 * k if k else max(0, int(math.floor(y0 * factor)) - reach)
        iy1 = min(h, y1 * k if k else int(math.ceil(y1 * factor)) + reach)
        block = to_rgb8(read_block(data, slice(iy0, iy1), slice(None)), white)
        values = block.astype(np.float32) * np.float32(1 / 255)
        if k:
            values = np.pad(values, ((0, (y1 - y0) * k - values.shape[0]), (0, grid.shape[1] * k - w), (0, 0)),
                            mode="edge")
            out[y0:y1] = values.reshape(y1 - y0, k, grid.shape[1], k, 3).mean(axis=(1, 3))
        else:
            for c in range(3):
                out[y0:y1, :, c] = downsample(values[..., c], factor, (y0, 0, iy0, 0),
                                                        (y1 - y0, grid.shape[1]))
    return out, img.axes == "yx"


class _Grid:
    """The working grid: the input resampled to about `target_um` where it is finer than that."""

    def __init__(self, shape, spacing, target_um):
        factor = target_um / min(spacing)
        # Coarser inputs are used as they are (block 1); a near-integer factor is rounded, as
        # block means are exact and cheap; other factors are resampled.
        if factor <= 1.1:
            self.block = 1
        else:
            self.block = int(round(factor)) if abs(factor - round(factor)) < 0.05 else 0
        self.factor = float(self.block) if self.block else factor
        if self.block:
            self.shape = tuple(-(-n // self.block) for n in shape)
        else:
            self.shape = tuple(max(1, int(round(n / self.factor))) for n in shape)
        self.input_shape = tuple(shape)
        # input pixels per grid pixel along each axis
        self.ratio = tuple(float(self.block) if self.block else n / m for n, m in zip(shape, self.shape))
        self.spacing = tuple(s * r for s, r in zip(spacing, self.ratio))

    def sample(self, labels):
        """Nearest-neighbour labels on the grid."""
        if self.factor == 1.0:
            return labels
        rows, cols = (np.minimum(((np.arange(m) + 0.5) * r).astype(int), n - 1)
                      for n, m, r in zip(self.input_shape, self.shape, self.ratio))
        return labels[np.ix_(rows, cols)]

    def up(self, labels):
        """Nearest-neighbour labels back on the input pixels."""
        if self.factor == 1.0:
            return labels
        rows, cols = (np.minimum(((np.arange(n) + 0.5) / r).astype(int), m - 1)
                      for n, m, r in zip(self.input_shape, self.shape, self.ratio))
        return labels[np.ix_(rows, cols)]

    def to_input_xy(self, xy):
        """(x, y) grid coordinates as input pixel coordinates (pixel centres map to centres)."""
        return (xy + 0.5) * np.array([self.ratio[1], self.ratio[0]]) - 0.5


def estimate_section_stains(rgb, stain):
    """Stain vectors of a section, robust to a third stain (e.g. fast green on bone).

    Pixels whose optical density lies well outside the plane of the two reference stains are
    left out before the per-image (Macenko) estimate, so a counterstain does not pull the
    estimated vectors towards itself.
    """
    background = _stains.estimate_background(rgb)
    reference = _stains.reference_stains(stain, background)
    od = _stains.optical_density(rgb, background)
    normal = np.cross(reference.od[0], reference.od[1])
    normal /= np.linalg.norm(normal)
    total = np.linalg.norm(od, axis=-1)
    in_plane = np.abs(od @ normal) <= _OFF_PLANE * np.maximum(total, 1e-6)
    keep = in_plane | (total < 0.1)  # glass stays in, so the background is estimated as before
    if keep.sum() < 1000:  # nothing but a third colour (or black): nothing to leave out
        estimate = _stains.estimate_stains(rgb, stain)
    else:
        estimate = _stains.estimate_stains(rgb[keep][:, None, :], stain)
    # With too little of the second stain (a TRAP section without osteoclasts), Macenko's
    # extreme directions both lie near hematoxylin: then the references are the better guess.
    apart = np.degrees(np.arccos(np.clip(estimate.od[0] @ estimate.od[1], -1, 1)))
    expected = np.degrees(np.arccos(np.clip(reference.od[0] @ reference.od[1], -1, 1)))
    if estimate.estimated and apart < 0.6 * expected:
        return _stains.StainVectors(reference.names, reference.od, estimate.background, False,
                                    f"estimated stains only {apart:.0f}° apart (too little {reference.names[1]}): "
                                    "reference vectors used")
    return estimate


def nucleus_stains(od, vectors, *, min_fraction=0.02, min_pixels=500, min_response=0.15):
    """Stain vectors for finding nuclei on a TRAP section, blind to a third stain.

    Unmixed against TRAP red alone, a counterstain off the hematoxylin–TRAP plane that absorbs
    red as hematoxylin does (fast green on bone) reads as hematoxylin: the matrix then holds
    false nuclei, which are not bone. Where at least `min_fraction` of the stained pixels (and
    `min_pixels`) lie off that plane on one side (by :data:`_OFF_PLANE`), the third stain's
    direction is the median of the purest quarter of them, and the second vector becomes the
    direction in the TRAP–counterstain plane nearest hematoxylin: the hematoxylin amount is
    then that of a three-stain unmixing (weights along TRAP × counterstain), blind to both.

    Parameters
    ----------
    od : ndarray of shape (M, N, 3)
        Optical density (neutral dark pixels at 0).
    vectors : StainVectors
        Hematoxylin and TRAP (:func:`estimate_section_stains`).
    min_response : float
        Below this hematoxylin response of the three-stain weights (the counterstain nearly
        hematoxylin's colour), the two-stain `vectors` are kept.

    Returns
    -------
    StainVectors
        `vectors` itself when no third stain is found.
    """
    hema, trap = vectors.od
    normal = np.cross(hema, trap)
    normal /= np.linalg.norm(normal)
    od = od.reshape(-1, 3)
    total = np.linalg.norm(od, axis=1)
    stained = total >= 0.15
    od, total = od[stained], total[stained]
    offset = od @ normal / np.maximum(total, 1e-6)
    side = 1.0 if np.count_nonzero(offset > _OFF_PLANE) >= np.count_nonzero(offset < -_OFF_PLANE) else -1.0
    off = side * offset > _OFF_PLANE
    if off.sum() < max(min_pixels, min_fraction * len(od)):
        return vectors
    purest = off & (side * offset >= np.percentile(side * offset[off], 75))
    third = np.median(od[purest] / total[purest, None], axis=0).astype(float)
    blind = np.cross(trap, third)  # hematoxylin weights of the three-stain unmixing
    if np.linalg.norm(blind) < 1e-6:
        return vectors
    blind /= np.linalg.norm(blind)
    if abs(float(hema @ blind)) < min_response:
        return vectors
    plane = hema - (hema @ blind) * blind
    plane /= np.linalg.norm(plane)
    third /= np.linalg.norm(third)
    note = (f"{100 * off.mean():.0f} % of the stained pixels off the hematoxylin-TRAP plane: hematoxylin unmixed "
            f"against TRAP and a third stain at OD {np.round(third, 3).tolist()}")
    return _stains.StainVectors((vectors.names[0], f"{vectors.names[1]} and counterstain"), np.vstack([hema, plane]),
                                vectors.background, vectors.estimated, note)


def decide_stain(od):
    """Tell an H&E from a TRAP section by colour: ("he" or "trap" or None, why).

    With the hematoxylin direction removed, the most strongly stained pixels point towards
    eosin (pink, absorbs green only) or towards the TRAP product (red-magenta, absorbs green
    and blue); the nearer reference wins.
    """
    hema = _stains.reference_stains("he").od[0]
    stained = od[od.sum(axis=-1) > 0.15]
    if stained.shape[0] < 100:
        return None, "too little stained tissue to tell H&E from TRAP"
    rest = stained - np.outer(stained @ hema, hema)
    strength = np.linalg.norm(rest, axis=1)
    strongest = rest[strength >= max(np.percentile(strength, 98), 0.05)]
    if strongest.shape[0] < 20:
        return None, "no stain besides hematoxylin"
    direction = strongest.mean(axis=0)
    direction /= np.linalg.norm(direction)
    angles = {}
    for name, reference in (("he", _stains.REFERENCE_OD["eosin"]), ("trap", _stains.REFERENCE_OD["trap"])):
        off = np.asarray(reference) - (np.asarray(reference) @ hema) * hema
        angles[name] = math.degrees(math.acos(np.clip(direction @ off / np.linalg.norm(off), -1, 1)))
    choice = min(angles, key=angles.get)
    return choice, (f"decided from the colour: the strongest non-hematoxylin stain lies {angles['trap']:.0f}° "
                    f"from TRAP red and {angles['he']:.0f}° from eosin")


def analyze_section(image, *, stain="auto", pixel_size_um=None, culture=False, min_nuclei=None, contact_um=3.0,
                    interface_um=10.0, nuclei=None, working_pixel_size_um=0.5, max_megapixels=250.0,
                    region_params=None, osteoclast_params=None, nuclei_params=None):
    """Find bone, marrow, tumour, tumour cells and osteoclasts in a section and measure them.

    Parameters
    ----------
    image : Image, str, path or ndarray of shape (M, N, 3|4) or (M, N)
        Brightfield micrograph: RGB (uint8, uint16 or float in [0, 1]); RGBA is composited on
        white; greyscale is analysed without colour (no stain separation, no osteoclasts).
    stain : {"auto", "he", "trap"}
        H&E or TRAP (with hematoxylin counterstain, optionally fast green); "auto" decides from
        the colour and records why in ``notes["stain"]``.
    pixel_size_um : float, optional
        Pixel size in µm; required when the image does not carry one.
    culture : bool
        A cell culture rather than a section: no bone; osteoclasts count without bone contact.
    min_nuclei : int, optional
        Fewest nuclei for a TRAP-positive cell to count as an osteoclast; default 1 for
        sections (4–5 µm sections cut most osteoclasts through 1–2 nuclei), 3 for cultures.
    contact_um : float
        A cell whose edge lies within this distance of bone is on bone, and bone surface within
        it of a counted osteoclast is osteoclast surface (Oc.S), µm.
    interface_um : float
        Bone surface within this distance of tumour is tumour–bone interface (TBI.Pm), µm.
    nuclei : Nuclei, optional
        Nuclei found beforehand (another segmenter, a classifier); found with
        :func:`boneimg.segment_nuclei` otherwise.
    working_pixel_size_um : float
        Regions and cells are found on a grid of about this pixel size when the input is
        finer (the results are mapped back to the input pixels), µm.
    max_megapixels : float
        Larger images are refused with a message (analyse a region or a pyramid level).
    region_params : dict, optional
        Overrides of :data:`boneimg.histology.regions.DEFAULTS`.
    osteoclast_params : dict, optional
        Any of ``threshold``, ``floor``, ``smoothing_um``, ``min_area_um2``, ``max_hole_um2``,
        ``split_um`` (see :func:`boneimg.histology.osteoclasts.find_osteoclasts`).
    nuclei_params : dict, optional
        Keyword arguments for :func:`boneimg.segment_nuclei`. The nuclei are found with
        ``method="classical"`` unless this says otherwise: the tumour and osteoclast rules are
        validated against it, and the trained model's tumour class is not yet reliable enough
        to draw tumour regions from (``{"method": "model"}`` uses it anyway).

    Returns
    -------
    SectionResult

    Raises
    ------
    BoneImgError
        Unknown pixel size, bad parameter, unsupported image, or an image too large.
    """
    if stain not in STAINS:
        raise BoneImgError(f"stain must be one of {STAINS}, got {stain!r}")
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        from ..io import load

        image = load(image, pixel_size_um=pixel_size_um)
    img = as_image(image, pixel_size_um=pixel_size_um)
    if img.axes not in ("yx", "yxc"):
        raise BoneImgError(f"a section is a 2-D image (axes 'yx' or 'yxc'), got axes {img.axes!r}", path=img.path)
    spacing = img.require_spacing("section analysis")
    for name, value in (("contact_um", contact_um), ("interface_um", interface_um),
                        ("working_pixel_size_um", working_pixel_size_um), ("max_megapixels", max_megapixels)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
            raise BoneImgError(f"{name} must be a non-negative number, got {value!r}")
    if working_pixel_size_um == 0:
        raise BoneImgError("working_pixel_size_um must be positive (µm)")
    min_nuclei = (3 if culture else 1) if min_nuclei is None else min_nuclei
    if isinstance(min_nuclei, bool) or not isinstance(min_nuclei, (int, np.integer)) or min_nuclei < 0:
        raise BoneImgError(f"min_nuclei must be a whole number >= 0, got {min_nuclei!r}")
    osteoclast_params = dict(osteoclast_params or {})
    unknown = set(osteoclast_params) - set(_OSTEOCLAST_OPTIONS)
    if unknown:
        raise BoneImgError(f"unknown osteoclast parameters {sorted(unknown)}; known: {list(_OSTEOCLAST_OPTIONS)}")
    megapixels = img.spatial_shape[0] * img.spatial_shape[1] / 1e6
    if megapixels > max_megapixels:
        raise BoneImgError(
            f"the image has {megapixels:.0f} megapixels, more than max_megapixels={max_megapixels:g}; "
            "analyse a region (image.data[y0:y1, x0:x1]) or a lower pyramid level (image.levels[k] with "
            "pixel_size_um=image.level_spacing_um(k)), or raise max_megapixels if memory allows "
            "(about 60 bytes per pixel)", path=img.path)

    # Regions and cells are found on a working grid of about working_pixel_size_um: the same
    # tissue at 0.25 and 0.5 µm/px gives the same answer, four times faster at 0.25.
    grid = _Grid(img.spatial_shape, spacing, working_pixel_size_um)
    work_rgb, grey = _working_rgb(img, grid)
    notes = {}
    if grey:
        vectors = None
        work_od = _stains.optical_density(work_rgb, _stains.estimate_background(work_rgb))
        used = "he" if stain == "auto" else stain
        notes["stain"] = "greyscale image: no stain separation; osteoclasts (TRAP colour) cannot be seen"
    else:
        # the stain is decided from a regular sample; the stain vectors, on which culture counts
        # hinge, from every pixel
        stride = max(1, math.ceil(math.sqrt(work_rgb.shape[0] * work_rgb.shape[1] / _SAMPLE_PX)))
        sample = work_rgb[::stride, ::stride]
        if stain == "auto":
            used, why = decide_stain(_stains.optical_density(sample, _stains.estimate_background(sample)))
            notes["stain"] = why if used else f"{why}; analysed as H&E"
            used = used or "he"
        else:
            used = stain
            notes["stain"] = f"{stain} (given)"
        vectors = estimate_section_stains(work_rgb, used)
        if not vectors.estimated:
            notes["stain_vectors"] = vectors.note
        work_od = _stains.optical_density(work_rgb, vectors.background)
        amounts = _stains.unmix(work_od, vectors) if used == "trap" else None
        # black pigment, ink, folds and dead pixels are neither tissue nor stain
        work_od[_stains.neutral_dark_od(work_od)] = 0

    if nuclei is None:
        # on TRAP the nuclei are hematoxylin against TRAP red (and a counterstain), not against an
        # H&E tissue colour
        given = {"method": "classical"}
        if used == "trap" and vectors is not None:
            given["stains"] = nucleus_stains(work_od, vectors)
        nuclei = _nuclei.segment_nuclei(img.with_spacing(spacing), **{**given, **(nuclei_params or {})})
    elif tuple(getattr(nuclei, "labels", np.zeros(0)).shape) != tuple(img.spatial_shape):
        raise BoneImgError(f"nuclei.labels must have the image's shape {tuple(img.spatial_shape)}")
    work_nuclei = grid.sample(nuclei.labels)
    sees_osteoclasts = used == "trap" and not grey
    trap = cells = None
    if sees_osteoclasts:
        trap = amounts[..., 1]
        # described once bone and regions are known, which need the cells first
        cells = segment_cells(trap, grid.spacing, nuclei_labels=work_nuclei, hematoxylin=amounts[..., 0],
                              optical_density=work_od.sum(axis=-1), culture=culture, **osteoclast_params)
    regions, region_info = _regions.find_regions(work_od, grid.spacing, nuclei_labels=work_nuclei,
                                                 nuclei_table=nuclei.table,
                                                 exclude=None if cells is None else cells[0] > 0,
                                                 culture=culture, **(region_params or {}))
    if "note" in region_info:
        notes["bone"] = region_info["note"]
    if cells is not None:
        osteoclasts = describe_cells(cells, grid.spacing, trap, bone=regions == BONE, regions=regions,
                                     contact_um=contact_um, min_nuclei=min_nuclei, culture=culture)
        table, labels, cell_parameters = osteoclasts.table, osteoclasts.labels, osteoclasts.parameters
    else:
        table, labels = _empty_table(), np.zeros(regions.shape, np.int32)
    measurements, symbol_notes = section_measurements(
        regions, grid.spacing, n_tumour_cells=0, osteoclasts=table if sees_osteoclasts else None,
        osteoclast_labels=labels, contact_um=contact_um, interface_um=interface_um)
    regions, labels = grid.up(regions), grid.up(labels)
    table[["x", "y"]] = grid.to_input_xy(table[["x", "y"]].to_numpy(float))
    in_tumour = nuclei.inside(regions == TUMOUR)
    if "cell_type" in nuclei.table:
        in_tumour &= nuclei.table["cell_type"].eq("tumour").to_numpy()
    measurements["N.TumourCells"] = int(in_tumour.sum())
    if grey:
        symbol_notes = {k: ("greyscale image: TRAP colour cannot be seen" if "Oc" in k else v)
                        for k, v in symbol_notes.items()}
    if culture:
        symbol_notes = {k: (f"a culture has no bone ({v})" if "Pm" in k or "BS" in k else v)
                        for k, v in symbol_notes.items()}
    notes.update(symbol_notes)
    parameters = {
        "boneimg_version": __version__, "function": "analyze_section", "stain_requested": stain, "stain": used,
        "pixel_size_um": list(spacing), "working_pixel_size_um": list(grid.spacing), "culture": bool(culture),
        "min_nuclei": int(min_nuclei), "contact_um": contact_um, "interface_um": interface_um,
        "stain_vectors": None if vectors is None else vectors.as_dict(),
        "regions": region_info, "osteoclasts": None if cells is None else cell_parameters,
        "nuclei": getattr(nuclei, "parameters", {}),
        "tumour_cells": "nuclei in tumour regions" + (" typed tumour" if "cell_type" in nuclei.table else ""),
    }
    return SectionResult(regions, nuclei, table, labels, measurements, notes, used, vectors, tuple(spacing),
                         parameters)

