"""Nucleus detection and instance segmentation in brightfield (H&E) sections.

Every size is a physical length in µm converted through the pixel size, and the work is done
on a fixed working grid (0.5 µm/px by default) so the same tissue scanned at 20x and 40x gives
the same nuclei. The classical path:

1. nuclear stain per pixel: hematoxylin unmixed against the image's own tissue colour
   (:func:`boneimg.histology.stains.estimate_nuclear_contrast`), pigment and ink set to 0,
   resampled (anti-aliased) to the working grid;
2. Gaussian smoothing and removal of the slowly varying background (white top-hat), so the
   nuclear signal is measured against the tissue around each nucleus;
3. a nuclear threshold T for the whole image (Otsu on that signal, or given);
4. seeds: maxima of the scale-normalised Laplacian of Gaussian over the nucleus sizes,
   computed on the signal clipped at 1.3 T so the chromatin texture inside a big nucleus does
   not make several maxima; plus maxima of the distance to the background where touching
   nuclei of even stain make one blob the stain alone cannot split;
5. marker-controlled watershed inside the nuclear pixels (> 0.7 T, small holes filled) on stain
   plus distance; then pieces are merged back where they are one nucleus: slivers, pieces
   joined along a cut as wide as they are thick, or nearly as wide with no dip in the stain
   between them; pieces under `min_area_um2` are dropped;
6. labels mapped back to the input grid (nearest neighbour), measured there.

Large images (dask arrays, or more than `tile_size_px` squared pixels on the working grid) are
processed in overlapping tiles with image-wide stain vectors and threshold; an object belongs
to the tile whose core holds its centroid, so objects on seams are neither lost nor doubled,
and the result equals the untiled one.

The defaults were chosen on the CRCHisto training split, BM_GRAZ, CPM-15 and synthetic sections
(``benchmarks/bench_histology.py``; figures in ``benchmarks/RESULTS.md``).
"""

from dataclasses import dataclass, field
import math
import tempfile

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .. import _validate
from .._version import __version__
from ..errors import BoneImgError
from ..io.image import Image, as_image
from . import stains as _stains

METHODS = ("auto", "classical", "model")
TABLE_COLUMNS = ("label", "x", "y", "area_um2", "diameter_um", "hematoxylin_od")

# Fixed ratios of the classical pipeline, relative to the image's nuclear threshold T.
_CLIP = 1.3        # the signal is clipped at 1.3 T before blob detection (flattens chromatin texture)
_EXTENT = 0.7      # nuclear pixels: signal above 0.7 T
_SEED_LEVEL = 0.8  # a seed must lie where the signal exceeds 0.8 T
_N_SCALES = 4      # Laplacian-of-Gaussian scales between the smallest and largest diameter
_SHAPE_WEIGHT = 0.5  # weight of the (capped) distance to the background in the watershed landscape
_NECK_ONE = 1.4    # touching pieces joined by a cut this wide (relative to their thickness) are one nucleus
_NECK_SMOOTH = 1.15  # ... and from this wide when the stain shows no dip between them
_STATS_MAX_PIXELS = 4_000_000  # image-wide statistics from at most this many working pixels


@dataclass(eq=False)
class Nuclei:
    """Nuclei found in one image.

    Attributes
    ----------
    labels : ndarray of shape (M, N), int32
        0 = background, one id per nucleus (the ``label`` column of `table`). For tiled
        (lazy) input this is a disk-backed ``numpy.memmap``.
    table : pandas.DataFrame
        One row per nucleus: ``label``, ``x``, ``y`` (centroid in pixels, x = column,
        y = row), ``area_um2``, ``diameter_um`` (of the circle of equal area),
        ``hematoxylin_od`` (mean hematoxylin optical density in excess of the surrounding
        tissue's colour), and ``cell_type`` where a classifier ran.
    pixel_size_um : tuple of float
        Pixel size (row, column) of `labels` in µm.
    method : str
        The method that ran ("classical" or "model").
    parameters : dict
        Provenance: boneimg version, method, every parameter with its unit, the stain vectors
        used, the threshold reached and whether the image was tiled.
    """

    labels: np.ndarray
    table: pd.DataFrame
    pixel_size_um: tuple
    method: str
    parameters: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.table)

    @property
    def count(self):
        """Number of nuclei."""
        return len(self.table)

    def xy(self):
        """Centroids as an array of shape (n, 2) holding (x, y) pixels."""
        return self.table[["x", "y"]].to_numpy(float)

    def inside(self, mask):
        """Boolean per table row: is the nucleus centroid inside `mask` (bool array (M, N))?

        Counting tumour cells as nuclei inside the tumour region is
        ``nuclei.inside(regions == 3).sum()``.
        """
        mask = np.asarray(mask, bool)
        if mask.shape != tuple(self.labels.shape):
            raise BoneImgError(f"mask must have the labels' shape {tuple(self.labels.shape)}, got {mask.shape}")
        if len(self.table) == 0:
            return np.zeros(0, bool)
        rows = np.clip(np.rint(self.table["y"].to_numpy()).astype(int), 0, mask.shape[0] - 1)
        cols = np.clip(np.rint(self.table["x"].to_numpy()).astype(int), 0, mask.shape[1] - 1)
        return mask[rows, cols]

    def __repr__(self):
        return (f"Nuclei(count={self.count}, shape={tuple(self.labels.shape)}, method={self.method!r}, "
                f"pixel_size_um={self.pixel_size_um})")


