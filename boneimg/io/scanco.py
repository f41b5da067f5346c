"""Scanco Medical micro-CT files: ISQ scans and AIM images, returned in (z, y, x) order.

Both are little-endian and store x fastest, then y, then z. Their headers date from VMS, so the
reals among them are VMS floats (F/G-float: the 16-bit halves swapped, exponent bias 4 higher
than IEEE, hence the factor 1/4).

- ISQ: a 512-byte ``CTDATA-HEADER_V1`` block (more blocks when calibration sub-headers
  follow), then int16 voxels at ``(data_offset + 1) * 512``. The voxel size is the scan size in
  µm over the size in voxels, per axis.
- AIM: a pre-header of block sizes (32-bit in v020, 64-bit after an ``AIMDATA_V030`` tag), an
  image struct (type code, ``pos``, ``dim``, ``off``, element size), the processing log text,
  then the voxels.

Voxel values are returned as stored. The calibration that turns them into physical units is in
``meta["scanco_calibration"]``: linear attenuation ``mu [1/cm] = value / mu_scaling``, density
``= density_slope * value / mu_scaling + density_intercept`` (in ``density_unit``, usually
mg HA/ccm) and ``HU = 1000 * (mu - mu_water) / mu_water``.
"""

import datetime
import struct

import numpy as np

from ..errors import BoneImgError
from .lazy import guarded_array, is_large

ISQ_MAGIC = b"CTDATA-HEADER_V1"
AIM_V030_MAGIC = b"AIMDATA_V030   \x00"
_BLOCK = 512

# ISQ header fields after the 16-byte magic, in file order (name, struct code).
_ISQ_FIELDS = (
    ("data_type", "i"), ("nr_of_bytes", "i"), ("nr_of_blocks", "i"), ("patient_index", "i"),
    ("scanner_id", "i"), ("creation_date", "q"), ("dim_p", "3i"), ("dim_um", "3i"),
    ("slice_thickness_um", "i"), ("slice_increment_um", "i"), ("slice_1_pos_um", "i"),
    ("min_data_value", "i"), ("max_data_value", "i"), ("mu_scaling", "i"), ("nr_of_samples", "i"),
    ("nr_of_projections", "i"), ("scandist_um", "i"), ("scanner_type", "i"), ("sampletime_us", "i"),
    ("index_measurement", "i"), ("site", "i"), ("reference_line_um", "i"), ("recon_alg", "i"),
    ("name", "40s"), ("energy_V", "i"), ("intensity_uA", "i"),
)
_ISQ_SHORT = 3  # data type of int16 reconstructions; 9 (or no z size) marks a 2-D RAD scout view
_ISQ_DATA_OFFSET_AT = 508  # last word of the first block: header blocks after the first

# AIM image struct layouts: (struct size, format, field names); ints are 64-bit in v030, whose
# element size is in nanometres instead of v020's VMS floats in mm.
_AIM_STRUCTS = {
    "v020": (140, "<6i21i12s5i", ("version", "proc_log", "dat", "id", "ref", "type")),
    "v030": (224, "<4i24q4i", ("version", "id", "ref", "type")),
}
_AIM_VECTORS = ("pos", "dim", "off", "supdim", "suppos", "subdim", "testoff")
# AIM type codes: (number of values per byte of storage << 16) + bytes per voxel, roughly.
_AIM_CHAR, _AIM_SHORT, _AIM_BIN_RLE, _AIM_BIT8 = 0x00010001, 0x00020002, 0x00150001, 0x00060001
_AIM_TYPES = {
    _AIM_CHAR: "char",
    _AIM_SHORT: "short",
    _AIM_BIN_RLE: "binary run-length compressed char",
    _AIM_BIT8: "bit-packed char",
}
# Processing-log keys of the calibration, and where they go in meta["scanco_calibration"].
_LOG_CALIBRATION = {
    "Mu_Scaling": "mu_scaling",
    "Density: unit": "density_unit",
    "Density: slope": "density_slope",
    "Density: intercept": "density_intercept",
    "HU: mu water": "mu_water",
    "Calib. default unit type": "rescale_type",
    "Calibration Data": "calibration_data",
}


def is_isq(head):
    """True when the first bytes of a file are a Scanco ISQ header."""
    return head[:16] == ISQ_MAGIC


def is_aim(head):
    """True when the first bytes of a file are an AIM pre-header.

    AIM v020 has no magic number: its pre-header is five 32-bit block sizes, the first two of
    them 20 (the pre-header) and 140 (the image struct). v030 starts with ``AIMDATA_V030``.
    """
    if head[:16] == AIM_V030_MAGIC:
        return True
    return len(head) >= 8 and struct.unpack_from("<2i", head) == (20, 140)


