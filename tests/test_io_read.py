"""bi.load on real files and on every supported format generated on the fly."""

import csv
import importlib
import io
import imagecodecs
import nibabel
import nrrd
import numpy as np
import PIL.Image
import pytest
import tifffile

import boneimg as bi
from boneimg.io import lazy as lazy_module
from conftest import listing, rand

load_module = importlib.import_module("boneimg.io.load")  # boneimg.io.load is also the function


def gradient_rgb(shape=(64, 80)):
    """A smooth RGB image, so that lossy JPEG stays within a few grey levels."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.stack([y * 3, x * 3, (x + y) * 2], axis=-1).astype(np.uint8)


def load_uncalibrated(path, **kwargs):
    with pytest.warns(bi.CalibrationWarning, match="pixel size unknown") as record:
        img = bi.load(path, **kwargs)
    assert str(path) in str(record[0].message)
    assert img.spacing_um is None and img.meta["spacing_source"] is None
    return img


def assert_ignored_calibration(path, data, axes, reason):
    """The file's spacing is refused with a warning and a note giving `reason`."""
    with pytest.warns(bi.CalibrationWarning, match=reason):
        img = bi.load(path)
    assert_image(img, data, axes, None)
    assert any(reason in note for note in img.meta["calibration_notes"])


def assert_image(img, data, axes, spacing):
    assert img.axes == axes
    assert img.shape == data.shape
    assert img.dtype == data.dtype
    np.testing.assert_array_equal(np.asarray(img.data), data)
    if spacing is None:
        assert img.spacing_um is None
    else:
        assert img.spacing_um == pytest.approx(spacing, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Real files in ../shared/data


def test_real_microct_nrrd(shared_data):
    img = bi.load(shared_data / "microct" / "shrew_trabecular_4.1um.nrrd")
    assert img.axes == "zyx"
    assert img.shape == (115, 114, 114)
    assert img.spacing_um == pytest.approx((4.1, 4.1, 4.1), abs=1e-6)
    assert img.modality == "ct"
    assert set(np.unique(img.data).tolist()) == {0, 255}
    assert img.meta["format"] == "nrrd"
    assert img.path == str(shared_data / "microct" / "shrew_trabecular_4.1um.nrrd")


def test_real_scanco_nifti(shared_data):
    img = bi.load(shared_data / "microct" / "scanco" / "test_nii.nii")
    assert img.axes == "zyx"
    assert img.shape == (25, 25, 25)
    # The README rounds to 60.68 µm; the header itself stores 0.0607 mm.
    assert img.spacing_um == pytest.approx((60.7, 60.7, 60.7), abs=1e-3)
    assert img.modality == "ct"


def test_real_he_png_without_pixel_size(shared_data):
    path = shared_data / "histology" / "cpm15" / "images" / "image01.png"
    img = load_uncalibrated(path)
    assert img.axes == "yxc"
    assert img.dtype == np.uint8
    assert img.shape == (488, 643, 3)
    assert img.modality == "brightfield"
    assert not img.is_lazy


def test_real_he_png_with_pixel_size(shared_data):
    img = bi.load(shared_data / "histology" / "cpm15" / "images" / "image01.png", pixel_size_um=0.5)
    assert img.spacing_um == (0.5, 0.5)
    assert img.meta["spacing_source"] == "user"


@pytest.mark.parametrize("index", range(1, 16))
def test_real_cpm15_labels_match_nuclei_count(shared_data, index):
    folder = shared_data / "histology" / "cpm15"
    with open(folder / "images.csv", newline="") as fh:
        rows = {row["image"]: row for row in csv.DictReader(fh)}
    row = rows[f"image{index:02d}.png"]
    labels = bi.load(folder / "labels" / row["labels"], pixel_size_um=float(row["um_per_px_approx"]))
    image = bi.load(folder / "images" / row["image"], pixel_size_um=float(row["um_per_px_approx"]))
    assert labels.axes == "yx"
    assert labels.dtype == np.uint16
    assert labels.shape == image.shape[:2]
    ids = np.unique(labels.data)
    assert ids[0] == 0
    assert len(ids) - 1 == int(row["n_nuclei"])


@pytest.mark.parametrize(
    "relpath, shape",
    [
        ("histology/bm_graz/images/BM_GRAZ_HE_0001_01.png", (1200, 1200, 3)),
        ("histology/bm_graz/images/BM_GRAZ_HE_0006_01.png", (1200, 1200, 3)),
        ("histology/crchisto/images/img1.png", (500, 500, 3)),
        ("histology/crchisto/images/img100.png", (500, 500, 3)),
        ("trap/osteoclast_culture_trap.png", (1440, 1920, 3)),
    ],
)
def test_real_rgb_pngs(shared_data, relpath, shape):
    img = bi.load(shared_data / relpath, pixel_size_um=0.37)
    assert img.axes == "yxc"
    assert img.dtype == np.uint8
    assert img.shape == shape
    assert img.modality == "brightfield"


def test_real_data_folder_untouched(shared_data):
    folder = shared_data / "microct"
    before = listing(folder)
    bi.load(folder / "shrew_trabecular_4.1um.nrrd")
    bi.load(folder / "scanco" / "test_nii.nii")
    assert listing(folder) == before


# ---------------------------------------------------------------------------------------------
# TIFF family


@pytest.mark.parametrize(
    "unit, xres, yres, expected",
    [
        ("CENTIMETER", 20000, 20000, (0.5, 0.5)),
        ("INCH", 50800, 50800, (0.5, 0.5)),
        ("MILLIMETER", 2000, 2000, (0.5, 0.5)),
        ("MICROMETER", 2, 2, (0.5, 0.5)),
        ("CENTIMETER", 20000, 10000, (1.0, 0.5)),  # anisotropic, (y, x) order
        ("INCH", 300, 300, (25400 / 300, 25400 / 300)),  # a real (scanner) dpi is kept
    ],
)
def test_tiff_resolution_tags(tmp_path, unit, xres, yres, expected):
    data = rand((40, 50))
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, data, resolution=(xres, yres), resolutionunit=unit)
    img = bi.load(path)
    assert_image(img, data, "yx", expected)
    assert img.meta["spacing_source"] == "TIFF resolution tags"
    assert img.modality is None
    assert img.levels == ()
    assert img.path == str(path)


