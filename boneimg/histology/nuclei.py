"""Nucleus detection and instance segmentation in brightfield (H&E) sections.

Every size is a physical length in µm converted through the pixel size, and the work is done
on a fixed working grid (0.5 µm/px by default) so the same tissue scanned at 20x and 40x gives
the same nuclei. The classical path:

1. hematoxylin amount per pixel by colour deconvolution with stain vectors estimated on this
   image (:mod:`boneimg.histology.stains`);
2. resampling to the working grid, light smoothing;
3. foreground (nuclear) pixels above a threshold (Otsu on the tissue's hematoxylin by default);
4. one seed per nucleus: maxima of a blob response at the nucleus scale, kept only when they
   stand out by a minimum height (h-maxima), so one nucleus is not split in several;
5. marker-controlled watershed inside the foreground, small fragments dropped;
6. labels mapped back to the input grid.

Large images (dask arrays, or more pixels than `tile_size_px` squared on the working grid) are
processed in overlapping tiles with image-wide stain vectors and threshold; an object belongs
to the tile holding its seed, so objects on seams are neither lost nor doubled.
"""

from dataclasses import dataclass, field
import math

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .._version import __version__
from ..errors import BoneImgError
from ..io.image import Image, as_image
from . import stains as _stains

METHODS = ("auto", "classical", "model")
TABLE_COLUMNS = ("label", "x", "y", "area_um2", "diameter_um", "hematoxylin_od")


