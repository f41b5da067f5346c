import json

import numpy as np
import pandas as pd
import pytest
import tifffile

import boneimg as bi
from boneimg.io.atomic import atomic_path
from boneimg.io.write import read_table, save_image, save_labels, save_table


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint16, np.int32, np.uint32])
def test_labels_round_trip_with_spacing(tmp_path, dtype):
    labels = np.zeros((4, 20, 30), dtype)
    labels[1, 5:9, 3:7] = 1
    labels[2, 10:12, 20:25] = True if dtype is np.bool_ else 7
    path = tmp_path / "labels.ome.tif"
    save_labels(path, labels, (12.0, 2.5, 2.5), source="in.nrrd", parameters={"threshold": 90})
    image = bi.load(path)
    assert image.spacing_um == (12.0, 2.5, 2.5)
    np.testing.assert_array_equal(image.data, labels.astype(image.dtype))
    with tifffile.TiffFile(path) as tif:
        assert '"threshold": 90' in tif.ome_metadata.replace("&quot;", '"')
        assert f"boneimg {bi.__version__}" in tif.ome_metadata


def test_labels_reject_floats_and_4d(tmp_path):
    with pytest.raises(bi.BoneImgError, match="labels.tif"):
        save_labels(tmp_path / "labels.tif", np.zeros((5, 5), np.float32), 1.0)
    with pytest.raises(bi.BoneImgError, match="2-D or 3-D"):
        save_labels(tmp_path / "labels.tif", np.zeros((2, 2, 5, 5), np.uint8), 1.0)
    assert list(tmp_path.iterdir()) == []


def test_save_image_pyramid(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (512, 640, 3), dtype=np.uint8)
    path = tmp_path / "scan.ome.tif"
    save_image(path, bi.Image(rgb, "yxc", (0.25, 0.25)), pyramid_levels=2)
    image = bi.load(path)
    assert image.n_levels == 3 and image.is_lazy
    assert image.level_spacing_um(2) == (1.0, 1.0)
    np.testing.assert_array_equal(image.data.compute(), rgb)
    np.testing.assert_array_equal(image.levels[1].compute(), rgb[::2, ::2])


def test_save_image_needs_spacing(tmp_path):
    with pytest.raises(bi.BoneImgError, match="pixel size is unknown"):
        save_image(tmp_path / "x.ome.tif", bi.Image(np.zeros((4, 4), np.uint8), "yx"))


def test_table_round_trip_keeps_hash_in_values(tmp_path):
    table = pd.DataFrame({"path": ["a#1.tif", "b.tif"], "area_um2": [1.5, 2.0]})
    path = tmp_path / "t.csv"
    save_table(path, table, source="study", parameters={"k": 2})
    lines = path.read_text().splitlines()
    assert lines[0] == f"# software: boneimg {bi.__version__}"
    assert json.loads(lines[3].split(": ", 1)[1]) == {"k": 2}
    pd.testing.assert_frame_equal(read_table(path), table)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_save_image_keeps_modality(tmp_path):
    path = tmp_path / "xray.ome.tif"
    save_image(path, bi.Image(np.zeros((16, 16), np.uint16), "yx", (20.0, 20.0), "radiograph"))
    image = bi.load(path)
    assert image.modality == "radiograph"
    assert image.meta["provenance"]["software"] == f"boneimg {bi.__version__}"