@dataclass(frozen=True)
class _Params:
    diameter_um: tuple
    min_area_um2: float
    min_contrast: float
    min_separation_um: float
    split_depth: float
    smoothing_um: float
    background_um: float
    threshold: object
    working_pixel_size_um: float
    tile_size_px: int

    def as_dict(self):
        return {
            "diameter_um": list(self.diameter_um), "min_area_um2": self.min_area_um2,
            "min_contrast": self.min_contrast, "min_separation_um": self.min_separation_um,
            "split_depth": self.split_depth, "smoothing_um": self.smoothing_um,
            "background_um": self.background_um, "threshold": self.threshold,
            "working_pixel_size_um": self.working_pixel_size_um, "tile_size_px": self.tile_size_px,
        }


def model_weights_available():
    """True when a trained nucleus model ships with this installation."""
    from ..models.weights import DEFAULT_MODEL, shipped_models

    return DEFAULT_MODEL in shipped_models()


def segment_nuclei(image, *, pixel_size_um=None, method="auto", diameter_um=(5.0, 12.0), min_area_um2=12.0,
                   min_contrast=0.25, min_separation_um=2.5, split_depth=0.05, smoothing_um=0.5,
                   background_um=20.0, threshold="otsu", working_pixel_size_um=0.5, tile_size_px=2048,
                   stains=None, model=None, device="cpu"):
    """Detect and delineate cell nuclei in a brightfield (H&E) image.

    Parameters
    ----------
    image : Image or ndarray of shape (M, N, 3)
        RGB brightfield image: uint8, uint16 (any bit depth up to 16) or float in [0, 1].
        RGBA is composited on white; a greyscale (M, N) image is read as stain density (darker
        = more). A dask array, or an Image holding one, is processed in tiles.
    pixel_size_um : float, optional
        Pixel size in µm; required when `image` is an array or an uncalibrated Image, and
        overrides the Image's own otherwise.
    method : {"auto", "classical", "model"}
        "classical": stain separation, blob seeds and watershed; "model": a trained network
        (:mod:`boneimg.models`), which also fills the ``cell_type`` column; "auto": the model
        when one is installed or given and no classical `stains` are given, else classical. The
        model path uses only `pixel_size_um`, `tile_size_px`, `model` and `device`.
    diameter_um : (float, float)
        Smallest and largest nucleus diameter looked for, µm.
    min_area_um2 : float
        Smallest nucleus area kept, µm².
    min_contrast : float
        Strength a blob must reach to seed a nucleus: the scale-normalised Laplacian of
        Gaussian of the signal in units of the nuclear threshold (lower finds fainter nuclei).
    min_separation_um : float
        Smallest distance between two nucleus seeds, µm.
    split_depth : float
        Two touching pieces stay separate nuclei only when the signal dips between them by
        more than this (in units of the nuclear threshold); larger values split less.
    smoothing_um : float
        Standard deviation of the Gaussian smoothing of the hematoxylin image, µm.
    background_um : float
        Width of the white top-hat that removes slowly varying background stain, µm; 0 turns it
        off. Must exceed the largest nucleus.
    threshold : "otsu" or float
        Nuclear threshold T on the background-corrected hematoxylin optical density; "otsu"
        computes it for the whole image.
    working_pixel_size_um : float
        Pixel size of the grid the work is done on, µm; finer inputs are resampled to it
        (coarser ones are used as they are).
    tile_size_px : int
        Images with more than this squared pixels on the working grid are processed in tiles
        of this size plus an overlap.
    stains : StainVectors, optional
        Stain vectors whose first is the nuclear stain (hematoxylin) and second the other
        stain, e.g. ``estimate_section_stains(rgb, "trap")`` for a TRAP section (hematoxylin
        counterstain, TRAP red); the glass intensity is measured on this image. By default
        hematoxylin is unmixed against the image's own tissue colour, which suits H&E.

    model : str or os.PathLike, optional
        Name of a shipped model or path of a model file (``.pt`` with its ``.json``), e.g. one
        fine-tuned with ``boneimg train --from``; default the shipped ``nuclei_he``.
    device : str
        torch device for the model ("cpu", "cuda").

    Returns
    -------
    Nuclei

    Raises
    ------
    BoneImgError
        Unknown pixel size, unsupported image shape or dtype, a bad parameter, or method
        "model" without installed weights.

    Examples
    --------
    >>> import boneimg as bi
    >>> from boneimg.sample_data.sections import he_section
    >>> nuclei = bi.segment_nuclei(he_section((256, 256), 0.5).image)
    >>> list(nuclei.table.columns[:4])
    ['label', 'x', 'y', 'area_um2']
    """
    if method not in METHODS:
        raise BoneImgError(f"method must be one of {METHODS}, got {method!r}")
    use_model = method == "model" or (method == "auto" and stains is None
                                       and (model is not None or model_weights_available()))
    if method == "model" and model is None and not model_weights_available():
        raise BoneImgError("method='model' needs trained nucleus-model weights and none are installed; give model=PATH "
                           "or use method='classical'")
    params = _check_params(diameter_um, min_area_um2, min_contrast, min_separation_um, split_depth, smoothing_um,
                           background_um, threshold, working_pixel_size_um, tile_size_px)
    if stains is not None and (not isinstance(stains, _stains.StainVectors) or stains.names[0] != "hematoxylin"):
        raise BoneImgError(f"stains must be StainVectors with hematoxylin first, got {stains!r}")
    img = _as_input(image, pixel_size_um)
    spacing = img.require_spacing("nucleus segmentation")
    if abs(spacing[0] - spacing[1]) > 0.02 * max(spacing):
        raise BoneImgError(f"nucleus segmentation needs square pixels, got {spacing[0]:g} x {spacing[1]:g} µm",
                           path=img.path)
    px = float(spacing[0])
    if use_model:
        from ..models.inference import segment
        from ..models.weights import DEFAULT_MODEL

        labels, table, info = segment(img, px, model=DEFAULT_MODEL if model is None else model,
                                      tile_size_px=params.tile_size_px, device=device)
        parameters = {"boneimg_version": __version__, "function": "segment_nuclei", "method": "model",
                      "input": img.path, "pixel_size_um": px, "tile_size_px": params.tile_size_px, **info}
        return Nuclei(labels, table, (px, px), "model", parameters)
    labels, table, info = _run_classical(img, px, params, stains)
    parameters = {
        "boneimg_version": __version__,
        "function": "segment_nuclei",
        "method": "classical",
        "input": img.path,
        "pixel_size_um": px,
        **params.as_dict(),
        **info,
    }
    return Nuclei(labels, table, (px, px), "classical", parameters)