@dataclass(eq=False)
class Nuclei:
    """Nuclei found in one image.

    Attributes
    ----------
    labels : ndarray of shape (M, N), int32
        0 = background, one id per nucleus (ids are the ``label`` column of `table`).
    table : pandas.DataFrame
        One row per nucleus: ``label``, ``x``, ``y`` (centroid in pixels, x = column,
        y = row), ``area_um2``, ``diameter_um`` (equivalent circle), ``hematoxylin_od`` (mean
        hematoxylin optical density) and ``cell_type`` where a classifier ran.
    pixel_size_um : tuple of float
        Pixel size (row, column) of `labels` in µm.
    method : str
        The method that ran ("classical" or "model").
    parameters : dict
        Everything needed to reproduce the result: boneimg version, method, every parameter
        with its unit, the stain vectors used and the threshold reached.
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
        """Boolean per table row: is the nucleus centroid inside `mask` (bool array (M, N))?"""
        mask = np.asarray(mask, bool)
        if mask.shape != self.labels.shape:
            raise BoneImgError(f"mask must have the labels' shape {self.labels.shape}, got {mask.shape}")
        if len(self.table) == 0:
            return np.zeros(0, bool)
        rows = np.clip(np.rint(self.table["y"].to_numpy()).astype(int), 0, mask.shape[0] - 1)
        cols = np.clip(np.rint(self.table["x"].to_numpy()).astype(int), 0, mask.shape[1] - 1)
        return mask[rows, cols]

    def __repr__(self):
        return (f"Nuclei(count={self.count}, shape={self.labels.shape}, method={self.method!r}, "
                f"pixel_size_um={self.pixel_size_um})")


@dataclass(frozen=True)
class _Params:
    diameter_um: tuple
    working_pixel_size_um: float
    smoothing_um: float
    threshold: object
    seed_height: float
    min_area_um2: float
    tile_size_px: int


def _model_weights_available():
    """True when trained nucleus-segmentation weights ship with this installation."""
    try:
        from importlib.resources import files

        root = files("boneimg._weights")
        return any(p.name.startswith("nuclei") and p.name.endswith((".safetensors", ".pt"))
                   for p in root.iterdir())
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return False


def segment_nuclei(image, *, pixel_size_um=None, method="auto", diameter_um=(4.0, 14.0),
                   working_pixel_size_um=0.5, smoothing_um=0.5, threshold="otsu",
                   seed_height=0.08, min_area_um2=None, tile_size_px=2048):
    """Detect and delineate cell nuclei in a brightfield (H&E) image.

    Parameters
    ----------
    image : Image or ndarray of shape (M, N, 3)
        RGB brightfield image (uint8, uint16 or float in [0, 1]); RGBA is composited on white;
        a greyscale (M, N) image is read as nuclear stain density (darker = more stain). A
        dask array (or an Image holding one) is processed in tiles.
    pixel_size_um : float, optional
        Pixel size in µm; required when `image` is an array or an Image without calibration,
        and overrides the Image's own otherwise.
    method : {"auto", "classical", "model"}
        "classical": stain separation, threshold, seeds and watershed; "model": a trained
        network (needs weights installed); "auto": the model when its weights are installed,
        else classical.
    diameter_um : (float, float)
        Smallest and largest nucleus diameter to find, µm.
    working_pixel_size_um : float
        Pixel size of the grid the work is done on, µm; finer inputs are resampled to it
        (coarser inputs are used as they are).
    smoothing_um : float
        Standard deviation of the Gaussian smoothing of the hematoxylin image, µm.
    threshold : "otsu" or float
        Hematoxylin optical density above which a pixel is nuclear; "otsu" picks it per image.
    seed_height : float
        How much (in hematoxylin optical density) a blob must rise above the saddle joining it
        to a neighbouring one to get its own seed; larger values split less.
    min_area_um2 : float, optional
        Smallest nucleus area kept, µm²; default a third of the area of the smallest diameter.
    tile_size_px : int
        Images with more than this squared pixels on the working grid are processed in tiles
        of this size (plus overlap).

    Returns
    -------
    Nuclei

    Raises
    ------
    BoneImgError
        Unknown pixel size, unsupported image shape or type, bad parameter, or method "model"
        without installed weights.
    """
    if method not in METHODS:
        raise BoneImgError(f"method must be one of {METHODS}, got {method!r}")
    if method == "model" or (method == "auto" and _model_weights_available()):
        if not _model_weights_available():
            raise BoneImgError(
                "method='model' needs trained nucleus-segmentation weights and none are installed "
                "in boneimg._weights; use method='classical' (or 'auto')")
        raise BoneImgError("nucleus-segmentation model weights were found but no model loader exists in "
                           f"boneimg {__version__}; use method='classical'")
    img = _as_input(image, pixel_size_um)
    spacing = img.require_spacing("nucleus segmentation")
    if abs(spacing[0] - spacing[1]) > 0.02 * max(spacing):
        raise BoneImgError(f"nucleus segmentation needs square pixels, got {spacing[0]:g} x {spacing[1]:g} µm")
    params = _check_params(diameter_um, working_pixel_size_um, smoothing_um, threshold, seed_height,
                           min_area_um2, tile_size_px)
    px = float(spacing[0])
    labels, info = _run_classical(img, px, params)
    table = _measure(labels, info.pop("hematoxylin_full", None), px)
    parameters = {
        "boneimg_version": __version__,
        "function": "segment_nuclei",
        "method": "classical",
        "pixel_size_um": px,
        "diameter_um": list(params.diameter_um),
        "working_pixel_size_um": params.working_pixel_size_um,
        "smoothing_um": params.smoothing_um,
        "threshold": params.threshold,
        "seed_height": params.seed_height,
        "min_area_um2": params.min_area_um2,
        "tile_size_px": params.tile_size_px,
        **info,
    }
    return Nuclei(labels, table, (px, px), "classical", parameters)


def _check_params(diameter_um, working_pixel_size_um, smoothing_um, threshold, seed_height, min_area_um2,
                  tile_size_px):
    try:
        dmin, dmax = (float(d) for d in diameter_um)
    except (TypeError, ValueError):
        raise BoneImgError(f"diameter_um must be two numbers (smallest, largest) in µm, got {diameter_um!r}") from None
    if not (0 < dmin <= dmax < 1000):
        raise BoneImgError(f"diameter_um must satisfy 0 < smallest <= largest (µm), got {diameter_um!r}")
    for name, value in (("working_pixel_size_um", working_pixel_size_um), ("smoothing_um", smoothing_um),
                        ("seed_height", seed_height)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise BoneImgError(f"{name} must be a finite number >= 0, got {value!r}")
    if working_pixel_size_um <= 0:
        raise BoneImgError(f"working_pixel_size_um must be > 0, got {working_pixel_size_um!r}")
    if not (threshold == "otsu" or (isinstance(threshold, (int, float)) and math.isfinite(threshold))):
        raise BoneImgError(f"threshold must be 'otsu' or an optical density (number), got {threshold!r}")
    if min_area_um2 is None:
        min_area_um2 = math.pi * (dmin / 2) ** 2 / 3
    if not (isinstance(min_area_um2, (int, float)) and min_area_um2 >= 0):
        raise BoneImgError(f"min_area_um2 must be a number >= 0, got {min_area_um2!r}")
    if not (isinstance(tile_size_px, int) and tile_size_px >= 64):
        raise BoneImgError(f"tile_size_px must be an integer >= 64, got {tile_size_px!r}")
    return _Params((dmin, dmax), float(working_pixel_size_um), float(smoothing_um),
                   threshold if threshold == "otsu" else float(threshold), float(seed_height),
                   float(min_area_um2), int(tile_size_px))


def _as_input(image, pixel_size_um):
    if isinstance(image, Image):
        img = image if pixel_size_um is None else image.with_spacing(pixel_size_um)
    else:
        data = image if hasattr(image, "ndim") and hasattr(image, "dtype") else np.asarray(image)
        if data.ndim == 3 and data.shape[-1] not in (3, 4):
            raise BoneImgError(f"expected an RGB image of shape (M, N, 3), got shape {data.shape}")
        img = as_image(data, pixel_size_um=pixel_size_um)
    if img.axes not in ("yx", "yxc"):
        raise BoneImgError(f"nucleus segmentation needs a 2-D image (axes 'yxc' or 'yx'), got axes {img.axes!r}")
    if img.dtype.kind not in "uf" and img.dtype != bool:
        raise BoneImgError(f"expected an image of unsigned integers or floats, got dtype {img.dtype}")
    if min(img.spatial_shape) < 1:
        raise BoneImgError(f"the image is empty (shape {img.shape})")
    return img


# ---------------------------------------------------------------------------------------------
# Pixel values -> hematoxylin optical density


def _intensity_scale(data):
    """Value of full white for the image's dtype (uint16 holding 12-bit data is read as 12-bit)."""
    if data.dtype == bool:
        return 1.0
    if data.dtype.kind == "f":
        return 1.0
    if data.dtype == np.uint8:
        return 255.0
    top = float(np.asarray(data).max()) if isinstance(data, np.ndarray) else float(np.iinfo(data.dtype).max)
    for bits in (8, 10, 12, 14, 16):
        if top <= 2 ** bits - 1:
            return float(2 ** bits - 1)
    return float(np.iinfo(data.dtype).max)


