"""DICOM: one file (radiograph, CT slice, enhanced multi-frame CT) or a folder of one series.

Stored values go through the modality rescale (``RescaleSlope``/``RescaleIntercept``, Hounsfield
units for CT) and MONOCHROME1 images are inverted so that dense is bright, as in every other
format. Lengths in DICOM are millimetres: ``PixelSpacing`` is (row spacing = y, column spacing
= x), slices are ordered and spaced by their ``ImagePositionPatient`` along the slice normal.
pydicom is imported when a DICOM file is read, not with boneimg.
"""

from functools import partial
from pathlib import Path

import numpy as np

from ..errors import BoneImgError
from .lazy import stack_planes
from .slices import SLICE_SUFFIXES, natural_key
from .units import length_to_um

_MAGIC_AT = 128
_MODALITIES = {"CT": "ct", "CR": "radiograph", "DX": "radiograph", "RF": "radiograph", "MG": "radiograph"}
_WHOLE_SLIDE_SOP = "1.2.840.10008.5.1.4.1.1.77.1.6"  # tiled: frames are tiles, not slices
_GAP_TOLERANCE = 0.01  # relative variation of the slice gaps still called uniform
_SAME_POSITION_MM = 1e-4


def is_dicom(head):
    """True when the first bytes of a file hold the DICOM marker ("DICM" after the preamble)."""
    return head[_MAGIC_AT : _MAGIC_AT + 4] == b"DICM"


def dicom_files(folder):
    """The DICOM files of `folder` (the DICM marker or a ``.dcm`` name), in natural order.

    A ``DICOMDIR`` is an index of a medium, not an image, and is left out.
    """
    found = []
    for path in Path(folder).iterdir():
        if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":
            continue
        if path.suffix.lower() in SLICE_SUFFIXES:
            continue
        if path.suffix.lower() == ".dcm" or _has_marker(path):
            found.append(path)
    return sorted(found, key=lambda p: natural_key(p.name))


def _has_marker(path):
    try:
        with open(path, "rb") as fh:
            return is_dicom(fh.read(_MAGIC_AT + 4))
    except OSError:
        return False


def read_dicom(path):
    """Read one DICOM file: a 2-D image or a multi-frame volume.

    Returns
    -------
    data : ndarray
        (y, x), (y, x, rgb) or (z, y, x); rescaled values as float32 or int16 (see
        :func:`_value_plan`), else the stored integers.
    axes : str
        ``"YX"``, ``"YXS"`` or ``"ZYX"``.
    spacing : dict
        Axis letter -> µm.
    meta : dict
        ``modality`` ("ct", "radiograph" or None, from the DICOM Modality), ``dicom_modality``,
        ``transfer_syntax``, ``rescale``, ``spacing_source`` and notes.
    """
    ds = _read_dataset(path, pixels=True)
    if str(ds.get("SOPClassUID", "")) == _WHOLE_SLIDE_SOP:
        raise BoneImgError("DICOM whole-slide images (tiled) are not supported; convert the slide to OME-TIFF", path=path)
    raw = _decode(ds, path)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = int(ds.get("SamplesPerPixel", 1)) > 1
    if colour and n_frames > 1:
        raise BoneImgError(f"colour DICOM with {n_frames} frames is not supported", path=path)
    frames = [_frame_geometry(ds, i) for i in range(n_frames)]
    plan = _value_plan([ds], frames)
    meta = _meta(ds, plan)
    if n_frames == 1:
        values = raw if colour else _to_values(raw, frames[0], plan)
        (y, x), source, notes = _pixel_spacing(ds)
        spacing = {"Y": y, "X": x} if y else {}
        meta["spacing_source"] = source
        if notes:
            meta["calibration_notes"] = notes
        return values, "YXS" if colour else "YX", spacing, meta
    names = [f"frame {i + 1}" for i in range(n_frames)]
    order, gap, gap_source, notes = _slice_order(frames, list(range(n_frames)), "frame order", names, path)
    slope = np.array([frames[i]["slope"] for i in order])[:, None, None]
    intercept = np.array([frames[i]["intercept"] for i in order])[:, None, None]
    values = _to_values(raw[order], {"slope": slope, "intercept": intercept}, plan)
    return (values, "ZYX", *_volume_spacing(ds, gap, gap_source, notes, meta))