def _check_params(diameter_um, min_area_um2, min_contrast, min_separation_um, split_depth, smoothing_um,
                  background_um, threshold, working_pixel_size_um, tile_size_px):
    try:
        dmin, dmax = (float(d) for d in diameter_um)
    except (TypeError, ValueError):
        raise BoneImgError(f"diameter_um must be two numbers (smallest, largest) in µm, got {diameter_um!r}") from None
    if not (0 < dmin <= dmax < 500):
        raise BoneImgError(f"diameter_um must satisfy 0 < smallest <= largest < 500 (µm), got {diameter_um!r}")
    background = _validate.number("background_um", background_um)
    if 0 < background <= dmax:
        raise BoneImgError(
            f"background_um must exceed the largest diameter ({dmax:g} µm) or be 0, got {background_um!r}")
    if not (threshold == "otsu" or (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                                    and math.isfinite(threshold) and threshold > 0)):
        raise BoneImgError(f"threshold must be 'otsu' or an optical density > 0, got {threshold!r}")
    if not (isinstance(tile_size_px, (int, np.integer)) and not isinstance(tile_size_px, bool) and tile_size_px >= 128):
        raise BoneImgError(f"tile_size_px must be an integer >= 128, got {tile_size_px!r}")
    return _Params(
        (dmin, dmax), _validate.number("min_area_um2", min_area_um2), _validate.number("min_contrast", min_contrast),
        _validate.number("min_separation_um", min_separation_um), _validate.number("split_depth", split_depth),
        _validate.number("smoothing_um", smoothing_um), background, threshold if threshold == "otsu" else float(threshold),
        _validate.number("working_pixel_size_um", working_pixel_size_um, strict=True), int(tile_size_px))


def _as_input(image, pixel_size_um):
    if isinstance(image, Image):
        img = image if pixel_size_um is None else image.with_spacing(pixel_size_um)
    else:
        data = image if hasattr(image, "ndim") and hasattr(image, "dtype") else np.asarray(image)
        if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
            raise BoneImgError(f"expected an RGB image of shape (M, N, 3) (or RGBA, or greyscale (M, N)), "
                               f"got shape {data.shape}")
        img = as_image(data, pixel_size_um=pixel_size_um, axes="yx" if data.ndim == 2 else "yxc")
    if img.axes not in ("yx", "yxc"):
        raise BoneImgError(f"nucleus segmentation needs a 2-D image (axes 'yxc' or 'yx'), got axes {img.axes!r}",
                           path=img.path)
    if img.dtype.kind not in "uf" and img.dtype != bool:
        raise BoneImgError(f"expected an image of unsigned integers or floats, got dtype {img.dtype}", path=img.path)
    if min(img.spatial_shape) < 1:
        raise BoneImgError(f"the image is empty (shape {img.shape})", path=img.path)
    return img


# ---------------------------------------------------------------------------------------------
# Pixel values -> hematoxylin optical density