def vms_float(raw):
    """Decode VMS F-floats (4 bytes each) to float64."""
    words = np.frombuffer(raw, np.uint8).reshape(-1, 4)[:, [2, 3, 0, 1]]
    return np.ascontiguousarray(words).view("<f4").ravel().astype(np.float64) * 0.25


def vms_double(raw):
    """Decode one VMS G-float (8 bytes)."""
    words = np.frombuffer(raw, np.uint8)[[6, 7, 4, 5, 2, 3, 0, 1]]
    return float(np.ascontiguousarray(words).view("<f8")[0]) * 0.25


def read_isq(path):
    """Read a Scanco ISQ file.

    Returns
    -------
    data : ndarray or dask array of int16, shape (z, y, x)
    axes : str
        ``"ZYX"``.
    spacing : dict
        Axis letter -> µm, from the scan size in µm over the size in voxels.
    meta : dict
        ``scanco_header`` (the header fields), ``scanco_calibration``.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        block = fh.read(_BLOCK)
    if len(block) < _BLOCK:
        raise BoneImgError(f"ISQ header is truncated ({len(block)} of {_BLOCK} bytes)", path=path)
    header = _isq_header(block)
    data_offset = (struct.unpack_from("<i", block, _ISQ_DATA_OFFSET_AT)[0] + 1) * _BLOCK
    nx, ny, nz = header["dim_p"]
    if header["data_type"] == 9 or header["dim_um"][2] == 0:
        raise BoneImgError("Scanco RAD scout views (2-D projections) are not supported", path=path)
    if header["data_type"] != _ISQ_SHORT:
        raise BoneImgError(f"unsupported ISQ data type {header['data_type']} (expected {_ISQ_SHORT}, int16)", path=path)
    if min(nx, ny, nz) < 1 or data_offset < _BLOCK:
        raise BoneImgError(f"corrupt ISQ header: dimensions {header['dim_p']}, data offset {data_offset}", path=path)
    _check_size(path, size, data_offset + nx * ny * nz * 2)
    with open(path, "rb") as fh:
        extended = fh.read(data_offset)
    spacing, notes = {}, []
    for axis, pixels, um in zip("XYZ", header["dim_p"], header["dim_um"]):
        if um > 0:
            spacing[axis] = um / pixels
    if len(spacing) < 3:
        spacing = {}
        notes.append(f"ISQ scan size {header['dim_um']} µm is not positive on every axis: ignored")
    meta = {
        "format": "scanco isq",
        "scanco_header": header,
        "scanco_calibration": {"mu_scaling": header["mu_scaling"], **_isq_calibration(extended)},
        "spacing_source": "ISQ dimensions (µm / voxels)" if spacing else None,
    }
    if notes:
        meta["calibration_notes"] = notes
    return _raw_volume(path, data_offset, np.dtype("<i2"), (nz, ny, nx)), "ZYX", spacing, meta


def _isq_header(block):
    codes = "<" + "".join(code for _, code in _ISQ_FIELDS)
    values = list(struct.unpack_from(codes, block, 16))
    header = {}
    for name, code in _ISQ_FIELDS:
        count = int(code[:-1] or 1) if code.endswith("i") else 1
        header[name] = tuple(values[:count]) if count > 1 else values[0]
        del values[:count]
    header["name"] = header["name"].split(b"\x00")[0].decode("latin-1").strip()
    header["creation_date"] = _vms_date(header["creation_date"])
    return header


def _vms_date(ticks):
    """A VMS time (100 ns ticks since 1858-11-17) as an ISO string, or None when implausible."""
    try:
        date = datetime.datetime(1858, 11, 17) + datetime.timedelta(microseconds=ticks // 10)
    except (OverflowError, ValueError):
        return None
    return date.isoformat(timespec="milliseconds") if date.year > 1900 else None


def _isq_calibration(header):
    """Density calibration from the ISQ sub-header named "Calibration", if the file has one.

    Block 1 is a directory of up to four sub-headers (128 bytes each: name at 8, size in blocks
    at 24), optionally after a "MultiHeader" block; their contents follow in that order.
    """
    directory = _BLOCK
    if header[directory + 8 : directory + 24] == b"MultiHeader     ":
        directory += _BLOCK
    start = directory + _BLOCK
    for i in range(4):
        entry = directory + 128 * i
        if entry + 28 > len(header):
            break
        name = header[entry + 8 : entry + 24].rstrip(b"\x00 ")
        blocks = struct.unpack_from("<i", header, entry + 24)[0]
        if blocks < 0 or start + blocks * _BLOCK > len(header):
            break
        if name == b"Calibration" and blocks >= 2:
            cal = header[start : start + blocks * _BLOCK]
            return {
                "calibration_data": _text(cal[28:92]),
                "rescale_type": struct.unpack_from("<i", cal, 632)[0],
                "density_unit": _text(cal[648:664]),
                "density_slope": vms_double(cal[664:672]),
                "density_intercept": vms_double(cal[672:680]),
                "mu_water": vms_double(cal[688:696]),
            }
        start += blocks * _BLOCK
    return {}


def read_aim(path):
    """Read a Scanco AIM file (v020 or v030).

    Returns
    -------
    data : ndarray or dask array, shape (z, y, x)
        int8 for char AIMs (segmentations, compressed or not), int16 for short ones.
    axes : str
        ``"ZYX"``.
    spacing : dict
        Axis letter -> µm, from the element size in the image struct.
    meta : dict
        ``aim_version``, ``aim_type``, ``position_voxels`` and ``offset_voxels`` (x, y, z; the
        image's place in the scan and the border kept for filters), ``processing_log`` (text),
        ``scanco_calibration``.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
    version, word = ("v030", "q") if head[:16] == AIM_V030_MAGIC else ("v020", "i")
    start = 16 if version == "v030" else 0
    word_size = struct.calcsize(word)
    if len(head) < start + 4 * word_size:
        raise BoneImgError("AIM header is truncated", path=path)
    pre_size = struct.unpack_from("<" + word, head, start)[0]
    n_blocks = pre_size // word_size - 1
    struct_size, struct_format, names = _AIM_STRUCTS[version]
    if not 3 <= n_blocks <= 4 or pre_size % word_size or len(head) < start + pre_size:
        raise BoneImgError(f"corrupt AIM pre-header (length {pre_size})", path=path)
    blocks = struct.unpack_from(f"<{n_blocks}{word}", head, start + word_size)
    if blocks[0] != struct_size or min(blocks) < 0:
        raise BoneImgError(
            f"corrupt AIM pre-header (block sizes {blocks}; the {version} image struct has {struct_size} bytes)",
            path=path,
        )
    struct_at = start + pre_size
    log_at = struct_at + struct_size
    data_at = log_at + blocks[1]
    _check_size(path, size, data_at + blocks[2])
    with open(path, "rb") as fh:
        fh.seek(struct_at)
        image = fh.read(struct_size)
        log = _text(fh.read(blocks[1]))
    values = struct.unpack(struct_format, image)
    fields = dict(zip(names, values))
    vectors = values[len(names) :]
    for i, name in enumerate(_AIM_VECTORS):
        fields[name] = tuple(int(v) for v in vectors[3 * i : 3 * i + 3])
    if version == "v030":
        element_um = [v / 1000 for v in vectors[21:24]]  # nanometres
    else:
        # VMS floats in mm carry 7 digits, the last one off by a unit from some writers
        # (0.060680002 mm): 6 significant digits give the size that was meant (60.68 µm).
        element_um = [float(f"{v * 1000:.6g}") for v in vms_float(values[len(names) + 21])]
    nx, ny, nz = fields["dim"]
    if min(fields["dim"]) < 1 or min(fields["off"]) < 0 or any(2 * o > d for o, d in zip(fields["off"], fields["dim"])):
        raise BoneImgError(f"corrupt AIM image struct: dim {fields['dim']}, off {fields['off']}", path=path)
    if fields["type"] not in _AIM_TYPES:
        raise BoneImgError(
            f"unsupported AIM data type 0x{fields['type']:08x}; boneimg reads char, short and "
            "binary-compressed char AIMs",
            path=path,
        )
    data = _aim_data(path, data_at, blocks[2], fields, word_size)
    spacing = {}
    meta = {
        "format": f"scanco aim {version}",
        "aim_version": version,
        "aim_type": _AIM_TYPES[fields["type"]],
        "position_voxels": fields["pos"],
        "offset_voxels": fields["off"],
        "processing_log": log,
        "scanco_calibration": _log_calibration(log),
    }
    if all(np.isfinite(e) and e > 0 for e in element_um):
        spacing = dict(zip("XYZ", element_um))
        meta["spacing_source"] = "AIM element size"
    else:
        meta["spacing_source"] = None
        meta["calibration_notes"] = [f"AIM element size {element_um} µm is not positive: ignored"]
    return data, "ZYX", spacing, meta


def _aim_data(path, offset, nbytes, fields, word_size):
    nx, ny, nz = fields["dim"]
    kind = fields["type"]
    if kind in (_AIM_CHAR, _AIM_SHORT):
        dtype = np.dtype("i1" if kind == _AIM_CHAR else "<i2")
        if nbytes != nx * ny * nz * dtype.itemsize:
            raise BoneImgError(
                f"corrupt AIM: {nbytes} data bytes for {nx} x {ny} x {nz} {_AIM_TYPES[kind]} voxels", path=path
            )
        return _raw_volume(path, offset, dtype, (nz, ny, nx))
    with open(path, "rb") as fh:
        fh.seek(offset)
        block = fh.read(nbytes)
    try:
        if kind == _AIM_BIT8:
            return _unpack_bit8(block, (nz, ny, nx))
        return _decode_binary_runs(block, (nz, ny, nx), fields["off"][::-1], word_size)
    except ValueError as exc:
        raise BoneImgError(f"corrupt {_AIM_TYPES[kind]} AIM data ({exc})", path=path) from None


def _decode_binary_runs(block, shape, off, word_size):
    """Binary run-length data: its size, the two values, then run lengths of alternating values.

    A run of 255 means 254 voxels without switching value. The runs cover the image inside the
    ``off`` border, which is restored as zeros.
    """
    if len(block) < word_size + 2 or struct.unpack_from("<" + ("q" if word_size == 8 else "i"), block)[0] != len(block):
        raise ValueError("the data block does not start with its own size")
    values = np.frombuffer(block, np.int8, count=2, offset=word_size)
    runs = np.frombuffer(block, np.uint8, offset=word_size + 2).astype(np.int64)
    switched = np.concatenate([[0], np.cumsum(runs[:-1] != 255)]) % 2
    inner = [n - 2 * o for n, o in zip(shape, off)]
    voxels = np.repeat(values[switched], np.where(runs == 255, 254, runs))
    if voxels.size != np.prod(inner):
        raise ValueError(f"runs cover {voxels.size} voxels, the image has {int(np.prod(inner))}")
    data = np.zeros(shape, np.int8)
    data[tuple(slice(o, n - o) for n, o in zip(shape, off))] = voxels.reshape(inner)
    return data


def _unpack_bit8(block, shape):
    """Bit-packed data: one byte per 2 x 2 x 2 voxels (bit = 4 z + 2 y + x parity), then the value."""
    packed_shape = tuple((n + 1) // 2 for n in shape)
    if len(block) != np.prod(packed_shape) + 1:
        raise ValueError(f"{len(block)} bytes for {int(np.prod(packed_shape)) + 1} packed bytes")
    packed = np.frombuffer(block, np.uint8, count=len(block) - 1).reshape(packed_shape)
    # A value of 0 would erase every set bit; 127 is the usual segmentation value.
    value = int(np.int8(block[-1])) or 127
    full = packed.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: shape[0], : shape[1], : shape[2]]
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    bits = (full >> (4 * (z % 2) + 2 * (y % 2) + x % 2)) & 1
    return bits.astype(np.int8) * np.int8(value)


def _log_calibration(log):
    """Calibration entries of an AIM processing log (``key   value`` lines, '!' comments)."""
    found = {}
    for line in log.splitlines():
        if line.startswith("!"):
            continue
        key, _, value = line.strip().partition("  ")
        name = _LOG_CALIBRATION.get(key.strip())
        value = value.strip()
        if name is None or not value:
            continue
        try:  # codes lead their line ("2 (Density)"); units and descriptions stay text
            found[name] = int(value.split()[0]) if name in ("mu_scaling", "rescale_type") else float(value)
        except ValueError:
            found[name] = value
    return found


def _check_size(path, size, needed):
    if size < needed:
        raise BoneImgError(f"file is truncated: the voxels end at byte {needed} but the file has {size} bytes", path=path)


def _raw_volume(path, offset, dtype, shape):
    """Uncompressed voxels at `offset`: read at once, or memory-mapped into a dask array when large."""
    if not is_large(int(np.prod(shape)) * dtype.itemsize):
        data = np.fromfile(path, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        return data.astype(dtype.newbyteorder("="), copy=False)
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    slab = max(1, 2**26 // (shape[1] * shape[2] * dtype.itemsize))  # about 64 MiB of whole slices
    return guarded_array(mapped, path, chunks=(slab, *shape[1:]), what="Scanco voxels")


def _text(raw):
    return raw.split(b"\x00")[0].decode("latin-1").strip()