def read_dicom_series(folder, files):
    """Read the single-frame DICOM files of one series as a volume.

    Parameters
    ----------
    folder : Path
    files : list of Path
        The DICOM files of `folder` (see :func:`dicom_files`).

    Returns
    -------
    data, axes, spacing, meta
        As :func:`read_dicom`; `data` is a dask array when the volume is large.
    """
    if len(files) == 1:
        return read_dicom(files[0])
    headers = [_read_dataset(p, pixels=False) for p in files]
    _check_one_series(folder, files, headers)
    _check_same_grid(files, headers)
    frames = [_frame_geometry(ds, 0) for ds in headers]
    numbers = [ds.get("InstanceNumber") for ds in headers]
    order, gap, gap_source, notes = _slice_order(frames, numbers, "InstanceNumber", [p.name for p in files], folder)
    files = [files[i] for i in order]
    first = headers[order[0]]
    plan = _value_plan(headers, frames)
    read_plane = partial(_read_plane, shape=(int(first.Rows), int(first.Columns)), plan=plan)
    data = stack_planes(read_plane(files[0]), files, read_plane)
    meta = _meta(first, plan)
    meta.update(
        format="dicom series",
        n_slices=len(files),
        first_slice=files[0].name,
        last_slice=files[-1].name,
        origin_mm=frames[order[0]]["position"],
    )
    return (data, "ZYX", *_volume_spacing(first, gap, gap_source, notes, meta))


def _read_dataset(path, *, pixels):
    import pydicom

    try:
        # force: a ".dcm" file without the 128-byte preamble is still DICOM.
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise BoneImgError(f"cannot read DICOM ({exc})", path=path) from None
    if "Rows" not in ds or "Columns" not in ds or (pixels and "PixelData" not in ds):
        raise BoneImgError("DICOM file holds no image (no Rows, Columns or pixel data; it may be corrupt)", path=path)
    return ds


def _decode(ds, path):
    try:
        return ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:
        syntax = _transfer_syntax(ds)
        if syntax is not None and syntax.is_compressed:
            raise BoneImgError(
                f"cannot decode pixel data compressed as {syntax.name} ({syntax}); install a pydicom "
                f"decoder for it (pylibjpeg or GDCM) or save the file uncompressed ({exc})",
                path=path,
            ) from None
        raise BoneImgError(f"cannot read DICOM pixel data, the file is truncated or corrupt ({exc})", path=path) from None


def _read_plane(path, *, shape, plan):
    ds = _read_dataset(path, pixels=True)
    raw = _decode(ds, path)
    if raw.shape != shape:
        raise BoneImgError(f"slice has shape {raw.shape}, the first slice has {shape}", path=path)
    return _to_values(raw, _frame_geometry(ds, 0), plan)


def _check_one_series(folder, files, headers):
    series = {}
    for path, ds in zip(files, headers):
        series.setdefault(str(ds.get("SeriesInstanceUID", "?")), []).append(path.name)
    if len(series) > 1:
        listed = "; ".join(
            f"{uid} ({len(names)} file{'s' * (len(names) > 1)}, e.g. {names[0]})" for uid, names in series.items()
        )
        raise BoneImgError(
            f"folder mixes {len(series)} DICOM series: {listed}; put each series in its own folder", path=folder
        )


def _check_same_grid(files, headers):
    """Every slice a single-frame greyscale image on the first slice's pixel grid."""
    first = headers[0]
    for path, ds in zip(files, headers):
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 or int(ds.get("SamplesPerPixel", 1)) > 1:
            raise BoneImgError(
                "a series folder holds single-frame greyscale slices; load multi-frame or colour files on their own",
                path=path,
            )
        shape, first_shape = (ds.Rows, ds.Columns), (first.Rows, first.Columns)
        spacing, first_spacing = ds.get("PixelSpacing"), first.get("PixelSpacing")
        if shape != first_shape:
            raise BoneImgError(
                f"slice has {shape[0]} x {shape[1]} pixels, {files[0].name} has {first_shape[0]} x {first_shape[1]}",
                path=path,
            )
        same = spacing is first_spacing is None or (
            spacing is not None and first_spacing is not None and np.allclose(spacing, first_spacing, rtol=1e-5)
        )
        if not same:
            raise BoneImgError(f"slice has PixelSpacing {spacing}, {files[0].name} has {first_spacing}", path=path)