@pytest.mark.parametrize(
    "unit, per_unit",
    [("INCH", 72), ("INCH", 96), ("CENTIMETER", 72 / 2.54), ("CENTIMETER", 28.3465), ("CENTIMETER", 37.7953)],
)
def test_tiff_default_dpi_is_not_a_pixel_size(tmp_path, unit, per_unit):
    data = rand((40, 50), np.uint8)
    path = tmp_path / "screen.tif"
    tifffile.imwrite(path, data, resolution=(per_unit, per_unit), resolutionunit=unit)
    assert_ignored_calibration(path, data, "yx", "default")


def test_tiff_near_default_dpi_per_cm_is_kept(tmp_path):
    data = rand((40, 50), np.uint8)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, data, resolution=(28.0, 28.0), resolutionunit="CENTIMETER")  # 90.7 dpi
    assert_image(bi.load(path), data, "yx", (1e4 / 28, 1e4 / 28))


def test_tiff_without_resolution_unit(tmp_path):
    data = rand((40, 50), np.uint8)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data, resolution=(3, 3), resolutionunit="NONE")
    assert_image(load_uncalibrated(path), data, "yx", None)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64, bool])
def test_tiff_dtypes_round_trip(tmp_path, dtype):
    data = rand((33, 47), dtype)
    path = tmp_path / "typed.tif"
    tifffile.imwrite(path, data)
    assert_image(bi.load(path, pixel_size_um=1.5), data, "yx", (1.5, 1.5))


@pytest.mark.parametrize("compression", [None, "zlib", "lzw", "zstd"])
@pytest.mark.parametrize("tile", [None, (16, 16)])
def test_tiff_compression_and_tiles_round_trip(tmp_path, compression, tile):
    data = rand((40, 50))
    path = tmp_path / "packed.tif"
    tifffile.imwrite(path, data, compression=compression, tile=tile, resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    assert_image(bi.load(path), data, "yx", (1.0, 1.0))


@pytest.mark.parametrize("unit, um_per_unit", [("um", 1.0), ("micron", 1.0), ("\\u00B5m", 1.0), ("mm", 1e3)])
def test_imagej_tiff_2d(tmp_path, unit, um_per_unit):
    data = rand((40, 50), np.uint8)
    px = 0.25 / um_per_unit  # 0.25 µm in the file's unit
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / px, 1 / px), metadata={"unit": unit})
    img = bi.load(path)
    assert_image(img, data, "yx", (0.25, 0.25))
    assert img.meta["tiff_kind"] == "imagej"
    assert img.meta["spacing_source"] == "ImageJ unit"


@pytest.mark.parametrize("unit, um_per_unit", [("um", 1.0), ("mm", 1e3)])
def test_imagej_tiff_zyx_stack(tmp_path, unit, um_per_unit):
    data = rand((6, 40, 50))
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(um_per_unit / 0.5, um_per_unit / 0.75),  # pixels per unit: x 0.5 µm, y 0.75 µm
        metadata={"unit": unit, "spacing": 2.5 / um_per_unit, "axes": "ZYX"},
    )
    img = bi.load(path)
    assert_image(img, data, "zyx", (2.5, 0.75, 0.5))
    assert img.modality == "ct"


@pytest.mark.parametrize("z_spacing", [None, 0.0, -2.5, float("nan")])
def test_imagej_stack_without_usable_z_spacing_is_uncalibrated(tmp_path, z_spacing):
    data = rand((3, 20, 30), np.uint8)
    path = tmp_path / "stack.tif"
    metadata = {"unit": "um", "axes": "ZYX"}
    if z_spacing is not None:
        metadata["spacing"] = z_spacing
    tifffile.imwrite(path, data, imagej=True, resolution=(2, 2), metadata=metadata)
    assert_image(load_uncalibrated(path), data, "zyx", None)
    assert bi.load(path, pixel_size_um=(3, 0.5, 0.5)).spacing_um == (3.0, 0.5, 0.5)


