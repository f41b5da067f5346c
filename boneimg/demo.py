"""``boneimg demo``: synthetic example data with exact truth, written to a folder and analysed.

Each image is read back from disk (so the pixel size the analysis uses is the one in the file),
analysed, and a few key measurements are set beside their true values in ``summary.csv``.
"""

from pathlib import Path

import imagecodecs

from .io import load
from .io.atomic import atomic_path
from .io.describe import describe, format_description
from .io.write import save_image, save_labels, save_table

_SECTION_KEYS = ("B.Ar/T.Ar_pct", "Tu.Ar/T.Ar_pct", "N.Oc", "N.Oc/B.Pm_per_mm", "Oc.S/BS_pct")
_CT_KEYS = ("Lytic.V_mm3", "Blastic.V_mm3", "Ct.Perf.N", "lesion_class")


def _write_slices(volume, folder, voxel_size_um):
    """A micro-CT reconstruction as a Bruker SkyScan writes it: BMP slices and a .log."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, plane in enumerate(volume):
        with atomic_path(folder / f"demo_rec{index:08d}.bmp") as tmp:
            tmp.write_bytes(imagecodecs.bmp_encode(plane))
    with atomic_path(folder / "demo_rec.log") as tmp:
        tmp.write_text(f"[Reconstruction]\nPixel Size (um)={voxel_size_um:.6f}\n")


def write_demo_data(out):
    """Write the demo images and their ground truth into `out`.

    Returns
    -------
    list of dict
        One entry per image: ``path``, ``kind`` and the ``truth`` measurements.
    """
    from .sample_data import phantoms, sections

    out = Path(out)
    truth_dir = out / "ground_truth"
    entries = []
    for kind, make in (("he", sections.he_section), ("trap", sections.trap_section)):
        sample = make((768, 768), 0.5, seed=1)
        path = out / f"{kind}_section.ome.tif"
        save_image(path, sample.image, pyramid_levels=2, source="boneimg demo")
        save_labels(truth_dir / f"{kind}_section_regions.ome.tif", sample.truth["regions"], sample.image.spacing_um)
        save_labels(truth_dir / f"{kind}_section_nuclei.ome.tif", sample.truth["nuclei"], sample.image.spacing_um)
        entries.append({"path": path, "kind": "section", "truth": sample.truth["measurements"]})

    phantom = phantoms.lesion_phantom("mixed", voxel_size_um=20.0, seed=2)
    spacing = phantom.image.spacing_um[0]
    _write_slices(phantom.image.data, out / "microct_rec", spacing)
    _write_slices(phantom.truth["reference"].data, out / "microct_baseline_rec", spacing)
    save_labels(truth_dir / "microct_lesions.ome.tif", phantom.truth["lesions"], phantom.image.spacing_um)
    volumes = phantom.truth["volumes_mm3"]
    entries.append({"path": out / "microct_rec", "kind": "ct", "reference": out / "microct_baseline_rec",
                    "truth": {"Lytic.V_mm3": volumes["Lytic"], "Blastic.V_mm3": volumes["Blastic"],
                              "Ct.Perf.N": phantom.truth["n_perforations"],
                              "lesion_class": phantom.truth["lesion_class"]}})

    xray = phantoms.radiograph(phantom)
    save_image(out / "radiograph.ome.tif", xray.image, source="boneimg demo")
    save_labels(truth_dir / "radiograph_lytic.ome.tif", xray.truth["lytic"], xray.image.spacing_um)
    entries.append({"path": out / "radiograph.ome.tif", "kind": "radiograph",
                    "truth": {"Lytic.Ar_mm2": xray.truth["lytic_area_mm2"], "Lytic.N": xray.truth["lytic_n"]}})
    return entries


def _analyse(entry, image):
    from .ct.lesions import analyze_ct
    from .ct.radiograph import analyze_radiograph
    from .histology.section import analyze_section

    if entry["kind"] == "section":
        return analyze_section(image).measurements, _SECTION_KEYS
    if entry["kind"] == "ct":
        return analyze_ct(image, reference=load(entry["reference"])).measurements, _CT_KEYS
    return analyze_radiograph(image).measurements, ("Lytic.Ar_mm2", "Lytic.N")


def run_demo(out, *, echo=print):
    """Generate the demo data in `out`, analyse each image and write ``summary.csv``."""
    out = Path(out)
    echo(f"boneimg demo: writing synthetic data with ground truth to {out}/")
    rows = []
    for entry in write_demo_data(out):
        image = load(entry["path"])
        echo(format_description(describe(image)))
        measured, keys = _analyse(entry, image)
        for key in keys:
            true = entry["truth"].get(key)
            rows.append({"image": str(Path(entry["path"]).relative_to(out)), "modality": image.modality,
                         "measurement": key, "measured": measured[key], "true": true})
            shown = f"{measured[key]:.4g}" if isinstance(measured[key], float) else measured[key]
            expected = f"{true:.4g}" if isinstance(true, float) else true
            echo(f"  {key:<20} {shown!s:>12}   (true {expected})")
    save_table(out / "summary.csv", rows, source=str(out), parameters={"command": "demo"})
    echo(f"boneimg demo: measured and true values written to {out / 'summary.csv'}")
    _demo_study(out, echo)
    return rows


def _demo_study(out, echo):
    """A small synthetic radiograph study with known treatment effects, run like ``boneimg study``."""
    from .sample_data.studies import radiograph_study
    from .study import run_study

    synthetic = radiograph_study(out / "study_data", n_animals=4, n_images=1, seed=3)
    echo(f"boneimg demo: a radiograph study of {len(synthetic.design)} images in {out / 'study_data'}")
    study = run_study(out / "study_data" / "design.csv", out / "study", workers=1, quiet=True)
    lytic = study.effects[study.effects["measurement"] == "Lytic.Ar_mm2"]
    for row in lytic.itertuples():
        echo(f"  Lytic.Ar_mm2 {row.group} vs {study.control}: {row.percent_change_pct:+.0f} % "
             f"(95 % CI {row.percent_change_ci_low_pct:+.0f} to {row.percent_change_ci_high_pct:+.0f} %, "
             f"{row.test} p_adj = {row.p_adjusted:.3g}; true {synthetic.percent_change[row.group]:+.0f} %)")
    echo(f"boneimg demo: study tables and report in {study.out_dir}; open {study.report}")