def _group_item(ds, frame, sequence):
    """The item of functional-group `sequence` for `frame` of an enhanced file (per-frame first)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is not None and index < len(items) and sequence in items[index]:
            return items[index][sequence][0]
    return None


def _frame_value(ds, frame, sequence, name):
    item = _group_item(ds, frame, sequence)
    if item is not None and name in item:
        return item.get(name)
    return ds.get(name)


def _frame_geometry(ds, frame):
    """Position, orientation and rescale of one frame (enhanced files keep them per frame)."""
    position = _frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    orientation = _frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    slope = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    rescale_type = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleType")
    return {
        "position": None if position is None else tuple(float(v) for v in position),
        "orientation": None if orientation is None else tuple(float(v) for v in orientation),
        "slope": 1.0 if slope is None else float(slope),
        "intercept": 0.0 if intercept is None else float(intercept),
        "rescale_type": None if rescale_type is None else str(rescale_type),
    }


def _slice_order(frames, numbers, number_name, names, where):
    """Order of the slices and the gap between them in mm along the slice normal.

    Parameters
    ----------
    frames : list of dict
        :func:`_frame_geometry` of each slice.
    numbers : list
        Sort keys used when the slices have no positions (InstanceNumber, frame order).
    number_name : str
        What `numbers` are, for messages.
    names : list of str
        Slice names for messages.
    where : Path
        The file or folder, named in errors.

    Returns
    -------
    order : list of int
    gap_mm : float or None
        None when there are no slice positions (SpacingBetweenSlices or SliceThickness then
        stand in, see :func:`_volume_spacing`).
    source : str or None
    notes : list of str
    """
    if all(f["position"] is not None and f["orientation"] is not None for f in frames):
        orientations = np.array([f["orientation"] for f in frames])
        if not np.allclose(orientations, orientations[0], atol=1e-4):
            raise BoneImgError("slices have different orientations (ImageOrientationPatient)", path=where)
        normal = np.cross(orientations[0][:3], orientations[0][3:])
        along = np.array([f["position"] for f in frames]) @ normal
        order = [int(i) for i in np.argsort(along, kind="stable")]
        gaps = np.diff(along[order])
        tight = int(np.argmin(gaps))
        if gaps[tight] < _SAME_POSITION_MM:
            raise BoneImgError(
                f"{names[order[tight]]} and {names[order[tight + 1]]} lie at the same slice position: "
                "duplicate slices or several acquisitions in one series",
                path=where,
            )
        median = float(np.median(gaps))
        odd = int(np.argmax(np.abs(gaps - median)))
        if abs(gaps[odd] - median) > _GAP_TOLERANCE * median:
            raise BoneImgError(
                f"slice spacing is not uniform: {gaps[odd]:.6g} mm between {names[order[odd]]} and "
                f"{names[order[odd + 1]]}, {median:.6g} mm elsewhere (a slice may be missing)",
                path=where,
            )
        return order, float(gaps.mean()), "slice positions (ImagePositionPatient)", []
    if any(n is None for n in numbers):
        raise BoneImgError(f"cannot order the slices: ImagePositionPatient and {number_name} are missing", path=where)
    if len(set(numbers)) < len(numbers):
        raise BoneImgError(f"slices share a {number_name} and have no ImagePositionPatient to order them", path=where)
    order = [int(i) for i in np.argsort([int(n) for n in numbers], kind="stable")]
    return order, None, None, [f"slices ordered by {number_name} (no ImagePositionPatient)"]


def _pixel_spacing(ds):
    """(row spacing, column spacing) in µm, the tag it came from, and notes.

    PixelSpacing is in the patient (calibrated); projection radiographs may instead record
    the detector's ImagerPixelSpacing, divided by the magnification factor where one is given.
    """
    measures = _group_item(ds, 0, "PixelMeasuresSequence") or {}
    factor = ds.get("EstimatedRadiographicMagnificationFactor")
    candidates = (
        ("PixelSpacing", measures.get("PixelSpacing") or ds.get("PixelSpacing"), None),
        ("ImagerPixelSpacing", ds.get("ImagerPixelSpacing"), factor),
        ("NominalScannedPixelSpacing", ds.get("NominalScannedPixelSpacing"), None),
    )
    for tag, value, divisor in candidates:
        if value is None or len(value) != 2:
            continue
        row, column = (length_to_um(float(v) / float(divisor or 1.0), "mm") for v in value)
        if row and column:
            notes = []
            if tag == "ImagerPixelSpacing" and divisor:
                tag += " / EstimatedRadiographicMagnificationFactor"
            elif tag == "ImagerPixelSpacing":
                notes.append("ImagerPixelSpacing is the detector pixel size, not corrected for magnification")
            return (row, column), f"DICOM {tag}", notes
    return (None, None), None, ["no usable PixelSpacing in the DICOM header"]


def _volume_spacing(ds, gap_mm, gap_source, notes, meta):
    """Spacing (z, y, x) in µm: slice gaps from positions, else SpacingBetweenSlices, else SliceThickness."""
    (y, x), xy_source, xy_notes = _pixel_spacing(ds)
    notes = notes + xy_notes
    if gap_mm is None:
        measures = _group_item(ds, 0, "PixelMeasuresSequence") or {}
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = measures.get(tag) or ds.get(tag)
            if value is not None and length_to_um(value, "mm"):
                gap_mm, gap_source = float(value), tag
                if tag == "SliceThickness":
                    notes.append("slice spacing taken from SliceThickness (no slice positions or SpacingBetweenSlices)")
                break
    z = length_to_um(gap_mm, "mm") if gap_mm is not None else None
    spacing = {"Z": z, "Y": y, "X": x} if z and y else {}
    if not z:
        notes.append("the slice spacing (z) is not recorded in the DICOM header")
    meta["spacing_source"] = f"{xy_source}, {gap_source}" if spacing else None
    if notes:
        meta["calibration_notes"] = notes
    return spacing, meta


def _value_plan(headers, frames):
    """The dtype and value range of the rescaled values of a whole volume, before reading it.

    Rescaled values stay int16 when every slope and intercept is an integer and the stored bit
    range maps into int16 (CT in HU); otherwise they become float32. Without a rescale the
    stored integers are kept as they are.
    """
    signed = [int(ds.get("PixelRepresentation", 0)) == 1 for ds in headers]
    bits = [int(ds.get("BitsStored", ds.get("BitsAllocated", 8))) for ds in headers]
    allocated = max(int(ds.get("BitsAllocated", 8)) for ds in headers)
    lo = min(-(2 ** (b - 1)) if s else 0 for b, s in zip(bits, signed))
    hi = max(2 ** (b - 1) - 1 if s else 2**b - 1 for b, s in zip(bits, signed))
    ends = [f["slope"] * v + f["intercept"] for f in frames for v in (lo, hi)]
    rescaled = any(f["slope"] != 1 or f["intercept"] != 0 for f in frames)
    integral = all(float(f["slope"]).is_integer() and float(f["intercept"]).is_integer() for f in frames)
    if not rescaled:
        dtype = np.dtype(f"{'i' if any(signed) else 'u'}{max(1, allocated // 8)}")
    elif integral and min(ends) >= -(2**15) and max(ends) < 2**15:
        dtype = np.dtype(np.int16)
    else:
        dtype = np.dtype(np.float32)
    invert = str(headers[0].get("PhotometricInterpretation", "")) == "MONOCHROME1"
    return {"dtype": dtype, "range": (min(ends), max(ends)), "rescaled": rescaled, "invert": invert}


def _to_values(raw, frame, plan):
    """Rescale stored values with one frame's (or per-frame arrays of) slope and intercept."""
    dtype = plan["dtype"]
    if not plan["rescaled"]:
        values = raw.astype(dtype, copy=False)
    elif dtype.kind == "i":
        values = (raw.astype(np.int32) * np.int32(frame["slope"]) + np.int32(frame["intercept"])).astype(dtype)
    else:
        values = (raw * np.asarray(frame["slope"], np.float64) + frame["intercept"]).astype(dtype)
    if plan["invert"]:  # MONOCHROME1 shows low values white: flip within the value range
        lo, hi = plan["range"]
        values = (np.asarray(lo + hi, dtype) - values).astype(dtype)
    return values


def _meta(ds, plan):
    syntax = _transfer_syntax(ds)
    dicom_modality = str(ds.get("Modality", "")) or None
    meta = {
        "format": "dicom",
        "dicom_modality": dicom_modality,
        "modality": _MODALITIES.get(dicom_modality),
        "transfer_syntax": None if syntax is None else syntax.name,
        "photometric": str(ds.get("PhotometricInterpretation", "")) or None,
        "series_uid": str(ds.get("SeriesInstanceUID", "")) or None,
    }
    if plan["rescaled"]:
        frame = _frame_geometry(ds, 0)
        meta["rescale"] = {"slope": frame["slope"], "intercept": frame["intercept"], "type": frame["rescale_type"]}
    if plan["invert"]:
        meta["inverted"] = "MONOCHROME1 values inverted so that dense is bright"
    return meta


def _transfer_syntax(ds):
    file_meta = getattr(ds, "file_meta", None)
    return None if file_meta is None else file_meta.get("TransferSyntaxUID")
