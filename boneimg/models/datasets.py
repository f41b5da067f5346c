"""Annotated nucleus images for training and evaluation: the public sets and boneimg's own
annotation folders.

Every loader yields :class:`Annotated` records holding the image (with its pixel size) and
whatever ground truth the set has: nucleus centres, their cell types, instance labels.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BoneImgError
from ..io.load import load
from ..io.write import read_table

#: Cell types the models predict, in channel order.
CELL_TYPES = ("tumour", "immune", "stromal", "other")

# The sets' own class names -> boneimg's cell types ("unlabelled" stays unknown).
_CRCHISTO_TYPES = {"epithelial": "tumour", "inflammatory": "immune", "fibroblast": "stromal", "others": "other"}
_SYNTHETIC_TYPES = {"tumour": "tumour", "marrow": "immune", "stromal": "stromal", "osteocyte": "other",
                    "osteoclast": "other"}

# Held-out images of the sets without an official split: whole patients for BM_GRAZ (file
# names BM_GRAZ_HE_<patient>_<tile>), every third tile (both magnifications) for CPM-15.
_BM_GRAZ_TEST_PATIENTS = ("0003", "0006")
_CPM15_TEST = ("image03", "image06", "image09", "image12", "image15")


@dataclass(eq=False)
class Annotated:
    """One annotated image.

    Attributes
    ----------
    name : str
        Set and image name, e.g. ``"crchisto/img1"``.
    image : Image
        RGB image with its pixel size.
    points : ndarray of shape (n, 2) or None
        Nucleus centres (x, y) in pixels (x = column), every nucleus in the image.
    cell_types : ndarray of str or None
        One of :data:`CELL_TYPES` per point, or ``""`` where not classified.
    labels : ndarray of int32 or None
        Nucleus instance labels, 0 = background.
    split : str
        "train", "validation" or "test".
    """

    name: str
    image: object
    points: np.ndarray | None = None
    cell_types: np.ndarray | None = None
    labels: np.ndarray | None = None
    split: str = "train"

    def centres(self):
        """Nucleus centres (x, y) in pixels: the points, else the centroids of the labels."""
        if self.points is not None:
            return self.points
        from ..metrics import label_centroids

        return label_centroids(self.labels)[1]


def _folder(root, name):
    folder = Path(root) / name
    if not folder.is_dir():
        raise BoneImgError(f"data set folder not found: {folder}")
    return folder


def crchisto(root):
    """CRCHistoPhenotypes tiles (0.55 µm/px) with typed centres; split from ``split.csv``."""
    folder = _folder(root, "crchisto")
    for _, row in pd.read_csv(folder / "split.csv").iterrows():
        points = pd.read_csv(folder / "points" / f"{row['image']}.csv")
        types = points["class"].map(_CRCHISTO_TYPES).fillna("").to_numpy(str)
        yield Annotated(f"crchisto/{row['image']}", load(folder / "images" / f"{row['image']}.png", pixel_size_um=0.55),
                        points[["x", "y"]].to_numpy(float), types, split=row["split"])


def bm_graz(root):
    """BM_GRAZ bone-marrow tiles (0.37 µm/px) with untyped centres; patients 0003 and 0006 held out."""
    folder = _folder(root, "bm_graz")
    for path in sorted((folder / "images").glob("*.png")):
        points = pd.read_csv(folder / "points" / f"{path.stem}.csv")
        patient = path.stem.split("_")[3]
        yield Annotated(f"bm_graz/{path.stem}", load(path, pixel_size_um=0.37), points[["x", "y"]].to_numpy(float),
                        split="test" if patient in _BM_GRAZ_TEST_PATIENTS else "train")


def cpm15(root):
    """CPM-15 tiles with instance labels, pixel size per ``images.csv``; every third tile held out."""
    import tifffile

    folder = _folder(root, "cpm15")
    for _, row in pd.read_csv(folder / "images.csv").iterrows():
        stem = Path(row["image"]).stem
        labels = tifffile.imread(folder / "labels" / row["labels"]).astype(np.int32)
        yield Annotated(f"cpm15/{stem}", load(folder / "images" / row["image"],
                                              pixel_size_um=float(row["um_per_px_approx"])),
                        labels=labels, split="test" if stem in _CPM15_TEST else "train")


def synthetic_he(n_images, *, field_um=256.0, pixel_size_um=0.5, first_seed=1000):
    """Synthetic H&E sections (:func:`boneimg.sample_data.sections.he_section`) with exact labels."""
    from ..sample_data.sections import he_section

    side = int(round(field_um / pixel_size_um))
    for seed in range(first_seed, first_seed + n_images):
        section = he_section((side, side), pixel_size_um, seed=seed)
        table = section.truth["nuclei_table"]
        yield Annotated(f"synthetic/he_{seed}", section.image, table[["x", "y"]].to_numpy(float),
                        table["cell_type"].map(_SYNTHETIC_TYPES).fillna("").to_numpy(str),
                        labels=np.asarray(section.truth["nuclei"], np.int32))


def annotation_folder(folder):
    """Images with corrected annotations, as the napari plugin exports them.

    For each ``<name>.ome.tif`` (or ``.tif``/``.png`` with ``pixel_size_um`` in the file) the
    folder holds ``<name>.labels.tif`` (nucleus instance labels) and/or ``<name>.points.csv``
    (columns ``x``, ``y`` in pixels and optionally ``cell_type``; leading ``#`` provenance lines
    are skipped), as :func:`boneimg.histology.review.export_annotations` writes them. Every nucleus of the image
    must be annotated: unannotated nuclei would be taught as background.
    """
    import tifffile

    folder = Path(folder)
    if not folder.is_dir():
        raise BoneImgError(f"annotation folder not found: {folder}")
    found = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.endswith((".labels.tif", ".points.csv")) or not name.lower().endswith((".tif", ".tiff", ".png")):
            continue
        stem = name[: -len(".ome.tif")] if name.lower().endswith(".ome.tif") else path.stem
        labels_path, points_path = folder / f"{stem}.labels.tif", folder / f"{stem}.points.csv"
        if not labels_path.exists() and not points_path.exists():
            continue
        image = load(path)
        if image.spacing_um is None:
            raise BoneImgError("training images need their pixel size in the file (save them as OME-TIFF)",
                               path=path)
        labels = tifffile.imread(labels_path).astype(np.int32) if labels_path.exists() else None
        if labels is not None and labels.shape != image.spatial_shape:
            raise BoneImgError(f"labels of shape {labels.shape} do not match the image {image.spatial_shape}",
                               path=labels_path)
        points = types = None
        if points_path.exists():
            table = read_table(points_path)
            if not {"x", "y"} <= set(table.columns):
                raise BoneImgError("a points file needs columns x and y (pixels)", path=points_path)
            points = table[["x", "y"]].to_numpy(float)
            if "cell_type" in table:
                types = table["cell_type"].fillna("").astype(str).to_numpy()
                unknown = set(types) - set(CELL_TYPES) - {""}
                if unknown:
                    raise BoneImgError(f"unknown cell types {sorted(unknown)}; use {CELL_TYPES}", path=points_path)
        found.append(Annotated(f"{folder.name}/{stem}", image, points, types, labels))
    if not found:
        raise BoneImgError(f"no annotated images in {folder} (expected <name>.ome.tif with <name>.labels.tif "
                           "or <name>.points.csv)")
    return found
