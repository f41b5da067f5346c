"""The classical nucleus pipeline of :func:`boneimg.segment_nuclei`: stain, blobs, watershed.

Every size is a physical length in µm converted through the pixel size, and the work is done
on a fixed working grid (0.5 µm/px by default) so the same tissue scanned at 20x and 40x gives
the same nuclei:

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

import math

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from . import stains as _stains
from .pixels import disk_backed_labels, downsample, paste_labels, read_block, to_rgb8, white_level

# Fixed ratios of the classical pipeline, relative to the image's nuclear threshold T.
_CLIP = 1.3        # the signal is clipped at 1.3 T before blob detection (flattens chromatin texture)
_EXTENT = 0.7      # nuclear pixels: signal above 0.7 T
_SEED_LEVEL = 0.8  # a seed must lie where the signal exceeds 0.8 T
_N_SCALES = 4      # Laplacian-of-Gaussian scales between the smallest and largest diameter
_SHAPE_WEIGHT = 0.5  # weight of the (capped) distance to the background in the watershed landscape
_NECK_ONE = 1.4    # touching pieces joined by a cut this wide (relative to their thickness) are one nucleus
_NECK_SMOOTH = 1.15  # ... and from this wide when the stain shows no dip between them
_STATS_MAX_PIXELS = 4_000_000  # image-wide statistics from at most this many working pixels


# ---------------------------------------------------------------------------------------------
# Pixel values -> hematoxylin optical density


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


def _image_statistics(data, px, params, white, grey, stains=None):
    """Stain vectors and nuclear threshold for the whole image, from a strided sample.

    The sample is the same whether the image is then processed whole or in tiles, so the
    two give the same nuclei.
    """
    h, w = data.shape[:2]
    step = max(1, int(math.floor(params.working_pixel_size_um / px)))
    step = max(step, int(math.ceil(math.sqrt(h * w / _STATS_MAX_PIXELS))))
    sample8 = to_rgb8(read_block(data, slice(None, None, step), slice(None, None, step)), white)
    vectors = _stain_model(sample8, grey, stains)
    hema_in = _hematoxylin(sample8, vectors)
    whole = hema_in if step == 1 else None  # the sample is the image: reuse its density
    if params.threshold != "otsu":
        return vectors, float(params.threshold), whole
    sample_px = px * step
    factor = _working_factor(sample_px, params)
    shape = (max(1, int(round(hema_in.shape[0] / factor))), max(1, int(round(hema_in.shape[1] / factor))))
    hema = downsample(hema_in, factor, (0, 0, 0, 0), shape)
    return vectors, _otsu_threshold(_signal(hema, sample_px * factor, params)), whole


def run_classical(img, px, params, stains=None):
    data = img.data
    grey = img.axes == "yx"
    h, w = img.spatial_shape
    factor = _working_factor(px, params)
    wpx = px * factor
    work_shape = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    white = white_level(data)
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
        labels = disk_backed_labels((h, w)) if img.is_lazy else np.zeros((h, w), np.int32)
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
        hema_in = _hematoxylin(to_rgb8(read_block(data, slice(iy0, iy1), slice(ix0, ix1)), white), vectors)
    hema = downsample(hema_in, factor, (wy0, wx0, iy0, ix0), (wy1 - wy0, wx1 - wx0))
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
    up = _upsample_labels(labels, factor, (wy0, wx0), (iy0, ix0), (iy1, ix1))
    written = paste_labels(out[iy0:iy1, ix0:ix1], up, ids, next_label, keep_existing=bool(margin))
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
