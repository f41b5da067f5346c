"""Validation of the masks and voxel sizes that the micro-CT measurements take."""

import os

import numpy as np

from ..errors import BoneImgError
from ..io.image import spacing_tuple

# Working memory of local thickness per voxel of the padded volume, in bytes: the squared
# distances and thickness map (up to 4 bytes each once distances pass 255 voxels²), the
# structure, two window buffers and the parent keys (4 bytes), rounded up.
BYTES_PER_VOXEL = 24


def binary_mask(mask, name, *, ndim=None):
    """Return `mask` as a boolean numpy array, refusing anything that is not binary.

    Parameters
    ----------
    mask : array_like
        Boolean array, or a numeric array holding 0 and one other value (0/1, 0/255).
    name : str
        Parameter name used in error messages.
    ndim : int, optional
        Required number of dimensions; otherwise 2 or 3.

    Returns
    -------
    ndarray of bool
    """
    data = mask
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    expected = (ndim,) if ndim is not None else (2, 3)
    if data.ndim not in expected:
        raise BoneImgError(
            f"{name} must be a {' or '.join(f'{n}-D' for n in expected)} array, got shape {tuple(data.shape)}"
        )
    check_memory(data.shape, name)
    data = np.asarray(data)
    if data.dtype == bool:
        return data
    if not (np.issubdtype(data.dtype, np.number) and not np.issubdtype(data.dtype, np.complexfloating)):
        raise BoneImgError(f"{name} must be boolean or numeric, got dtype {data.dtype}")
    values = np.unique(data)
    nonzero = values[values != 0]
    if np.isnan(values).any() or nonzero.size > 1:
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise BoneImgError(
            f"{name} must be binary (boolean, or 0 and one other value such as 0/1 or 0/255); "
            f"it holds {values.size} values: {shown}. Segment it first (threshold the grey values)."
        )
    return data != 0


def voxel_size(value, ndim):
    """Voxel size in µm as one positive float per axis (`value`: a number or one per axis)."""
    if value is None:
        raise BoneImgError(
            "voxel_size_um is required (µm per voxel, one number or one per axis); "
            "micro-CT measurements are never computed in voxel units"
        )
    return spacing_tuple(value, ndim, name="voxel_size_um")


def region(roi, shape):
    """The analysed region as a boolean array of `shape` (all True when `roi` is None)."""
    if roi is None:
        return np.ones(shape, dtype=bool)
    roi = binary_mask(roi, "roi")
    if roi.shape != tuple(shape):
        raise BoneImgError(f"roi must have the shape of the mask {tuple(shape)}, got {roi.shape}")
    return roi


def check_memory(shape, name):
    """Raise when the working memory of local thickness on `shape` exceeds the available memory."""
    padded = int(np.prod([s + 2 for s in shape], dtype=np.float64))
    need = padded * BYTES_PER_VOXEL
    free = _available_bytes()
    if free is not None and need > free:
        raise BoneImgError(
            f"{name} of shape {tuple(shape)} needs about {need / 1e9:.1f} GB of working memory for "
            f"morphometry but only {free / 1e9:.1f} GB is available; analyse it in parts "
            "(crop it into regions of interest) or on a machine with more memory"
        )


def _available_bytes():
    """Memory the system can give without swapping (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
