"""A folder of 2-D slices (micro-CT reconstructions such as ``rec00001.bmp ...``) as one volume."""

import re
from collections import Counter
from functools import partial
from pathlib import Path

from ..errors import BoneImgError
from .lazy import stack_planes
from .units import length_to_um

SLICE_SUFFIXES = {".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"}
# Bruker SkyScan logs, most specific first: NRecon writes the reconstructed voxel size as
# "Pixel Size (um)" under [Reconstruction]; "Image Pixel Size (um)" (under [Acquisition] in
# scanner logs, anywhere in others) is the projections' pixel size, which differs when the
# reconstruction was resized. (section or None for any, key), lower-case.
_SKYSCAN_KEYS = (("reconstruction", "pixel size (um)"), (None, "image pixel size (um)"))
_SECTION = re.compile(r"^\s*\[(.+?)\]\s*$")


def natural_key(name):
    """Sort key that orders ``rec9`` before ``rec10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder):
    """The files of `folder` whose names say they are 2-D images, in natural order."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def slice_files(folder):
    """The slice files of `folder` in natural order.

    Raises
    ------
    BoneImgError
        If the folder holds no image files.
    """
    return _split_patterns(image_files(folder), folder)[0]


def _split_patterns(files, folder):
    """Split image files into the slices and the files of other name patterns.

    Reconstruction folders often hold extra images (previews, projections); the slices are the
    largest set of files whose names differ only in their digits. Equally large sets are decided
    by the natural order of their name pattern, so the choice never depends on the file system.
    """
    if not files:
        raise BoneImgError(f"folder holds no image slices ({', '.join(sorted(SLICE_SUFFIXES))}) or DICOM files", path=folder)
    pattern_of = {p: re.sub(r"\d+", "#", p.name.lower()) for p in files}
    counts = Counter(pattern_of.values())
    pattern = min(counts, key=lambda pat: (-counts[pat], natural_key(pat)))
    return [p for p in files if pattern_of[p] == pattern], [p for p in files if pattern_of[p] != pattern]


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
        As the single-file readers; `data` is a dask array when the volume is large. Image
        files of another name pattern than the slices are listed in ``meta["ignored_files"]``.
    """
    files, ignored = _split_patterns(image_files(folder), folder)
    first, axes, spacing, first_meta = read_file(files[0])
    if axes != "YX":
        raise BoneImgError(f"slices must be greyscale 2-D images; {files[0].name} has axes {axes}", path=folder)
    data = stack_planes(first, files, partial(_read_checked, read_file=read_file, shape=first.shape, dtype=first.dtype))
    meta = {
        "format": f"slice folder ({first_meta.get('format')})",
        "n_slices": len(files),
        "first_slice": files[0].name,
        "last_slice": files[-1].name,
    }
    if ignored:
        meta["ignored_files"] = [p.name for p in ignored]
    spacing_3d, source, notes = skyscan_spacing(folder)
    meta["spacing_source"] = source
    if not spacing_3d:
        xy = f" (the slices record {spacing['Y']:g} x {spacing['X']:g} µm in-plane)" if spacing else ""
        notes.append(f"the slice spacing (z) is not recorded in the folder{xy}")
    if notes:
        meta["calibration_notes"] = notes
    return data, "ZYX", spacing_3d, meta


def _read_checked(path, *, read_file, shape, dtype):
    data, axes, _, _ = read_file(path)
    if data.shape != shape or data.dtype != dtype:
        raise BoneImgError(
            f"slice has shape {data.shape} {data.dtype}, the first slice has {shape} {dtype}", path=path
        )
    return data


def skyscan_spacing(folder):
    """Voxel size from the Bruker SkyScan logs of `folder` (z is not in the slices themselves).

    Returns
    -------
    spacing : dict
        ``{"X": um, "Y": um, "Z": um}`` (SkyScan voxels are cubic), or empty.
    source : str or None
        The log file, section and key the size was read from.
    notes : list of str
    """
    found = {}  # entry of _SKYSCAN_KEYS -> (µm, where); the first log in name order wins
    for log in sorted(Path(folder).glob("*.log"), key=lambda p: natural_key(p.name)):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        for section, key, value in _log_entries(text):
            low = (section.lower(), key.lower())
            entry = next((e for e in _SKYSCAN_KEYS if low[1] == e[1] and e[0] in (None, low[0])), None)
            size = length_to_um(value, "um") if entry else None
            if size and entry not in found:
                found[entry] = (size, f"{log.name}, [{section}] {key}" if section else f"{log.name}, {key}")
    if not found:
        return {}, None, []
    size, where = found[next(e for e in _SKYSCAN_KEYS if e in found)]
    notes = [
        f"reconstructed voxel size {size:g} µm differs from the projections' {other:g} µm (resized reconstruction)"
        for other, _ in found.values()
        if abs(other - size) > 1e-3 * size
    ]
    return {"X": size, "Y": size, "Z": size}, f"SkyScan log ({where})", notes


def _log_entries(text):
    """``(section, key, value)`` for each ``key=value`` line of an INI-style log."""
    section = ""
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip()
        elif "=" in line:
            key, value = line.split("=", 1)
            yield section, key.strip(), value.strip()