def _white_level(data):
    """Value of full white: 255 for uint8, the bit depth used for uint16 (4095 for 12-bit data),
    1 for floats and booleans. Computed once for the whole image so every tile agrees."""
    if data.dtype == bool or data.dtype.kind == "f":
        return 1.0
    if data.dtype == np.uint8:
        return 255.0
    top = data.max()
    top = int(top.compute() if hasattr(top, "compute") else top)
    for bits in (8, 10, 12, 14, 16, 32, 64):
        if top <= 2 ** bits - 1:
            return float(min(2 ** bits - 1, np.iinfo(data.dtype).max))
    return float(np.iinfo(data.dtype).max)


def _to_rgb8(block, white):
    """uint8 RGB from an (M, N), (M, N, 3) or (M, N, 4) block: greyscale repeated, RGBA
    composited on white glass, other dtypes scaled by the image-wide white level."""
    block = np.asarray(block)
    if block.ndim == 3 and block.shape[-1] == 4:
        alpha = block[..., 3:].astype(np.float32) / np.float32(white)
        block = block[..., :3].astype(np.float32) * alpha + np.float32(white) * (1 - alpha)
    if block.dtype != np.uint8:
        scaled = block.astype(np.float32) * np.float32(255.0 / white)
        block = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if block.ndim == 2:
        block = np.repeat(block[..., None], 3, axis=2)
    return block


def _grey_stains(background):
    """Stain vectors for a greyscale image: the neutral direction carries the whole density."""
    grey = np.ones(3) / math.sqrt(3)
    other = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    return _stains.StainVectors(("density", "none"), np.vstack([grey, other]), np.asarray(background, float), False,
                                "greyscale image: optical density of the grey value")


def _stain_model(sample8, grey, stains=None):
    if grey:
        return _grey_stains(_stains.estimate_background(sample8))
    if stains is not None:  # given directions, this image's glass (in 8-bit units, as the pipeline reads)
        return _stains.StainVectors(stains.names, stains.od, _stains.estimate_background(sample8), stains.estimated,
                                    stains.note)
    return _stains.estimate_nuclear_contrast(sample8)


def _hematoxylin(rgb8, vectors):
    """Hematoxylin density, 0 on pigment, ink and other neutral dark pixels."""
    hema = _stains.stain_amount(rgb8, vectors, 0)
    if vectors.names[0] == "hematoxylin":
        hema[_stains.neutral_dark(rgb8, vectors.background)] = 0
    return hema


# ---------------------------------------------------------------------------------------------
# Resampling between the input grid and the working grid


def _working_factor(px, params):
    """Input pixels per working pixel (1 = work on the input grid: coarser inputs are not upsampled)."""
    factor = params.working_pixel_size_um / px
    return factor if factor > 1.1 else 1.0


def _work_coords(start, stop, factor):
    """Input-grid coordinate of the centre of working pixels start..stop-1."""
    return (np.arange(start, stop) + 0.5) * factor - 0.5


def _downsample(values, factor, origin, shape):
    """Working-grid samples (origin, shape in working pixels, relative to the block) of an
    input-grid block whose first pixel is input pixel origin_in = origin * factor (anti-aliased)."""
    if factor == 1.0:
        return values
    smoothed = ndi.gaussian_filter(values, sigma=0.5 * math.sqrt(factor ** 2 - 1), mode="nearest")
    rows = _work_coords(origin[0], origin[0] + shape[0], factor) - origin[2]
    cols = _work_coords(origin[1], origin[1] + shape[1], factor) - origin[3]
    rows = np.clip(rows, 0, values.shape[0] - 1)
    cols = np.clip(cols, 0, values.shape[1] - 1)
    # separable linear interpolation: rows then columns
    r0 = np.floor(rows).astype(int)
    r1 = np.minimum(r0 + 1, values.shape[0] - 1)
    fr = (rows - r0).astype(np.float32)[:, None]
    tmp = smoothed[r0] * (1 - fr) + smoothed[r1] * fr
    c0 = np.floor(cols).astype(int)
    c1 = np.minimum(c0 + 1, values.shape[1] - 1)
    fc = (cols - c0).astype(np.float32)[None, :]
    return (tmp[:, c0] * (1 - fc) + tmp[:, c1] * fc).astype(np.float32)


