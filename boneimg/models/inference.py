"""Nucleus segmentation with a trained network: tiled prediction, then instances from the maps."""

import math

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from ..histology.pixels import paste_labels
from .datasets import CELL_TYPES
from .targets import resample_rgb, working_samples

#: Network input tiles on the working grid (pixels) and the overlap cut from each side.
TILE_PX = 1024
OVERLAP_PX = 32
#: Context added around each window of a large image, µm (wider than any nucleus).
MARGIN_UM = 24.0


def predict_maps(net, rgb8, *, tile_px=TILE_PX, overlap_px=OVERLAP_PX, device="cpu"):
    """Per-pixel probabilities of a uint8 RGB image already on the network's working grid.

    The image is cut into overlapping tiles; each tile keeps only its centre, so every pixel
    is predicted with at least `overlap_px` of context (the image edge is mirrored).

    Returns
    -------
    dict
        ``nucleus``, ``centre``, ``distance`` (float32 (M, N) in [0, 1]) and ``cell_type``
        (float32 (M, N, n_types) probabilities, or None).
    """
    import torch

    h, w = rgb8.shape[:2]
    (n_rows, core_h), (n_cols, core_w) = (_tiling(n, tile_px, overlap_px, net.stride) for n in (h, w))
    padded = np.pad(rgb8, [(overlap_px, n_rows * core_h - h + overlap_px),
                           (overlap_px, n_cols * core_w - w + overlap_px), (0, 0)],
                    mode="reflect" if min(h, w) > overlap_px else "edge")
    out = np.zeros((net.head.out_channels, n_rows * core_h, n_cols * core_w), np.float32)
    with torch.inference_mode():
        for i in range(n_rows):
            for j in range(n_cols):
                block = padded[i * core_h: (i + 1) * core_h + 2 * overlap_px,
                               j * core_w: (j + 1) * core_w + 2 * overlap_px]
                # channels-last (NHWC) is the layout oneDNN's CPU convolutions are fastest on
                x = torch.from_numpy(np.ascontiguousarray(block)).to(device).permute(2, 0, 1)[None].float() / 255
                x = x.contiguous(memory_format=torch.channels_last)
                y = net(x)[0, :, overlap_px: overlap_px + core_h, overlap_px: overlap_px + core_w].float()
                y = torch.cat([torch.sigmoid(y[:3]), torch.softmax(y[3:], dim=0)]) if len(y) > 3 else torch.sigmoid(y)
                out[:, i * core_h:(i + 1) * core_h, j * core_w:(j + 1) * core_w] = y.cpu().numpy()
    out = out[:, :h, :w]
    maps = {k: out[c] for c, k in enumerate(("nucleus", "centre", "distance"))}
    maps["cell_type"] = np.moveaxis(out[3:], 0, -1) if out.shape[0] > 3 else None
    return maps


def _tiling(n, tile_px, overlap_px, stride):
    """(tiles, core length) along an axis of `n` pixels: the fewest tiles of at most `tile_px`,
    with equal cores, so little of the network's work is spent on padding; tile sides
    (core + 2 overlaps) are multiples of the network's stride."""
    count = max(1, math.ceil(n / (tile_px - 2 * overlap_px)))
    tile = math.ceil((math.ceil(n / count) + 2 * overlap_px) / stride) * stride
    return count, tile - 2 * overlap_px


def instances(maps, working_pixel_size_um, *, centre_threshold, nucleus_threshold, min_separation_um,
              seed_radius_um, centre_smoothing_um=0.0):
    """Nucleus instances on the working grid from the network's maps.

    Centres are the local maxima of the centre map, smoothed by a Gaussian of
    `centre_smoothing_um` (which gathers a peak that an uncertain network spreads over a few
    pixels), above `centre_threshold` and at least `min_separation_um` apart. Each grows by
    watershed on the distance map over the pixels whose nucleus probability exceeds
    `nucleus_threshold`, plus a disk of `seed_radius_um` around each centre, so every centre
    owns pixels.

    Returns
    -------
    labels : ndarray of int32
        Label i is the nucleus of centre i (1-based).
    centres : ndarray of shape (n, 2)
        Centres (row, column) on the working grid.
    scores : ndarray
        Centre probability of each nucleus.
    """
    centre = maps["centre"]
    if centre_smoothing_um:
        centre = ndi.gaussian_filter(centre, centre_smoothing_um / working_pixel_size_um, mode="nearest")
    distance = max(1, int(round(min_separation_um / working_pixel_size_um)))
    peaks = peak_local_max(centre, min_distance=distance, threshold_abs=centre_threshold, exclude_border=False)
    markers = np.zeros(centre.shape, np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    radius = seed_radius_um / working_pixel_size_um
    r = int(radius)
    dy, dx = np.nonzero(np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2) <= radius ** 2)
    rows, cols = peaks[:, :1] + (dy - r), peaks[:, 1:] + (dx - r)  # the pixels within `radius` of a centre
    inside = (rows >= 0) & (rows < centre.shape[0]) & (cols >= 0) & (cols < centre.shape[1])
    near = np.zeros(centre.shape, bool)
    near[rows[inside], cols[inside]] = True
    mask = (maps["nucleus"] > nucleus_threshold) | near
    labels = watershed(-maps["distance"], markers, mask=mask).astype(np.int32)
    return labels, peaks.astype(float), centre[peaks[:, 0], peaks[:, 1]]


