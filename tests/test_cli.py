import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import boneimg as bi
from boneimg.cli import main
from boneimg.io.write import read_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHREW = DATA / "microct" / "shrew_trabecular_4.1um.nrrd"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"boneimg {bi.__version__}"


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "info" in out and "demo" in out


@pytest.mark.skipif(not SHREW.exists(), reason="shared data not available")
def test_info_reports_nrrd_spacing(capsys):
    assert main(["info", str(SHREW)]) == 0
    out = capsys.readouterr().out
    assert "4.1 x 4.1 x 4.1 µm (NRRD header)" in out
    assert "115 x 114 x 114 (zyx)" in out
    assert "modality  ct" in out


def test_info_json_and_override(tmp_path, capsys):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((30, 40), np.uint16))
    assert main(["info", "--json", "--pixel-size", "2.5", str(path)]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["spacing_um"] == [2.5, 2.5]
    assert info["spacing_source"] == "user"
    assert info["extent_mm"] == pytest.approx([0.075, 0.1])


def test_info_says_spacing_unknown(tmp_path, capsys):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((30, 40), np.uint8))
    assert main(["info", str(path)]) == 0
    assert "unknown (pass --pixel-size UM)" in capsys.readouterr().out


def test_info_bad_file_names_it_and_fails(tmp_path, capsys):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.zeros((8, 8), np.uint8), resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not an image at all")
    assert main(["info", str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert "broken.tif" in captured.err and "Traceback" not in captured.err
    assert "good.tif" in captured.out  # the other files are still described


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "boneimg", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("boneimg ")


def test_demo_analyses_calibrated_data_against_truth(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    section = bi.load(out / "he_section.ome.tif")
    assert section.spacing_um == (0.5, 0.5) and section.n_levels == 3
    volume = bi.load(out / "microct_rec")
    assert volume.spacing_um == (20.0, 20.0, 20.0)
    summary = read_table(out / "summary.csv").set_index(["image", "measurement"])
    assert set(summary["modality"]) == {"brightfield", "ct", "radiograph"}
    ct = summary.loc["microct_rec"]
    assert ct.loc["lesion_class", "measured"] == ct.loc["lesion_class", "true"]
    for key in ("Lytic.V_mm3", "Blastic.V_mm3"):
        assert float(ct.loc[key, "measured"]) == pytest.approx(float(ct.loc[key, "true"]), rel=0.10)
    trap = summary.loc["trap_section.ome.tif"]
    assert float(trap.loc["N.Oc", "measured"]) == pytest.approx(float(trap.loc["N.Oc", "true"]), rel=0.15)
    xray = summary.loc["radiograph.ome.tif"]
    assert float(xray.loc["Lytic.Ar_mm2", "measured"]) == pytest.approx(float(xray.loc["Lytic.Ar_mm2", "true"]), rel=0.15)
    # the demo study recovers the synthetic treatment effect and its CI covers the truth
    effects = read_table(out / "study" / "effects.csv")
    combination = effects[(effects["measurement"] == "Lytic.Ar_mm2") & (effects["group"] == "combination")].iloc[0]
    assert combination["percent_change_ci_low_pct"] <= -60 <= combination["percent_change_ci_high_pct"]
    assert (out / "study" / "report.html").exists()
    assert "true -60 %" in capsys.readouterr().out
