"""TIFF, BigTIFF, OME-TIFF, ImageJ TIFF and pyramidal slide scans (SVS, NDPI).

Calibration is read from every place a TIFF may keep it, most specific first: OME-XML
PhysicalSize*, Aperio MPP, ImageJ unit and spacing, then the resolution tags with their unit.
Big or pyramidal files are opened lazily through tifffile's zarr store, so asking for metadata
or a region never reads the whole scan.
"""

import json
import os
import re
import weakref
import xml.etree.ElementTree as ET

import numpy as np
import tifffile
import zarr

from ..errors import BoneImgError
from .lazy import guarded_array, is_large
from .units import length_to_um

# Resolution values that writing software puts in by default; they say nothing about the sample.
# Some write them per centimetre (72 dpi = 28.3465 px/cm), so they are compared as dpi, to 1e-4.
_DEFAULT_DPI = (72.0, 96.0)
_RESUNIT_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}  # INCH, CENTIMETER, MILLIMETER, MICROMETER
# Aperio ImageDescription: "Aperio Image Library ...|AppMag = 40|MPP = 0.2520|...".
_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")


def read_tiff(path):
    """Read the first image series of a TIFF file.

    Returns
    -------
    data : ndarray or dask array
    axes : str
        tifffile axes letters of `data` (e.g. ``"YXS"``, ``"ZYX"``), singleton axes removed.
    spacing : dict
        Axis letter -> µm for the axes whose size the file records.
    meta : dict
    levels : list of arrays
        Pyramid levels (full resolution first) or an empty list.
    """
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises many types for damaged headers
        raise BoneImgError(f"cannot read TIFF structure ({exc})", path=path) from None
    keep_open = False  # a lazy series reads through the open file
    try:
        if not tif.series or tif.series[0].pages[0] is None:
            raise BoneImgError("TIFF holds no image", path=path)
        series = tif.series[0]
        if series.pages[0].photometric == tifffile.PHOTOMETRIC.SEPARATED:
            # tifffile returns the raw inks, which would pass for RGBA with wrong colours.
            raise BoneImgError("CMYK (separated) TIFF is not supported; save the image as RGB", path=path)
        _check_complete(tif, series, path)
        meta = _tiff_meta(tif, series)
        spacing, source, notes = _calibration(tif, series)
        meta.update(spacing_source=source)
        if notes:
            meta["calibration_notes"] = notes
        if len(series.levels) > 1 or is_large(series.nbytes):
            levels = _lazy_levels(tif, series, path)
            data = levels[0]
            keep_open = True
            if len(levels) == 1:  # Image.levels is empty for single-resolution images
                levels = []
        else:
            try:
                data = series.asarray()
            except Exception as exc:
                raise BoneImgError(f"cannot decode TIFF pixel data ({exc})", path=path) from None
            levels = []
    finally:
        if not keep_open:
            tif.close()
    axes = series.axes
    keep = [i for i, (a, n) in enumerate(zip(axes, series.shape)) if n != 1 or a in "YX"]
    squeeze = tuple(i for i in range(len(axes)) if i not in keep)
    axes = "".join(axes[i] for i in keep)
    levels = [lev.squeeze(squeeze) if squeeze else lev for lev in levels]
    if levels:  # Image.levels[0] must be the data itself, not a second squeezed view of it
        data = levels[0]
    elif squeeze:
        data = data.squeeze(squeeze)
    return data, axes, spacing, meta, levels


def _check_complete(tif, series, path):
    """Refuse files whose strips or tiles point past the end of the file (truncated copies)."""
    size = os.path.getsize(path)
    # Every pyramid level, not only the first: reduced levels are written last, so a cut file
    # loses them first (and they are read lazily, long after load() returned).
    for page in (page for level in series.levels for page in level.pages):
        if page is None:
            continue
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size and int((offsets + counts).max()) > size:
            raise BoneImgError(
                f"file is truncated: pixel data end at byte {int((offsets + counts).max())} "
                f"but the file has {size} bytes",
                path=path,
            )


