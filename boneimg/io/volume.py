"""Volume formats of micro-CT: NRRD and NIfTI, returned in (z, y, x) order."""

import numpy as np

from ..errors import BoneImgError
from .units import length_to_um, um_per_unit

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
    steps = _nrrd_steps(header, ndim)
    units = header.get("space units") or header.get("units")
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
    axes = "ZYX"[-ndim:] if ndim <= 3 else None
    if axes is None:
        raise BoneImgError(f"NRRD has {ndim} dimensions; only 2-D and 3-D are supported", path=path)
    meta = {"format": "nrrd", "nrrd_type": header.get("type"), "encoding": header.get("encoding")}
    if notes:
        meta["calibration_notes"] = notes
    meta["spacing_source"] = "NRRD header" if spacing else None
    return data, axes, spacing, meta


def _nrrd_steps(header, ndim):
    if "space directions" in header:
        directions = header["space directions"]
        steps = [float(np.linalg.norm(d)) for d in directions if d is not None and np.all(np.isfinite(d))]
    elif "spacings" in header:
        steps = [float(s) for s in header["spacings"] if np.isfinite(s)]
    else:
        return None
    return steps if len(steps) == ndim else None


def read_nifti(path):
    """Read a NIfTI-1/2 file (``.nii`` or ``.nii.gz``) lazily through nibabel's array proxy."""
    import nibabel

    try:
        img = nibabel.load(str(path))
        shape = img.shape
        zooms = img.header.get_zooms()[: len(shape)]
        xyz_unit, _ = img.header.get_xyzt_units()
        data = np.asanyarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as exc:
        raise BoneImgError(f"cannot read NIfTI ({exc})", path=path) from None
    # Drop trailing singleton axes (a 2-D image stored as x, y, 1).
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
        zooms = zooms[:-1]
    if data.ndim not in (2, 3):
        raise BoneImgError(f"NIfTI has shape {data.shape}; only 2-D and 3-D are supported", path=path)
    data = np.ascontiguousarray(data.T)  # nibabel indexes (x, y, z); boneimg uses (z, y, x)
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
