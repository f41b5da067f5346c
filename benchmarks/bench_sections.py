"""Section analysis against synthetic TRAP sections with exact ground truth.

Targets (issue 3): on every synthetic TRAP section the osteoclast count (N.Oc) is within ±10 %
of the truth, and Oc.S/BS and N.Oc/B.Pm are within 10 % of their true values. Also printed:
per-class region Dice, the other measurements' errors, and throughput (megapixels of input per
second of ``analyze_section`` with the classical nucleus segmenter, wall clock and CPU time of
this process; run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 the CPU figure is one core's;
timings on a shared machine are noisy). Finally
a smoke run on the real TRAP culture image of ../shared/data (no annotation, pixel size not
stated: 1 µm/px is assumed), printing N.Oc with min_nuclei=3.

Always exits 0; prints PASS/FAIL per target.

    python benchmarks/bench_sections.py                    # 6 seeds x (0.5, 0.25) µm/px, 768 µm fields
    python benchmarks/bench_sections.py --seeds 0 1 --fov-um 512
"""

import argparse
import math
from pathlib import Path
import time

import numpy as np

import boneimg as bi
from boneimg.sample_data.sections import REGION_NAMES, trap_section

TARGET = 0.10
CLASSICAL = {"method": "classical"}  # the figures are the classical path's, whatever nucleus model ships
CULTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "trap" / "osteoclast_culture_trap.png"


def relative_error(found, truth):
    if truth == 0 or not math.isfinite(truth):
        return math.nan
    return (found - truth) / truth


def dice(a, b):
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 2 * np.count_nonzero(a & b) / total if total else math.nan


def run(seeds, pixel_sizes, fov_um):
    rows = []
    header = (f"{'seed':>4} {'µm/px':>5} {'bone stain':>10} {'N.Oc':>9} {'err':>6} {'Oc.S/BS':>7} "
              f"{'N.Oc/B.Pm':>9} {'B.Pm':>6} {'Tu.Ar':>6} {'TBI.Pm':>6} {'N.Tu':>6}   "
              + " ".join(f"{REGION_NAMES[k][:6]:>6}" for k in range(4)) + f" {'MP/s':>5} {'CPU':>5}")
    print("relative errors vs truth (%); Dice per region class")
    print(header)
    for pixel_um in pixel_sizes:
        for seed in seeds:
            n = int(round(fov_um / pixel_um))
            fast_green = seed % 2 == 0
            section = trap_section((n, n), pixel_um, seed=seed, fast_green=fast_green)
            start, cpu = time.perf_counter(), time.process_time()
            result = bi.analyze_section(section.image, nuclei_params=CLASSICAL)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            truth, found = section.truth["measurements"], result.measurements
            err = {k: relative_error(found[k], truth[k]) for k in
                   ("N.Oc", "Oc.S/BS_pct", "N.Oc/B.Pm_per_mm", "B.Pm_mm", "Tu.Ar_mm2", "TBI.Pm_mm", "N.TumourCells")}
            dices = [dice(result.regions == k, section.truth["regions"] == k) for k in range(4)]
            rows.append({"seed": seed, "pixel_um": pixel_um, "err": err, "dice": dices, "mp_s": n * n / 1e6 / seconds,
                         "mp_cpu_s": n * n / 1e6 / cpu})
            print(f"{seed:>4} {pixel_um:>5} {'fast green' if fast_green else 'none':>10} "
                  f"{found['N.Oc']:>4}/{truth['N.Oc']:<4} {100 * err['N.Oc']:>+5.1f} {100 * err['Oc.S/BS_pct']:>+7.1f} "
                  f"{100 * err['N.Oc/B.Pm_per_mm']:>+9.1f} {100 * err['B.Pm_mm']:>+6.1f} "
                  f"{100 * err['Tu.Ar_mm2']:>+6.1f} "
                  f"{100 * err['TBI.Pm_mm']:>+6.1f} {100 * err['N.TumourCells']:>+6.1f}   "
                  + " ".join(f"{d:>6.3f}" for d in dices) + f" {rows[-1]['mp_s']:>5.2f} {rows[-1]['mp_cpu_s']:>5.2f}",
                  flush=True)
    return rows


def summarise(rows):
    print()
    for key, label in (("N.Oc", "osteoclast count"), ("Oc.S/BS_pct", "Oc.S/BS"), ("N.Oc/B.Pm_per_mm", "N.Oc/B.Pm")):
        errors = np.array([abs(r["err"][key]) for r in rows])
        verdict = "PASS" if np.all(errors <= TARGET) else "FAIL"
        print(f"{verdict}  {label} within ±{100 * TARGET:.0f} % on every image: worst {100 * errors.max():.1f} %, "
              f"mean |error| {100 * errors.mean():.1f} % ({len(rows)} images)")
    dices = np.array([r["dice"] for r in rows])
    print("mean Dice per class: " + ", ".join(f"{REGION_NAMES[k]} {np.nanmean(dices[:, k]):.3f}" for k in range(4)))
    for key in ("B.Pm_mm", "Tu.Ar_mm2", "TBI.Pm_mm", "N.TumourCells"):
        errors = np.array([r["err"][key] for r in rows])
        print(f"{key}: mean error {100 * np.nanmean(errors):+.1f} %, "
              f"worst |error| {100 * np.nanmax(np.abs(errors)):.1f} %")
    for pixel_um in sorted({r["pixel_um"] for r in rows}):
        for key, what in (("mp_s", "wall clock"), ("mp_cpu_s", "CPU time")):
            speed = [r[key] for r in rows if r["pixel_um"] == pixel_um]
            print(f"throughput at {pixel_um} µm/px ({what}): median {np.median(speed):.2f} MP/s "
                  f"(min {min(speed):.2f}, max {max(speed):.2f})")


def culture_smoke():
    print()
    if not CULTURE.is_file():
        print(f"culture smoke check skipped: {CULTURE} not found")
        return
    start = time.perf_counter()
    result = bi.analyze_section(CULTURE, pixel_size_um=1.0, culture=True, min_nuclei=3, nuclei_params=CLASSICAL)
    seconds = time.perf_counter() - start
    table = result.osteoclasts
    print(f"real TRAP culture {CULTURE.name} (pixel size assumed 1.0 µm; no annotation): stain {result.stain}, "
          f"{len(table)} TRAP+ objects, N.Oc (>= 3 nuclei) = {result.measurements['N.Oc']}, "
          f"nuclei per object {table['n_nuclei'].value_counts().sort_index().to_dict()}, {seconds:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(6)))
    parser.add_argument("--pixel-sizes", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--fov-um", type=float, default=768.0, help="field of view (square), µm")
    parser.add_argument("--no-culture", action="store_true", help="skip the real culture smoke check")
    args = parser.parse_args()
    print(f"boneimg {bi.__version__}: synthetic TRAP sections, {args.fov_um:g} µm fields, seeds {args.seeds}; "
          "even seeds with a fast-green bone counterstain")
    summarise(run(args.seeds, args.pixel_sizes, args.fov_um))
    if not args.no_culture:
        culture_smoke()


if __name__ == "__main__":
    main()