def _upsample_labels(labels, factor, work_origin, in_start, in_stop):
    """Nearest working-grid label for input rows/cols in_start..in_stop (per axis)."""
    if factor == 1.0 and work_origin == in_start:
        return labels[: in_stop[0] - in_start[0], : in_stop[1] - in_start[1]]
    rows = np.floor((np.arange(in_start[0], in_stop[0]) + 0.5) / factor).astype(int) - work_origin[0]
    cols = np.floor((np.arange(in_start[1], in_stop[1]) + 0.5) / factor).astype(int) - work_origin[1]
    rows = np.clip(rows, 0, labels.shape[0] - 1)
    cols = np.clip(cols, 0, labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


# ---------------------------------------------------------------------------------------------
# The classical pipeline on one block of the working grid


def _signal(hema, wpx, params):
    """Smoothed, background-corrected hematoxylin density."""
    signal = ndi.gaussian_filter(hema, params.smoothing_um / wpx) if params.smoothing_um > 0 else hema
    if params.background_um > 0:
        signal = signal - _background(signal, params.background_um / wpx)
    return signal


def _background(signal, size_px):
    """Grey opening of `signal` by a square of `size_px`, never above the signal.

    Computed on 2 x 2 block minima (a quarter of the pixels) when the square spans at least 16
    pixels; the result is still a lower envelope, so the top-hat stays >= 0.
    """
    if size_px < 16 or min(signal.shape) < 4:
        size = max(3, int(round(size_px)) | 1)
        return ndi.grey_opening(signal, size=(size, size))
    h, w = signal.shape
    padded = np.pad(signal, ((0, h % 2), (0, w % 2)), mode="edge")
    minima = np.minimum(np.minimum(padded[0::2, 0::2], padded[0::2, 1::2]),
                        np.minimum(padded[1::2, 0::2], padded[1::2, 1::2]))
    size = max(3, int(round(size_px / 2)) | 1)
    opened = ndi.grey_opening(minima, size=(size, size))
    return np.repeat(np.repeat(opened, 2, axis=0), 2, axis=1)[:h, :w]


def _otsu_threshold(signal):
    from skimage.filters import threshold_otsu

    values = signal[signal > 0.02]  # ignore glass and unstained tissue
    if values.size < 16 or values.max() - values.min() < 1e-3:
        return float("inf")
    return max(float(threshold_otsu(values)), 0.05)


def _segment_block(hema, wpx, params, threshold):
    """Labels (int32, working grid) of the nuclei in one block of hematoxylin density."""
    from skimage.segmentation import watershed

    signal = _signal(hema, wpx, params)
    if not math.isfinite(threshold) or not (signal > _EXTENT * threshold).any():
        return np.zeros(hema.shape, np.int32)
    dmin, dmax = params.diameter_um
    clipped = np.minimum(signal, _CLIP * threshold) / threshold
    peaks = _blob_seeds(clipped, wpx, params)
    peaks = peaks[signal[peaks[:, 0], peaks[:, 1]] > _SEED_LEVEL * threshold]
    foreground = signal > _EXTENT * threshold
    foreground = _fill_small_holes(foreground, math.pi * (dmax / 2) ** 2 / wpx ** 2)
    foreground[peaks[:, 0], peaks[:, 1]] = True
    # shape: the distance to the background peaks once per round nucleus, also where touching
    # nuclei of even stain make one flat blob that the stain alone cannot split
    distance = _distance(foreground)
    peaks = np.concatenate([peaks, _shape_seeds(distance, peaks, wpx, params)])
    markers = np.zeros(hema.shape, np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    landscape = clipped + np.minimum(distance * (wpx / (dmin / 2)), 1.0) * np.float32(_SHAPE_WEIGHT)
    labels = watershed(-landscape, markers, mask=foreground)
    # nuclear pixels that no seed reached: one object per connected piece
    orphans, n_orphans = ndi.label(foreground & (labels == 0))
    if n_orphans:
        labels = np.where(orphans > 0, orphans + len(peaks), labels)
    labels = _merge_pieces(labels, clipped, params.split_depth, 0.5 * dmin / wpx)
    sizes = np.bincount(labels.ravel())
    small = sizes < params.min_area_um2 / wpx ** 2
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels.astype(np.int32, copy=False)


def _shape_seeds(distance, stain_peaks, wpx, params):
    """Maxima of the distance to the background (at least a quarter of the smallest diameter
    deep) farther from every stain seed than 1.2 times their depth, as (row, col)."""
    from scipy.spatial import cKDTree

    dmin = params.diameter_um[0]
    smooth = ndi.gaussian_filter(distance, 1.0)
    found = _local_maxima(smooth, max(1, int(round(dmin / 2 / wpx))), dmin / 4 / wpx)
    if len(found) == 0 or len(stain_peaks) == 0:
        return found.reshape(-1, 2)
    nearest, _ = cKDTree(stain_peaks).query(found)
    return found[nearest > 1.2 * distance[found[:, 0], found[:, 1]]].reshape(-1, 2)


def _blob_seeds(clipped, wpx, params):
    """(row, col) of the maxima of the scale-normalised Laplacian of Gaussian over the nucleus
    sizes that reach `min_contrast`.

    When the smallest scale spans at least 2.5 pixels the response is computed on a grid twice
    as coarse (2 x 2 means; 8 times less work) and each seed is put back on the brightest pixel
    of its 2 x 2 block.
    """
    dmin, dmax = params.diameter_um
    sigmas = np.geomspace(dmin, dmax, _N_SCALES) / (2 * math.sqrt(2)) / wpx
    coarse = sigmas[0] >= 2.5 and min(clipped.shape) >= 8
    if coarse:
        h2, w2 = clipped.shape[0] // 2 * 2, clipped.shape[1] // 2 * 2
        quads = [clipped[dy:h2:2, dx:w2:2] for dy in (0, 1) for dx in (0, 1)]
        image = (quads[0] + quads[1] + quads[2] + quads[3]) * np.float32(0.25)
        sigmas, spacing = sigmas / 2, 2 * wpx
    else:
        image, spacing = clipped, wpx
    response = None
    for s in sigmas:
        r = ndi.gaussian_laplace(image, s, truncate=3.0)
        r *= -s * s
        response = r if response is None else np.maximum(response, r, out=response)
    peaks = _local_maxima(response, max(1, int(round(params.min_separation_um / spacing))), params.min_contrast)
    if coarse and len(peaks):
        within = np.stack([q[peaks[:, 0], peaks[:, 1]] for q in quads], axis=1).argmax(axis=1)
        peaks = 2 * peaks + np.stack([within // 2, within % 2], axis=1)
    return peaks.reshape(-1, 2)


def _fill_small_holes(mask, max_area_px):
    """`mask` with its holes (background pieces not touching the border) of at most `max_area_px` filled."""
    pieces, n = ndi.label(~mask)
    if n == 0:
        return mask
    small = np.bincount(pieces.ravel(), minlength=n + 1) <= max_area_px
    small[0] = False
    for edge in (pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]):
        small[edge] = False
    return mask | small[pieces]


def _merge_pieces(labels, height, depth, min_thickness):
    """Merge adjacent pieces that are one nucleus by shape, or by shape and stain together.

    For two touching pieces a, b:

    - the *cut* is the number of neighbouring pixel pairs across their boundary, and the
      *neck ratio* the cut over the thickness (largest inscribed diameter) of the thinner
      piece: two round nuclei that touch meet along a short cut (ratio about 0.5 after the
      smoothing, about 1.1 when they overlap by a pixel), while a watershed line across one round
      nucleus is longer than the pieces are thick (ratio up to 2);
    - the *dip* is how far the signal falls from the lower of the two peaks to the saddle (the
      highest ``min(height[p], height[q])`` over the pairs across the boundary).

    First, slivers thinner than `min_thickness` (pixels; half the smallest diameter) join the
    neighbour they share the longest boundary with. Then pieces merge when the neck ratio is at
    least 1.4 (one nucleus cut across), or when it is at least 1.15 and the dip is at most
    `depth` (no sign of two objects). Merging runs in order of
    decreasing saddle with union-find, so chains of pieces merge.
    """
    n = int(labels.max(initial=0))
    if n < 2:
        return labels
    codes, values = [], []
    for a, b, ha, hb in ((labels[:, :-1], labels[:, 1:], height[:, :-1], height[:, 1:]),
                         (labels[:-1], labels[1:], height[:-1], height[1:])):
        touch = (a != b) & (a > 0) & (b > 0)
        if touch.any():
            x, y = a[touch].astype(np.int64), b[touch].astype(np.int64)
            codes.append(np.minimum(x, y) * (n + 1) + np.maximum(x, y))
            values.append(np.minimum(ha[touch], hb[touch]))
    if not codes:
        return labels
    code, values = np.concatenate(codes), np.concatenate(values)
    order = np.argsort(code, kind="stable")
    code, values = code[order], values[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    saddle = np.maximum.reduceat(values, starts)
    cut = np.diff(np.r_[starts, len(code)])
    code = code[starts]
    inside = labels.ravel() > 0
    peak = np.full(n + 1, -np.inf)
    highest = pd.Series(height.ravel()[inside]).groupby(labels.ravel()[inside]).max()
    peak[highest.index.to_numpy()] = highest.to_numpy()
    thickness = _thickness(labels, n, np.unique(np.concatenate([code // (n + 1), code % (n + 1)])))
    parent = np.arange(n + 1)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    merged = False
    # slivers join the neighbour they share most boundary with
    a_all, b_all = code // (n + 1), code % (n + 1)
    for k in np.argsort(-cut, kind="stable"):
        a, b = root(int(a_all[k])), root(int(b_all[k]))
        if a != b and min(thickness[a], thickness[b]) < min_thickness:
            if thickness[a] < thickness[b]:
                a, b = b, a
            parent[b] = a
            peak[a] = max(peak[a], peak[b])
            merged = True
    for k in np.argsort(-saddle, kind="stable"):
        a, b = root(int(code[k] // (n + 1))), root(int(code[k] % (n + 1)))
        if a == b:
            continue
        ratio = cut[k] / min(thickness[a], thickness[b])
        no_dip = saddle[k] >= min(peak[a], peak[b]) - depth
        if ratio >= _NECK_ONE or (ratio >= _NECK_SMOOTH and no_dip):
            parent[b] = a
            peak[a] = max(peak[a], peak[b])
            thickness[a] = max(thickness[a], thickness[b])
            merged = True
    if not merged:
        return labels
    roots = np.array([root(i) for i in range(n + 1)])
    return roots[labels]


def _distance(mask):
    """Distance (pixels) to the nearest False pixel: the mean of the city-block and chessboard
    chamfer distances, within 8 % of Euclidean and 3 times faster than the exact transform."""
    taxicab = ndi.distance_transform_cdt(mask, metric="taxicab")
    chessboard = ndi.distance_transform_cdt(mask, metric="chessboard")
    return (taxicab + chessboard).astype(np.float32) * np.float32(0.5)


def _thickness(labels, n, ids):
    """Largest inscribed diameter (pixels) of pieces `ids` (others get 1), boundaries between
    pieces excluded; computed per piece on its bounding box."""
    out = np.ones(n + 1)
    boxes = ndi.find_objects(labels)
    for i in ids:
        box = boxes[i - 1]
        if box is None:
            continue
        box = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in box)
        crop = labels[box]
        other = (crop != i) & (crop > 0)
        interior = crop == i
        interior[:, :-1] &= ~other[:, 1:]
        interior[:, 1:] &= ~other[:, :-1]
        interior[:-1] &= ~other[1:]
        interior[1:] &= ~other[:-1]
        if interior.any():
            out[i] = 2 * float(ndi.distance_transform_edt(interior).max())
    return out


def _local_maxima(image, min_distance, threshold):
    """(row, col) of pixels that are the maximum of their (2 min_distance + 1)² window and
    above `threshold`; one pixel per plateau."""
    size = 2 * min_distance + 1
    peaks = (image == ndi.maximum_filter(image, size=size, mode="nearest")) & (image > threshold)
    found, n = ndi.label(peaks)
    if n == 0:
        return np.zeros((0, 2), int)
    if n == int(peaks.sum()):
        return np.argwhere(peaks)
    first = ndi.find_objects(found)
    return np.array([[sl[0].start, sl[1].start] for sl in first if sl is not None], int)


# ---------------------------------------------------------------------------------------------
# Whole image: image-wide statistics, then one window (small images) or many tiles


def _read(data, rows, cols):
    block = data[rows, cols]
    return np.asarray(block.compute() if hasattr(block, "compute") else block)


def _image_statistics(data, px, params, white, grey, stains=None):
    """Stain vectors and nuclear threshold for the whole image, from a strided sample.

    The sample is the same whether the image is then processed whole or in tiles, so the
    two give the same nuclei.
    """
    h, w = data.shape[:2]
    step = max(1, int(math.floor(params.working_pixel_size_um / px)))
    step = max(step, int(math.ceil(math.sqrt(h * w / _STATS_MAX_PIXELS))))
    sample8 = _to_rgb8(_read(data, slice(None, None, step), slice(None, None, step)), white)
    vectors = _stain_model(sample8, grey, stains)
    hema_in = _hematoxylin(sample8, vectors)
    whole = hema_in if step == 1 else None  # the sample is the image: reuse its density
    if params.threshold != "otsu":
        return vectors, float(params.threshold), whole
    sample_px = px * step
    factor = _working_factor(sample_px, params)
    shape = (max(1, int(round(hema_in.shape[0] / factor))), max(1, int(round(hema_in.shape[1] / factor))))
    hema = _downsample(hema_in, factor, (0, 0, 0, 0), shape)
    return vectors, _otsu_threshold(_signal(hema, sample_px * factor, params)), whole


def _run_classical(img, px, params, stains=None):
    data = img.data
    grey = img.axes == "yx"
    h, w = img.spatial_shape
    factor = _working_factor(px, params)
    wpx = px * factor
    work_shape = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    white = _white_level(data)
    vectors, threshold, hema_whole = _image_statistics(data, px, params, white, grey, stains)
    tiled = img.is_lazy or work_shape[0] * work_shape[1] > params.tile_size_px ** 2
    info = {
        "stains": vectors.as_dict(),
        "threshold_od": round(threshold, 5) if math.isfinite(threshold) else None,
        "working_grid_um": wpx,
        "white_level": white,
        "tiled": bool(tiled),
    }
    if not math.isfinite(threshold):
        info["note"] = "no stained structure: blank or uniform image"
    step = params.tile_size_px if tiled else max(work_shape)
    margin = int(math.ceil((2 * params.diameter_um[1] + params.background_um + 4 * params.smoothing_um) / wpx)) + 4
    if tiled:
        labels = _disk_backed_labels((h, w)) if img.is_lazy else np.zeros((h, w), np.int32)
    else:
        labels = np.zeros((h, w), np.int32)
    rows_out = []
    next_label = 1
    for y0 in range(0, work_shape[0], step):
        for x0 in range(0, work_shape[1], step):
            core = (y0, x0, min(y0 + step, work_shape[0]), min(x0 + step, work_shape[1]))
            next_label = _process_window(data, white, vectors, threshold, factor, wpx, work_shape, params, core,
                                         margin if tiled else 0, labels, rows_out, next_label,
                                         None if tiled else hema_whole)
    table = pd.concat(rows_out, ignore_index=True) if rows_out else _empty_table()
    if not tiled and len(table):
        # sequential ids (pieces dropped by the area filter leave gaps)
        lut = np.zeros(int(table["label"].max()) + 1, np.int32)
        lut[table["label"].to_numpy()] = np.arange(1, len(table) + 1, dtype=np.int32)
        labels = lut[labels]
        table["label"] = np.arange(1, len(table) + 1, dtype=np.int32)
    return labels, table, info


def _disk_backed_labels(shape):
    """Zeroed int32 array in an anonymous temporary file (freed with the array)."""
    with tempfile.TemporaryFile(prefix="boneimg-nuclei-") as handle:
        # the memory map keeps its own descriptor; the unlinked file lives as long as the map
        return np.memmap(handle, dtype=np.int32, mode="w+", shape=shape)


def _process_window(data, white, vectors, threshold, factor, wpx, work_shape, params, core, margin, out, rows_out,
                    next_label, hema_whole=None):
    """Segment the working-grid window around `core` and write the objects it owns into `out`."""
    h, w = data.shape[:2]
    y0, x0, y1, x1 = core
    wy0, wx0 = max(0, y0 - margin), max(0, x0 - margin)
    wy1, wx1 = min(work_shape[0], y1 + margin), min(work_shape[1], x1 + margin)
    # input pixels needed for the working window (plus the anti-aliasing reach)
    reach = int(math.ceil(2 * factor)) if factor > 1 else 0
    iy0, ix0 = max(0, int(math.floor(wy0 * factor)) - reach), max(0, int(math.floor(wx0 * factor)) - reach)
    iy1, ix1 = min(h, int(math.ceil(wy1 * factor)) + reach), min(w, int(math.ceil(wx1 * factor)) + reach)
    if hema_whole is not None and (iy0, ix0, iy1, ix1) == (0, 0, h, w):
        hema_in = hema_whole
    else:
        hema_in = _hematoxylin(_to_rgb8(_read(data, slice(iy0, iy1), slice(ix0, ix1)), white), vectors)
    hema = _downsample(hema_in, factor, (wy0, wx0, iy0, ix0), (wy1 - wy0, wx1 - wx0))
    labels = _segment_block(hema, wpx, params, threshold)
    n = int(labels.max(initial=0))
    if n == 0:
        return next_label
    # ownership by centroid on the working grid
    counts, sy, sx, _ = _object_sums(labels, -1, n + 1)  # index 0 = background
    with np.errstate(invalid="ignore", divide="ignore"):
        gy, gx = sy / counts + wy0, sx / counts + wx0
    own = (counts > 0) & (gy >= y0 - 0.5) & (gy < y1 - 0.5) & (gx >= x0 - 0.5) & (gx < x1 - 0.5)
    own[0] = False
    if margin == 0:
        own = counts > 0
        own[0] = False
    ids = np.flatnonzero(own)
    if len(ids) == 0:
        return next_label
    lut = np.zeros(n + 1, np.int32)
    lut[ids] = np.arange(next_label, next_label + len(ids), dtype=np.int32)
    up = _upsample_labels(lut[labels], factor, (wy0, wx0), (iy0, ix0), (iy1, ix1))
    target = out[iy0:iy1, ix0:ix1]
    write = up > 0
    if margin:
        write &= target == 0  # first writer wins where two tiles' objects overlap
    target[write] = up[write]
    written = np.where(write, up, 0)
    rows_out.append(_measure(written, hema_in, (iy0, ix0), px=wpx / factor,
                             ids=np.arange(next_label, next_label + len(ids))))
    return next_label + len(ids)


# ---------------------------------------------------------------------------------------------
# Measurements


def _measure(labels, hema, origin, *, px, ids):
    """Table rows for `ids` from a block of input-grid labels and its hematoxylin density."""
    n = len(ids)
    counts, sum_y, sum_x, sum_h = _object_sums(labels, int(ids[0]) - 1, n, hema)
    present = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        y, x, od = sum_y / counts + origin[0], sum_x / counts + origin[1], sum_h / counts
    area = counts * px * px
    table = pd.DataFrame({
        "label": np.asarray(ids, np.int32), "x": x, "y": y, "area_um2": area,
        "diameter_um": 2 * np.sqrt(area / np.pi), "hematoxylin_od": od.astype(float),
    })
    return table[present].reset_index(drop=True)


def _object_sums(labels, offset, n, values=None):
    """Pixel count, sum of rows, sum of columns (and of `values`) of objects offset+1..offset+n."""
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    local = flat[where] - offset
    rows, cols = np.divmod(where, labels.shape[1])
    counts = np.bincount(local, minlength=n + 1)[1:].astype(float)
    sum_y = np.bincount(local, weights=rows, minlength=n + 1)[1:]
    sum_x = np.bincount(local, weights=cols, minlength=n + 1)[1:]
    sum_v = None if values is None else np.bincount(local, weights=values.ravel()[where], minlength=n + 1)[1:]
    return counts, sum_y, sum_x, sum_v


def _empty_table():
    return pd.DataFrame({
        "label": pd.Series([], dtype=np.int32), "x": pd.Series([], dtype=float), "y": pd.Series([], dtype=float),
        "area_um2": pd.Series([], dtype=float), "diameter_um": pd.Series([], dtype=float),
        "hematoxylin_od": pd.Series([], dtype=float),
    })
