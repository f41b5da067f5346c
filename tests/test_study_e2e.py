"""Synthetic studies analysed end to end by the real analyses registered for studies."""

import pandas as pd
import pytest

import boneimg as bi
from boneimg.io.write import save_image
from boneimg.sample_data.phantoms import lesion_phantom
from boneimg.sample_data.studies import radiograph_study
from boneimg.study import registered_analyses


def test_real_ct_analysis_with_baseline_references(tmp_path):
    assert registered_analyses()["ct"].name == "boneimg.ct.lesions:analyze_ct"
    rows, truth = [], {}
    for group, kind in (("vehicle", "lytic"), ("treated", "none")):
        for k in range(3):
            phantom = lesion_phantom(kind, voxel_size_um=25.0, seed=10 * k + len(group))
            path = tmp_path / "scans" / group / f"m{k}" / "tibia.ome.tif"
            baseline = tmp_path / "baseline" / group / f"m{k}" / "tibia.ome.tif"
            save_image(path, phantom.image)
            save_image(baseline, phantom.truth["reference"])
            rows.append({"path": str(path), "animal": f"m{k}", "group": group, "reference": str(baseline)})
            truth[str(path)] = phantom.truth["volumes_mm3"]["Lytic"]
    study = bi.run_study(pd.DataFrame(rows), tmp_path / "out", workers=2, quiet=True)
    assert study.failures.empty, study.failures["reason"].tolist()
    images = study.images.set_index("path")
    assert set(images["analysis"]) == {"boneimg.ct.lesions:analyze_ct"} and set(images["modality"]) == {"ct"}
    assert images["reference"].tolist() == [r["reference"] for r in rows]
    lytic = images["Lytic.V_mm3"]
    for path, volume in truth.items():
        if volume:  # the lytic phantoms: the measured volume is close to the drawn one
            assert lytic[path] == pytest.approx(volume, rel=0.5)
        else:
            assert lytic[path] < 0.2 * max(truth.values())
    row = study.effects.set_index(["measurement", "group"]).loc[("Lytic.V_mm3", "treated")]
    assert row.n == row.n_control == 3 and row.percent_change_ci_high_pct < -50


def test_real_radiograph_analysis_recovers_the_treatment_effect(tmp_path):
    assert registered_analyses()["radiograph"].name == "boneimg.ct.radiograph:analyze_radiograph"
    study = radiograph_study(tmp_path / "data", n_animals=8, n_images=2, seed=7)
    # the folder layout, with the modality recorded in the files
    result = bi.run_study(study.folder, tmp_path / "out", control="vehicle", workers=2, quiet=True)
    assert result.failures.empty, result.failures["reason"].tolist()
    assert len(result.images) == 48
    effects = result.effects.set_index(["measurement", "group"])
    arm = effects.loc[("Lytic.Ar_mm2", "combination")]
    assert arm.percent_change_ci_high_pct < 0 and arm.p_adjusted < 0.05
    assert arm.percent_change_ci_low_pct <= study.percent_change["combination"] <= arm.percent_change_ci_high_pct
    assert effects.loc[("Lytic.Ar_mm2", "inactive")].p_adjusted > 0.05


def test_each_image_gets_the_analysis_of_its_modality(tmp_path):
    """Two modalities per animal: a radiograph and a TRAP section, analysed by their own analyses."""
    from boneimg.sample_data.sections import trap_section
    from boneimg.sample_data.studies import lesion_radiograph

    rows, truth = [], {}
    for group in ("vehicle", "drug"):
        for k in range(2):
            xray, section = lesion_radiograph(0.4, seed=k), trap_section((512, 512), 0.5, seed=k + 3)
            for name, synthetic in (("xray", xray), ("trap", section)):
                path = tmp_path / "data" / group / f"m{k}" / f"{name}.ome.tif"
                save_image(path, synthetic.image)
                rows.append({"path": str(path), "animal": f"m{k}", "group": group})
            truth[(group, f"m{k}")] = xray.truth["lytic_area_mm2"], section.truth["measurements"]["N.Oc"]
    study = bi.run_study(pd.DataFrame(rows), tmp_path / "out", workers=1, quiet=True, brightfield={"stain": "trap"})
    assert study.failures.empty, study.failures["reason"].tolist()
    images = study.images
    assert images["modality"].tolist() == ["radiograph", "brightfield"] * 4
    assert images["analysis"].tolist() == ["boneimg.ct.radiograph:analyze_radiograph",
                                           "boneimg.histology.section:analyze_section"] * 4
    xrays, sections = images[images["modality"] == "radiograph"], images[images["modality"] == "brightfield"]
    assert xrays["N.Oc"].isna().all() and sections["Lytic.Ar_mm2"].isna().all()
    # per animal, each measurement comes from the one image that has it, not diluted by the other
    animals = study.animals.set_index(["group", "animal"])
    assert animals["Lytic.Ar_mm2"].tolist() == xrays["Lytic.Ar_mm2"].tolist()
    assert animals["N.Oc"].tolist() == sections["N.Oc"].tolist()
    assert animals["n_images"].eq(2).all()
    for key, (area, n_oc) in truth.items():
        assert animals.loc[key, "Lytic.Ar_mm2"] == pytest.approx(area, abs=0.05)
        assert abs(animals.loc[key, "N.Oc"] - n_oc) <= max(2, 0.3 * n_oc)
    assert all((study.out_dir / p).is_file() for p in images["qc_overlay"])
