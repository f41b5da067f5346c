"""`load`: any supported file or slice folder -> Image with its physical spacing."""

import numbers
import warnings
from pathlib import Path

import numpy as np

from ..errors import BoneImgError, CalibrationWarning
from .dicom import dicom_files, read_dicom, read_dicom_series
from .image import MODALITIES, Image, spacing_tuple
from .raster import read_raster
from .scanco import read_aim, read_isq
from .slices import image_files, read_slice_folder
from .sniff import sniff_format
from .tiff import read_tiff
from .volume import read_nifti, read_nrrd

_SUPPORTED_KINDS = "biuf"  # bool, unsigned, signed, float
# Readers of single files by sniffed format; each returns (data, axes letters, spacing, meta).
_VOLUME_READERS = {"nrrd": read_nrrd, "nifti": read_nifti, "dicom": read_dicom, "isq": read_isq, "aim": read_aim}


def load(path, *, pixel_size_um=None, modality=None):
    """Read an image, slide scan or volume with its pixel size in µm.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF/BigTIFF/OME-TIFF (including pyramidal SVS and NDPI scans), PNG, JPEG, BMP, NRRD,
        NIfTI, DICOM or Scanco ISQ/AIM file; or a folder holding one DICOM series, or 2-D
        slices read as one volume in natural name order. The format is recognised from the
        file's content, not its name.
    pixel_size_um : float or sequence of float, optional
        Pixel (voxel) size in µm, one number for isotropic pixels or one per spatial axis in
        axis order (z, y, x). Overrides what the file says.
    modality : {"brightfield", "ct", "radiograph"}, optional
        What the image is, when the file cannot tell (a greyscale 2-D image may be a
        radiograph or a micro-CT slice).

    Returns
    -------
    Image
        ``spacing_um`` is None when neither the file nor `pixel_size_um` gives a pixel size;
        a :class:`CalibrationWarning` says so. Large and pyramidal files come back as lazy
        dask arrays with every pyramid level in ``Image.levels``.

    Raises
    ------
    BoneImgError
        If the path does not exist or the file is empty, truncated, corrupt, of an
        unsupported format, dimensionality or data type. The message names the file.
    """
    path = Path(path)
    # Arguments first: a bad one must not cost the reading of a whole volume.
    if modality not in (None, *MODALITIES):
        raise BoneImgError(f"modality must be one of {MODALITIES} or None, got {modality!r}", path=path)
    _check_pixel_size(pixel_size_um, path)
    if not path.exists():
        raise BoneImgError("no such file or folder", path=path)
    levels = []
    if path.is_dir():
        data, letters, spacing, meta = _read_folder(path)
    else:
        fmt = sniff_format(path)
        if fmt == "tiff":
            data, letters, spacing, meta, levels = read_tiff(path)
        elif fmt in _VOLUME_READERS:
            data, letters, spacing, meta = _VOLUME_READERS[fmt](path)
        else:
            data, letters, spacing, meta = read_raster(path, fmt)
    data, axes, levels = _standard_axes(data, letters, levels, path)
    _check_data(data, path)
    if not data.dtype.isnative:
        # Big-endian NRRD/NIfTI came back as ">u2": img.dtype == np.uint16 was False and torch
        # refuses such arrays.
        native = data.dtype.newbyteorder("=")
        levels = [lev.astype(native) for lev in levels]
        data = levels[0] if levels else data.astype(native)
    spatial = [a.upper() for a in axes if a != "c"]
    spacing_um = tuple(spacing[a] for a in spatial) if all(a in spacing for a in spatial) else None
    if pixel_size_um is not None:
        try:
            spacing_um = spacing_tuple(pixel_size_um, len(spatial))
        except BoneImgError as exc:  # every load() error names the file it is about
            raise BoneImgError(exc.reason, path=path) from None
        meta["spacing_source"] = "user"
    elif spacing_um is None:
        meta["spacing_source"] = None
        notes = "; ".join(meta.get("calibration_notes", []))
        warnings.warn(
            f"{path}: pixel size unknown{' (' + notes + ')' if notes else ''}; "
            "pass pixel_size_um to measure in µm",
            CalibrationWarning,
            stacklevel=2,
        )
    if modality is None:  # what the file says (DICOM Modality, boneimg's own record), else the axes
        recorded = meta.get("modality") or meta.get("provenance", {}).get("modality")
        modality = recorded if recorded in MODALITIES else {"yxc": "brightfield", "zyx": "ct"}.get(axes)
    return Image(data, axes, spacing_um, modality, meta, tuple(levels), str(path))


