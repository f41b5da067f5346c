"""The ``boneimg`` command: a thin layer over the library."""

import argparse
import json
import sys
import warnings
from pathlib import Path

from ._version import __version__
from .errors import BoneImgError, CalibrationWarning
from .io import load
from .io.describe import describe, format_description


def cmd_info(args):
    failed = 0
    results = []
    for path in args.paths:
        try:
            with warnings.catch_warnings():
                # info reports a missing calibration itself, in its own words
                warnings.simplefilter("ignore", CalibrationWarning)
                image = load(path, pixel_size_um=args.pixel_size)
        except BoneImgError as exc:
            print(f"boneimg: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        info = describe(image)
        results.append(info)
        if not args.json:
            print(format_description(info))
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_demo(args):
    from .demo import run_demo

    run_demo(Path(args.out), echo=print)
    return 0


def cmd_study(args):
    from .study import run_study

    options = {"control": args.control, "workers": args.workers, "scheduler": args.scheduler}
    try:
        study = run_study(args.design, args.out_dir, settings=args.settings, quiet=args.quiet,
                          **{k: v for k, v in options.items() if v is not None})
    except KeyboardInterrupt:
        print(f"boneimg: interrupted; the images done are kept in {args.out_dir}: run the same "
              "command again to resume", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"{len(study.images)} images analysed, {len(study.failures)} failed"
              + (f" (reasons in {study.out_dir / 'failures.csv'})" if len(study.failures) else ""))
        print(f"report: {study.report}")
    return 0


def cmd_train(args):
    from .models.recipe import fine_tune, train_shipped

    command = "boneimg train " + " ".join(args.argv)
    if args.base is None:
        train_shipped(args.data, args.out, steps=args.steps, threads=args.threads, command=command)
    else:
        fine_tune(args.base, args.data, args.out, steps=args.steps or 300, threads=args.threads, command=command)
    print(f"model written: {args.out}.pt, {args.out}.json, {args.out}.md")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="boneimg",
        description="Image analysis for bone-metastasis research: histology, micro-CT and "
        "radiographs, measured in physical units.",
    )
    parser.add_argument("--version", action="version", version=f"boneimg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="describe images: shape, axes, dtype, pixel size, modality, pyramid levels")
    info.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder of slices")
    info.add_argument("--pixel-size", type=float, metavar="UM", help="pixel size in µm, overriding the file")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=cmd_info)

    study = sub.add_parser(
        "study", help="analyse a treatment study: every image, per-animal values, effects vs control, report",
        description="Analyse every image of a study, average per animal and compare each group with the "
        "control. Running again on the same OUT_DIR resumes where a previous run stopped.")
    study.add_argument("design", metavar="DESIGN",
                       help="CSV with columns path, animal, group (optional bone, timepoint, modality, "
                       "pixel_size_um), or a folder laid out as GROUP/ANIMAL/image")
    study.add_argument("out_dir", metavar="OUT_DIR", help="output folder (not inside an input folder)")
    study.add_argument("--settings", metavar="FILE", help="TOML or YAML settings file; copied into OUT_DIR")
    study.add_argument("--control", metavar="GROUP", help="control group (default: the first group)")
    study.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    study.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask distributed cluster at ADDRESS (e.g. tcp://host:8786)")
    study.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    study.set_defaults(func=cmd_study)

    train = sub.add_parser(
        "train", help="train the nucleus model, or fine-tune one on corrected annotations",
        description="Without --from: train the shipped nucleus model from the public annotated sets in DATA "
        "(crchisto/, bm_graz/, cpm15/). With --from MODEL: fine-tune MODEL on DATA, a folder of "
        "<name>.ome.tif images with <name>.labels.tif and/or <name>.points.csv (as the napari plugin "
        "exports corrections). Writes OUT.pt, OUT.json and the model card OUT.md.")
    train.add_argument("--data", required=True, metavar="DIR", help="training data folder")
    train.add_argument("--out", required=True, metavar="STEM", help="output path without extension")
    train.add_argument("--from", dest="base", metavar="MODEL", help="model to fine-tune (name or path)")
    train.add_argument("--steps", type=int, metavar="N", help="optimiser steps (default: the recipe's)")
    train.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    train.set_defaults(func=cmd_train)

    demo = sub.add_parser("demo", help="generate synthetic example data and analyse it")
    demo.add_argument("--out", default="boneimg-demo", metavar="DIR", help="output folder (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)[1:]
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except BoneImgError as exc:
        print(f"boneimg: error: {exc}", file=sys.stderr)
        return 1