def _to_rgb(block, scale):
    """Float32 RGB in [0, 1] from an (M, N), (M, N, 3) or (M, N, 4) block."""
    block = np.asarray(block)
    if block.dtype == bool:
        block = block.astype(np.float32)
    rgb = block.astype(np.float32) / np.float32(scale)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    elif rgb.shape[-1] == 4:
        alpha = np.clip(rgb[..., 3:], 0, 1)
        rgb = rgb[..., :3] * alpha + (1 - alpha)  # composite on white glass
    return np.clip(rgb, 0, 1)


def _stain_model(sample_rgb, grey):
    """Stain vectors and glass intensity estimated on a (sub)sample of the image."""
    if grey:
        background = _stains.estimate_background(sample_rgb)
        return None, {"stain_model": "greyscale optical density", "background": float(background[0])}
    vectors = _stains.estimate_stains(sample_rgb, "he")
    return vectors, {"stains": vectors.as_dict()}


def _hematoxylin(rgb, vectors, background_grey=None):
    """Hematoxylin optical density (float32, (M, N)) of a float RGB block."""
    if vectors is None:
        od = _stains.optical_density(rgb[..., :1], [background_grey])
        return od[..., 0]
    return _stains.separate_stains(rgb, vectors)[..., 0]


# ---------------------------------------------------------------------------------------------
# Resampling between the input grid and the working grid


def _working_factor(px, params):
    """Input pixels per working pixel (>= 1; 1 = work on the input grid)."""
    factor = params.working_pixel_size_um / px
    return factor if factor > 1.1 else 1.0


def _downsample(values, factor, out_shape):
    if factor == 1.0:
        return values
    smoothed = ndi.gaussian_filter(values, sigma=0.5 * math.sqrt(max(factor ** 2 - 1, 0)), mode="nearest")
    rows = np.minimum(((np.arange(out_shape[0]) + 0.5) * factor - 0.5), values.shape[0] - 1)
    cols = np.minimum(((np.arange(out_shape[1]) + 0.5) * factor - 0.5), values.shape[1] - 1)
    return ndi.map_coordinates(smoothed, np.meshgrid(rows, cols, indexing="ij"), order=1, mode="nearest",
                               output=np.float32)


