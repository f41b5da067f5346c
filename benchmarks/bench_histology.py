"""Nucleus detection and segmentation against annotated H&E sets and synthetic sections.

Runs :func:`boneimg.segment_nuclei` with defaults, once per method (classical path and the
shipped trained model, ``--methods``), on

- CRCHisto (``../shared/data/histology/crchisto``), the validation split of ``split.csv`` by
  default (``--crchisto-split all`` for all 80), 0.55 µm/px, points matched within 6 px;
- BM_GRAZ (``bm_graz``), 0.37 µm/px, points matched within 3.3 µm;
- CPM-15 (``cpm15``), pixel size per ``images.csv``, instance labels: AJI, PQ, and detection
  with the label centroids matched within 3.3 µm;
  for these two, by default only the images the model never saw in training (``--split test``:
  BM_GRAZ patients 0003 and 0006, CPM-15 image03/06/09/12/15; ``--split all`` for every image);
- synthetic H&E sections (``sample_data.sections.he_section``) with exact labels, the same
  field of view at 0.5 and 0.25 µm/px (20x and 40x);
- a mosaic of CRCHisto tiles large enough to be processed in tiles (throughput of that path);

and, where the TRAP generator and section analysis exist, the osteoclast count of
:func:`boneimg.analyze_section` on synthetic TRAP sections.

Prints per data set: n images, precision / recall / F1 (pooled over the images), predicted /
true count, AJI and PQ (mean per image) where labels exist, and throughput in megapixels of
input per second of CPU time (one thread: the script pins BLAS/OpenMP to one thread, and CPU
time does not count waiting for a busy machine) and per second of wall time. Then each target
of the issues (3: classical, 5: model) with the value reached and PASS/FAIL, and the model's
inference speed with 2 torch threads. Always exits 0.

    python benchmarks/bench_histology.py                 # everything, about 6 minutes
    python benchmarks/bench_histology.py --sets crchisto,cpm15
    python benchmarks/bench_histology.py --crchisto-split all --synthetic-seeds 3
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boneimg as bi  # noqa: E402
from boneimg.models import datasets  # noqa: E402
from boneimg.metrics import (aggregated_jaccard_index, classification_f1, label_centroids, match_pairs,  # noqa: E402
                             panoptic_quality)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "histology"
SETS = ("crchisto", "bm_graz", "cpm15", "synthetic", "mosaic", "trap")


@dataclass
class Case:
    name: str
    image: object            # bi.Image
    true_xy: np.ndarray
    radius_px: float
    true_labels: np.ndarray | None = None
    true_types: np.ndarray | None = None


@dataclass
class Tally:
    label: str
    n: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    aji: list = field(default_factory=list)
    pq: list = field(default_factory=list)
    typed: list = field(default_factory=list)  # (predicted, true) cell types of matched pairs
    megapixels: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    note: str = ""

    def add(self, case, nuclei, cpu_s, wall_s):
        pairs = match_pairs(nuclei.xy(), case.true_xy, case.radius_px)
        self.n += 1
        self.tp += len(pairs)
        self.fp += len(nuclei.table) - len(pairs)
        self.fn += len(case.true_xy) - len(pairs)
        if case.true_labels is not None:
            self.aji.append(aggregated_jaccard_index(case.true_labels, nuclei.labels))
            self.pq.append(panoptic_quality(case.true_labels, nuclei.labels).pq)
        if case.true_types is not None and "cell_type" in nuclei.table:
            self.typed.append(np.stack([nuclei.table["cell_type"].to_numpy(str)[pairs[:, 0]],
                                        case.true_types[pairs[:, 1]]], axis=1))
        h, w = case.image.spatial_shape
        self.megapixels += h * w / 1e6
        self.cpu_s += cpu_s
        self.wall_s += wall_s

    @property
    def precision(self):
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self):
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def f1(self):
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else float("nan")

    @property
    def count_ratio(self):
        return (self.tp + self.fp) / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def tumour_f1(self):
        """HoVer-Net's F_c of the tumour class (:func:`boneimg.metrics.classification_f1`)."""
        if not self.typed:
            return float("nan")
        predicted, true = np.concatenate(self.typed).T
        return classification_f1(predicted, true, "tumour", fp_detection=self.fp, fn_detection=self.fn)

    @property
    def mean_aji(self):
        return float(np.mean(self.aji)) if self.aji else float("nan")

    @property
    def mean_pq(self):
        return float(np.mean(self.pq)) if self.pq else float("nan")

    @property
    def mps_cpu(self):
        return self.megapixels / self.cpu_s if self.cpu_s else float("nan")

    @property
    def mps_wall(self):
        return self.megapixels / self.wall_s if self.wall_s else float("nan")