@pytest.mark.parametrize(
    "unit, size", [(None, 0.5), ("µm", 0.5), ("nm", 500.0), ("mm", 0.0005), ("cm", 0.00005)]
)
def test_ome_tiff_2d_units(tmp_path, unit, size):
    data = rand((40, 50))
    metadata = {"axes": "YX", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        metadata.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    img = bi.load(path)
    assert_image(img, data, "yx", (0.5, 0.5))
    assert img.meta["tiff_kind"] == "ome"
    assert img.meta["spacing_source"] == "OME PhysicalSize"


def test_ome_tiff_volume(tmp_path):
    data = rand((5, 40, 50), np.uint8)
    metadata = {
        "axes": "ZYX",
        "PhysicalSizeX": 0.5,
        "PhysicalSizeY": 750,
        "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.002,
        "PhysicalSizeZUnit": "mm",
    }
    path = tmp_path / "vol.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    assert_image(bi.load(path), data, "zyx", (2.0, 0.75, 0.5))


def test_ome_tiff_rgb(tmp_path):
    data = rand((40, 50, 3), np.uint8)
    path = tmp_path / "rgb.ome.tif"
    metadata = {"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
    tifffile.imwrite(path, data, ome=True, photometric="rgb", metadata=metadata)
    img = bi.load(path)
    assert_image(img, data, "yxc", (0.25, 0.25))
    assert img.modality == "brightfield"


def test_ome_tiff_single_plane_with_singleton_axes(tmp_path):
    data = rand((1, 1, 1, 40, 50))
    path = tmp_path / "tczyx.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    assert_image(bi.load(path), data[0, 0, 0], "yx", (0.5, 0.5))


def test_bigtiff(tmp_path):
    data = rand((40, 50), np.float32)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, bigtiff=True, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    img = bi.load(path)
    assert_image(img, data, "yx", (0.5, 0.5))
    assert img.meta["bigtiff"] is True


def test_planar_rgb_tiff(tmp_path):
    planes = rand((3, 40, 50), np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
    img = load_uncalibrated(path)
    assert img.meta["series_axes"] == "SYX"
    assert_image(img, np.moveaxis(planes, 0, -1), "yxc", None)


def test_contiguous_rgba_tiff(tmp_path):
    data = rand((40, 50, 4), np.uint8)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, data, photometric="rgb", extrasamples=["unassalpha"])
    assert_image(bi.load(path, pixel_size_um=0.5), data, "yxc", (0.5, 0.5))


def test_tiff_volume_without_metadata(tmp_path):
    data = rand((4, 20, 30))
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    assert_image(load_uncalibrated(path), data, "zyx", None)


def write_pyramid(path, base, *, mode="grey"):
    """An OME-TIFF with two reduced levels in SubIFDs; `mode` is "grey", "rgb" or "planar" (SYX)."""
    options = {"tile": (64, 64), "photometric": "minisblack" if mode == "grey" else "rgb"}
    if mode == "planar":
        options["planarconfig"] = "separate"
    axes = {"grey": "YX", "rgb": "YXS", "planar": "SYX"}[mode]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(base, subifds=2, metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}, **options)
        for step in (2, 4):
            reduced = base[:, ::step, ::step] if mode == "planar" else base[::step, ::step]
            tw.write(reduced, subfiletype=1, **options)


@pytest.mark.parametrize("mode", ["grey", "rgb", "planar"])
def test_pyramidal_ome_tiff(tmp_path, mode):
    base = rand({"grey": (256, 320), "rgb": (256, 320, 3), "planar": (3, 256, 320)}[mode], np.uint8)
    path = tmp_path / "pyramid.ome.tif"
    write_pyramid(path, base, mode=mode)
    if mode == "planar":
        base = np.moveaxis(base, 0, -1)
    img = bi.load(path)
    assert img.is_lazy
    assert img.axes == ("yx" if mode == "grey" else "yxc")
    assert img.n_levels == 3 and len(img.levels) == 3
    assert img.levels[0] is img.data
    for level, step in enumerate((1, 2, 4)):
        np.testing.assert_array_equal(np.asarray(img.levels[level]), base[::step, ::step])
    np.testing.assert_array_equal(np.asarray(img.data[100:120, 30:70]), base[100:120, 30:70])
    assert img.spacing_um == pytest.approx((0.5, 0.5))
    assert img.level_spacing_um(0) == pytest.approx((0.5, 0.5))
    assert img.level_spacing_um(1) == pytest.approx((1.0, 1.0))
    assert img.level_spacing_um(2) == pytest.approx((2.0, 2.0))


def test_svs_like_slide(tmp_path):
    base = rand((512, 768, 3), np.uint8)
    description = (
        "Aperio Image Library v12.0.15 \r\n768x512 [0,0 768x512] (256x256) RAW/RGB Q=70"
        "|AppMag = 40|StripeWidth = 1000|ScanScope ID = SS1234|MPP = 0.2520|Filename = fake"
    )
    path = tmp_path / "slide.svs"
    aperio = "Aperio Image Library v12.0.15\r\n"
    with tifffile.TiffWriter(path) as tw:
        options = {"photometric": "rgb", "metadata": None}
        tw.write(base, tile=(256, 256), description=description, **options)  # baseline
        tw.write(base[::8, ::8], description=aperio + "thumbnail", **options)
        tw.write(base[::4, ::4], tile=(64, 64), description=aperio + "level", **options)
        tw.write(base[::16, ::16], subfiletype=1, description=aperio + "label", **options)
    img = bi.load(path)
    assert img.meta["tiff_kind"] == "svs"
    assert img.axes == "yxc"
    assert img.spacing_um == pytest.approx((0.252, 0.252))
    assert img.meta["spacing_source"] == "Aperio MPP"
    assert img.is_lazy and len(img.levels) == 2
    np.testing.assert_array_equal(np.asarray(img.data), base)
    np.testing.assert_array_equal(np.asarray(img.levels[1]), base[::4, ::4])
    assert img.level_spacing_um(1) == pytest.approx((1.008, 1.008))


def test_large_tiff_is_read_lazily(tmp_path, monkeypatch):
    monkeypatch.setattr(lazy_module, "LAZY_BYTES", 1000)
    data = rand((64, 80))
    path = tmp_path / "large.tif"
    tifffile.imwrite(path, data, tile=(32, 32), resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    img = bi.load(path)
    assert img.is_lazy
    assert img.levels == ()  # a single resolution has no pyramid levels
    assert_image(img, data, "yx", (1.0, 1.0))


@pytest.mark.parametrize("level", [0, 1])
def test_corrupt_tile_in_lazy_pyramid_names_the_file(tmp_path, level):
    base = rand((256, 320), np.uint8)
    path = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        options = {"tile": (64, 64), "compression": "zlib"}
        tw.write(base, subifds=1, metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}, **options)
        tw.write(base[::2, ::2], subfiletype=1, **options)
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].pages[0]
        offset, count = page.dataoffsets[1], page.databytecounts[1]  # the second tile of the top row
    blob = bytearray(path.read_bytes())
    blob[offset : offset + count] = bytes(count)  # zeros are not a zlib stream
    path.write_bytes(bytes(blob))
    img = bi.load(path)  # the structure is intact: nothing is decoded yet
    assert img.is_lazy
    np.testing.assert_array_equal(np.asarray(img.levels[level][:64, :64]), base[::1 + level, ::1 + level][:64, :64])
    with pytest.raises(bi.BoneImgError) as info:
        np.asarray(img.levels[level][:64, 64:128])
    assert str(path) in str(info.value) and "corrupt" in str(info.value)