def segment_block(net, meta, rgb8, px, *, origin=(0, 0), device="cpu"):
    """Nuclei of one uint8 RGB block of pixel size `px` µm: labels on the block's grid and a table.

    `origin` is the block's first input pixel (row, column) in a larger image, whose working
    grid the block is sampled on (:func:`~boneimg.models.targets.resample_rgb`), so
    overlapping blocks see the same samples. The table has one row per nucleus: ``label``,
    ``x``, ``y`` (the predicted nucleus centre, pixels of the block), ``area_um2``,
    ``diameter_um``, ``centre_score`` and ``cell_type``.
    """
    wpx = float(meta["working_pixel_size_um"])
    post = meta["postprocess"]
    scale = px / wpx
    rows, cols = (working_samples(o, o + n, scale)[0] for o, n in zip(origin, rgb8.shape[:2]))
    work = resample_rgb(rgb8, scale, origin)
    maps = predict_maps(net, work, device=device)
    labels_w, centres_w, scores = instances(maps, wpx, **post)
    if scale == 1.0:
        labels = labels_w
    else:  # the nearest working pixel of each input pixel, and centres back to block pixels
        nearest = [np.clip(np.rint((np.arange(o, o + n) + 0.5) * scale - 0.5).astype(int) - k[0], 0, len(k) - 1)
                   for o, n, k in zip(origin, rgb8.shape[:2], (rows, cols))]
        labels = labels_w[np.ix_(*nearest)]
        centres_w = centres_w + [rows[0], cols[0]] - np.multiply(origin, scale)
    n = len(centres_w)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] * px * px
    y, x = ((centres_w + 0.5) / scale - 0.5).T if n else (np.zeros(0), np.zeros(0))
    table = pd.DataFrame({"label": np.arange(1, n + 1, dtype=np.int32), "x": x, "y": y, "area_um2": area,
                          "diameter_um": 2 * np.sqrt(area / np.pi), "centre_score": scores.astype(float)})
    if maps["cell_type"] is not None:
        # the type of highest summed (= mean) probability over each nucleus' pixels
        flat = labels_w.ravel()
        sums = np.stack([np.bincount(flat, weights=maps["cell_type"][..., k].ravel(), minlength=n + 1)[1:]
                         for k in range(maps["cell_type"].shape[-1])], axis=1)
        names = np.array(meta.get("cell_types", CELL_TYPES))
        table["cell_type"] = names[np.argmax(sums, axis=1)] if n else pd.Series([], dtype=str)
    return labels, table


def segment(img, px, *, model, tile_size_px=3072, device="cpu"):
    """Nuclei of a brightfield :class:`~boneimg.io.image.Image` with a trained network.

    Images larger than `tile_size_px` (on the working grid) are processed in windows with a
    margin; a nucleus belongs to the window whose core holds its centre, so results do not
    depend on where windows fall (up to nuclei cut by a margin, which is wider than a nucleus).

    Returns
    -------
    labels : ndarray of int32 (or a disk-backed memmap for lazy input)
    table : pandas.DataFrame
    info : dict
        Provenance: model name, checksum, working grid, tiling.
    """
    from ..histology.pixels import disk_backed_labels, read_block, to_rgb8, white_level
    from .weights import load_model

    net, meta = load_model(model, device)
    net.fuse_batch_norms()
    data = img.data
    h, w = img.spatial_shape
    wpx = float(meta["working_pixel_size_um"])
    window = max(64, int(round(tile_size_px * wpx / px)))  # input pixels per window side
    margin = int(math.ceil(MARGIN_UM / px))
    tiled = img.is_lazy or h > window or w > window
    labels = disk_backed_labels((h, w)) if img.is_lazy else np.zeros((h, w), np.int32)
    white = white_level(data)
    tables, next_label = [], 1
    for y0 in range(0, h, window):
        for x0 in range(0, w, window):
            y1, x1 = min(h, y0 + window), min(w, x0 + window)
            wy0, wx0 = (max(0, y0 - margin), max(0, x0 - margin)) if tiled else (0, 0)
            wy1, wx1 = (min(h, y1 + margin), min(w, x1 + margin)) if tiled else (h, w)
            rgb8 = to_rgb8(read_block(data, slice(wy0, wy1), slice(wx0, wx1)), white)
            block, table = segment_block(net, meta, rgb8, px, origin=(wy0, wx0), device=device)
            table["x"] += wx0
            table["y"] += wy0
            own = table["y"].between(y0 - 0.5, y1 - 0.5, inclusive="left") & \
                table["x"].between(x0 - 0.5, x1 - 0.5, inclusive="left")
            table = table[own.to_numpy()].reset_index(drop=True)
            paste_labels(labels[wy0:wy1, wx0:wx1], block, table["label"].to_numpy(), next_label)
            table["label"] = np.arange(next_label, next_label + len(table), dtype=np.int32)
            tables.append(table)
            next_label += len(table)
    table = pd.concat(tables, ignore_index=True)
    if tiled:  # areas from what each nucleus kept after the overlaps were resolved
        area = np.bincount(np.asarray(labels).ravel(), minlength=next_label)[1:] * px * px
        table["area_um2"] = area[table["label"].to_numpy() - 1]
        table["diameter_um"] = 2 * np.sqrt(table["area_um2"] / np.pi)
    info = {"model": meta["name"], "model_sha256": meta["sha256"], "working_grid_um": wpx, "tiled": bool(tiled),
            "postprocess": meta["postprocess"], "device": str(device)}
    return labels, table, info
