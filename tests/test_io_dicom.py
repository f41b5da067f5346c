"""DICOM files and series folders, generated with pydicom: values, geometry, bad input."""

import importlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

import boneimg as bi
from boneimg.io import lazy as lazy_module
from conftest import assert_load_fails, listing, rand

AXIAL = [1, 0, 0, 0, 1, 0]  # rows along +x, columns along +y: slice normal +z
CORONAL = [1, 0, 0, 0, 0, -1]  # rows along +x, columns along -z: slice normal +y


def dicom_dataset(pixels, *, sop=CTImageStorage, modality="CT", bits_stored=None, photometric="MONOCHROME2", **attrs):
    """A complete DICOM file dataset holding `pixels` ((y, x), (frames, y, x) or (y, x, 3))."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop, meta.MediaStorageSOPInstanceUID, modality
    ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    colour = pixels.ndim == 3 and pixels.shape[-1] == 3
    if pixels.ndim == 3 and not colour:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else photometric
    if colour:
        ds.PlanarConfiguration = 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    return ds


def write_dicom(path, pixels, **attrs):
    dicom_dataset(pixels, **attrs).save_as(path, enforce_file_format=True)
    return path


def write_series(folder, volume, *, gap_mm=0.02, pixel_mm=(0.01, 0.01), orientation=AXIAL, names=None, **attrs):
    """One file per slice of `volume` (z, y, x), stepping `gap_mm` along the slice normal."""
    folder.mkdir(exist_ok=True)
    normal = np.cross(orientation[:3], orientation[3:])
    names = names or [f"IM{i:04d}" for i in range(len(volume))]
    for i, (plane, name) in enumerate(zip(volume, names)):
        position = [f"{v:.4f}" for v in np.array([1.5, -2.0, 10.0]) + i * gap_mm * normal]
        geometry = {"ImagePositionPatient": position, "ImageOrientationPatient": orientation, "InstanceNumber": i + 1}
        write_dicom(folder / name, plane, PixelSpacing=[f"{v}" for v in pixel_mm], **{**geometry, **attrs})
    return folder


VOLUME = rand((6, 8, 10), np.int16, seed=1)
CT_RAW = (rand((6, 8, 10), np.uint16, seed=2) >> 4).astype(np.uint16)  # 12-bit stored values


# ---------------------------------------------------------------------------------------------
# Single files


@pytest.mark.parametrize(
    "modality, expected",
    [("DX", "radiograph"), ("CR", "radiograph"), ("MG", "radiograph"), ("RF", "radiograph"), ("CT", "ct"), ("MR", None)],
)
def test_single_image_modality_and_spacing(tmp_path, modality, expected):
    data = rand((40, 50), np.uint16, seed=3)
    path = write_dicom(tmp_path / "image.dcm", data, modality=modality, PixelSpacing=["0.05", "0.04"])
    img = bi.load(path)
    assert img.axes == "yx" and img.dtype == np.uint16
    np.testing.assert_array_equal(img.data, data)
    assert img.spacing_um == pytest.approx((50.0, 40.0), rel=1e-12)  # row spacing is y
    assert img.modality == expected
    assert img.meta["dicom_modality"] == modality
    assert img.meta["spacing_source"] == "DICOM PixelSpacing"
    assert img.meta["transfer_syntax"] == "Explicit VR Little Endian"


def test_modality_argument_overrides_dicom(tmp_path):
    path = write_dicom(tmp_path / "image.dcm", rand((8, 9), np.uint16), modality="DX", PixelSpacing=["0.1", "0.1"])
    assert bi.load(path, modality="ct").modality == "ct"


@pytest.mark.parametrize("factor, expected, note", [("1.25", 80.0, None), (None, 100.0, "not corrected for magnification")])
def test_radiograph_imager_pixel_spacing(tmp_path, factor, expected, note):
    extra = {"EstimatedRadiographicMagnificationFactor": factor} if factor else {}
    path = write_dicom(
        tmp_path / "xray.dcm", rand((30, 20), np.uint16), sop=DigitalXRayImageStorageForPresentation,
        modality="DX", ImagerPixelSpacing=["0.1", "0.1"], **extra,
    )
    img = bi.load(path)
    assert img.spacing_um == pytest.approx((expected, expected))
    assert img.meta["spacing_source"].startswith("DICOM ImagerPixelSpacing")
    assert (note in " ".join(img.meta.get("calibration_notes", []))) if note else "calibration_notes" not in img.meta


def test_image_without_pixel_spacing_is_uncalibrated(tmp_path):
    path = write_dicom(tmp_path / "nospacing.dcm", rand((30, 20), np.uint16), modality="DX")
    with pytest.warns(bi.CalibrationWarning, match="no usable PixelSpacing"):
        img = bi.load(path)
    assert img.spacing_um is None


def test_monochrome1_is_inverted(tmp_path):
    raw = rand((30, 20), np.uint16, seed=4) >> 4  # 12 bits stored
    path = write_dicom(
        tmp_path / "cr.dcm", raw, modality="CR", bits_stored=12, photometric="MONOCHROME1", PixelSpacing=["0.1", "0.1"]
    )
    img = bi.load(path)
    np.testing.assert_array_equal(img.data, 4095 - raw)
    assert img.dtype == np.uint16
    assert "MONOCHROME1" in img.meta["inverted"]


@pytest.mark.parametrize(
    "slope, intercept, dtype",
    [
        ("1", "-1024", np.int16),
        ("2", "-1024", np.int16),
        ("0.5", "-10", np.float32),
        ("1", "0.5", np.float32),
        ("16", "0", np.float32),  # 12 bits x 16 leave int16
    ],
)
def test_rescale_to_hounsfield(tmp_path, slope, intercept, dtype):
    raw = CT_RAW[0]
    path = write_dicom(
        tmp_path / "ct.dcm", raw, bits_stored=12, RescaleSlope=slope, RescaleIntercept=intercept,
        RescaleType="HU", PixelSpacing=["0.02", "0.02"],
    )
    img = bi.load(path)
    assert img.dtype == dtype  # int16 while the 12-bit range maps into it, else float32
    np.testing.assert_allclose(img.data, raw * float(slope) + float(intercept), rtol=0, atol=0)
    assert img.meta["rescale"] == {"slope": float(slope), "intercept": float(intercept), "type": "HU"}
    assert img.modality == "ct" and img.axes == "yx"


def test_colour_image(tmp_path):
    data = rand((12, 14, 3), np.uint8, seed=5)
    path = write_dicom(
        tmp_path / "photo.dcm", data, sop=SecondaryCaptureImageStorage, modality="OT", PixelSpacing=["0.5", "0.5"]
    )
    img = bi.load(path)
    assert img.axes == "yxc"
    np.testing.assert_array_equal(img.data, data)
    assert img.modality == "brightfield"  # a colour image without a DICOM modality boneimg knows


def test_rle_compressed(tmp_path):
    ds = dicom_dataset(CT_RAW[1], bits_stored=12, PixelSpacing=["0.02", "0.02"])
    ds.compress(RLELossless)
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    img = bi.load(path)
    np.testing.assert_array_equal(img.data, CT_RAW[1])
    assert img.meta["transfer_syntax"] == "RLE Lossless"


def test_undecodable_transfer_syntax_is_named(tmp_path):
    ds = dicom_dataset(CT_RAW[1], PixelSpacing=["0.02", "0.02"])
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60)])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "jpegls.dcm"
    ds.save_as(path, enforce_file_format=True)
    message = assert_load_fails(path, "JPEG-LS Lossless Image Compression")
    assert JPEGLSLossless in message


def enhanced_ct(frames_zyx, order, *, gap_mm=0.03):
    """An enhanced CT: shared pixel measures and rescale, per-frame positions, frames stored in `order`."""
    per_frame = []
    for z in order:
        position = Dataset()
        position.ImagePositionPatient = ["0", "0", f"{z * gap_mm:.4f}"]
        item = Dataset()
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    measures = Dataset()
    measures.PixelSpacing = ["0.015", "0.0125"]
    measures.SliceThickness = "0.03"
    orientation = Dataset()
    orientation.ImageOrientationPatient = AXIAL
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "1", "-1024", "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    return dicom_dataset(
        frames_zyx[list(order)], sop=EnhancedCTImageStorage, bits_stored=12,
        SharedFunctionalGroupsSequence=Sequence([shared]), PerFrameFunctionalGroupsSequence=Sequence(per_frame),
    )


def test_enhanced_multiframe_ct(tmp_path):
    order = [3, 0, 5, 1, 4, 2]  # frames stored out of position order
    path = tmp_path / "enhanced.dcm"
    enhanced_ct(CT_RAW, order).save_as(path, enforce_file_format=True)
    img = bi.load(path)
    assert img.axes == "zyx" and img.dtype == np.int16 and img.modality == "ct"
    np.testing.assert_array_equal(img.data, CT_RAW.astype(np.int16) - 1024)
    assert img.spacing_um == pytest.approx((30.0, 15.0, 12.5))
    assert img.meta["spacing_source"] == "DICOM PixelSpacing, slice positions (ImagePositionPatient)"


def test_enhanced_multiframe_with_missing_frame(tmp_path):
    path = tmp_path / "gap.dcm"
    enhanced_ct(CT_RAW, [0, 1, 2, 4, 5]).save_as(path, enforce_file_format=True)
    assert_load_fails(path, "not uniform")


def test_plain_multiframe_uses_spacing_between_slices(tmp_path):
    path = write_dicom(
        tmp_path / "stack.dcm", VOLUME, PixelSpacing=["0.01", "0.01"], SpacingBetweenSlices="0.025", SliceThickness="0.05"
    )
    img = bi.load(path)
    np.testing.assert_array_equal(img.data, VOLUME)
    assert img.spacing_um == pytest.approx((25.0, 10.0, 10.0))
    assert img.meta["spacing_source"] == "DICOM PixelSpacing, SpacingBetweenSlices"


# ---------------------------------------------------------------------------------------------
# Series folders


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL], ids=["axial", "coronal"])
def test_series_sorted_by_position(tmp_path, orientation):
    names = ["b.dcm", "x17", "IM3", "a.dcm", "zz", "IM10"]  # neither name nor extension orders them
    folder = write_series(tmp_path / "series", VOLUME, orientation=orientation, names=names)
    shuffled = [2, 0, 5, 1, 4, 3]
    for name, i in zip(names, shuffled):  # re-number so InstanceNumber disagrees with position too
        ds = pydicom.dcmread(folder / name)
        ds.InstanceNumber = i + 1
        ds.save_as(folder / name, enforce_file_format=True)
    (folder / "notes.txt").write_text("not DICOM")
    before = listing(folder)
    img = bi.load(folder)
    np.testing.assert_array_equal(img.data, VOLUME)
    assert img.axes == "zyx" and img.modality == "ct"
    assert img.spacing_um == pytest.approx((20.0, 10.0, 10.0))
    assert img.meta["format"] == "dicom series" and img.meta["n_slices"] == 6
    assert (img.meta["first_slice"], img.meta["last_slice"]) == ("b.dcm", "IM10")
    assert img.meta["spacing_source"] == "DICOM PixelSpacing, slice positions (ImagePositionPatient)"
    assert listing(folder) == before


def test_series_rescaled_to_int16(tmp_path):
    folder = write_series(tmp_path / "ct", CT_RAW, bits_stored=12, RescaleSlope="1", RescaleIntercept="-1024")
    img = bi.load(folder)
    assert img.dtype == np.int16
    np.testing.assert_array_equal(img.data, CT_RAW.astype(np.int16) - 1024)


def test_series_read_lazily(tmp_path, monkeypatch):
    monkeypatch.setattr(lazy_module, "LAZY_BYTES", 100)
    folder = write_series(tmp_path / "ct", CT_RAW, bits_stored=12, RescaleSlope="0.5", RescaleIntercept="-1000")
    img = bi.load(folder)
    assert img.is_lazy and img.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(img.data), (CT_RAW * 0.5 - 1000).astype(np.float32))


@pytest.mark.parametrize(
    "attrs, spacing, source",
    [
        (
            {"SpacingBetweenSlices": "0.04", "SliceThickness": "0.05"},
            (40.0, 10.0, 10.0),
            "DICOM PixelSpacing, SpacingBetweenSlices",
        ),
        ({"SliceThickness": "0.05"}, (50.0, 10.0, 10.0), "DICOM PixelSpacing, SliceThickness"),
    ],
)
def test_series_without_positions_uses_instance_number(tmp_path, attrs, spacing, source):
    folder = tmp_path / "noipp"
    folder.mkdir()
    for i, n in enumerate([3, 1, 2, 6, 5, 4]):
        write_dicom(folder / f"f{i}.dcm", VOLUME[n - 1], InstanceNumber=n, PixelSpacing=["0.01", "0.01"], **attrs)
    img = bi.load(folder)
    np.testing.assert_array_equal(img.data, VOLUME)
    assert img.spacing_um == pytest.approx(spacing)
    assert img.meta["spacing_source"] == source
    assert any("InstanceNumber" in note for note in img.meta["calibration_notes"])


def test_series_without_any_slice_spacing_is_uncalibrated(tmp_path):
    folder = tmp_path / "nogap"
    folder.mkdir()
    for i in range(3):
        write_dicom(folder / f"f{i}.dcm", VOLUME[i], InstanceNumber=i + 1, PixelSpacing=["0.01", "0.01"])
    with pytest.warns(bi.CalibrationWarning, match="slice spacing"):
        img = bi.load(folder)
    np.testing.assert_array_equal(img.data, VOLUME[:3])


def test_folder_with_one_dicom_file(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    data = rand((20, 30), np.uint16)
    write_dicom(folder / "only", data, modality="DX", PixelSpacing=["0.1", "0.1"])
    img = bi.load(folder)
    assert img.axes == "yx" and img.modality == "radiograph"
    np.testing.assert_array_equal(img.data, data)


def test_folder_with_dicom_and_a_preview_image(tmp_path):
    folder = write_series(tmp_path / "series", VOLUME)
    (folder / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # never opened: DICOM outnumbers it
    img = bi.load(folder)
    assert img.meta["ignored_files"] == ["preview.png"]
    np.testing.assert_array_equal(img.data, VOLUME)


def test_folder_kind(tmp_path):
    folder_kind = importlib.import_module("boneimg.io.load").folder_kind
    assert folder_kind(write_series(tmp_path / "series", VOLUME[:2])) == "dicom"
    slices = tmp_path / "slices"
    slices.mkdir()
    (slices / "rec0.png").write_bytes(b"")  # decided by name, never opened
    assert folder_kind(slices) == "slices"
    with pytest.raises(bi.BoneImgError, match="no image slices or DICOM files"):
        folder_kind(tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_truncated_dicom(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", rand((64, 64), np.uint16), PixelSpacing=["0.1", "0.1"])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 3000])
    assert_load_fails(path, "truncated or corrupt")


def test_dicom_with_corrupt_header(tmp_path):
    path = write_dicom(tmp_path / "bad.dcm", rand((16, 16), np.uint16))
    blob = bytearray(path.read_bytes())
    blob[132:400] = np.random.default_rng(3).bytes(268)
    path.write_bytes(bytes(blob))
    assert_load_fails(path, "DICOM")


def test_dicom_without_pixel_data(tmp_path):
    ds = dicom_dataset(rand((4, 4), np.uint16))
    del ds.PixelData
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert_load_fails(path, "no image")


def test_folder_with_dicom_index_only(tmp_path):
    folder = tmp_path / "medium"
    folder.mkdir()
    write_dicom(folder / "DICOMDIR", rand((4, 4), np.uint16))  # an index, never a slice
    assert_load_fails(folder, "no image slices or DICOM files")


def test_series_with_a_file_without_pixels(tmp_path):
    folder = write_series(tmp_path / "series", VOLUME)
    ds = pydicom.dcmread(folder / "IM0002")
    del ds.PixelData
    ds.save_as(folder / "IM0002", enforce_file_format=True)
    assert_load_fails(folder, "no image", name="IM0002")


def test_mixed_series(tmp_path):
    folder = write_series(tmp_path / "mixed", VOLUME)
    ds = pydicom.dcmread(folder / "IM0004")
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.save_as(folder / "IM0004", enforce_file_format=True)
    message = assert_load_fails(folder, "mixes 2 DICOM series")
    assert "IM0004" in message


def test_series_with_inconsistent_shapes(tmp_path):
    folder = write_series(tmp_path / "shapes", VOLUME)
    write_dicom(folder / "IM0003", rand((8, 11), np.int16), ImagePositionPatient=["1.5", "-2.0", "10.0600"],
                ImageOrientationPatient=AXIAL, PixelSpacing=["0.01", "0.01"])
    assert_load_fails(folder, "8 x 11 pixels", name="IM0003")


def test_series_with_inconsistent_pixel_spacing(tmp_path):
    folder = write_series(tmp_path / "spacing", VOLUME)
    ds = pydicom.dcmread(folder / "IM0005")
    ds.PixelSpacing = ["0.02", "0.01"]
    ds.save_as(folder / "IM0005", enforce_file_format=True)
    assert_load_fails(folder, "PixelSpacing", name="IM0005")


def test_series_with_a_missing_slice(tmp_path):
    folder = write_series(tmp_path / "gap", VOLUME)
    (folder / "IM0003").unlink()
    message = assert_load_fails(folder, "not uniform")
    assert "IM0002" in message and "IM0004" in message


def test_series_within_one_percent_is_uniform(tmp_path):
    folder = write_series(tmp_path / "jitter", VOLUME, gap_mm=1.0)
    ds = pydicom.dcmread(folder / "IM0003")
    ds.ImagePositionPatient = ["1.5", "-2.0", "13.0050"]  # 0.5 % off
    ds.save_as(folder / "IM0003", enforce_file_format=True)
    assert bi.load(folder).spacing_um[0] == pytest.approx(1000.0)


def test_series_with_duplicate_positions(tmp_path):
    folder = write_series(tmp_path / "dup", VOLUME)
    ds = pydicom.dcmread(folder / "IM0001")
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "IM0001_copy", enforce_file_format=True)
    assert_load_fails(folder, "same slice position")


def test_series_with_mixed_orientations(tmp_path):
    folder = write_series(tmp_path / "tilt", VOLUME)
    ds = pydicom.dcmread(folder / "IM0002")
    ds.ImageOrientationPatient = CORONAL
    ds.save_as(folder / "IM0002", enforce_file_format=True)
    assert_load_fails(folder, "different orientations")


def test_series_that_cannot_be_ordered(tmp_path):
    folder = tmp_path / "unordered"
    folder.mkdir()
    for i in range(3):
        write_dicom(folder / f"f{i}.dcm", VOLUME[i], PixelSpacing=["0.01", "0.01"])
    assert_load_fails(folder, "cannot order the slices")