# ---------------------------------------------------------------------------------------------
# PNG, JPEG, BMP


@pytest.mark.parametrize(
    "shape, dtype, axes",
    [
        ((40, 50), np.uint8, "yx"),
        ((40, 50), np.uint16, "yx"),
        ((40, 50, 3), np.uint8, "yxc"),
        ((40, 50, 4), np.uint8, "yxc"),
        ((40, 50, 3), np.uint16, "yxc"),
        ((40, 50, 4), np.uint16, "yxc"),
    ],
)
def test_png_round_trip(tmp_path, shape, dtype, axes):
    data = rand(shape, dtype)
    path = tmp_path / "image.png"
    path.write_bytes(imagecodecs.png_encode(data))
    img = load_uncalibrated(path)
    assert_image(img, data, axes, None)
    assert img.meta["format"] == "png"


def test_png_grey_alpha_keeps_grey(tmp_path):
    data = rand((40, 50, 2), np.uint8)
    path = tmp_path / "la.png"
    path.write_bytes(imagecodecs.png_encode(data))
    assert_image(bi.load(path, pixel_size_um=1), data[..., 0], "yx", (1.0, 1.0))


@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_approximately(tmp_path, grey):
    data = gradient_rgb()
    if grey:
        data = data[..., 1].copy()
    path = tmp_path / "photo.jpg"
    path.write_bytes(imagecodecs.jpeg8_encode(data, level=95))
    img = load_uncalibrated(path)
    assert img.axes == ("yx" if grey else "yxc")
    assert img.shape == data.shape and img.dtype == np.uint8
    assert np.abs(img.data.astype(int) - data).mean() < 2
    assert img.meta["format"] == "jpeg"


@pytest.mark.parametrize("variant", ["progressive", "trailing-bytes", "exif-thumbnail"])
def test_jpeg_variants(tmp_path, variant):
    data = gradient_rgb()
    buffer = io.BytesIO()
    if variant == "exif-thumbnail":  # an embedded JPEG thumbnail has its own markers
        thumb = io.BytesIO()
        PIL.Image.fromarray(data[::4, ::4]).save(thumb, "JPEG")
        exif = PIL.Image.Exif()
        exif[0x010E] = "H&E section"
        PIL.Image.fromarray(data).save(buffer, "JPEG", quality=95, exif=exif.tobytes() + thumb.getvalue())
    else:
        PIL.Image.fromarray(data).save(buffer, "JPEG", quality=95, progressive=variant == "progressive")
    blob = buffer.getvalue() + (bytes(100) if variant == "trailing-bytes" else b"")
    path = tmp_path / "photo.jpg"
    path.write_bytes(blob)
    img = bi.load(path, pixel_size_um=1)
    assert img.axes == "yxc" and img.shape == data.shape
    assert np.abs(img.data.astype(int) - data).mean() < 2


