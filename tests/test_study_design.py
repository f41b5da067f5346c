"""Study designs (tables and folder layouts), settings files and the output-folder rule."""

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import boneimg as bi
from boneimg.study.design import check_out_dir, choose_control, read_design
from boneimg.study.settings import resolve_settings


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_layout_gives_group_and_animal(tmp_path):
    root = tmp_path / "study"
    for rel in ["vehicle/M1/a.tif", "vehicle/M1/b.PNG", "vehicle/M2/c.ome.tif", "drug/M3/d.nii.gz",
                "drug/M3/scan_rec/slice0001.bmp", "drug/M3/notes.txt", "drug/M3/.hidden.tif", "readme.md"]:
        touch(root / rel)
    design, source = read_design(root)
    assert source == str(root)
    rows = design[["group", "animal"]].values.tolist()
    names = [Path(p).name for p in design["path"]]
    # groups and animals in name order; a sub-folder is one image (a slice stack); notes are skipped
    assert names == ["d.nii.gz", "scan_rec", "a.tif", "b.PNG", "c.ome.tif"]
    assert rows == [["drug", "M3"]] * 2 + [["vehicle", "M1"]] * 2 + [["vehicle", "M2"]]
    assert all(os.path.isabs(p) for p in design["path"])
    assert choose_control(design, None) == ("drug", "the first group in the design")


def test_csv_design_paths_are_relative_to_the_table(tmp_path):
    touch(tmp_path / "img" / "a.tif")
    (tmp_path / "design.csv").write_text(
        "Path, Animal ,Group,bone,modality,pixel_size_um\n"
        "img/a.tif,7,veh,left,X-ray,12.5\n"
        "img/b.tif,8,veh,,,\n")
    design, source = read_design(tmp_path / "design.csv")
    assert source == str(tmp_path / "design.csv")
    assert design["path"].tolist() == [str(tmp_path / "img" / "a.tif"), str(tmp_path / "img" / "b.tif")]
    assert design["animal"].tolist() == ["7", "8"]  # ids stay text: "007" is not 7
    assert design["modality"].tolist() == ["radiograph", ""]
    assert design["pixel_size_um"].iloc[0] == 12.5 and math.isnan(design["pixel_size_um"].iloc[1])
    assert design["bone"].tolist() == ["left", ""]


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"path": ["a"], "group": ["g"]}), "missing animal"),
    (pd.DataFrame({"path": ["a", "b"], "animal": ["1", ""], "group": ["g", "g"]}), "row 2 has no animal"),
    (pd.DataFrame({"path": ["a", "./a"], "animal": ["1", "2"], "group": ["g", "g"]}), "a second time"),
    (pd.DataFrame({"path": ["a"], "animal": ["1"], "group": ["g"], "modality": ["mri"]}),
     "unknown modality 'mri'"),
    (pd.DataFrame({"path": ["a"], "animal": ["1"], "group": ["g"], "pixel_size_um": [-2.0]}),
     "pixel_size_um must be a positive number"),
    (pd.DataFrame({"path": [], "animal": [], "group": []}), "lists no images"),
])
def test_bad_designs_are_refused_with_the_row(table, message):
    with pytest.raises(bi.BoneImgError, match=message):
        read_design(table)


def test_missing_design_and_empty_folder(tmp_path):
    with pytest.raises(bi.BoneImgError, match="no such design table"):
        read_design(tmp_path / "nope.csv")
    (tmp_path / "g" / "a").mkdir(parents=True)
    with pytest.raises(bi.BoneImgError, match="no images found"):
        read_design(tmp_path)


def test_out_dir_inside_an_input_folder_is_refused(tmp_path):
    image = touch(tmp_path / "data" / "veh" / "M1" / "a.tif")
    design, source = read_design(pd.DataFrame({"path": [str(image)], "animal": ["M1"], "group": ["veh"]}))
    for bad in [image.parent, image.parent / "results", image.parent / "deep" / "er"]:
        with pytest.raises(bi.BoneImgError, match="inside the input folder"):
            check_out_dir(bad, design, source)
    check_out_dir(tmp_path / "results", design, source)  # beside the data is fine
    folder_design, folder_source = read_design(tmp_path / "data")
    with pytest.raises(bi.BoneImgError, match="inside the input folder"):
        check_out_dir(tmp_path / "data" / "results", folder_design, folder_source)
    with pytest.raises(bi.BoneImgError, match="inside the input folder"):
        bi.run_study(tmp_path / "data", tmp_path / "data" / "out", quiet=True)
    assert not (tmp_path / "data" / "out").exists()


def test_named_control_must_be_a_group():
    design = pd.DataFrame({"group": ["veh", "drug"]})
    assert choose_control(design, "drug") == ("drug", "as requested")
    with pytest.raises(bi.BoneImgError, match="'placebo' is not in the design; its groups are 'veh', 'drug'"):
        choose_control(design, "placebo")


def test_settings_toml_and_yaml_with_overrides(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('[study]\ncontrol = "veh"\nn_resamples = 500\n\n[x-ray]\nk_sd = 3.0\nmin_area_mm2 = 0.01\n')
    yaml = tmp_path / "s.yaml"
    yaml.write_text("study:\n  control: veh\n  n_resamples: 500\nradiograph:\n  k_sd: 3.0\n  min_area_mm2: 0.01\n")
    expected = {"study": {"control": "veh", "test": "parametric", "confidence": 0.95, "n_resamples": 500,
                          "seed": 0},
                "analyses": {"radiograph": {"k_sd": 3.0, "min_area_mm2": 0.01}}}
    assert resolve_settings(toml) == expected == resolve_settings(yaml)
    merged = resolve_settings(toml, control=None, test="nonparametric", radiograph={"k_sd": 4.0}, ct={"a": 1})
    assert merged["study"]["control"] == "veh"  # None = not given
    assert merged["study"]["test"] == "nonparametric"
    assert merged["analyses"] == {"radiograph": {"k_sd": 4.0, "min_area_mm2": 0.01}, "ct": {"a": 1}}


@pytest.mark.parametrize("text, message", [
    ("[stduy]\nseed = 1\n", r"unknown settings table \[stduy\]"),
    ("[study]\nsede = 1\n", "unknown \\[study\\] option"),
    ("[study]\ntest = 't'\n", "test must be one of parametric, nonparametric"),
    ("[study]\nconfidence = 95\n", "confidence must be a number between 0 and 1"),
    ("[radiograph]\na = 1\n[x-ray]\nb = 2\n", "radiograph parameters twice"),
    ("[study\n", "cannot parse the settings file"),
])
def test_bad_settings_are_refused(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(bi.BoneImgError, match=message):
        resolve_settings(path)


def test_bad_overrides_are_refused(tmp_path):
    with pytest.raises(bi.BoneImgError, match="unknown study parameter 'contrl'"):
        resolve_settings(contrl="veh")
    with pytest.raises(bi.BoneImgError, match="must be plain numbers"):
        resolve_settings(radiograph={"reference": np.zeros(3)})
    with pytest.raises(bi.BoneImgError, match="TOML"):
        resolve_settings(tmp_path / "s.json")
