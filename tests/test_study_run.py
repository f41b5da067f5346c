"""`run_study` end to end on a synthetic study with a known effect: tables, statistics, report,
failures, resume after SIGKILL, and a Dask distributed cluster.

These tests analyse the synthetic study's exact lesion masks with a tiny analysis registered for
radiographs (`mask_area`, below), so they check the study machinery against exact truth whatever
state the real analyses are in; test_study_e2e.py runs the real radiograph analysis.
"""

from dataclasses import dataclass
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagecodecs
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

import boneimg as bi
from boneimg.cli import main
from boneimg.io.write import read_table
from boneimg.sample_data.studies import radiograph_study
from boneimg.study import register_analysis

TABLES = ("images", "animals", "effects", "failures")


@dataclass
class MaskResult:
    lesions: np.ndarray
    measurements: dict


def mask_area(image, *, min_pixels=1):
    """Test analysis: the lesions are the non-zero pixels of a lesion-mask image.

    ``BONEIMG_TEST_DELAY_S`` slows it down so a run can be killed half-way;
    ``BONEIMG_TEST_CRASH_ON`` names an image on which the process dies, as on a segfault.
    """
    time.sleep(float(os.environ.get("BONEIMG_TEST_DELAY_S", 0)))
    if image.path.endswith(os.environ.get("BONEIMG_TEST_CRASH_ON", "\0")):
        os._exit(1)
    lesions = np.asarray(image.data) > 0
    labels, n = ndi.label(lesions)
    n = int(np.sum(np.bincount(labels.ravel())[1:] >= min_pixels))
    dy, dx = image.require_spacing("a lesion area")
    return MaskResult(lesions.astype(np.uint8), {
        "Lytic.Ar_mm2": lesions.sum() * dy * dx / 1e6, "Lytic.N": n,
        "lesion_class": "osteolytic" if n else "none", "method": {"min_pixels": np.int64(min_pixels)}})


@pytest.fixture(scope="module")
def registered():
    previous = register_analysis("radiograph", mask_area)
    yield
    register_analysis("radiograph", previous.function, overlay=previous.overlay)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """24 animals in 3 arms (vehicle, inactive: null, combination: lytic area -60 %), 2 images each."""
    root = tmp_path_factory.mktemp("synthetic")
    study = radiograph_study(root / "data", n_animals=8, n_images=2, seed=7)
    design = study.truth.assign(path=study.truth["lesion_mask"], modality="radiograph")
    design = design[["path", "animal", "group", "bone", "modality"]]
    design.to_csv(root / "masks.csv", index=False)
    return study, root / "masks.csv"


