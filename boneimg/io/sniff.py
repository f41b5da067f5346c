"""Recognise a file's format from its first bytes, whatever its name says.

Micrographs saved as PNG but named ``.tif`` are common in this field, so the content decides.
"""

import gzip
from pathlib import Path

from ..errors import BoneImgError
from .dicom import is_dicom
from .scanco import is_aim, is_isq

FORMATS = ("tiff", "png", "jpeg", "bmp", "nrrd", "nifti", "dicom", "isq", "aim")


def sniff_format(path):
    """Return the format of the file at `path` from its magic bytes.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    BoneImgError
        If the file is empty, unreadable or in a format boneimg does not read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(352)
    except OSError as exc:
        raise BoneImgError(f"cannot open file ({exc.strerror or exc})", path=path) from None
    if not head:
        raise BoneImgError("file is empty (0 bytes)", path=path)
    fmt = _format_of(head)
    if fmt == "gzip":
        fmt = _gzipped_format(path)
    if fmt is None:
        raise BoneImgError(
            "not a recognised image file (supported: TIFF/OME-TIFF/SVS/NDPI, PNG, JPEG, BMP, "
            "NRRD, NIfTI, DICOM, Scanco ISQ/AIM, or a folder of 2-D slices or DICOM files); "
            "the file may be corrupt",
            path=path,
        )
    return fmt


def _format_of(head):
    # DICOM first: its 128-byte preamble may itself hold a TIFF header (dual-personality files).
    if is_dicom(head):
        return "dicom"
    if is_isq(head):
        return "isq"
    if is_aim(head):
        return "aim"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"NRRD":
        return "nrrd"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00", b"n+2\x00"):
        return "nifti"
    if head[4:8] in (b"n+2\x00",):  # NIfTI-2 keeps its magic at offset 4
        return "nifti"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _gzipped_format(path):
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(352)
    except (OSError, EOFError) as exc:
        raise BoneImgError(f"corrupt gzip data ({exc})", path=path) from None
    return "nifti" if _format_of(head) == "nifti" else None