def _case(record):
    from boneimg.models.evaluate import match_radius_px

    return Case(record.name, record.image, np.asarray(record.centres(), float), match_radius_px(record),
                record.labels, record.cell_types)


def crchisto_cases(root, split):
    return [_case(r) for r in datasets.crchisto(root) if split == "all" or r.split == split]


def bm_graz_cases(root, split):
    return [_case(r) for r in datasets.bm_graz(root) if split == "all" or r.split == split]


def cpm15_cases(root, split):
    return [_case(r) for r in datasets.cpm15(root) if split == "all" or r.split == split]


def synthetic_cases(seeds, field_um):
    from boneimg.sample_data.sections import he_section

    for px in (0.5, 0.25):
        n = int(round(field_um / px))
        for seed in seeds:
            section = he_section((n, n), px, seed=seed)
            labels = section.truth["nuclei"]
            _, xy = label_centroids(labels)
            yield Case(f"he_section seed {seed} @ {px} µm/px", section.image, xy, 3.3 / px, labels)


def mosaic_case(root, side):
    """CRCHisto validation tiles laid side by side: more pixels than one working tile."""
    cases = list(crchisto_cases(root, "validation"))
    tiles, points = [], []
    per_row = side // 500
    rows = []
    for i in range(per_row):
        row = []
        for j in range(per_row):
            case = cases[(i * per_row + j) % len(cases)]
            row.append(np.asarray(case.image.data))
            points.append(case.true_xy + [j * 500, i * 500])
        rows.append(np.concatenate(row, axis=1))
    del tiles
    data = np.concatenate(rows, axis=0)
    image = bi.Image(data, "yxc", (0.55, 0.55), "brightfield", {"format": "mosaic"})
    return Case(f"CRCHisto validation mosaic {data.shape[1]}x{data.shape[0]}", image, np.concatenate(points), 6.0)


def run_cases(label, cases, **params):
    tally = Tally(label)
    for case in cases:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        nuclei = bi.segment_nuclei(case.image, **params)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        tally.add(case, nuclei, cpu, wall)
        tally.note = "tiled" if nuclei.parameters.get("tiled") else tally.note
    return tally


def synthetic_scale_check(seeds, field_um):
    """Counts of the same field at 0.5 and 0.25 µm/px: relative difference per seed."""
    from boneimg.sample_data.sections import he_section

    rows = []
    for seed in seeds:
        counts = []
        for px in (0.5, 0.25):
            n = int(round(field_um / px))
            counts.append(bi.segment_nuclei(he_section((n, n), px, seed=seed).image).count)
        rows.append((seed, *counts))
    return rows


def osteoclast_count_error(seeds, field_um):
    """Predicted / true N.Oc of analyze_section on synthetic TRAP sections, or None with why."""
    try:
        from boneimg.sample_data.sections import trap_section
    except ImportError:
        return None, "sample_data.sections.trap_section does not exist yet"
    try:
        analyze = bi.analyze_section
    except (AttributeError, ImportError) as exc:
        return None, f"analyze_section unavailable ({exc})"
    predicted = true = 0
    for seed in seeds:
        n = int(round(field_um / 0.5))
        section = trap_section((n, n), 0.5, seed=seed)
        expected = section.truth.get("measurements", {}).get("N.Oc")
        if expected is None:
            table = section.truth.get("osteoclasts")
            if table is None:
                return None, "trap_section truth has no osteoclast count"
            expected = int(table["counted"].sum()) if "counted" in table else len(table)
        try:
            result = analyze(section.image, stain="trap")
        except Exception as exc:  # the analysis is another engineer's work in progress
            return None, f"analyze_section(stain='trap') failed: {type(exc).__name__}: {exc}"
        predicted += float(result.measurements.get("N.Oc", len(result.osteoclasts)))
        true += float(expected)
    return (predicted / true if true else float("nan")), f"{predicted:g} found / {true:g} true, {len(seeds)} sections"


