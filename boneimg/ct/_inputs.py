"""Validation of the masks and voxel sizes that the micro-CT measurements take."""

import numpy as np

from ..errors import BoneImgError
from ..io.image import spacing_tuple

# Peak working memory of local thickness per voxel, in bytes: about 33 measured on a 256³
# trabecular volume (benchmarks/bench_morphometry.py: 0.70 GB peak RSS, 0.15 GB of it the
# interpreter and libraries), doubled for larger radii (16-bit distances and keys).
BYTES_PER_VOXEL = 64


def binary_mask(mask, name):
    """Return `mask` as a boolean numpy array, refusing anything that is not binary.

    Parameters
    ----------
    mask : array_like, 2-D or 3-D
        Boolean array, or a numeric array holding 0 and one other value (0/1, 0/255); a dask
        array is read into memory once its size is checked against the memory available.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    ndarray of bool
    """
    data = mask if hasattr(mask, "shape") and hasattr(mask, "dtype") else np.asarray(mask)
    if data.ndim not in (2, 3):
        raise BoneImgError(f"{name} must be a 2-D or 3-D array, got shape {tuple(data.shape)}")
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
    need = float(np.prod(shape, dtype=np.float64)) * BYTES_PER_VOXEL
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
