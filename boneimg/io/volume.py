"""Volume formats of micro-CT: NRRD and NIfTI, returned in (z, y, x) order."""

from pathlib import Path

import numpy as np

from ..errors import BoneImgError
from .lazy import guarded_array, is_large
from .units import length_to_um, um_per_unit

# Kinds of a colour axis; "???" is an unknown kind on an axis without a space direction.
_COLOUR_KINDS = {"rgb-color", "rgba-color", "3-color", "4-color", "???", "none", ""}
# NRRD files with an anatomical space and no units follow the medical convention of millimetres.
_ANATOMICAL_SPACES = {
    "right-anterior-superior", "ras", "left-anterior-superior", "las",
    "left-posterior-superior", "lps", "scanner-xyz", "3d-right-handed", "3d-left-handed",
}


def read_nrrd(path):
    """Read an NRRD file (attached or detached header, any encoding pynrrd supports)."""
    import nrrd

    try:
        data, header = nrrd.read(str(path), index_order="C")
    except MemoryError:
        raise
    except Exception as exc:
        raise BoneImgError(f"cannot read NRRD ({exc})", path=path) from None
    ndim = data.ndim
    if ndim > 3:
        raise BoneImgError(f"NRRD has {ndim} dimensions; only 2-D and 3-D are supported", path=path)
    # Colour or vector NRRDs carry a non-spatial axis (kind "RGB-color", direction "none");
    # without this check a 2-D RGB image came back as a 3-D volume of 3 slices.
    spatial = _nrrd_spatial_axes(header, ndim)
    if not all(spatial):
        kinds = [str(k).lower() for k in header.get("kinds") or ["???"] * ndim]
        if ndim != 3 or spatial.count(False) != 1 or kinds[spatial.index(False)] not in _COLOUR_KINDS:
            raise BoneImgError(
                f"NRRD has non-spatial axes (kinds {header.get('kinds')}); only 2-D images with one "
                "colour axis are supported",
                path=path,
            )
        data = np.moveaxis(data, ndim - 1 - spatial.index(False), -1)  # file order is reversed in C order
    steps = _nrrd_steps(header, spatial)
    units = header.get("space units")
    if units is None and header.get("units") is not None:  # per axis, non-spatial ones included
        units = [u for u, is_spatial in zip(header["units"], spatial) if is_spatial]
    notes = []
    spacing = {}
    if steps is not None:
        if units is None and str(header.get("space", "")).lower() in _ANATOMICAL_SPACES:
            units = ["mm"] * len(steps)
            notes.append("NRRD has an anatomical space without units: millimetres assumed (NRRD convention)")
        if units is not None:
            um = [length_to_um(s, u) for s, u in zip(steps, units)]
            if all(v is not None for v in um):
                # NRRD lists axes fastest first (x, y, z); the data are in C order (z, y, x).
                spacing = dict(zip("XYZ"[: len(um)], um))
        else:
            notes.append(f"NRRD spacing {steps} has no unit: ignored")
    axes = "ZYX"[-ndim:] if all(spatial) else "YXS"
    if axes == "ZYX" and data.shape[0] == 1:  # one slice is a 2-D image, as for TIFF and NIfTI
        data, axes = data[0], "YX"
        spacing.pop("Z", None)
    meta = {"format": "nrrd", "nrrd_type": header.get("type"), "encoding": header.get("encoding")}
    if notes:
        meta["calibration_notes"] = notes
    meta["spacing_source"] = "NRRD header" if spacing else None
    return data, axes, spacing, meta


def _nrrd_spatial_axes(header, ndim):
    """Per axis in file order (fastest first): True for a spatial axis, False for colour/vector."""
    kinds = [str(k).lower() for k in header.get("kinds") or []]
    directions = header.get("space directions")
    spatial = []
    for i in range(ndim):
        kind = kinds[i] if i < len(kinds) else "domain"
        has_direction = directions is None or (directions[i] is not None and np.all(np.isfinite(directions[i])))
        spatial.append(kind in ("domain", "space", "???", "none", "") and has_direction)  # not "time"
    return spatial