@pytest.mark.parametrize("shape, axes", [((40, 50), "yx"), ((40, 50, 3), "yxc"), ((41, 53, 3), "yxc")])
def test_bmp_round_trip(tmp_path, shape, axes):
    data = rand(shape, np.uint8)
    path = tmp_path / "image.bmp"
    path.write_bytes(imagecodecs.bmp_encode(data))
    assert_image(bi.load(path, pixel_size_um=2), data, axes, (2.0, 2.0))


@pytest.mark.parametrize(
    "content, name",
    [("png", "actually_png.tif"), ("tiff", "actually_tiff.png"), ("jpeg", "actually_jpeg.png"), ("bmp", "noext")],
)
def test_mislabelled_files_are_read_by_content(tmp_path, content, name):
    data = gradient_rgb()
    path = tmp_path / name
    if content == "tiff":
        tifffile.imwrite(path, data, photometric="rgb", resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    else:
        encode = {"png": imagecodecs.png_encode, "jpeg": imagecodecs.jpeg8_encode, "bmp": imagecodecs.bmp_encode}
        path.write_bytes(encode[content](data))
    img = bi.load(path, pixel_size_um=1.0)
    assert img.meta["format"] == content
    assert img.axes == "yxc" and img.shape == data.shape
    if content != "jpeg":
        np.testing.assert_array_equal(img.data, data)


# ---------------------------------------------------------------------------------------------
# NRRD and NIfTI

VOLUME = rand((5, 6, 7), np.int16, seed=3)  # (z, y, x)


@pytest.mark.parametrize("encoding", ["raw", "gzip", "ascii"])
@pytest.mark.parametrize(
    "header",
    [
        {"space dimension": 3, "space directions": np.diag([0.01, 0.02, 0.03]), "space units": ["mm", "mm", "mm"]},
        {"space dimension": 3, "space directions": np.diag([10.0, 20.0, 30.0]), "space units": ["microns"] * 3},
        {"spacings": [10.0, 20.0, 30.0], "units": ["um", "um", "um"]},
    ],
    ids=["directions-mm", "directions-microns", "spacings-units"],
)
def test_nrrd_volume(tmp_path, header, encoding):
    path = tmp_path / "vol.nrrd"
    nrrd.write(str(path), VOLUME, {**header, "encoding": encoding}, index_order="C")
    img = bi.load(path)
    # NRRD lists axes x, y, z; boneimg returns (z, y, x).
    assert_image(img, VOLUME, "zyx", (30.0, 20.0, 10.0))
    assert img.meta["spacing_source"] == "NRRD header"
    assert img.modality == "ct"


def test_nrrd_anatomical_space_defaults_to_mm(tmp_path):
    path = tmp_path / "lps.nrrd"
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.01, 0.02, 0.03])}
    nrrd.write(str(path), VOLUME, header, index_order="C")
    img = bi.load(path)
    assert_image(img, VOLUME, "zyx", (30.0, 20.0, 10.0))
    assert any("millimetres" in note for note in img.meta["calibration_notes"])


def test_nrrd_spacings_without_units_are_uncalibrated(tmp_path):
    path = tmp_path / "nounits.nrrd"
    nrrd.write(str(path), VOLUME, {"spacings": [1.0, 2.0, 3.0]}, index_order="C")
    assert_ignored_calibration(path, VOLUME, "zyx", "no unit")


def test_nrrd_2d(tmp_path):
    data = rand((20, 30), np.uint8)
    path = tmp_path / "slice.nrrd"
    nrrd.write(str(path), data, {"spacings": [0.5, 0.25], "units": ["um", "um"]}, index_order="C")
    assert_image(bi.load(path), data, "yx", (0.25, 0.5))


def test_nrrd_single_slice_is_2d(tmp_path):
    data = rand((1, 20, 30), np.uint16)
    path = tmp_path / "one.nrrd"
    nrrd.write(str(path), data, {"spacings": [0.5, 0.25, 4.0], "units": ["um"] * 3}, index_order="C")
    img = bi.load(path)
    assert_image(img, data[0], "yx", (0.25, 0.5))
    assert img.modality is None


@pytest.mark.parametrize("units_field", ["space units", "units"])
def test_nrrd_rgb_image(tmp_path, units_field):
    data = rand((20, 30, 3), np.uint8)  # C order (y, x, rgb); the file lists rgb, x, y
    header = {"kinds": ["RGB-color", "domain", "domain"]}
    if units_field == "space units":
        directions = np.array([[np.nan, np.nan], [0.5, 0], [0, 0.25]])  # "none" for the colour axis
        header.update({"space dimension": 2, "space directions": directions, "space units": ["um", "um"]})
    else:
        header.update({"spacings": [np.nan, 0.5, 0.25], "units": ["", "um", "um"]})
    path = tmp_path / "rgb.nrrd"
    nrrd.write(str(path), data, header, index_order="C")
    img = bi.load(path)
    assert_image(img, data, "yxc", (0.25, 0.5))
    assert img.modality == "brightfield"


