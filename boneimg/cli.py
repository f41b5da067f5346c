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

    demo = sub.add_parser("demo", help="generate synthetic example data and analyse it")
    demo.add_argument("--out", default="boneimg-demo", metavar="DIR", help="output folder (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except BoneImgError as exc:
        print(f"boneimg: error: {exc}", file=sys.stderr)
        return 1
