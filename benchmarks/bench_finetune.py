"""Fine-tuning the shipped nucleus model on a new stain: synthetic TRAP sections.

The shipped model was trained on H&E only. This script exports 10 synthetic TRAP sections
(``sample_data.sections.trap_section``, exact nucleus labels) in the folder layout the napari
plugin writes for corrected annotations, fine-tunes the shipped model on them with
:func:`boneimg.models.recipe.fine_tune` (what ``boneimg train --from nuclei_he`` runs), and
scores both models on 5 other TRAP sections: detection precision / recall / F1 (centres within
3.3 µm, one-to-one), count ratio, AJI and PQ.

    python benchmarks/bench_finetune.py              # about 5 minutes on 2 cores
    python benchmarks/bench_finetune.py --steps 100
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boneimg.histology.review import export_annotations  # noqa: E402
from boneimg.models.datasets import Annotated  # noqa: E402
from boneimg.models.evaluate import predict_records, score  # noqa: E402
from boneimg.models.recipe import fine_tune, format_scores  # noqa: E402
from boneimg.models.weights import DEFAULT_MODEL, load_model  # noqa: E402
from boneimg.sample_data.sections import trap_section  # noqa: E402

TRAIN_SEEDS = range(200, 210)
TEST_SEEDS = range(300, 305)


def held_out(side_px, px):
    for seed in TEST_SEEDS:
        section = trap_section((side_px, side_px), px, seed=seed)
        table = section.truth["nuclei_table"]
        yield Annotated(f"trap/{seed}", section.image, table[["x", "y"]].to_numpy(float),
                        labels=section.truth["nuclei"])


def evaluate(model, records):
    net, meta = load_model(model)
    wpx = float(meta["working_pixel_size_um"])
    return score(predict_records(net, records, wpx), wpx, meta["postprocess"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps (default %(default)s)")
    parser.add_argument("--field-um", type=float, default=256.0, help="side of each section, µm")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    px = 0.5
    side = int(round(args.field_um / px))
    records = list(held_out(side, px))
    before = evaluate(DEFAULT_MODEL, records)
    print(f"shipped {DEFAULT_MODEL} on {len(records)} held-out TRAP sections: {format_scores(before)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "trap_annotations"
        for seed in TRAIN_SEEDS:
            section = trap_section((side, side), px, seed=seed)
            table = section.truth["nuclei_table"]
            export_annotations(folder, f"trap_{seed}", section.image, labels=section.truth["nuclei"],
                               points=table[["x", "y"]])
        start = time.perf_counter()
        meta = fine_tune(DEFAULT_MODEL, folder, Path(tmp) / "nuclei_trap", steps=args.steps, threads=args.threads,
                         log=lambda line: None)
        seconds = time.perf_counter() - start
        after = evaluate(Path(tmp) / "nuclei_trap", records)
    print(f"fine-tuned on {len(TRAIN_SEEDS)} TRAP sections, {args.steps} steps, {seconds:.0f} s "
          f"({meta['training']['seconds']:.0f} s training): {format_scores(after)}")
    gain = after["f1"] - before["f1"]
    verdict = "PASS" if gain > 0.01 else "FAIL"
    print(f"{verdict}  fine-tuning improves held-out F1 on the new stain: {before['f1']:.3f} -> {after['f1']:.3f} "
          f"({gain:+.3f}); AJI {before['aji']:.3f} -> {after['aji']:.3f}")
    return 0


if __name__ == "__main__":
    main()
    sys.exit(0)