def test_nrrd_detached_header(tmp_path):
    path = tmp_path / "vol.nhdr"
    header = {"spacings": [10.0, 20.0, 30.0], "units": ["um"] * 3, "encoding": "raw"}
    nrrd.write(str(path), VOLUME, header, index_order="C")
    assert_image(bi.load(path), VOLUME, "zyx", (30.0, 20.0, 10.0))


def write_nifti(path, array_xyz, zooms, unit="mm"):
    img = nibabel.Nifti1Image(array_xyz, np.diag([*zooms, 1.0, 1.0][:3] + [1.0]))
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units(xyz=unit)
    nibabel.save(img, str(path))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_volume_axis_order(tmp_path, suffix):
    array_xyz = rand((7, 6, 5), np.int16, seed=4)  # nibabel order (x, y, z)
    path = tmp_path / f"vol{suffix}"
    write_nifti(path, array_xyz, (0.01, 0.02, 0.03))
    img = bi.load(path)
    assert_image(img, array_xyz.T, "zyx", (30.0, 20.0, 10.0))
    assert img.meta["format"] == "nifti"


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_2d(tmp_path, suffix):
    array_xy = rand((7, 6), np.uint8, seed=5)
    path = tmp_path / f"slice{suffix}"
    write_nifti(path, array_xy, (0.01, 0.02))
    assert_image(bi.load(path), array_xy.T, "yx", (20.0, 10.0))


def test_nifti_2d_stored_with_singleton_z(tmp_path):
    array_xyz = rand((7, 6, 1), np.uint8, seed=6)
    path = tmp_path / "slice.nii"
    write_nifti(path, array_xyz, (0.01, 0.02, 0.5))
    assert_image(bi.load(path), array_xyz[..., 0].T, "yx", (20.0, 10.0))


@pytest.mark.parametrize("unit, expected", [("micron", (3.0, 2.0, 1.0)), ("meter", (3e6, 2e6, 1e6))])
def test_nifti_units(tmp_path, unit, expected):
    array_xyz = rand((4, 5, 6), np.uint8, seed=7)
    path = tmp_path / "vol.nii"
    write_nifti(path, array_xyz, (1.0, 2.0, 3.0), unit=unit)
    assert_image(bi.load(path), array_xyz.T, "zyx", expected)


def test_nifti2_and_nifti_pair(tmp_path):
    array_xyz = rand((7, 6, 5), np.uint16, seed=10)
    affine = np.diag([0.01, 0.02, 0.03, 1.0])
    for image_class, name in [(nibabel.Nifti2Image, "vol2.nii"), (nibabel.Nifti1Pair, "pair.img")]:
        image = image_class(array_xyz, affine)
        image.header.set_xyzt_units(xyz="mm")
        nibabel.save(image, str(tmp_path / name))
    assert_image(bi.load(tmp_path / "vol2.nii"), array_xyz.T, "zyx", (30.0, 20.0, 10.0))
    assert_image(bi.load(str(tmp_path / "pair.hdr")), array_xyz.T, "zyx", (30.0, 20.0, 10.0))


def test_nifti_unknown_unit_is_uncalibrated(tmp_path):
    array_xyz = rand((4, 5, 6), np.uint8, seed=8)
    path = tmp_path / "vol.nii"
    write_nifti(path, array_xyz, (1.0, 2.0, 3.0), unit="unknown")
    img = load_uncalibrated(path)
    np.testing.assert_array_equal(img.data, array_xyz.T)
    assert img.meta["calibration_notes"]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("scaled", [False, True])
def test_large_nifti_is_read_lazily(tmp_path, monkeypatch, suffix, scaled):
    monkeypatch.setattr(lazy_module, "LAZY_BYTES", 1000)
    array_xyz = rand((9, 8, 7), np.int16, seed=11)
    path = tmp_path / f"big{suffix}"
    image = nibabel.Nifti1Image(array_xyz, np.diag([0.01, 0.02, 0.03, 1.0]))
    image.header.set_xyzt_units(xyz="mm")
    if scaled:
        image.header.set_slope_inter(0.5, -10.0)
    nibabel.save(image, str(path))
    img = bi.load(path)
    assert img.is_lazy
    expected = array_xyz.T * 0.5 - 10.0 if scaled else array_xyz.T
    assert img.dtype == (np.float64 if scaled else np.int16)
    assert_image(img, expected.astype(img.dtype), "zyx", (30.0, 20.0, 10.0))


def test_small_nifti_is_read_at_once(tmp_path):
    path = tmp_path / "small.nii"
    write_nifti(path, rand((7, 6, 5), np.int16, seed=12), (0.01, 0.01, 0.01))
    assert not bi.load(path).is_lazy


@pytest.mark.parametrize("fmt", ["nrrd", "nifti", "tiff"])
def test_big_endian_files_come_back_in_native_byte_order(tmp_path, fmt):
    path = tmp_path / f"big_endian.{ {'nifti': 'nii'}.get(fmt, fmt)}"
    if fmt == "nrrd":
        nrrd.write(str(path), VOLUME.astype(">i2"), {"encoding": "raw"}, index_order="C")
    elif fmt == "nifti":
        header = nibabel.Nifti1Header(endianness=">")
        header.set_data_dtype(np.int16)
        nibabel.save(nibabel.Nifti1Image(VOLUME.T, np.eye(4), header=header), str(path))
    else:
        tifffile.imwrite(path, VOLUME, byteorder=">", photometric="minisblack")
    img = bi.load(path, pixel_size_um=1)
    assert img.dtype == np.int16  # False for ">i2" on little-endian machines
    assert img.dtype.isnative
    np.testing.assert_array_equal(img.data, VOLUME)


