"""Scanco ISQ and AIM: the real test files against their NIfTI twin, and files built byte by byte."""

import itertools
import struct

import numpy as np
import pytest

import boneimg as bi
from boneimg.io import lazy as lazy_module
from boneimg.io.scanco import vms_double, vms_float
from conftest import assert_load_fails, listing, rand

# A volume whose three axes all differ in size and spacing, so that any axis mix-up shows.
NX, NY, NZ = 7, 5, 3
RAMP = np.arange(NX * NY * NZ, dtype=np.int16).reshape(NZ, NY, NX)  # value = x + NX * (y + NY * z)


def to_vms_float(values):
    """Inverse of the VMS F-float decoding: IEEE bits of 4 x value with the 16-bit halves swapped."""
    ieee = np.asarray(values, "<f4") * 4
    return np.ascontiguousarray(ieee.view(np.uint8).reshape(-1, 4)[:, [2, 3, 0, 1]]).tobytes()


def to_vms_double(value):
    ieee = np.array([value * 4], "<f8").view(np.uint8)
    return ieee[[6, 7, 4, 5, 2, 3, 0, 1]].tobytes()


def isq_bytes(volume, dim_um, *, data_type=3, mu_scaling=4096, calibration=None):
    """An ISQ file: header block, optional sub-header directory + calibration, int16 voxels."""
    nz, ny, nx = volume.shape
    header = bytearray(512)
    header[:16] = b"CTDATA-HEADER_V1"
    struct.pack_into("<5i", header, 16, data_type, volume.nbytes, volume.nbytes // 512, 17, 3401)
    struct.pack_into("<3i3i", header, 44, nx, ny, nz, *dim_um)
    struct.pack_into("<i", header, 88, mu_scaling)
    header[128:168] = b"Femur 12".ljust(40)
    struct.pack_into("<2i", header, 168, 55000, 145)
    extra = bytearray()
    if calibration is not None:
        directory = bytearray(512)
        directory[8:24] = b"Calibration     "
        struct.pack_into("<i", directory, 24, 2)  # two blocks of calibration
        cal = bytearray(1024)
        cal[28:92] = calibration["calibration_data"].encode().ljust(64)
        struct.pack_into("<i", cal, 632, calibration["rescale_type"])
        cal[648:664] = calibration["density_unit"].encode().ljust(16)
        cal[664:672] = to_vms_double(calibration["density_slope"])
        cal[672:680] = to_vms_double(calibration["density_intercept"])
        cal[688:696] = to_vms_double(calibration["mu_water"])
        extra = directory + cal
    struct.pack_into("<i", header, 508, len(extra) // 512)
    return bytes(header + extra) + volume.astype("<i2").tobytes()


def aim_bytes(volume, element_mm, *, version="v020", type_code=0x00020002, log="", pos=(0, 0, 0), off=(0, 0, 0), data=None):
    """An AIM file with `volume` (z, y, x) stored uncompressed, or the given `data` block."""
    nz, ny, nx = volume.shape
    data = volume.astype("<i2" if type_code == 0x00020002 else "i1").tobytes() if data is None else data
    vectors = [*pos, nx, ny, nz, *off] + [0] * 12
    log_bytes = log.encode("latin-1")
    if version == "v020":
        image = struct.pack("<6i21i", 16, 0, 0, 0, 0, type_code, *vectors) + to_vms_float(element_mm) + bytes(20)
        pre = struct.pack("<5i", 20, len(image), len(log_bytes), len(data), 0)
        return pre + image + log_bytes + data
    nano = [round(e * 1e6) for e in element_mm]
    image = struct.pack("<4i24q4i", 24, 0, 0, type_code, *vectors, *nano, 0, 0, 0, 1)
    pre = b"AIMDATA_V030   \x00" + struct.pack("<5q", 40, len(image), len(log_bytes), len(data), 0)
    return pre + image + log_bytes + data


def binary_runs(flat, word):
    """Binary run-length encoding: its own size, the two values, run lengths (255 = 254, no switch)."""
    values = [int(flat[0]), next((int(v) for v in flat if v != flat[0]), 0)]
    runs, current, length = [], values[0], 0
    for v in flat:
        if v == current:
            if length == 254:
                runs.append(255)
                length = 0
            length += 1
        else:
            runs.append(length)
            current, length = v, 1
    runs.append(length)
    body = bytes(np.array(values, np.int8).view(np.uint8)) + bytes(runs)
    size = len(body) + struct.calcsize(word)
    return struct.pack("<" + word, size) + body


def bit_packed(mask, value):
    """One byte per 2 x 2 x 2 voxels, bit 4 * (z % 2) + 2 * (y % 2) + x % 2, then the value."""
    nz, ny, nx = mask.shape
    packed = np.zeros(((nz + 1) // 2, (ny + 1) // 2, (nx + 1) // 2), np.uint8)
    for z, y, x in zip(*np.nonzero(mask)):
        packed[z // 2, y // 2, x // 2] |= 1 << (4 * (z % 2) + 2 * (y % 2) + x % 2)
    return packed.tobytes() + bytes([value])


# ---------------------------------------------------------------------------------------------
# The real test files (ORMIR_XCT) and their NIfTI twin


@pytest.fixture
def scanco(shared_data):
    return shared_data / "microct" / "scanco"


def test_vms_float_known_values():
    # VMS F 1.0 is the word 0x4080; G 1.0 is 0x4010 and G 0.5 is 0x4000 (hidden bit as 0.1f).
    assert vms_float(bytes.fromhex("80400000")).tolist() == [1.0]
    assert vms_double(bytes.fromhex("1040000000000000")) == 1.0
    assert vms_double(bytes.fromhex("0040000000000000")) == 0.5
    assert vms_float(to_vms_float([60.68e-3, -2.5])) == pytest.approx([60.68e-3, -2.5], rel=1e-7)


@pytest.mark.parametrize("name, fmt", [("test_isq.ISQ", "scanco isq"), ("test_aim.AIM", "scanco aim v020")])
def test_real_scanco_matches_nifti_twin(scanco, name, fmt):
    img = bi.load(scanco / name)
    twin = bi.load(scanco / "test_nii.nii")
    assert img.meta["format"] == fmt
    assert img.axes == "zyx" and img.shape == (25, 25, 25) and img.dtype == np.int16
    assert img.modality == "ct"
    # Voxel for voxel with the twin in the same (z, y, x) index order.
    np.testing.assert_array_equal(img.data, twin.data)
    assert int(img.data.sum()) == 81
    # The README's 60.68 µm is what both headers say (ISQ 1517 µm / 25 voxels, AIM 0.06068 mm);
    # the NIfTI pixdim was rounded to 0.0607 mm by whatever wrote it: 0.03 % larger.
    assert img.spacing_um == (60.68, 60.68, 60.68)
    assert twin.spacing_um == pytest.approx((60.7, 60.7, 60.7))


def test_real_scanco_twin_cannot_tell_orientation(scanco):
    # The twin holds a centred ball, the same under every axis flip and transpose, so equality
    # with it says nothing about orientation; the ramp tests below pin the axis order.
    ball = np.asarray(bi.load(scanco / "test_isq.ISQ").data)
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product([False, True], repeat=3):
            other = np.transpose(ball, perm)
            other = np.flip(other, [a for a in range(3) if flips[a]]) if any(flips) else other
            np.testing.assert_array_equal(other, ball)


def test_real_isq_header(scanco):
    img = bi.load(scanco / "test_isq.ISQ")
    header = img.meta["scanco_header"]
    assert header["dim_p"] == (25, 25, 25) and header["dim_um"] == (1517, 1517, 1517)
    assert header["energy_V"] == 68000 and header["intensity_uA"] == 1470
    assert header["index_measurement"] == 12778 and header["patient_index"] == 2567
    # The same creation time as the AIM processing log's "Original Creation-Date 19-FEB-1912 17:38:39.67".
    assert header["creation_date"].startswith("1912-02-19T17:38:39.6")
    assert img.meta["scanco_calibration"] == {"mu_scaling": 1}
    assert img.meta["spacing_source"] == "ISQ dimensions (µm / voxels)"


def test_real_aim_header_and_log(scanco):
    img = bi.load(scanco / "test_aim.AIM")
    assert img.meta["aim_type"] == "short"
    assert img.meta["position_voxels"] == (0, 0, 0) and img.meta["offset_voxels"] == (0, 0, 0)
    assert "Orig-ISQ-Dim-um                                  1517       1517       1517" in img.meta["processing_log"]
    assert img.meta["scanco_calibration"] == {"mu_scaling": 1}
    assert img.meta["spacing_source"] == "AIM element size"


def test_real_scanco_folder_untouched(scanco):
    before = listing(scanco)
    for name in ("test_isq.ISQ", "test_aim.AIM"):
        np.asarray(bi.load(scanco / name).data).sum()
    assert listing(scanco) == before


# ---------------------------------------------------------------------------------------------
# ISQ built byte by byte


@pytest.mark.parametrize("lazy", [False, True])
def test_isq_axis_order_and_spacing(tmp_path, monkeypatch, lazy):
    if lazy:
        monkeypatch.setattr(lazy_module, "LAZY_BYTES", 100)
    path = tmp_path / "scan.isq"  # lower-case and any name: the header decides
    path.write_bytes(isq_bytes(RAMP, (70, 100, 150)))  # 10 µm in x, 20 in y, 50 in z
    img = bi.load(path)
    assert img.is_lazy == lazy
    assert img.shape == (NZ, NY, NX)
    assert img.spacing_um == (50.0, 20.0, 10.0)
    np.testing.assert_array_equal(np.asarray(img.data), RAMP)
    assert int(img.data[2, 1, 3]) == 3 + NX * (1 + NY * 2)  # x fastest, then y, then z
    assert img.meta["scanco_header"]["name"] == "Femur 12"


def test_isq_density_calibration(tmp_path):
    calibration = {
        "calibration_data": "45 kVp, 0.5 mm Al, BH: 1200 mg HA/ccm",
        "rescale_type": 2,
        "density_unit": "mg HA/ccm",
        "density_slope": 1603.51904,
        "density_intercept": -391.209015,
        "mu_water": 0.2409,
    }
    path = tmp_path / "c0001234.isq"
    path.write_bytes(isq_bytes(RAMP, (70, 100, 150), mu_scaling=8192, calibration=calibration))
    img = bi.load(path)
    np.testing.assert_array_equal(img.data, RAMP)
    expected = {"mu_scaling": 8192, **calibration}
    got = img.meta["scanco_calibration"]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value)


# ---------------------------------------------------------------------------------------------
# AIM built byte by byte

LOG = """!
! Processing Log
!
!-------------------------------------------------------------------------------
Created by                    ISQ_TO_AIM (IPL)
Mu_Scaling                                       8192
Calibration Data              45 kVp, BH: 1200 mg HA/ccm, Scaling 8192
Calib. default unit type      2 (Density)
Density: unit                 mg HA/ccm
Density: slope                     1.60351904e+03
Density: intercept                -3.91209015e+02
HU: mu water                          0.24090
!-------------------------------------------------------------------------------
"""


@pytest.mark.parametrize("version", ["v020", "v030"])
@pytest.mark.parametrize("type_code, dtype", [(0x00020002, np.int16), (0x00010001, np.int8)])
def test_aim_axis_order_spacing_and_log(tmp_path, version, type_code, dtype):
    volume = rand((NZ, NY, NX), dtype, seed=5)
    path = tmp_path / "seg.aim"
    blob = aim_bytes(volume, (0.0105, 0.021, 0.0525), version=version, type_code=type_code, log=LOG, pos=(12, 30, 7))
    path.write_bytes(blob)
    img = bi.load(path)
    assert img.dtype == dtype and img.axes == "zyx"
    np.testing.assert_array_equal(img.data, volume)
    assert img.spacing_um == (52.5, 21.0, 10.5)
    assert img.meta["aim_version"] == version
    assert img.meta["position_voxels"] == (12, 30, 7)
    assert img.meta["processing_log"] == LOG.strip()
    assert img.meta["scanco_calibration"] == {
        "mu_scaling": 8192,
        "calibration_data": "45 kVp, BH: 1200 mg HA/ccm, Scaling 8192",
        "rescale_type": 2,
        "density_unit": "mg HA/ccm",
        "density_slope": 1603.51904,
        "density_intercept": -391.209015,
        "mu_water": 0.2409,
    }


def test_aim_with_padding_after_the_data(tmp_path):
    # IPL pads AIM files to whole 512-byte blocks (the real test file has 263 bytes more).
    path = tmp_path / "padded.aim"
    blob = aim_bytes(RAMP, (0.01, 0.01, 0.01))
    path.write_bytes(blob + bytes(-len(blob) % 512))
    np.testing.assert_array_equal(bi.load(path).data, RAMP)


@pytest.mark.parametrize("version, word", [("v020", "i"), ("v030", "q")])
@pytest.mark.parametrize("off", [(0, 0, 0), (1, 2, 1)])
def test_aim_binary_run_length(tmp_path, version, word, off):
    shape = (4, 9, 300)  # rows longer than 254 voxels need the 255 "no switch" run
    mask = rand(shape, bool, seed=6)
    mask[1, 2, :] = True
    full = np.where(mask, 127, 0).astype(np.int8)
    inner = tuple(slice(o, n - o) for n, o in zip(shape, off[::-1]))  # the runs skip the border
    expected = np.zeros_like(full)
    expected[inner] = full[inner]
    path = tmp_path / "seg.aim"
    data = binary_runs(full[inner].ravel(), word)
    path.write_bytes(aim_bytes(full, (0.01, 0.01, 0.01), version=version, type_code=0x00150001, off=off, data=data))
    img = bi.load(path)
    assert img.meta["aim_type"] == "binary run-length compressed char"
    np.testing.assert_array_equal(img.data, expected)


def test_aim_bit_packed(tmp_path):
    mask = rand((5, 6, 7), bool, seed=7)  # odd sizes: the last pair of each axis is half used
    path = tmp_path / "mask.aim"
    path.write_bytes(aim_bytes(mask, (0.01, 0.01, 0.01), type_code=0x00060001, data=bit_packed(mask, 127)))
    np.testing.assert_array_equal(bi.load(path).data, np.where(mask, 127, 0).astype(np.int8))


def test_aim_without_element_size_is_uncalibrated(tmp_path):
    path = tmp_path / "nosize.aim"
    path.write_bytes(aim_bytes(RAMP, (0.0, 0.0, 0.0)))
    with pytest.warns(bi.CalibrationWarning, match="element size"):
        img = bi.load(path)
    assert img.spacing_um is None
    np.testing.assert_array_equal(img.data, RAMP)


# ---------------------------------------------------------------------------------------------
# Bad input


def cut(blob, n):
    return blob[: len(blob) - n]


@pytest.mark.parametrize(
    "blob, match",
    [
        (cut(isq_bytes(RAMP, (70, 100, 150)), 1), "truncated"),
        (isq_bytes(RAMP, (70, 100, 150))[:300], "truncated"),
        (isq_bytes(RAMP[:0], (70, 100, 150)), "corrupt ISQ header"),
        (isq_bytes(RAMP, (70, 100, 0)), "RAD"),
        (isq_bytes(RAMP, (70, 100, 150), data_type=9), "RAD"),
        (isq_bytes(RAMP, (70, 100, 150), data_type=5), "unsupported ISQ data type 5"),
    ],
    ids=["one-byte-short", "header-only", "no-voxels", "no-z-size", "rad", "data-type"],
)
def test_bad_isq(tmp_path, blob, match):
    path = tmp_path / "bad.isq"
    path.write_bytes(blob)
    assert_load_fails(path, match)


def with_struct_int(blob, index, value):
    """Overwrite int `index` of a v020 AIM image struct (after the 20-byte pre-header)."""
    blob = bytearray(blob)
    struct.pack_into("<i", blob, 20 + 4 * index, value)
    return bytes(blob)


AIM = aim_bytes(RAMP, (0.01, 0.01, 0.01), log=LOG)


@pytest.mark.parametrize(
    "blob, match",
    [
        (cut(AIM, 1), "truncated"),
        (AIM[:200], "truncated"),
        (AIM[:12], "truncated"),
        (with_struct_int(AIM, 5, 0x00040004), "unsupported AIM data type 0x00040004"),
        (with_struct_int(AIM, 9, 8), "corrupt AIM: 210 data bytes for 8 x 5 x 3 short voxels"),
        (with_struct_int(AIM, 9, 0), "corrupt AIM image struct"),
        (with_struct_int(AIM, 12, 4), "corrupt AIM image struct"),  # a border wider than half the image
        (
            aim_bytes(RAMP, (0.01,) * 3, type_code=0x00150001, data=binary_runs(np.zeros(9, np.int8), "i")),
            "runs cover 9 voxels",
        ),
        (aim_bytes(RAMP, (0.01,) * 3, type_code=0x00150001, data=b"\x00" * 8), "does not start with its own size"),
        (aim_bytes(RAMP, (0.01,) * 3, type_code=0x00060001, data=b"\x01" * 5), "packed bytes"),
    ],
    ids=[
        "one-byte-short", "log-cut", "pre-header-cut", "float-type", "wrong-dims", "zero-dim", "wide-border",
        "short-runs", "bad-run-block", "bad-bits",
    ],
)
def test_bad_aim(tmp_path, blob, match):
    path = tmp_path / "bad.aim"
    path.write_bytes(blob)
    assert_load_fails(path, match)


def test_aim_with_wrong_struct_size_is_not_recognised(tmp_path):
    blob = bytearray(AIM)
    struct.pack_into("<i", blob, 4, 141)  # pre-header no longer says 20, 140
    path = tmp_path / "odd.aim"
    path.write_bytes(bytes(blob))
    assert_load_fails(path, "not a recognised image file")


def test_v030_with_wrong_struct_size(tmp_path):
    blob = bytearray(aim_bytes(RAMP, (0.01,) * 3, version="v030"))
    struct.pack_into("<q", blob, 24, 225)
    path = tmp_path / "odd.aim"
    path.write_bytes(bytes(blob))
    assert_load_fails(path, "corrupt AIM pre-header")