def _check_pixel_size(value, path):
    """Refuse a pixel size no image could take; its length is checked again once the axes are known."""
    if value is None:
        return
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        count = 1
    elif not isinstance(value, (str, bytes, dict)) and np.ndim(value) == 1 and len(value) in (2, 3):
        count = len(value)
    else:
        raise BoneImgError(
            f"pixel_size_um must be one number or 2 (y, x) or 3 (z, y, x) numbers in µm, got {value!r}", path=path
        )
    try:
        spacing_tuple(value, count)
    except BoneImgError as exc:
        raise BoneImgError(exc.reason, path=path) from None


def folder_kind(folder):
    """What :func:`load` reads from a folder: ``"dicom"`` (one series) or ``"slices"``.

    A folder holding both reads as the kind with more files (DICOM on a tie); the others are
    ignored and listed in ``Image.meta["ignored_files"]``.

    Raises
    ------
    BoneImgError
        If the folder holds neither DICOM files nor image slices.
    """
    return _folder_contents(folder)[0]


def _folder_contents(folder):
    """(kind, the files of that kind, the files ignored)."""
    dicom, images = dicom_files(folder), image_files(folder)
    if dicom and len(dicom) >= len(images):
        return "dicom", dicom, images
    if not images:
        raise BoneImgError("folder holds no image slices or DICOM files", path=folder)
    return "slices", images, dicom


def _read_folder(folder):
    kind, files, ignored = _folder_contents(folder)
    if kind == "dicom":
        data, letters, spacing, meta = read_dicom_series(folder, files)
    else:
        data, letters, spacing, meta = read_slice_folder(folder, _read_2d_file)
    if ignored:
        meta["ignored_files"] = meta.get("ignored_files", []) + [p.name for p in ignored]
    return data, letters, spacing, meta


def _read_2d_file(path):
    fmt = sniff_format(path)
    if fmt == "tiff":
        data, letters, spacing, meta, _ = read_tiff(path)
        return np.asarray(data), letters, spacing, meta
    if fmt in _VOLUME_READERS:
        raise BoneImgError(f"{fmt.upper()} files are not slices of a slice folder", path=path)
    return read_raster(path, fmt)


def _standard_axes(data, letters, levels, path):
    """Map reader axis letters to boneimg's "yx", "yxc" or "zyx"."""
    letters = letters.replace("Q", "Z").replace("I", "Z")
    moves = {
        "YX": ("yx", None),
        "YXS": ("yxc", None),
        "SYX": ("yxc", 0),
        "CYX": ("yxc", 0),
        "YXC": ("yxc", None),
        "ZYX": ("zyx", None),
    }
    if letters not in moves:
        raise BoneImgError(
            f"unsupported image dimensions {letters} with shape {tuple(data.shape)}; boneimg reads "
            "2-D greyscale (YX), 2-D colour (YX + RGB/RGBA) and 3-D volumes (ZYX)",
            path=path,
        )
    axes, channel_axis = moves[letters]
    if axes == "yxc" and data.shape[-1 if channel_axis is None else channel_axis] not in (3, 4):
        n = data.shape[-1 if channel_axis is None else channel_axis]
        raise BoneImgError(
            f"{n}-channel images are not supported; colour images need 3 (RGB) or 4 (RGBA) channels",
            path=path,
        )
    if channel_axis is not None:
        data = np.moveaxis(data, channel_axis, -1) if isinstance(data, np.ndarray) else data.transpose(1, 2, 0)
        levels = [lev.transpose(1, 2, 0) for lev in levels]
        if levels:  # keep Image.levels[0] the very array in Image.data
            data = levels[0]
    return data, axes, levels


def _check_data(data, path):
    if data.dtype.kind not in _SUPPORTED_KINDS:
        raise BoneImgError(f"unsupported pixel type {data.dtype}; expected integer, float or boolean", path=path)
    if 0 in data.shape:
        raise BoneImgError(f"image has no pixels (shape {tuple(data.shape)})", path=path)