# ---------------------------------------------------------------------------------------------
# Folders of slices

N_SLICES = 12


def write_slices(folder, fmt, shape=(20, 30), n=N_SLICES):
    """rec0 ... rec11, each slice filled with its index plus a fixed random texture."""
    folder.mkdir(exist_ok=True)
    texture = rand(shape, np.uint8, seed=9) // 16
    volume = np.stack([texture + 10 * i for i in range(n)]).astype(np.uint8)
    for i, plane in enumerate(volume):
        path = folder / f"rec{i}.{fmt}"
        if fmt in ("tif", "tiff"):
            tifffile.imwrite(path, plane)
        else:
            path.write_bytes({"png": imagecodecs.png_encode, "bmp": imagecodecs.bmp_encode}[fmt](plane))
    # A preview of another name pattern, a colour one at that, and a non-image file: not slices.
    (folder / "preview_spr.bmp").write_bytes(imagecodecs.bmp_encode(rand((8, 8, 3), np.uint8)))
    (folder / "notes.txt").write_text("not an image")
    return volume


SKYSCAN_LOG = "[System]\r\nScanner=Skyscan1172\r\n[Acquisition]\r\nImage Pixel Size (um)=9.000\r\nExposure (ms)=600\r\n"


@pytest.mark.parametrize("fmt", ["bmp", "tif", "png"])
@pytest.mark.parametrize("with_log", [False, True])
def test_slice_folder_natural_order(tmp_path, fmt, with_log):
    folder = tmp_path / "rec"
    volume = write_slices(folder, fmt)
    if with_log:
        (folder / "scan_rec.log").write_text(SKYSCAN_LOG, newline="")
    before = listing(folder)
    if with_log:
        img = bi.load(folder)
        assert img.spacing_um == (9.0, 9.0, 9.0)
        assert img.meta["spacing_source"] == "SkyScan log (scan_rec.log, [Acquisition] Image Pixel Size (um))"
    else:
        img = load_uncalibrated(folder)
        assert img.meta["calibration_notes"]
    assert_image(img, volume, "zyx", img.spacing_um)
    assert [int(v) for v in img.data[:, 0, 0] - img.data[0, 0, 0]] == [10 * i for i in range(N_SLICES)]
    assert img.meta["n_slices"] == N_SLICES
    assert (img.meta["first_slice"], img.meta["last_slice"]) == (f"rec0.{fmt}", f"rec{N_SLICES - 1}.{fmt}")
    assert img.meta["ignored_files"] == ["preview_spr.bmp"]
    assert img.modality == "ct"
    assert img.path == str(folder)
    assert listing(folder) == before


def test_slice_folder_zero_padded_names(tmp_path):
    folder = tmp_path / "padded"
    folder.mkdir()
    for i in (10, 2, 1, 100):
        tifffile.imwrite(folder / f"scan_{i:05d}.tif", np.full((4, 5), i, np.uint16))
    img = bi.load(folder, pixel_size_um=3)
    assert img.data[:, 0, 0].tolist() == [1, 2, 10, 100]


SKYSCAN_REC_LOG = """[System]
Scanner=Skyscan1272
Camera Pixel Size (um)=   7.4000
[Acquisition]
Number Of Files=  901
Source Voltage (kV)=  60
Image Pixel Size (um)=    9.000077
Object to Source (mm)=56.117
[Reconstruction]
Reconstruction Program=NRecon
Result File Type=BMP
Pixel Size (um)=18.00015
Cross Section to Image Ratio=1.000
"""


@pytest.mark.parametrize("one_log", [True, False])
def test_skyscan_reconstructed_pixel_size_wins(tmp_path, one_log):
    folder = tmp_path / "rec"
    volume = write_slices(folder, "bmp")
    if one_log:
        (folder / "tibia_rec.log").write_text(SKYSCAN_REC_LOG.replace("\n", "\r\n"), newline="")
    else:  # the acquisition log sorts first; its [Acquisition] size must still lose
        (folder / "tibia.log").write_text(SKYSCAN_REC_LOG.split("[Reconstruction]")[0])
        (folder / "tibia_rec.log").write_text("[Reconstruction]\n" + SKYSCAN_REC_LOG.split("[Reconstruction]\n")[1])
    img = bi.load(folder)
    assert_image(img, volume, "zyx", (18.00015,) * 3)
    assert img.meta["spacing_source"] == "SkyScan log (tibia_rec.log, [Reconstruction] Pixel Size (um))"
    assert any("differs from the projections' 9.00008 µm" in note for note in img.meta["calibration_notes"])


def test_skyscan_camera_pixel_size_is_not_the_voxel_size(tmp_path):
    folder = tmp_path / "rec"
    write_slices(folder, "png")
    (folder / "scan.log").write_text("[System]\nCamera Pixel Size (um)=7.4\n")
    img = load_uncalibrated(folder)
    assert img.meta["calibration_notes"]


