"""bi.load on unreadable, truncated and unsupported input: a BoneImgError naming the file."""

import gzip
import io
from pathlib import Path

import imagecodecs
import nibabel
import nrrd
import numpy as np
import PIL.Image
import pytest
import tifffile

import boneimg as bi
from boneimg.io import lazy as lazy_module
from conftest import assert_load_fails, listing, rand


def pillow_encode(data, fmt, **options):
    buffer = io.BytesIO()
    PIL.Image.fromarray(data).save(buffer, fmt, **options)
    return buffer.getvalue()


def cut_in_half(path):
    blob = Path(path).read_bytes()
    Path(path).write_bytes(blob[: len(blob) // 2])


# ---------------------------------------------------------------------------------------------
# Missing, empty and unrecognised files


@pytest.mark.parametrize("name", ["missing.tif", "missing_folder"])
def test_missing_path(tmp_path, name):
    message = assert_load_fails(tmp_path / name, "no such file")
    assert message.startswith(str(tmp_path / name))


@pytest.mark.parametrize("name", ["empty.tif", "empty.png", "empty.nii.gz", "empty.nrrd", "empty"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    message = assert_load_fails(path, "empty")
    assert message.startswith(str(path))


@pytest.mark.parametrize("name", ["noise.tif", "noise.png", "noise.jpg", "noise.nii", "noise.bin"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    assert_load_fails(path, "not a recognised image file")


@pytest.mark.parametrize("blob", [b"II", b"II*\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"NRRD0004\n"])
def test_file_with_only_a_magic_number(tmp_path, blob):
    path = tmp_path / "stub.img"
    path.write_bytes(blob)
    assert_load_fails(path)


def test_gzip_that_is_not_nifti(tmp_path):
    path = tmp_path / "image.tif.gz"
    path.write_bytes(gzip.compress(b"II*\x00" + bytes(500)))
    assert_load_fails(path, "not a recognised image file")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "vol.nii.gz"
    path.write_bytes(b"\x1f\x8b" + np.random.default_rng(2).bytes(400))
    assert_load_fails(path)


# ---------------------------------------------------------------------------------------------
# Truncated files


def test_truncated_real_png(tmp_path, shared_data):
    path = tmp_path / "image01.png"
    path.write_bytes((shared_data / "histology" / "cpm15" / "images" / "image01.png").read_bytes())
    cut_in_half(path)
    assert_load_fails(path, "truncated or corrupt")


@pytest.mark.parametrize(
    "fmt, encode",
    [
        ("png", imagecodecs.png_encode),
        ("jpg", lambda a: imagecodecs.jpeg8_encode(a, level=90)),
        ("jpeg-progressive", lambda a: pillow_encode(a, "JPEG", quality=90, progressive=True)),
        ("bmp", imagecodecs.bmp_encode),
    ],
)
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_raster(tmp_path, fmt, encode, fraction):
    y, x = np.mgrid[:128, :160]
    data = np.stack([y, x, (x + y) // 2], axis=-1).astype(np.uint8)
    blob = encode(data)
    path = tmp_path / f"image.{fmt}"
    path.write_bytes(blob[: int(len(blob) * fraction)])
    assert_load_fails(path, "truncated or corrupt")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression": "zlib"},
        {"tile": (32, 32)},
        {"tile": (32, 32), "compression": "zlib"},
        {"rowsperstrip": 8, "bigtiff": True},
    ],
)
def test_truncated_tiff(tmp_path, options):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, rand((128, 160), np.uint16), **options)
    cut_in_half(path)
    assert_load_fails(path, "truncated")


def test_truncated_stack_tiff(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, rand((6, 64, 64), np.uint8), photometric="minisblack")
    cut_in_half(path)
    assert_load_fails(path)


def test_truncated_pyramid(tmp_path):
    base = rand((256, 256), np.uint8)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(base, subifds=1, tile=(64, 64), metadata={"axes": "YX"})
        tw.write(base[::2, ::2], subfiletype=1, tile=(64, 64))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 2000])  # the end of the reduced level is lost
    assert_load_fails(path, "truncated", pixel_size_um=1)


def test_tiff_with_damaged_header(tmp_path):
    path = tmp_path / "header.tif"
    tifffile.imwrite(path, rand((32, 32), np.uint8))
    blob = bytearray(path.read_bytes())
    blob[4:8] = (10**9).to_bytes(4, "little")  # first IFD offset far past the end
    path.write_bytes(bytes(blob))
    assert_load_fails(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_nifti(tmp_path, monkeypatch, suffix, lazy):
    if lazy:
        monkeypatch.setattr(lazy_module, "LAZY_BYTES", 1000)
    path = tmp_path / f"vol{suffix}"
    nibabel.save(nibabel.Nifti1Image(rand((40, 40, 40), np.int16), np.eye(4)), str(path))
    cut_in_half(path)
    if not (lazy and suffix == ".nii.gz"):
        assert_load_fails(path, "truncated" if suffix == ".nii" else None)
        return
    # A gzip stream's length is known only once it is read: the lazy read names the file then.
    img = bi.load(path, pixel_size_um=1)
    with pytest.raises(bi.BoneImgError) as info:
        np.asarray(img.data)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_truncated_nrrd(tmp_path, encoding):
    path = tmp_path / "vol.nrrd"
    nrrd.write(str(path), rand((20, 30, 40), np.uint16), {"encoding": encoding}, index_order="C")
    cut_in_half(path)
    assert_load_fails(path)


@pytest.mark.parametrize(
    "header",
    [
        "NRRD0004\ntype: banana\ndimension: 2\nsizes: 4 4\nencoding: raw\n\n",
        "NRRD0004\ntype: uint8\ndimension: 2\nencoding: raw\n\n",  # no sizes
        "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4\nencoding: raw\n\n",  # sizes disagree
        "NRRD0004\ntype: uint8\ndimension: 2\nsizes: 4 x\nencoding: raw\n\n",
        "NRRD0004\ntype: uint8\ndimension: 2\nsizes: 4 4\nencoding: martian\n\n",
        "NRRD0004\ntype: uint8\ndimension: 2\nsizes: 4 4\nencoding: raw\ndata file: elsewhere.raw\n\n",
    ],
)
def test_corrupt_nrrd_header(tmp_path, header):
    path = tmp_path / "bad.nrrd"
    path.write_bytes(header.encode() + bytes(16))
    assert_load_fails(path, "NRRD")


# ---------------------------------------------------------------------------------------------
# Unsupported dimensions and data types


def write_imagej(path, data, axes):
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})


@pytest.mark.parametrize(
    "writer, shape, axes",
    [
        (write_imagej, (2, 3, 32, 32), "TZYX"),
        (write_imagej, (3, 2, 32, 32), "ZCYX"),
        (write_imagej, (2, 32, 32), "CYX"),
        (write_imagej, (5, 32, 32), "CYX"),
        (lambda p, d, a: tifffile.imwrite(p, d, photometric="minisblack"), (2, 3, 32, 32), None),
        (lambda p, d, a: tifffile.imwrite(p, d, photometric="minisblack", planarconfig="contig"), (32, 32, 2), None),
        (lambda p, d, a: tifffile.imwrite(p, d, photometric="minisblack", planarconfig="contig"), (32, 32, 5), None),
        (lambda p, d, a: tifffile.imwrite(p, d, ome=True, metadata={"axes": a}), (5, 32, 32), "CYX"),
        (lambda p, d, a: tifffile.imwrite(p, d, ome=True, metadata={"axes": a}), (2, 4, 32, 32), "TZYX"),
    ],
)
def test_unsupported_tiff_dimensions(tmp_path, writer, shape, axes):
    path = tmp_path / "hyper.tif"
    writer(path, rand(shape, np.uint8), axes)
    assert_load_fails(path, "not supported" if axes == "CYX" or shape[-1] in (2, 5) else "unsupported image dimensions")


@pytest.mark.parametrize("fmt", ["jpeg", "tiff"])
def test_cmyk_images(tmp_path, fmt):
    rgb = rand((20, 30, 3), np.uint8)
    path = tmp_path / f"print.{fmt}"
    if fmt == "jpeg":
        PIL.Image.fromarray(rgb).convert("CMYK").save(path, "JPEG")
    else:
        tifffile.imwrite(path, rand((20, 30, 4), np.uint8), photometric="separated")
    assert_load_fails(path, "CMYK")


@pytest.mark.parametrize(
    "shape, kinds",
    [
        ((20, 30, 2), ["2-vector", "domain", "domain"]),  # two channels
        ((4, 20, 30, 3), ["RGB-color", "domain", "domain", "domain"]),  # colour volume
        ((20, 3, 30), ["domain", "vector", "domain"]),  # vector axis in the middle, 3-D
        ((20, 30, 3, 3), ["3-vector", "3-vector", "domain", "domain"]),
        ((5, 20, 30), ["domain", "domain", "time"]),  # a 2-D time series is not a volume
    ],
)
def test_nrrd_with_non_spatial_axes(tmp_path, shape, kinds):
    path = tmp_path / "vectors.nrrd"
    nrrd.write(str(path), rand(shape, np.uint8), {"kinds": kinds}, index_order="C")
    assert_load_fails(path)


def test_four_d_nifti(tmp_path):
    path = tmp_path / "time.nii"
    nibabel.save(nibabel.Nifti1Image(rand((8, 8, 8, 3), np.int16), np.eye(4)), str(path))
    assert_load_fails(path, "only 2-D and 3-D")


def test_four_d_nrrd(tmp_path):
    path = tmp_path / "time.nrrd"
    nrrd.write(str(path), rand((2, 3, 4, 5), np.uint8), index_order="C")
    assert_load_fails(path, "only 2-D and 3-D")


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_tiff(tmp_path, dtype):
    path = tmp_path / "fft.tif"
    tifffile.imwrite(path, (np.arange(64) * (1 + 2j)).reshape(8, 8).astype(dtype))
    assert_load_fails(path, "unsupported pixel type")


def test_complex_nifti(tmp_path):
    path = tmp_path / "fft.nii"
    nibabel.save(nibabel.Nifti1Image((np.arange(64) * 1j).reshape(4, 4, 4).astype(np.complex64), np.eye(4)), str(path))
    assert_load_fails(path, "unsupported pixel type")


# ---------------------------------------------------------------------------------------------
# Folders


def test_empty_folder(tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    assert_load_fails(folder, "no image slices")


def test_folder_without_images(tmp_path):
    folder = tmp_path / "scan"
    folder.mkdir()
    (folder / "scan.log").write_text("Image Pixel Size (um)=9.000\n")
    (folder / "readme.txt").write_text("nothing here")
    assert_load_fails(folder, "no image slices")


def write_slices(folder, shapes):
    folder.mkdir()
    for i, shape in enumerate(shapes):
        tifffile.imwrite(folder / f"rec{i:04d}.tif", rand(shape, np.uint8, seed=i))


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("bad", [1, 5])
def test_folder_with_mismatched_slice(tmp_path, monkeypatch, lazy, bad):
    if lazy:
        monkeypatch.setattr(lazy_module, "LAZY_BYTES", 100)
    folder = tmp_path / "scan"
    shapes = [(20, 30)] * 6
    shapes[bad] = (20, 31)
    write_slices(folder, shapes)
    before = listing(tmp_path)
    with pytest.raises(bi.BoneImgError) as info:
        img = bi.load(folder, pixel_size_um=5)
        assert img.is_lazy == lazy
        np.asarray(img.data)  # the lazy path checks each slice when it is read
    assert f"rec{bad:04d}.tif" in str(info.value)
    assert "shape" in str(info.value)
    assert listing(tmp_path) == before


def test_folder_with_mismatched_dtype(tmp_path):
    folder = tmp_path / "scan"
    write_slices(folder, [(20, 30)] * 3)
    tifffile.imwrite(folder / "rec0002.tif", rand((20, 30), np.uint16))
    message = assert_load_fails(folder, "uint16", name="rec0002.tif", pixel_size_um=5)
    assert message.startswith(str(folder / "rec0002.tif"))


def test_folder_with_corrupt_slice(tmp_path):
    folder = tmp_path / "scan"
    write_slices(folder, [(20, 30)] * 4)
    cut_in_half(folder / "rec0003.tif")
    assert_load_fails(folder, "truncated", name="rec0003.tif", pixel_size_um=5)


def test_folder_of_colour_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(imagecodecs.png_encode(rand((10, 12, 3), np.uint8, seed=i)))
    assert_load_fails(folder, "greyscale", name="photos", pixel_size_um=1)


def test_folder_of_volumes(tmp_path):
    folder = tmp_path / "volumes"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"vol{i}.tif", rand((3, 10, 12), np.uint8, seed=i), photometric="minisblack")
    assert_load_fails(folder, "greyscale", name="volumes", pixel_size_um=1)


# ---------------------------------------------------------------------------------------------
# Bad arguments


@pytest.fixture
def grey_png(tmp_path):
    path = tmp_path / "grey.png"
    path.write_bytes(imagecodecs.png_encode(rand((20, 30), np.uint8)))
    return path


@pytest.mark.parametrize(
    "pixel_size_um",
    [
        *(0, -0.5, float("nan"), float("inf")),  # not a positive finite number
        *((0.5,), (0.5, 0.5, 0.5), []),  # wrong number of axes
        *((0.5, 0), (0.5, float("nan"))),  # one bad axis
        *("0.5", "abc", True, {"x": 1}),  # not numbers
    ],
)
def test_invalid_pixel_size(grey_png, pixel_size_um):
    message = assert_load_fails(grey_png, "pixel_size_um", pixel_size_um=pixel_size_um)
    assert message.startswith(str(grey_png))


@pytest.mark.parametrize("pixel_size_um", [(1, 1), 0, (1, 1, -1)])
def test_invalid_pixel_size_for_volume(tmp_path, pixel_size_um):
    path = tmp_path / "vol.nrrd"
    nrrd.write(str(path), rand((3, 4, 5), np.uint8), index_order="C")
    assert_load_fails(path, "pixel_size_um", pixel_size_um=pixel_size_um)


@pytest.mark.parametrize("modality", ["CT", "mri", "", 1])
def test_invalid_modality(grey_png, modality):
    message = assert_load_fails(grey_png, "modality", modality=modality)
    assert message.startswith(str(grey_png))