@pytest.fixture(scope="module")
def reference(registered, synthetic, tmp_path_factory):
    """The study run uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("reference") / "out"
    return bi.run_study(synthetic[1], out, workers=1, quiet=True)


def read_tables(out):
    return {name: read_table(Path(out) / f"{name}.csv") for name in TABLES}


def assert_same_tables(out, study):
    """The CSVs in `out` hold exactly the values of `study` (a Study or an out_dir)."""
    expected = read_tables(study.out_dir if isinstance(study, bi.Study) else study)
    for name, table in read_tables(out).items():
        pd.testing.assert_frame_equal(table, expected[name], check_exact=True, obj=name)


def test_study_measures_every_image_exactly(reference, synthetic):
    truth = synthetic[0].truth
    images = reference.images
    assert images["path"].tolist() == truth["lesion_mask"].tolist()
    assert images["Lytic.Ar_mm2"].to_numpy() == pytest.approx(truth["Lytic.Ar_mm2"].to_numpy(), rel=1e-12)
    assert images["Lytic.N"].tolist() == truth["Lytic.N"].tolist()
    assert set(images["modality"]) == {"radiograph"} and set(images["spacing_um"]) == {"25x25"}
    assert set(images["analysis"]) == {"test_study_run:mask_area"}
    assert reference.failures.empty
    # per animal: mean of the two bones (one image each)
    expected = truth.groupby(["group", "animal"], sort=False)["Lytic.Ar_mm2"].mean()
    assert reference.animals["Lytic.Ar_mm2"].to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-12)
    assert reference.animals["n_images"].eq(2).all() and reference.animals["n_bones"].eq(2).all()
    assert len(reference.animals) == 24


def test_effects_recover_the_true_effect_and_the_null_arm(reference, synthetic):
    study = synthetic[0]
    assert reference.control == "vehicle"
    effects = reference.effects.set_index(["measurement", "group"])
    measurements, arms = ("Lytic.Ar_mm2", "Lytic.N"), ("inactive", "combination")
    assert effects.index.tolist() == [(m, g) for m in measurements for g in arms]
    arm = effects.loc[("Lytic.Ar_mm2", "combination")]
    true_change = study.percent_change["combination"]
    assert true_change == pytest.approx(-60.0)
    assert arm.n == 8 and arm.n_control == 8
    assert arm.percent_change_ci_low_pct <= true_change <= arm.percent_change_ci_high_pct
    assert arm.percent_change_ci_high_pct < 0 and arm.difference_ci_high < 0
    assert arm.p_adjusted < 0.01
    null = effects.loc[("Lytic.Ar_mm2", "inactive")]
    assert null.p_adjusted > 0.05
    assert null.percent_change_ci_low_pct <= 0 <= null.percent_change_ci_high_pct
    assert set(reference.effects["test"]) == {"Welch t-test"}
    assert set(reference.effects["omnibus_test"]) == {"Welch ANOVA"}


def test_outputs_are_written_with_provenance(reference, synthetic):
    out = reference.out_dir
    for name in TABLES:
        text = (out / f"{name}.csv").read_text()
        assert text.startswith(f"# software: boneimg {bi.__version__}\n")
        assert '"control": "vehicle"' in text
    tables = read_tables(out)
    pd.testing.assert_frame_equal(tables["effects"], reference.effects, check_exact=True)
    pd.testing.assert_frame_equal(tables["animals"], reference.animals, check_exact=True)
    assert tables["images"].columns.tolist()[-4:] == ["Lytic.Ar_mm2", "Lytic.N", "lesion_class", "method"]
    assert set(tables["images"]["method"]) == {'{"min_pixels": 1}'}  # details of the analysis, as JSON
    assert tables["failures"].empty and tables["failures"].columns.tolist()[-1] == "reason"
    provenance = json.loads((out / "study.json").read_text())
    assert provenance["parameters"]["settings"] == reference.settings
    assert provenance["source"] == str(synthetic[1])
    assert pd.read_csv(out / "design.csv")["path"].tolist() == reference.images["path"].tolist()
    # one QC overlay per image, lesions outlined in red
    overlays = sorted((out / "qc").glob("*.jpg"))
    assert len(overlays) == 48 == len(set(reference.images["qc_overlay"]))
    picture = imagecodecs.jpeg8_decode((out / reference.images["qc_overlay"].iloc[0]).read_bytes()).astype(int)
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    lesions = imagecodecs.imread(synthetic[0].truth["lesion_mask"].iloc[0]) > 0
    assert picture.shape == (320, 160, 3) and red.any() and lesions[red].mean() > 0.9


def test_report_is_self_contained(reference):
    html = reference.report.read_text()
    assert html.startswith("<!DOCTYPE html>") and len(html.encode()) < 300_000
    # nothing to fetch: no scripts, style sheets, or images from elsewhere
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//|file:)", html)
    assert "<style>" in html
    assert html.count("<svg") == 2  # one plot per numeric measurement
    assert "Welch t-test" in html and "Lytic.Ar_mm2" in html
    links = [part.split("'")[0] for part in html.split("<a href='")[1:]]
    assert len(links) == 48 and all((reference.out_dir / link).is_file() for link in links)


def test_failed_images_are_recorded_and_the_study_goes_on(registered, synthetic, tmp_path, capsys):
    truth = synthetic[0].truth
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.tif").write_bytes(b"II*\x00" + b"\x00" * 10)
    (bad / "uncalibrated.png").write_bytes(imagecodecs.png_encode(np.zeros((8, 8), np.uint8)))
    design = pd.DataFrame({
        "path": [truth["lesion_mask"][0], str(bad / "truncated.tif"), str(bad / "missing.tif"),
                 str(bad / "uncalibrated.png"), truth["lesion_mask"][20]],
        "animal": ["V1", "V1", "V2", "D1", "D1"], "group": ["veh", "veh", "veh", "drug", "drug"],
        "modality": "radiograph"})
    study = bi.run_study(design, tmp_path / "out", workers=1, control="veh")
    assert study.images["path"].tolist() == [truth["lesion_mask"][0], truth["lesion_mask"][20]]
    reasons = dict(zip(study.failures["path"], study.failures["reason"]))
    assert list(reasons) == [str(bad / "truncated.tif"), str(bad / "missing.tif"), str(bad / "uncalibrated.png")]
    assert reasons[str(bad / "missing.tif")] == f"BoneImgError: {bad / 'missing.tif'}: no such file or folder"
    assert "truncated.tif" in reasons[str(bad / "truncated.tif")]
    assert "pixel size is unknown" in reasons[str(bad / "uncalibrated.png")]
    assert read_table(tmp_path / "out" / "failures.csv")["reason"].tolist() == list(reasons.values())
    err = capsys.readouterr().err
    assert "control group: veh (as requested" in err and "2 images analysed, 3 failed" in err
    # one animal per group: effects are reported, but not tested
    assert set(study.effects["test"]) == {"not tested: fewer than 2 animals in a group"}


def test_a_crashed_worker_process_fails_its_images_not_the_study(registered, synthetic, tmp_path, monkeypatch):
    truth = synthetic[0].truth.iloc[:6]
    design = truth.assign(path=truth["lesion_mask"], modality="radiograph")[["path", "animal", "group", "modality"]]
    monkeypatch.setenv("BONEIMG_TEST_CRASH_ON", Path(design["path"].iloc[2]).name)
    study = bi.run_study(design, tmp_path / "out", workers=2, quiet=True)
    assert design["path"].iloc[2] in study.failures["path"].tolist()
    assert all("the worker running this image failed (BrokenProcessPool" in r for r in study.failures["reason"])
    assert len(study.images) + len(study.failures) == 6
    monkeypatch.delenv("BONEIMG_TEST_CRASH_ON")
    again = bi.run_study(design, tmp_path / "out", workers=2, quiet=True)  # the failures are tried again
    assert again.failures.empty and len(again.images) == 6


def test_folder_layout_takes_modality_from_the_files_and_the_first_group(registered, synthetic, tmp_path, capsys):
    study = synthetic[0]
    # the radiographs themselves; mask_area counts their non-zero pixels, whatever that means
    result = bi.run_study(study.folder, tmp_path / "out", workers=1, n_resamples=200)
    assert result.control == "combination"
    assert "control group: combination (the first group in the design" in capsys.readouterr().err
    assert result.images["modality"].eq("radiograph").all() and len(result.images) == 48
    assert "bone" not in result.images and "n_bones" not in result.animals


def test_rerun_reuses_done_images_and_redoes_changed_ones(registered, reference, tmp_path):
    out = tmp_path / "out"
    bi.run_study(reference.out_dir / "design.csv", out, workers=1, quiet=True)
    records = sorted((out / "records").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in records]
    again = bi.run_study(reference.out_dir / "design.csv", out, workers=1, quiet=True)
    assert [p.stat().st_mtime_ns for p in records] == stamps  # nothing recomputed
    assert_same_tables(out, reference)
    # other analysis parameters: every image is analysed again
    changed = bi.run_study(reference.out_dir / "design.csv", out, workers=1, quiet=True,
                           radiograph={"min_pixels": 2})
    assert all(p.stat().st_mtime_ns != s for p, s in zip(records, stamps))
    assert changed.images["Lytic.Ar_mm2"].tolist() == again.images["Lytic.Ar_mm2"].tolist()


def test_cancelled_run_keeps_its_results_and_resumes(registered, reference, tmp_path):
    from boneimg.study.runner import StudyCancelled

    out = tmp_path / "out"
    seen = []
    with pytest.raises(StudyCancelled, match="resume"):
        bi.run_study(reference.out_dir / "design.csv", out, workers=1, quiet=True,
                     progress=lambda done, total: seen.append((done, total)), should_cancel=lambda: len(seen) > 5)
    total = seen[0][1]
    assert seen[:6] == [(i, total) for i in range(6)]  # 0 first: the count before any image ran
    assert len(list((out / "records").glob("*.json"))) == 5
    assert not (out / "effects.csv").exists()
    seen.clear()
    bi.run_study(reference.out_dir / "design.csv", out, workers=1, quiet=True,
                 progress=lambda done, total: seen.append(done))
    assert seen == list(range(5, total + 1))
    assert_same_tables(out, reference)


def study_command(design, out, delay_s=0.0):
    """`boneimg study DESIGN OUT --workers 2 --quiet` in a new process group, with mask_area
    registered for radiographs."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import boneimg.study, test_study_run; "
            "boneimg.study.register_analysis('radiograph', test_study_run.mask_area); "
            "from boneimg.cli import main; sys.exit(main(['study', *sys.argv[2:], '--workers', '2', '--quiet']))")
    env = {**os.environ, "BONEIMG_TEST_DELAY_S": str(delay_s)}
    return subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), str(design), str(out)],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_run_resumes_to_identical_results(reference, synthetic, tmp_path):
    out = tmp_path / "out"
    proc = study_command(synthetic[1], out, delay_s=0.1)
    deadline = time.monotonic() + 120
    while len(list((out / "records").glob("*.json"))) < 8:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes, at once
    proc.communicate()
    done = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert 8 <= len(done) < 48
    assert not (out / "effects.csv").exists()

    proc = study_command(synthetic[1], out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert {p: p.stat().st_mtime_ns for p in done} == done  # images done before the kill: not redone
    assert len(list((out / "records").glob("*.json"))) == 48
    assert_same_tables(out, reference)


def test_distributed_run_equals_local_run(reference, synthetic, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        study = bi.run_study(synthetic[1], tmp_path / "out", scheduler=cluster.scheduler_address, quiet=True)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(study, name), getattr(reference, name), check_exact=True)
    assert_same_tables(tmp_path / "out", reference)


def test_cli_study_reports_bad_input(tmp_path, capsys):
    assert main(["study", str(tmp_path / "nope.csv"), str(tmp_path / "out")]) == 1
    assert "boneimg: error:" in capsys.readouterr().err
    assert main(["study", str(tmp_path), str(tmp_path / "out"), "--workers", "2", "--scheduler", "tcp://x:1"]) == 1
    assert "not both" in capsys.readouterr().err
