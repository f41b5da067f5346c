"""Review of a section analysis: measurements that follow corrections, and corrections exported
as training annotations.

After :func:`boneimg.analyze_section`, a person may repaint the regions, delete or add nuclei
and osteoclasts, or change an osteoclast's nucleus count. :func:`remeasure_section` measures the
corrected objects with the same rules, and :func:`export_annotations` writes the corrected image,
nuclei and points in the folder layout that training reads.
"""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import draw

from ..errors import BoneImgError
from ..io.image import spacing_tuple
from ..io.write import save_image, save_labels, save_table
from .histomorphometry import BONE, TUMOUR, section_measurements
from .nuclei import Nuclei
from .osteoclasts import osteoclast_table

_NAME = re.compile(r"[^./\\\x00-\x1f][^/\\\x00-\x1f]*")  # a file name stem: no folders


def remeasure_section(regions, pixel_size_um, *, stain, nuclei=None, osteoclasts=None, osteoclast_labels=None,
                      min_nuclei=1, contact_um=3.0, interface_um=10.0, cell_area_um2=500.0):
    """Histomorphometry of a section from its (corrected) region map, nuclei and osteoclasts.

    The rules are :func:`boneimg.analyze_section`'s: a tumour cell is a nucleus whose centre
    lies in tumour (and whose ``cell_type`` is "tumour" where that column exists); an
    osteoclast counts when it has at least `min_nuclei` nuclei and its edge lies within
    `contact_um` of bone. On the uncorrected results of a section analysed on its own pixels
    (pixel size at least ``working_pixel_size_um``, 0.5 µm by default) the measurements are
    those of the analysis; a finer image was measured on a coarser working grid, so its
    perimeters differ slightly.

    Parameters
    ----------
    regions : ndarray of shape (M, N), int
        0 no tissue, 1 bone, 2 marrow and other soft tissue, 3 tumour.
    pixel_size_um : float or (float, float)
        Pixel size (row, column) in µm.
    stain : {"he", "trap"}
        Osteoclasts are measured on TRAP sections only (their symbols are NaN on H&E).
    nuclei : pandas.DataFrame, optional
        One row per nucleus: ``x``, ``y`` (centre in pixels, x = column) and optionally
        ``cell_type``. None: no nuclei.
    osteoclasts : pandas.DataFrame, optional
        One row per TRAP-positive cell: ``x``, ``y`` (pixels), ``n_nuclei`` and optionally
        ``label`` (its cell in `osteoclast_labels`) and ``area_um2``. None: no cells.
    osteoclast_labels : ndarray of shape (M, N), int, optional
        Cell outlines; a row's cell is the one with its ``label``. A row without a cell there
        (no label, a label not in the image or one taken by an earlier row) is a disk of its
        ``area_um2`` (else `cell_area_um2`) around its centre. Cells without a row do not count.
    min_nuclei : int
        Fewest nuclei for a cell to count as an osteoclast.
    contact_um, interface_um : float
        As for :func:`boneimg.analyze_section`, µm.
    cell_area_um2 : float
        Area of a cell drawn for a row with neither an outline nor an area, µm².

    Returns
    -------
    measurements : dict
        Symbol -> value, the keys of :data:`boneimg.histology.histomorphometry.SYMBOLS`.
    notes : dict
        Symbol -> why its value is NaN.

    Raises
    ------
    BoneImgError
        A bad stain, parameter, table or array shape.
    """
    regions = np.asarray(regions)
    if regions.ndim != 2:
        raise BoneImgError(f"regions must be a 2-D label image, got shape {regions.shape}")
    spacing = spacing_tuple(pixel_size_um, 2, name="pixel_size_um")
    if stain not in ("he", "trap"):
        raise BoneImgError(f"stain must be 'he' or 'trap', got {stain!r}")
    if isinstance(min_nuclei, bool) or not isinstance(min_nuclei, (int, np.integer)) or min_nuclei < 0:
        raise BoneImgError(f"min_nuclei must be a whole number >= 0, got {min_nuclei!r}")
    for name, value in (("contact_um", contact_um), ("interface_um", interface_um), ("cell_area_um2", cell_area_um2)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
            raise BoneImgError(f"{name} must be a non-negative number, got {value!r}")

    nuclei = _table(nuclei, "nuclei", ("x", "y"))
    # analyze_section's rule (Nuclei.inside): the rounded centre lies in tumour
    in_tumour = Nuclei(np.broadcast_to(np.int32(0), regions.shape), nuclei, spacing, "review").inside(
        regions == TUMOUR)
    if "cell_type" in nuclei:
        in_tumour &= nuclei["cell_type"].eq("tumour").to_numpy()
    table = labels = None
    if stain == "trap":
        table, labels = _osteoclasts(_table(osteoclasts, "osteoclasts", ("x", "y", "n_nuclei")), osteoclast_labels,
                                     regions, spacing, min_nuclei, contact_um, cell_area_um2)
    return section_measurements(regions, spacing, n_tumour_cells=int(in_tumour.sum()), osteoclasts=table,
                                osteoclast_labels=labels, contact_um=contact_um, interface_um=interface_um)


def _table(table, name, columns):
    """`table` as a DataFrame with at least `columns` (finite numbers); None is an empty table."""
    table = pd.DataFrame(columns=list(columns)) if table is None else pd.DataFrame(table).reset_index(drop=True)
    missing = [c for c in columns if c not in table]
    if missing:
        raise BoneImgError(f"{name} needs the columns {list(columns)}, missing {missing}")
    values = table[list(columns)].to_numpy(float)
    if not np.isfinite(values).all():
        rows = np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist()
        raise BoneImgError(f"{name} has missing or infinite values in {list(columns)} at rows {rows[:10]}")
    return table


def _osteoclasts(rows, outlines, regions, spacing, min_nuclei, contact_um, cell_area_um2):
    """The cells of the rows as labels 1..n (row order) and their table (osteoclast_table)."""
    n_nuclei = rows["n_nuclei"].to_numpy(float)
    if (n_nuclei < 0).any() or (n_nuclei != np.round(n_nuclei)).any():
        raise BoneImgError("osteoclasts: n_nuclei must be whole numbers >= 0")
    cells = np.zeros(regions.shape, np.int32)
    drawn = np.ones(len(rows), bool)
    if outlines is not None and "label" in rows and len(rows):
        outlines = np.asarray(outlines)
        if outlines.shape != regions.shape:
            raise BoneImgError(f"osteoclast_labels must have the regions' shape {regions.shape}, "
                               f"got {outlines.shape}")
        given = pd.to_numeric(rows["label"], errors="coerce").fillna(0).to_numpy().astype(np.int64)
        present = np.isin(given, outlines[outlines > 0]) & ~pd.Series(given).duplicated().to_numpy()
        lut = np.zeros(int(outlines.max(initial=0)) + 1, np.int32)
        lut[given[present]] = np.flatnonzero(present) + 1
        cells = lut[np.clip(outlines, 0, None)]
        drawn = ~present
    area = rows["area_um2"].to_numpy(float) if "area_um2" in rows else np.full(len(rows), np.nan)
    area = np.where(np.isfinite(area) & (area > 0), area, cell_area_um2)
    for i in np.flatnonzero(drawn):  # a disk of the cell's area; at least its centre pixel
        radius = np.sqrt(area[i] / np.pi) / np.array(spacing)
        y, x = rows.at[i, "y"], rows.at[i, "x"]
        cells[draw.ellipse(y, x, max(radius[0], 0.5), max(radius[1], 0.5), shape=cells.shape)] = i + 1
        cells[min(max(round(y), 0), cells.shape[0] - 1), min(max(round(x), 0), cells.shape[1] - 1)] = i + 1
    # min_nuclei=0: on_bone alone decides "counted" here; the given nucleus counts are applied next
    table = osteoclast_table(cells, spacing, bone=regions == BONE, regions=regions, contact_um=contact_um,
                             min_nuclei=0)
    table["n_nuclei"] = n_nuclei[table["label"].to_numpy() - 1].astype(np.int64)
    table["counted"] &= table["n_nuclei"] >= min_nuclei
    return table, cells


def export_annotations(out_dir, name, image, *, labels=None, points=None):
    """Write one image and its corrected annotations in the layout training reads.

    Writes, atomically, ``<name>.ome.tif`` (the image with its pixel size),
    ``<name>.labels.tif`` (int32 nucleus instance labels, with `labels`) and
    ``<name>.points.csv`` (``x``, ``y`` in pixels of the image, x = column, and ``cell_type``
    where given, with `points`; read it with :func:`boneimg.io.write.read_table`).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder (created); it must not be, or lie inside, the folder `image` was read from.
    name : str
        File name stem (no folder, not starting with ``.``).
    image : Image
        The image, with a known pixel size.
    labels : ndarray of shape (M, N), int, optional
        Nucleus instance labels (0 background) on the image's pixels.
    points : pandas.DataFrame, optional
        One row per cell: ``x``, ``y`` (pixels) and optionally ``cell_type``.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    BoneImgError
        An output folder inside the input folder, a bad name, no pixel size, or annotations
        that do not fit the image. Nothing is written then.
    """
    out = Path(out_dir).resolve()
    if image.path is not None:
        source = Path(image.path).resolve()
        folder = source if source.is_dir() else source.parent
        if out == folder or out.is_relative_to(folder):
            raise BoneImgError(f"the output folder is inside the folder the image was read from ({folder}); "
                               "boneimg never writes next to its inputs: choose another folder", path=out_dir)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BoneImgError(f"name must be a file name without folder, not starting with '.', got {name!r}")
    spacing = image.require_spacing("exporting annotations")
    shape = tuple(image.spatial_shape)
    if len(shape) != 2:
        raise BoneImgError(f"annotations are exported for 2-D images, got axes {image.axes!r}", path=image.path)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != shape or labels.dtype.kind not in "iub":
            raise BoneImgError(f"labels must be integers of the image's shape {shape}, got {labels.dtype} "
                               f"of shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
            raise BoneImgError("labels must lie in 0 .. 2**31-1 (int32)")
    if points is not None:
        points = _table(points, "points", ("x", "y"))[[c for c in ("x", "y", "cell_type") if c in points]]

    parameters = {"export": "training annotations", "name": name}
    written = [out / f"{name}.ome.tif"]
    save_image(written[0], image, parameters=parameters)
    if labels is not None:
        written.append(out / f"{name}.labels.tif")
        save_labels(written[-1], labels.astype(np.int32), spacing, source=image.path, parameters=parameters)
    if points is not None:
        written.append(out / f"{name}.points.csv")
        save_table(written[-1], points, source=image.path, parameters=parameters)
    return written