def fmt(value, digits=3):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_table(tallies):
    head = f"{'data set':46s} {'n':>4s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'pred/true':>9s} " \
           f"{'AJI':>6s} {'PQ':>6s} {'MP/s cpu':>8s} {'MP/s wall':>9s}"
    print(head)
    print("-" * len(head))
    for t in tallies:
        print(f"{t.label + (' (' + t.note + ')' if t.note else ''):46s} {t.n:4d} {fmt(t.precision):>6s} "
              f"{fmt(t.recall):>6s} {fmt(t.f1):>6s} {fmt(t.count_ratio, 2):>9s} {fmt(t.mean_aji):>6s} "
              f"{fmt(t.mean_pq):>6s} {fmt(t.mps_cpu, 2):>8s} {fmt(t.mps_wall, 2):>9s}")


def verdict(ok):
    return "PASS" if ok else "FAIL"


def model_speed(root, threads):
    """Model inference throughput on the CRCHisto validation mosaic with `threads` torch threads:
    (input MP/s of wall time, input MP/s of CPU time)."""
    import torch

    torch.set_num_threads(threads)
    case = mosaic_case(root, 2000)
    bi.segment_nuclei(case.image.data[:256, :256], pixel_size_um=0.55, method="model")  # warm-up
    wall0, cpu0 = time.perf_counter(), time.process_time()
    bi.segment_nuclei(case.image, method="model")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    mp = case.image.spatial_shape[0] * case.image.spatial_shape[1] / 1e6
    return mp / wall, mp / cpu


def _common_targets(by_name):
    """The BM_GRAZ F1 and CPM-15 AJI/PQ targets, the same for both methods."""
    rows = []
    if "bm_graz" in by_name:
        t = by_name["bm_graz"]
        rows.append(("BM_GRAZ: F1 >= 0.85", f"F1 {fmt(t.f1)}", t.f1 >= 0.85))
    if "cpm15" in by_name:
        t = by_name["cpm15"]
        rows.append(("CPM-15: AJI >= 0.60", f"AJI {fmt(t.mean_aji)}", t.mean_aji >= 0.60))
        rows.append(("CPM-15: PQ >= 0.55", f"PQ {fmt(t.mean_pq)}", t.mean_pq >= 0.55))
    return rows


def _count_target(tally):
    return f"{tally.label.split(' (')[0]}: count within ±10 %", f"{fmt(tally.count_ratio, 2)}x", \
        0.9 <= tally.count_ratio <= 1.1


def targets_classical(by_name):
    rows = []
    if "crchisto" in by_name:
        t = by_name["crchisto"]
        rows.append(("CRCHisto: F1 >= 0.80 (SC-CNN 0.802)", f"F1 {fmt(t.f1)}", t.f1 >= 0.80))
    rows += _common_targets(by_name)
    if "bm_graz" in by_name:
        rows.append(_count_target(by_name["bm_graz"]))
    real = [by_name[k] for k in ("crchisto", "bm_graz", "cpm15") if k in by_name]
    if real:
        mp = sum(t.megapixels for t in real)
        cpu = sum(t.cpu_s for t in real)
        rows.append(("throughput >= 2 MP/s, one core (real sets, CPU time)", f"{mp / cpu:.2f} MP/s", mp / cpu >= 2.0))
    if "mosaic" in by_name:
        t = by_name["mosaic"]
        rows.append(("throughput >= 2 MP/s, tiled path (CPU time)", f"{fmt(t.mps_cpu, 2)} MP/s", t.mps_cpu >= 2.0))
    return rows


