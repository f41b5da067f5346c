"""Writers for results: label images and masks as OME-TIFF with their spacing, tables as CSV.

Every output records the boneimg version, the parameters and the input it came from, and is
written atomically.
"""

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import tifffile

from .._version import __version__
from ..errors import BoneImgError
from .atomic import atomic_path
from .image import spacing_tuple

_LABEL_DTYPES = (np.bool_, np.uint8, np.uint16, np.int32, np.uint32, np.int64)


def provenance(source=None, parameters=None, **extra):
    """The record every boneimg output carries: version, time, input and parameters."""
    return {
        "software": f"boneimg {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": None if source is None else str(source),
        "parameters": parameters or {},
        **extra,
    }


def save_labels(path, labels, spacing_um, *, source=None, parameters=None):
    """Write a label image or mask as OME-TIFF carrying its physical pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, conventionally ``*.ome.tif``.
    labels : ndarray of shape (M, N) or (P, M, N)
        Integer labels (0 = background) or a boolean mask.
    spacing_um : float or sequence of float
        Pixel (voxel) size in µm, one per axis or one for all.
    source, parameters : optional
        The input it was computed from and the parameters used, stored in the file.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise BoneImgError(f"labels must be 2-D or 3-D, got shape {labels.shape}", path=path)
    if labels.dtype.type not in _LABEL_DTYPES:
        raise BoneImgError(f"labels must be boolean or integer, got {labels.dtype}", path=path)
    if labels.dtype == np.int64:
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint32).max):
            raise BoneImgError("int64 labels must lie in 0 .. 2**32-1", path=path)
        labels = labels.astype(np.uint32)
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    spacing = spacing_tuple(spacing_um, labels.ndim, name="spacing_um")
    axes = "ZYX" if labels.ndim == 3 else "YX"
    metadata = {"axes": axes, "PhysicalSizeX": spacing[-1], "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": spacing[-2], "PhysicalSizeYUnit": "µm",
                "Description": json.dumps(provenance(source, parameters))}
    if labels.ndim == 3:
        metadata.update(PhysicalSizeZ=spacing[0], PhysicalSizeZUnit="µm")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, ome=True, metadata=metadata, compression="zlib",
                         resolution=(1e4 / spacing[-1], 1e4 / spacing[-2]), resolutionunit="CENTIMETER")


def save_image(path, image, *, pyramid_levels=0, tile=256, source=None, parameters=None):
    """Write an Image as (pyramidal) OME-TIFF with its physical pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, conventionally ``*.ome.tif``.
    image : Image
        Image with a known spacing.
    pyramid_levels : int
        Number of 2x-downsampled levels to add as SubIFDs (2-D images only), as slide scanners do.
    tile : int
        Tile edge in pixels for 2-D images.
    """
    spacing = image.require_spacing("writing an OME-TIFF")
    data = np.asarray(image.data)
    axes = {"yx": "YX", "yxc": "YXS", "zyx": "ZYX"}[image.axes]
    metadata = {"axes": axes, "PhysicalSizeX": spacing[-1], "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": spacing[-2], "PhysicalSizeYUnit": "µm",
                "Description": json.dumps(provenance(source or image.path, parameters, modality=image.modality))}
    if image.axes == "zyx":
        metadata.update(PhysicalSizeZ=spacing[0], PhysicalSizeZUnit="µm")
    if pyramid_levels and image.axes == "zyx":
        raise BoneImgError("pyramid levels are for 2-D images", path=path)
    options = {"compression": "zlib", "photometric": "rgb" if image.axes == "yxc" else "minisblack"}
    if image.axes != "zyx":
        options["tile"] = (tile, tile)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=data.nbytes > 2**31, ome=True) as tw:
        tw.write(data, subifds=pyramid_levels, metadata=metadata, **options)
        for level in range(1, pyramid_levels + 1):
            step = 2**level
            tw.write(data[::step, ::step], subfiletype=1, **options)


def save_table(path, table, *, source=None, parameters=None):
    """Write a table as CSV, preceded by ``#`` lines with its provenance.

    Read it back with :func:`read_table`.
    """
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    header = "".join(f"# {key}: {json.dumps(value) if isinstance(value, dict) else value}\n"
                     for key, value in provenance(source, parameters).items())
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(header)
            table.to_csv(fh, index=False)


def read_table(path):
    """Read a CSV written by :func:`save_table`, skipping its leading provenance lines."""
    with open(path, encoding="utf-8") as fh:
        n_header = 0
        for line in fh:
            if not line.startswith("#"):
                break
            n_header += 1
    # skiprows, not comment="#": a '#' inside a value (a file name) must survive.
    return pd.read_csv(path, skiprows=n_header)
