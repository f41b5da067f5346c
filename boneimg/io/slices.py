"""A folder of 2-D slices (micro-CT reconstructions such as ``rec00001.bmp ...``) as one volume."""

import re
from collections import Counter
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from ..errors import BoneImgError
from .units import length_to_um

SLICE_SUFFIXES = {".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"}
LAZY_BYTES = 256 * 2**20
_SKYSCAN_PIXEL = re.compile(r"^\s*Image Pixel Size \(um\)\s*=\s*([0-9.eE+-]+)", re.MULTILINE)


def natural_key(name):
    """Sort key that orders ``rec9`` before ``rec10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def slice_files(folder):
    """The slice files of `folder` in natural order.

    Reconstruction folders often hold extra images (previews, projections); the slices are the
    largest set of files whose names differ only in their digits.
    """
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise BoneImgError(f"folder holds no image slices ({', '.join(sorted(SLICE_SUFFIXES))})", path=folder)
    patterns = Counter(re.sub(r"\d+", "#", p.name.lower()) for p in files)
    pattern, _ = patterns.most_common(1)[0]
    chosen = [p for p in files if re.sub(r"\d+", "#", p.name.lower()) == pattern]
    return sorted(chosen, key=lambda p: natural_key(p.name))


def read_slice_folder(folder, read_file):
    """Stack the slices of `folder` along z.

    Parameters
    ----------
    folder : Path
    read_file : callable
        ``read_file(path) -> (data, axes, spacing, meta)`` for one 2-D file.

    Returns
    -------
    data, axes, spacing, meta
        As the single-file readers; `data` is a dask array when the volume is large.
    """
    files = slice_files(folder)
    first, axes, spacing, first_meta = read_file(files[0])
    if axes != "YX":
        raise BoneImgError(f"slices must be greyscale 2-D images; {files[0].name} has axes {axes}", path=folder)
    shape, dtype = first.shape, first.dtype
    if first.nbytes * len(files) > LAZY_BYTES:
        parts = [da.from_array(first, chunks=shape)[None]]
        for path in files[1:]:
            block = dask.delayed(_read_checked)(path, read_file, shape, dtype)
            parts.append(da.from_delayed(block, shape, dtype=dtype)[None])
        data = da.concatenate(parts)
    else:
        data = np.stack([first] + [_read_checked(p, read_file, shape, dtype) for p in files[1:]])
    meta = {
        "format": f"slice folder ({first_meta.get('format')})",
        "n_slices": len(files),
        "first_slice": files[0].name,
        "last_slice": files[-1].name,
    }
    spacing_3d, source = _folder_spacing(folder)
    meta["spacing_source"] = source
    if not spacing_3d:
        xy = f" (the slices record {spacing['Y']:g} x {spacing['X']:g} µm in-plane)" if spacing else ""
        meta["calibration_notes"] = [f"the slice spacing (z) is not recorded in the folder{xy}"]
    return data, "ZYX", spacing_3d, meta


def _read_checked(path, read_file, shape, dtype):
    data, axes, _, _ = read_file(path)
    if data.shape != shape or data.dtype != dtype:
        raise BoneImgError(
            f"slice has shape {data.shape} {data.dtype}, the first slice has {shape} {dtype}", path=path
        )
    return data


def _folder_spacing(folder):
    """Voxel size from a Bruker SkyScan reconstruction log, else none (z is not in the slices)."""
    for log in sorted(Path(folder).glob("*.log")):
        try:
            match = _SKYSCAN_PIXEL.search(log.read_text(errors="replace"))
        except OSError:
            continue
        if match:
            size = length_to_um(match.group(1), "um")
            if size:
                return {"X": size, "Y": size, "Z": size}, f"SkyScan log ({log.name})"
    return {}, None
