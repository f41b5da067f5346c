"""Pixel helpers for the histology analyses and the nucleus model: white level, 8-bit RGB,
blocks of lazy arrays, anti-aliased resampling to a working grid, pasting a window's labels,
disk-backed labels, and neighbourhoods of masks on a coarser grid."""

import math
import tempfile

import numpy as np
from scipy import ndimage as ndi


def white_level(data):
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


def to_rgb8(block, white):
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


def _work_coords(start, stop, factor):
    """Input-grid coordinate of the centre of working pixels start..stop-1."""
    return (np.arange(start, stop) + 0.5) * factor - 0.5


def downsample(values, factor, origin, shape):
    """Working-grid samples (origin, shape in working pixels, relative to the block) of an
    input-grid block whose first pixel is input pixel origin_in = origin * factor (anti-aliased)."""
    if factor == 1.0:
        return values
    smoothed = ndi.gaussian_filter(values, sigma=0.5 * math.sqrt(factor ** 2 - 1), mode="nearest")
    rows = _work_coords(origin[0], origin[0] + shape[0], factor) - origin[2]
    cols = _work_coords(origin[1], origin[1] + shape[1], factor) - origin[3]
    return sample_bilinear(smoothed, rows, cols).astype(np.float32)


def sample_bilinear(values, rows, cols):
    """`values` (shape (M, N) or (M, N, C)) at fractional pixel coordinates `rows` x `cols`
    (clamped to the array): separable linear interpolation, rows then columns."""
    for axis, at in ((0, rows), (1, cols)):
        at = np.clip(at, 0, values.shape[axis] - 1)
        lo = np.floor(at).astype(int)
        hi = np.minimum(lo + 1, values.shape[axis] - 1)
        shape = [1] * values.ndim
        shape[axis] = -1
        frac = (at - lo).astype(np.float32).reshape(shape)
        values = np.take(values, lo, axis=axis) * (1 - frac) + np.take(values, hi, axis=axis) * frac
    return values


def read_block(data, rows, cols):
    """`data[rows, cols]` as a numpy array, computed if `data` is lazy (dask)."""
    block = data[rows, cols]
    return np.asarray(block.compute() if hasattr(block, "compute") else block)


def paste_labels(target, block, ids, first_label, *, keep_existing=True):
    """Write objects `ids` of the label image `block` into `target` (a view of the same shape),
    renumbered from `first_label` in the order of `ids`.

    With `keep_existing`, pixels `target` already labels stay as they are: where the objects of
    two overlapping windows overlap, the first window to write wins. Returns what was written
    (labels where written, 0 elsewhere).
    """
    lut = np.zeros(int(block.max(initial=0)) + 1, np.int32)
    lut[np.asarray(ids, int)] = np.arange(first_label, first_label + len(ids), dtype=np.int32)
    relabelled = lut[block]
    write = relabelled > 0
    if keep_existing:
        write &= target == 0
    target[write] = relabelled[write]
    return np.where(write, relabelled, 0)


def disk_backed_labels(shape):
    """Zeroed int32 array in an anonymous temporary file (freed with the array)."""
    with tempfile.TemporaryFile(prefix="boneimg-nuclei-") as handle:
        # the memory map keeps its own descriptor; the unlinked file lives as long as the map
        return np.memmap(handle, dtype=np.int32, mode="w+", shape=shape)


def near_mask(mask, spacing, distance_um):
    """Pixels within about `distance_um` of `mask` (bool, shape (M, N)), spacing (row, column) in µm.

    Measured between the centres of blocks of about a quarter of `distance_um` (a block is in
    `mask` when any of its pixels is): within a block's diagonal of the exact answer, at a
    tenth of the cost of a full-resolution distance map. For neighbourhoods of several µm
    used as vote or search masks, not for measurements.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, bool)
    k = max(1, int(round(distance_um / 4 / min(spacing))))
    h, w = mask.shape
    padded = np.pad(mask, ((0, -h % k), (0, -w % k)))
    blocks = padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).any(axis=(1, 3))
    coarse = ndi.distance_transform_edt(~blocks, sampling=(k * spacing[0], k * spacing[1])) <= distance_um
    return np.repeat(np.repeat(coarse, k, axis=0), k, axis=1)[:h, :w]


def covered_fraction(labels, mask, n):
    """Fraction of each label's pixels that `mask` covers: array of n + 1 floats (index 0 is the
    unlabelled pixels; 0 for a label without pixels)."""
    return np.bincount(labels.ravel(), weights=mask.ravel(), minlength=n + 1) / np.maximum(
        np.bincount(labels.ravel(), minlength=n + 1), 1)