def _nrrd_steps(header, spatial):
    if "space directions" in header:
        rows = [d for d, is_spatial in zip(header["space directions"], spatial) if is_spatial]
        steps = [float(np.linalg.norm(d)) for d in rows]
    elif "spacings" in header:
        steps = [float(s) for s, is_spatial in zip(header["spacings"], spatial) if is_spatial and np.isfinite(s)]
    else:
        return None
    return steps if len(steps) == sum(spatial) else None


def read_nifti(path):
    """Read a NIfTI-1/2 file (``.nii``, ``.nii.gz`` or an ``.hdr``/``.img`` pair).

    Volumes larger than the lazy threshold come back as dask arrays reading slabs of z slices
    through nibabel's array proxy (memory-mapped for uncompressed files); smaller ones are read
    at once. Scaling (``scl_slope``/``scl_inter``) is applied either way.
    """
    import nibabel

    try:
        img = nibabel.load(str(path))
        proxy = img.dataobj
        shape = img.shape
        zooms = img.header.get_zooms()[: len(shape)]
        xyz_unit, _ = img.header.get_xyzt_units()
        _check_nifti_size(img, path)
        # A one-voxel read gives the dtype after scaling without reading the volume.
        dtype = np.asanyarray(proxy[(slice(0, 1),) * len(shape)]).dtype
        lazy = is_large(int(np.prod(shape)) * dtype.itemsize)
        if lazy:
            data = guarded_array(proxy, path, chunks=_nifti_chunks(shape, dtype), what="NIfTI data", dtype=dtype)
        else:
            data = np.asanyarray(proxy)
    except (MemoryError, BoneImgError):
        raise
    except Exception as exc:
        raise BoneImgError(f"cannot read NIfTI ({exc})", path=path) from None
    # Drop trailing singleton axes (a 2-D image stored as x, y, 1).
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
        zooms = zooms[:-1]
    if data.ndim not in (2, 3):
        raise BoneImgError(f"NIfTI has shape {data.shape}; only 2-D and 3-D are supported", path=path)
    # nibabel indexes (x, y, z); boneimg uses (z, y, x).
    data = data.T if lazy else np.ascontiguousarray(data.T)
    axes = "ZYX"[-data.ndim:]
    factor = um_per_unit({"micron": "um"}.get(xyz_unit, xyz_unit))
    meta = {"format": "nifti", "nifti_unit": xyz_unit}
    spacing = {}
    if factor is not None and all(z > 0 for z in zooms):
        # pixdim is float32: read it as the shortest decimal it stands for (0.01 mm -> 10 µm,
        # not 9.99999977 µm), which is what the writing software meant.
        spacing = dict(zip("XYZ", (float(str(np.float32(z))) * factor for z in zooms)))
        meta["spacing_source"] = "NIfTI pixdim"
    else:
        meta["spacing_source"] = None
        meta["calibration_notes"] = [f"NIfTI pixdim {tuple(map(float, zooms))} has unit {xyz_unit!r}: ignored"]
    return data, axes, spacing, meta


def _check_nifti_size(img, path):
    """Refuse an uncompressed file too short for its voxels (a lazy read would fail much later)."""
    image_file = img.file_map["image"].filename
    if image_file is None or str(image_file).endswith((".gz", ".bz2", ".zst")):
        return  # the decompressor reports a cut stream when it is read
    needed = int(img.dataobj.offset) + int(np.prod(img.shape)) * img.get_data_dtype().itemsize
    size = Path(image_file).stat().st_size
    if size < needed:
        raise BoneImgError(f"file is truncated: the voxels need {needed} bytes but the file has {size}", path=path)


def _nifti_chunks(shape, dtype):
    """Slabs of whole (x, y) planes, about 64 MiB each: NIfTI stores x fastest, z slowest."""
    if len(shape) < 3:
        return shape
    plane_bytes = int(np.prod(shape[:2])) * dtype.itemsize
    return (*shape[:2], max(1, 2**26 // plane_bytes), *shape[3:])