def test_slice_folder_pattern_tie_is_decided_by_name(tmp_path):
    folder = tmp_path / "tie"
    folder.mkdir()
    for prefix, value in (("rec", 1), ("proj", 2), ("alpha_", 3)):  # three patterns of two files each
        for i in range(2):
            tifffile.imwrite(folder / f"{prefix}{i}.tif", np.full((4, 5), value + 10 * i, np.uint8))
    img = bi.load(folder, pixel_size_um=1)
    assert img.meta["first_slice"] == "alpha_0.tif"
    assert img.data[:, 0, 0].tolist() == [3, 13]
    assert img.meta["ignored_files"] == ["proj0.tif", "proj1.tif", "rec0.tif", "rec1.tif"]


def test_slice_folder_read_lazily(tmp_path, monkeypatch):
    monkeypatch.setattr(lazy_module, "LAZY_BYTES", 100)
    folder = tmp_path / "rec"
    volume = write_slices(folder, "bmp")
    img = bi.load(folder, pixel_size_um=(9, 4, 4))
    assert img.is_lazy
    assert_image(img, volume, "zyx", (9.0, 4.0, 4.0))


@pytest.mark.parametrize(
    "override, expected",
    [
        (5, (5.0, 5.0, 5.0)),
        ((1, 2, 3), (1.0, 2.0, 3.0)),
        ([1.5, 2, 2], (1.5, 2.0, 2.0)),
        (np.array([3.0, 1.0, 1.0]), (3.0, 1.0, 1.0)),
        (np.float32(2.5), (2.5, 2.5, 2.5)),
    ],
)
@pytest.mark.parametrize("source", ["nrrd", "folder"])
def test_pixel_size_override_for_volumes(tmp_path, override, expected, source):
    if source == "nrrd":
        path = tmp_path / "vol.nrrd"
        nrrd.write(str(path), VOLUME, {"spacings": [10.0, 20.0, 30.0], "units": ["um"] * 3}, index_order="C")
    else:
        path = tmp_path / "rec"
        write_slices(path, "tif")
    img = bi.load(path, pixel_size_um=override)
    assert img.spacing_um == expected
    assert img.meta["spacing_source"] == "user"


def test_pixel_size_override_beats_file_calibration(tmp_path):
    data = rand((40, 50))
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, data, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    img = bi.load(path, pixel_size_um=(0.3, 0.4))
    assert img.spacing_um == (0.3, 0.4)
    assert img.meta["spacing_source"] == "user"


@pytest.mark.parametrize("override, modality", [(-1, None), ((1, 2, 3, 4), None), ((0.5,), None), (1, "mri")])
def test_bad_arguments_are_refused_before_reading(tmp_path, monkeypatch, override, modality):
    path = tmp_path / "vol.nrrd"
    nrrd.write(str(path), VOLUME, index_order="C")

    def must_not_read(*args, **kwargs):
        raise AssertionError("the volume was read before the arguments were checked")

    monkeypatch.setitem(load_module._VOLUME_READERS, "nrrd", must_not_read)
    with pytest.raises(bi.BoneImgError, match="pixel_size_um|modality"):
        bi.load(path, pixel_size_um=override, modality=modality)


@pytest.mark.parametrize(
    "shape, modality, expected",
    [
        ((40, 50), None, None),
        ((40, 50), "radiograph", "radiograph"),
        ((40, 50), "ct", "ct"),
        ((40, 50, 3), None, "brightfield"),
        ((4, 40, 50), None, "ct"),
        ((4, 40, 50), "brightfield", "brightfield"),
    ],
)
def test_modality(tmp_path, shape, modality, expected):
    path = tmp_path / "image.tif"
    photometric = "rgb" if shape[-1] == 3 else "minisblack"
    tifffile.imwrite(path, rand(shape, np.uint8), photometric=photometric)
    assert bi.load(path, pixel_size_um=1, modality=modality).modality == expected


@pytest.mark.parametrize("kind", ["tiff", "png", "nrrd", "nifti", "pyramid", "folder"])
def test_loading_writes_nothing_beside_the_input(tmp_path, kind):
    folder = tmp_path / "input"
    folder.mkdir()
    if kind == "tiff":
        path = folder / "a.tif"
        tifffile.imwrite(path, rand((20, 30)))
    elif kind == "png":
        path = folder / "a.png"
        path.write_bytes(imagecodecs.png_encode(rand((20, 30, 3), np.uint8)))
    elif kind == "nrrd":
        path = folder / "a.nrrd"
        nrrd.write(str(path), VOLUME, index_order="C")
    elif kind == "nifti":
        path = folder / "a.nii.gz"
        write_nifti(path, VOLUME.T, (1.0, 1.0, 1.0))
    elif kind == "pyramid":
        path = folder / "a.ome.tif"
        write_pyramid(path, rand((256, 320), np.uint8))
    else:
        path = folder / "rec"
        write_slices(path, "png")
    before = listing(tmp_path)
    img = bi.load(path, pixel_size_um=1.0)
    np.asarray(img.data).sum()
    for level in img.levels:
        np.asarray(level).sum()
    assert listing(tmp_path) == before
