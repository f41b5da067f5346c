"""Scores of a nucleus network on annotated images: detection, instances, cell types."""

import numpy as np

from ..metrics import aggregated_jaccard_index, match_points, panoptic_quality
from .datasets import CELL_TYPES
from .inference import instances, predict_maps
from .targets import image_rgb8, resample_rgb


def match_radius_px(record):
    """The set's scoring radius in pixels: 6 px on CRCHisto (its published protocol), 3.3 µm elsewhere."""
    return 6.0 if record.name.startswith("crchisto/") else 3.3 / float(record.image.spacing_um[0])


def predict_records(net, records, working_pixel_size_um):
    """Network maps of each record on the working grid: list of (record, scale, maps)."""
    out = []
    for record in records:
        scale = float(record.image.spacing_um[0]) / working_pixel_size_um
        out.append((record, scale, predict_maps(net, resample_rgb(image_rgb8(record.image), scale))))
    return out


def score(predicted, working_pixel_size_um, postprocess):
    """Pooled detection scores, mean AJI/PQ where labels exist, per-type detection F1.

    Returns a dict: ``n_images``, ``precision``, ``recall``, ``f1``, ``count_ratio``
    (predicted / true), ``aji``, ``pq`` (None without labels), ``f1_<type>`` for the types the
    annotation has.
    """
    from skimage.transform import resize

    tp = fp = fn = 0
    aji, pq, typed = [], [], {}
    for record, scale, maps in predicted:
        labels, centres, _ = instances(maps, working_pixel_size_um, **postprocess)
        xy = ((centres + 0.5) / scale - 0.5)[:, ::-1]
        radius = match_radius_px(record)
        s = match_points(xy, record.centres(), radius)
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
        if record.labels is not None:
            full = resize(labels, record.labels.shape, order=0, preserve_range=True, anti_aliasing=False)
            full = full.astype(np.int32)
            aji.append(aggregated_jaccard_index(record.labels, full))
            pq.append(panoptic_quality(record.labels, full).pq)
        if record.cell_types is not None and maps["cell_type"] is not None and len(centres):
            at = centres.astype(int)
            kind = np.array(CELL_TYPES)[maps["cell_type"][at[:, 0], at[:, 1]].argmax(axis=1)]
            for name in CELL_TYPES:
                t = match_points(xy[kind == name], record.centres()[record.cell_types == name], radius)
                acc = typed.setdefault(name, [0, 0, 0])
                acc[0], acc[1], acc[2] = acc[0] + t.tp, acc[1] + t.fp, acc[2] + t.fn
    result = {
        "n_images": len(predicted),
        "precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
        "f1": 2 * tp / max(1, 2 * tp + fp + fn), "count_ratio": (tp + fp) / max(1, tp + fn),
        "aji": float(np.mean(aji)) if aji else None, "pq": float(np.mean(pq)) if pq else None,
    }
    for name, (t, p, n) in typed.items():
        if t + n:
            result[f"f1_{name}"] = 2 * t / max(1, 2 * t + p + n)
    return result


#: Centre thresholds tried when choosing one on validation images.
CENTRE_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.61, 0.05))


def choose_centre_threshold(predicted, working_pixel_size_um, postprocess, candidates=CENTRE_THRESHOLDS):
    """The centre threshold with the best detection F1 on `predicted` (validation images)."""
    best = max(candidates, key=lambda t: score(predicted, working_pixel_size_um,
                                               {**postprocess, "centre_threshold": float(t)})["f1"])
    return round(float(best), 3)