def _upsample_labels(labels, factor, out_shape):
    if factor == 1.0:
        return labels
    rows = np.minimum(((np.arange(out_shape[0]) + 0.5) / factor).astype(int), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(out_shape[1]) + 0.5) / factor).astype(int), labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


# ---------------------------------------------------------------------------------------------
# The classical pipeline on one block of the working grid


def _otsu(values):
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size < 2 or values.min() == values.max():
        return float("inf")
    return float(threshold_otsu(values))


def _segment_block(hema, wpx, params, threshold):
    """Labels (int32, working grid) of the nuclei in one block of hematoxylin density."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    dmin, dmax = params.diameter_um
    smooth = ndi.gaussian_filter(hema, params.smoothing_um / wpx) if params.smoothing_um > 0 else hema
    foreground = smooth > threshold
    min_area_px = params.min_area_um2 / wpx ** 2
    if not foreground.any():
        return np.zeros(hema.shape, np.int32)
    # Blob response at the typical nucleus scale: hematoxylin smoothed at a fraction of the
    # smallest radius, so close nuclei keep separate maxima.
    sigma = max(dmin / 2 / math.sqrt(2) / wpx, 1.0)
    blob = ndi.gaussian_filter(hema, sigma)
    distance = ndi.distance_transform_edt(foreground) * wpx  # µm
    response = blob + 0.05 * np.minimum(distance, dmax / 2)
    peaks = peak_local_max(response, min_distance=max(1, int(round(dmin / 2 / wpx))), labels=foreground,
                           exclude_border=False)
    markers = np.zeros(hema.shape, np.int32)
    if len(peaks):
        # h-maxima-like pruning: drop peaks that do not rise seed_height above the local minimum
        # around them at the scale of the largest nucleus.
        floor = ndi.minimum_filter(response, size=max(3, int(round(dmax / wpx))))
        keep = response[peaks[:, 0], peaks[:, 1]] - floor[peaks[:, 0], peaks[:, 1]] >= params.seed_height
        peaks = peaks[keep]
        markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    labels = watershed(-response, markers, mask=foreground)
    # Foreground components that got no seed become one object each.
    orphan, n_orphan = ndi.label(foreground & (labels == 0))
    if n_orphan:
        labels = np.where(orphan > 0, orphan + labels.max(), labels)
    sizes = np.bincount(labels.ravel())
    small = sizes < min_area_px
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels.astype(np.int32)


def _relabel(labels):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0].astype(np.int32)


def _sample_for_statistics(data, max_pixels=2_000_000):
    """A strided view of the image with at most about `max_pixels` pixels (same for tiled and not)."""
    h, w = data.shape[:2]
    step = max(1, int(math.ceil(math.sqrt(h * w / max_pixels))))
    sample = data[::step, ::step]
    return np.asarray(sample.compute() if hasattr(sample, "compute") else sample), step


def _run_classical(img, px, params):
    data = img.data
    grey = img.axes == "yx"
    h, w = img.spatial_shape
    factor = _working_factor(px, params)
    wpx = px * factor
    work_shape = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    scale = _intensity_scale(data)
    sample, step = _sample_for_statistics(data)
    sample_rgb = _to_rgb(sample, scale)
    vectors, info = _stain_model(sample_rgb, grey)
    bg = info.get("background")
    # Threshold from the image-wide sample so every tile uses the same one.
    sample_hema = _hematoxylin(sample_rgb, vectors, bg)
    if params.threshold == "otsu":
        sample_smooth = ndi.gaussian_filter(sample_hema, params.smoothing_um / (px * step))
        threshold = _otsu(sample_smooth[sample_smooth > 0.02])
        threshold = max(threshold, 0.1)
    else:
        threshold = params.threshold
    info.update({"threshold_od": None if not math.isfinite(threshold) else round(threshold, 4),
                 "working_grid_um": wpx})
    tiled = img.is_lazy or work_shape[0] * work_shape[1] > params.tile_size_px ** 2
    info["tiled"] = bool(tiled)
    if not tiled:
        rgb = _to_rgb(data, scale)
        hema_full = _hematoxylin(rgb, vectors, bg)
        hema = _downsample(hema_full, factor, work_shape)
        labels = _segment_block(hema, wpx, params, threshold)
        labels = _relabel(_upsample_labels(labels, factor, (h, w)))
        info["hematoxylin_full"] = hema_full
        return labels, info
    return _run_tiled(data, scale, vectors, bg, factor, wpx, work_shape, params, threshold), info


def _run_tiled(data, scale, vectors, bg, factor, wpx, work_shape, params, threshold):
    """Segment in overlapping tiles; each object is kept by the tile whose core holds its seed."""
    h, w = data.shape[:2]
    tile = params.tile_size_px
    margin = int(math.ceil((2 * params.diameter_um[1] + 4 * params.smoothing_um) / wpx)) + 8
    out = np.zeros((h, w), np.int32)
    next_label = 1
    for y0 in range(0, work_shape[0], tile):
        for x0 in range(0, work_shape[1], tile):
            y1, x1 = min(y0 + tile, work_shape[0]), min(x0 + tile, work_shape[1])
            wy0, wx0 = max(0, y0 - margin), max(0, x0 - margin)
            wy1, wx1 = min(work_shape[0], y1 + margin), min(work_shape[1], x1 + margin)
            # input-grid window covering the working window
            iy0, ix0 = int(math.floor(wy0 * factor)), int(math.floor(wx0 * factor))
            iy1, ix1 = min(h, int(math.ceil(wy1 * factor))), min(w, int(math.ceil(wx1 * factor)))
            block = data[iy0:iy1, ix0:ix1]
            block = np.asarray(block.compute() if hasattr(block, "compute") else block)
            hema = _hematoxylin(_to_rgb(block, scale), vectors, bg)
            hema = _downsample(hema, factor, (wy1 - wy0, wx1 - wx0))
            labels = _segment_block(hema, wpx, params, threshold)
            if not labels.any():
                continue
            ids = np.arange(1, labels.max() + 1)
            centres = np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
            cy, cx = centres[:, 0] + wy0, centres[:, 1] + wx0
            own = (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1) & np.isfinite(cy)
            lut = np.zeros(labels.max() + 1, np.int32)
            lut[ids[own]] = np.arange(next_label, next_label + own.sum())
            next_label += int(own.sum())
            kept = lut[labels]
            up = _upsample_block(kept, factor, wy0, wx0, iy0, ix0, iy1, ix1)
            target = out[iy0:iy1, ix0:ix1]
            write = (up > 0) & (target == 0)
            target[write] = up[write]
    return _relabel(out)


def _upsample_block(labels, factor, wy0, wx0, iy0, ix0, iy1, ix1):
    """Nearest-neighbour labels on input rows iy0:iy1, cols ix0:ix1 from a working-grid block."""
    rows = np.clip(((np.arange(iy0, iy1) + 0.5) / factor).astype(int) - wy0, 0, labels.shape[0] - 1)
    cols = np.clip(((np.arange(ix0, ix1) + 0.5) / factor).astype(int) - wx0, 0, labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


# ---------------------------------------------------------------------------------------------
# Measurements


def _measure(labels, hema_full, px):
    n = int(labels.max(initial=0))
    if n == 0:
        return _empty_table()
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:].astype(float)
    present = counts > 0
    rows, cols = np.indices(labels.shape, sparse=True)
    sum_y = np.bincount(flat, weights=np.broadcast_to(rows, labels.shape).ravel(), minlength=n + 1)[1:]
    sum_x = np.bincount(flat, weights=np.broadcast_to(cols, labels.shape).ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        y, x = sum_y / counts, sum_x / counts
        if hema_full is not None:
            od = np.bincount(flat, weights=hema_full.ravel(), minlength=n + 1)[1:] / counts
        else:
            od = np.full(n, np.nan)
    area = counts * px * px
    table = pd.DataFrame({
        "label": np.arange(1, n + 1, dtype=np.int32),
        "x": x, "y": y,
        "area_um2": area,
        "diameter_um": 2 * np.sqrt(area / np.pi),
        "hematoxylin_od": od,
    })[present].reset_index(drop=True)
    return table


def _empty_table():
    return pd.DataFrame({
        "label": pd.Series([], dtype=np.int32), "x": pd.Series([], dtype=float), "y": pd.Series([], dtype=float),
        "area_um2": pd.Series([], dtype=float), "diameter_um": pd.Series([], dtype=float),
        "hematoxylin_od": pd.Series([], dtype=float),
    })
