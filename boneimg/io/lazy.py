"""Lazy (dask) arrays over files whose read errors name the file.

A lazy array reads its blocks long after ``load`` returned; a damaged block must still end in a
:class:`BoneImgError` that names the file, not in a codec's own exception type.
"""

import dask
import dask.array as da
import numpy as np

from ..errors import BoneImgError

# Files whose pixel data exceed this are read lazily.
LAZY_BYTES = 256 * 2**20


def is_large(nbytes):
    """True when `nbytes` of pixel data should be read lazily."""
    return nbytes > LAZY_BYTES


class _GuardedSource:
    """Array-like that reads blocks through ``source[key]`` and names the file when that fails."""

    def __init__(self, source, path, dtype, what):
        self._source, self._path, self._what = source, path, what
        self.shape, self.dtype, self.ndim = tuple(source.shape), np.dtype(dtype), len(source.shape)

    def __getitem__(self, key):
        try:
            return np.asarray(self._source[key], dtype=self.dtype)
        except (MemoryError, BoneImgError):
            raise
        except Exception as exc:  # codecs and stores raise their own error types
            raise BoneImgError(f"cannot read {self._what}, the file is corrupt ({exc})", path=self._path) from None


def guarded_array(source, path, *, chunks, what, dtype=None):
    """A dask array over `source` (a zarr array, memmap or nibabel proxy) read block by block.

    Parameters
    ----------
    source : array-like
        Anything with ``shape``, ``dtype`` and numpy-style slicing.
    path : Path
        The file `source` reads from, named in errors.
    chunks : tuple of int
        Block shape (the file's own tiles or slabs, so each block is one read).
    what : str
        What is read, for the error message (e.g. ``"TIFF tile"``).
    dtype : dtype, optional
        Dtype of the blocks when it differs from ``source.dtype`` (scaled NIfTI data).
    """
    guarded = _GuardedSource(source, path, source.dtype if dtype is None else dtype, what)
    meta = np.empty((0,) * guarded.ndim, dtype=guarded.dtype)
    # name=False: a random key instead of hashing the source (which would read or pickle it).
    return da.from_array(guarded, chunks=chunks, asarray=False, fancy=False, name=False, meta=meta)


def stack_planes(first, paths, read_plane):
    """Stack 2-D planes along a new first axis, lazily (one block per plane) when large.

    Parameters
    ----------
    first : ndarray
        The plane already read from ``paths[0]``.
    paths : list of Path
        One file per plane, in stacking order.
    read_plane : callable
        ``read_plane(path) -> ndarray`` of ``first``'s shape and dtype (it checks them, raising
        a BoneImgError naming the file otherwise).
    """
    if not is_large(first.nbytes * len(paths)):
        return np.stack([first] + [read_plane(p) for p in paths[1:]])
    parts = [da.from_array(first, chunks=first.shape)[None]]
    for path in paths[1:]:
        block = dask.delayed(read_plane)(path)
        parts.append(da.from_delayed(block, first.shape, dtype=first.dtype)[None])
    return da.concatenate(parts)
