"""Validation of the masks and voxel sizes that the micro-CT measurements take."""

import os

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
    require_memory(data.shape, BYTES_PER_VOXEL, what=f"morphometry of {name}")
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


def require_memory(shape, bytes_per_voxel, *, what):
    """Raise a BoneImgError when a volume of `shape` needs more memory than is available.

    `bytes_per_voxel` is the peak working memory of the analysis per voxel. The message states
    what is needed so the user can crop or bin the volume (or run on a larger machine).
    """
    need = int(np.prod(shape, dtype=np.int64)) * bytes_per_voxel
    available = _available_memory_bytes()
    if available is not None and need > available:
        raise BoneImgError(
            f"{what} of a volume of shape {tuple(shape)} needs about {need / 1e9:.1f} GB of memory "
            f"but about {available / 1e9:.1f} GB is available; crop the volume to the bone or the "
            "region of interest, bin it 2x2x2 (8x less memory), or run on a machine with more memory"
        )


def _available_memory_bytes():
    """Memory the system can give without swapping (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
