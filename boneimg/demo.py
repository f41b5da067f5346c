"""``boneimg demo``: synthetic example data written to a folder, then analysed.

It grows with the library: each analysis, once it exists, runs here on data with known truth.
"""

from pathlib import Path

import imagecodecs
import numpy as np

from .io import load
from .io.atomic import atomic_path
from .io.describe import describe, format_description
from .io.write import save_image, save_labels, save_table


def write_demo_data(out):
    """Write the synthetic demo images and their ground truth into `out`; return the image paths."""
    from .sample_data import phantoms, sections

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    section = sections.he_section((768, 768), 0.5, seed=1)
    save_image(out / "he_section.ome.tif", section.image, pyramid_levels=2, source="boneimg demo")
    truth = out / "ground_truth"
    save_labels(truth / "he_section_nuclei.ome.tif", section.truth["nuclei"], section.image.spacing_um)
    save_labels(truth / "he_section_regions.ome.tif", section.truth["regions"], section.image.spacing_um)

    bone = phantoms.ct_long_bone((96, 128, 128), 10.0, seed=2)
    slices = out / "microct_rec"
    slices.mkdir(exist_ok=True)
    for index, plane in enumerate(bone.image.data):
        with atomic_path(slices / f"demo_rec{index:08d}.bmp") as tmp:
            tmp.write_bytes(imagecodecs.bmp_encode(plane))
    with atomic_path(slices / "demo_rec.log") as tmp:  # as a Bruker SkyScan reconstruction writes it
        tmp.write_text("[Reconstruction]\nPixel Size (um)=10.000000\n")
    save_labels(truth / "microct_bone.ome.tif", bone.truth["bone"], bone.image.spacing_um)

    xray = phantoms.radiograph(bone)
    save_image(out / "radiograph.ome.tif", xray.image, source="boneimg demo")
    save_labels(truth / "radiograph_bone.ome.tif", xray.truth["bone"], xray.image.spacing_um)
    return [out / "he_section.ome.tif", slices, out / "radiograph.ome.tif"]


def run_demo(out, *, echo=print):
    """Generate the demo data in `out`, analyse each image and write ``summary.csv``."""
    out = Path(out)
    echo(f"boneimg demo: writing synthetic data to {out}/")
    rows = []
    for path in write_demo_data(out):
        info = describe(load(path))
        echo(format_description(info))
        rows.append({
            "path": str(path.relative_to(out)),
            "modality": info["modality"],
            "shape": "x".join(map(str, info["shape"])),
            "spacing_um": "x".join(f"{s:g}" for s in info["spacing_um"]),
            "extent_mm": "x".join(f"{e:.3g}" for e in info["extent_mm"]),
            "pyramid_levels": len(info["levels"]),
        })
    save_table(out / "summary.csv", rows, source=str(out), parameters={"command": "demo"})
    echo(f"boneimg demo: summary written to {out / 'summary.csv'}")
    return rows