def _lazy_levels(tif, series, path):
    try:
        store = series.aszarr()
        root = zarr.open(store, mode="r")
    except Exception as exc:
        raise BoneImgError(f"cannot open TIFF lazily ({exc})", path=path) from None
    # The dask arrays read through the open file; close it once nothing references the store.
    weakref.finalize(store, tif.close)
    arrays = [root] if isinstance(root, zarr.Array) else [root[str(i)] for i in range(len(series.levels))]
    return [guarded_array(a, path, chunks=a.chunks, what="TIFF pixel data") for a in arrays]


def _tiff_meta(tif, series):
    kinds = [k for k in ("ome", "imagej", "svs", "ndpi", "scn", "philips", "bif", "qpi") if getattr(tif, f"is_{k}", False)]
    meta = {
        "format": "tiff",
        "tiff_kind": kinds[0] if kinds else "tiff",
        "bigtiff": tif.is_bigtiff,
        "series_axes": series.axes,
        "level_shapes": [tuple(lev.shape) for lev in series.levels],
        "compression": series.pages[0].compression.name,
    }
    desc = series.pages[0].description
    if desc and not tif.is_ome:
        meta["description"] = desc[:2000]
    if tif.is_ome:
        record = _boneimg_record(tif.ome_metadata)
        if record:
            meta["provenance"] = record
    return meta


def _boneimg_record(xml):
    """The provenance record boneimg writes into an OME Image Description, if this file has one."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Description" and element.text:
            try:
                record = json.loads(element.text)
            except ValueError:
                return None
            if isinstance(record, dict) and str(record.get("software", "")).startswith("boneimg"):
                return record
    return None


def _calibration(tif, series):
    """Return (spacing by axis letter in µm, source name, notes)."""
    notes = []
    if tif.is_ome:
        spacing = _ome_spacing(tif.ome_metadata)
        if spacing:
            return spacing, "OME PhysicalSize", notes
    if tif.is_svs:
        # Parsed here: tifffile does not export svs_description_metadata at package level (every
        # SVS file failed with AttributeError).
        match = _APERIO_MPP.search(series.pages[0].description)
        mpp = length_to_um(match.group(1), "um") if match else None
        if mpp:
            return {"Y": mpp, "X": mpp}, "Aperio MPP", notes
    page = series.pages[0]
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        factor = length_to_um(1.0, ij.get("unit"))
        if factor is not None:
            spacing = _resolution_spacing(page, factor)
            if spacing and "spacing" in ij:
                # A zero, negative or NaN spacing made the whole file unreadable (Image refused it).
                z = length_to_um(ij["spacing"], ij.get("unit"))
                if z is None:
                    notes.append(f"ImageJ z spacing {ij['spacing']!r} is not a positive length: ignored")
                else:
                    spacing["Z"] = z
            if spacing:
                return spacing, "ImageJ unit", notes
    unit = int(page.tags.valueof("ResolutionUnit", 1) or 1)
    factor = _RESUNIT_UM.get(unit)
    if factor is not None:
        spacing = _resolution_spacing(page, factor)
        dpi = tuple(25400.0 / s for s in spacing.values()) if unit in (2, 3) else ()
        if dpi and all(any(abs(d - default) < 1e-4 * default for default in _DEFAULT_DPI) for d in dpi):
            stated = f"{round(dpi[0]):d} dpi" if unit == 2 else f"{1e4 / spacing['X']:.6g} pixels/cm ({round(dpi[0]):d} dpi)"
            notes.append(f"resolution {stated} is a software default, not a pixel size: ignored")
        elif spacing:
            return spacing, "TIFF resolution tags", notes
    return {}, None, notes


def _resolution_spacing(page, um_per_unit):
    spacing = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        value = page.tags.valueof(tag)
        if value is None:
            return {}
        num, den = value if isinstance(value, tuple) else (value, 1)
        if not num or not den:
            return {}
        spacing[axis] = um_per_unit * den / num
    return spacing


def _ome_spacing(xml):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None:
        return {}
    spacing = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if value is not None:
            um = length_to_um(value, pixels.get(f"PhysicalSize{axis}Unit", "µm"))
            if um is not None:
                spacing[axis] = um
    return spacing if "X" in spacing and "Y" in spacing else {}