def targets_model(by_name, speed):
    rows = []
    if "crchisto" in by_name:
        t = by_name["crchisto"]
        rows.append(("CRCHisto validation: F1 >= 0.82", f"F1 {fmt(t.f1)}", t.f1 >= 0.82))
        rows.append(("CRCHisto validation: epithelial (tumour) F1 >= 0.70", f"F1 {fmt(t.tumour_f1)}",
                     t.tumour_f1 >= 0.70))
    rows += _common_targets(by_name)
    rows += [_count_target(by_name[key]) for key in ("crchisto", "bm_graz", "cpm15") if key in by_name]
    if speed is not None:
        rows.append(("inference >= 1 MP/s on 2 cores (wall time)", f"{speed[0]:.2f} MP/s", speed[0] >= 1.0))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding crchisto/, bm_graz/, cpm15/")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    parser.add_argument("--methods", default="classical,model", help="segment_nuclei methods to compare")
    parser.add_argument("--crchisto-split", default="validation", choices=("validation", "train", "all"))
    parser.add_argument("--split", default="test", choices=("test", "train", "all"),
                        help="BM_GRAZ and CPM-15 images: the model's held-out ones (default) or others")
    parser.add_argument("--synthetic-seeds", type=int, default=2, help="synthetic sections per pixel size")
    parser.add_argument("--synthetic-field-um", type=float, default=512.0, help="side of the synthetic field, µm")
    parser.add_argument("--mosaic-px", type=int, default=4000, help="side of the tiled-path mosaic, px")
    parser.add_argument("--model-threads", type=int, default=2, help="torch threads for the model speed figure")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(wanted) - set(SETS)
    if unknown:
        parser.error(f"unknown sets {sorted(unknown)}; choose from {SETS}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    print(f"boneimg {bi.__version__} segment_nuclei ({', '.join(methods)}; defaults); python "
          f"{platform.python_version()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; "
          f"data {args.data}; BM_GRAZ/CPM-15 images: {args.split}")
    real_data = args.data.is_dir()
    if not real_data:
        print(f"real data folder {args.data} missing: real sets skipped")
    seeds = list(range(args.synthetic_seeds))
    real_cases = {}
    if real_data:
        real_cases = {
            "crchisto": (f"CRCHisto {args.crchisto_split} (6 px)", lambda: crchisto_cases(args.data, args.crchisto_split)),
            "bm_graz": (f"BM_GRAZ {args.split} (3.3 µm)", lambda: bm_graz_cases(args.data, args.split)),
            "cpm15": (f"CPM-15 {args.split} (3.3 µm; labels)", lambda: cpm15_cases(args.data, args.split)),
            "mosaic": ("CRCHisto val. mosaic, tiled path (6 px)", lambda: [mosaic_case(args.data, args.mosaic_px)]),
        }
    results = {}
    for method in methods:
        tallies, by_name = [], {}
        for key, (label, cases) in real_cases.items():
            if key in wanted and not (key == "mosaic" and method == "model"):
                by_name[key] = run_cases(f"{label} [{method}]", cases(), method=method)
                tallies.append(by_name[key])
        if "synthetic" in wanted:
            cases = list(synthetic_cases(seeds, args.synthetic_field_um))
            for px, part in ((0.5, cases[:len(seeds)]), (0.25, cases[len(seeds):])):
                tallies.append(run_cases(f"synthetic H&E {px} µm/px (labels) [{method}]", part, method=method))
        results[method] = (tallies, by_name)
        print()
        print_table(tallies)
        if any(t.typed for t in tallies):
            print("tumour (epithelial) class F1 (HoVer-Net F_c; pairs with an unlabelled true nucleus left out): "
                  + ", ".join(f"{t.label} {fmt(t.tumour_f1)}" for t in tallies if t.typed))
    print("Detection scores pooled over the images (one-to-one matching); AJI, PQ mean per image; "
          "MP/s = input megapixels per second of CPU time (classical: one thread) and of wall time.")

    if "synthetic" in wanted:
        print("\nSame synthetic field at 0.5 and 0.25 µm/px (20x vs 40x): nuclei counted (method auto)")
        for seed, a, b in synthetic_scale_check(seeds, args.synthetic_field_um):
            print(f"  seed {seed}: {a} vs {b} ({100 * (b - a) / max(a, 1):+.1f} %)")

    if "trap" in wanted:
        oc_ratio, oc_note = osteoclast_count_error(seeds, 1024.0)
        print(f"\nOsteoclast count (synthetic TRAP, predicted/true N.Oc): {fmt(oc_ratio, 2)} ({oc_note})")

    speed = None
    if "model" in methods and real_data and "mosaic" in wanted:
        speed = model_speed(args.data, args.model_threads)
        print(f"\nmodel inference, 2000x2000 px CRCHisto mosaic, {args.model_threads} torch threads: "
              f"{speed[0]:.2f} MP/s wall, {speed[1]:.2f} MP/s of CPU time")

    for method, title, rows in (("classical", "Targets (issue 3, classical path)", targets_classical),
                                ("model", "Targets (issue 5, trained model)", targets_model)):
        if method not in results:
            continue
        rows = rows(results[method][1]) if method == "classical" else rows(results[method][1], speed)
        print(f"\n{title:52s} reached           verdict")
        for what, reached, ok in rows:
            print(f"  {what:50s} {reached:17s} {verdict(ok)}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    main()
    sys.exit(0)
