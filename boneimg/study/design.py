"""The study design: which image belongs to which animal and group, read from a table or folders."""

import math
import os
from pathlib import Path

import pandas as pd

from ..errors import BoneImgError
from .analyses import canonical_modality

REQUIRED = ("path", "animal", "group")
OPTIONAL = ("bone", "timepoint", "modality", "pixel_size_um", "reference")
# What a GROUP/ANIMAL folder may hold as images; anything else (notes, tables) is left alone.
IMAGE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".png", ".jpg", ".jpeg", ".bmp", ".nrrd",
                  ".nii", ".nii.gz")


def read_design(design):
    """Read and validate a study design.

    Parameters
    ----------
    design : str, os.PathLike or pandas.DataFrame
        A CSV file or DataFrame with one row per image and columns ``path``, ``animal``,
        ``group`` and optionally ``bone``, ``timepoint``, ``modality``, ``pixel_size_um`` and
        ``reference`` (an aligned lesion-free image of the same bone, a baseline scan or the
        mirrored contralateral limb, passed to the analysis as ``reference=``); or a folder laid
        out as ``GROUP/ANIMAL/image`` (a sub-folder inside ``ANIMAL`` is one image: a micro-CT
        slice stack). Relative paths in a CSV are relative to the CSV's folder, in a DataFrame
        to the working directory.

    Returns
    -------
    design : pandas.DataFrame
        One row per image: ``path`` (absolute), ``animal``, ``group`` and the optional columns
        the design gave, as strings (``pixel_size_um`` as float, NaN where not given).
    source : str
        What the design was read from, for provenance.

    Raises
    ------
    BoneImgError
        If a required column is missing or empty, a path is listed twice, a modality is unknown
        or a pixel size is not a positive number; the message names the row.
    """
    if isinstance(design, pd.DataFrame):
        table, base, source = design.copy(), Path.cwd(), "DataFrame"
    else:
        path = Path(design)
        if path.is_dir():
            source = os.path.abspath(path)
            return _validated(_folder_design(path), path, source), source
        if not path.is_file():
            raise BoneImgError("no such design table or image folder", path=path)
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise BoneImgError(f"cannot read the design table as CSV ({exc})", path=path) from None
        base, source = path.resolve().parent, str(path.resolve())
    return _validated(table, base, source), source


def _validated(table, base, source):
    where = None if source == "DataFrame" else source
    table = table.reset_index(drop=True)
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise BoneImgError(
            f"the design needs columns {', '.join(REQUIRED)}; missing {', '.join(missing)} "
            f"(found {', '.join(table.columns) or 'none'})", path=where)
    if table.empty:
        raise BoneImgError("the design lists no images", path=where)
    table = table[[c for c in (*REQUIRED, *OPTIONAL) if c in table.columns]].copy()
    for column in table.columns.drop("pixel_size_um", errors="ignore"):
        table[column] = [_text(v) for v in table[column]]
    for column in REQUIRED:
        empty = table.index[table[column] == ""]
        if len(empty):
            raise BoneImgError(f"design row {_row(empty[0])} has no {column}", path=where)
    table["path"] = [os.path.normpath(base / p) for p in table["path"]]
    if "reference" in table:
        table["reference"] = [os.path.normpath(base / p) if p else "" for p in table["reference"]]
    twice = table["path"][table["path"].duplicated()]
    if len(twice):
        raise BoneImgError(f"design row {_row(twice.index[0])} lists {twice.iloc[0]} a second time", path=where)
    if "modality" in table:
        table["modality"] = [canonical_modality(m, where=where) if m else "" for m in table["modality"]]
    if "pixel_size_um" in table:
        table["pixel_size_um"] = [_pixel_size(v, i, where) for i, v in table["pixel_size_um"].items()]
    return table.reset_index(drop=True)


def _text(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def _row(index):
    """Rows are counted from 1, as a spreadsheet shows them below the header."""
    return int(index) + 1


def _pixel_size(value, index, where):
    if _text(value) == "":
        return math.nan
    try:
        size = float(value)
    except ValueError:
        size = math.nan
    if not (math.isfinite(size) and size > 0):
        raise BoneImgError(f"design row {_row(index)}: pixel_size_um must be a positive number of µm, "
                           f"got {value!r}", path=where)
    return size


def _folder_design(root):
    rows = []
    for group in _entries(root, folders_only=True):
        for animal in _entries(group, folders_only=True):
            for image in _entries(animal, folders_only=False):
                if image.is_dir() or image.name.lower().endswith(IMAGE_SUFFIXES):
                    rows.append({"path": os.path.abspath(image), "animal": animal.name, "group": group.name})
    if not rows:
        raise BoneImgError("no images found in a GROUP/ANIMAL/image folder layout", path=root)
    return pd.DataFrame(rows)


def _entries(folder, *, folders_only):
    """Visible entries of `folder` in name order (folders only, if asked)."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    return [p for p in entries if p.is_dir()] if folders_only else entries


def input_folders(design, source):
    """The folders the study reads from: every image's and reference's folder (a slice folder
    itself) and a design folder."""
    paths = [*design["path"], *(p for p in design.get("reference", ()) if p)]
    folders = {Path(p) if Path(p).is_dir() else Path(p).parent for p in paths}
    if source != "DataFrame" and Path(source).is_dir():
        folders.add(Path(source))
    return sorted(folders)


def check_out_dir(out_dir, design, source):
    """Refuse an output folder that is, or lies inside, a folder the study reads from.

    Raises
    ------
    BoneImgError
        Naming the input folder, so outputs never mix with (or are re-read as) inputs.
    """
    out = Path(out_dir).resolve()
    for folder in input_folders(design, source):
        folder = folder.resolve()
        if out == folder or out.is_relative_to(folder):
            raise BoneImgError(
                f"the output folder is inside the input folder {folder}; boneimg never writes "
                "next to its inputs: choose an out_dir outside it", path=out_dir)


def choose_control(design, control):
    """The control group: `control` if given (it must be a group), else the first group.

    Returns
    -------
    control : str
    how : str
        Why this group, for the message the study prints.
    """
    groups = list(dict.fromkeys(design["group"]))
    if control is None:
        return groups[0], "the first group in the design"
    if str(control) not in groups:
        raise BoneImgError(f"control group {control!r} is not in the design; its groups are "
                           f"{', '.join(map(repr, groups))}")
    return str(control), "as requested"
