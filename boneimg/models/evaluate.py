"""Scores of a nucleus network on annotated images: detection, instances, cell types."""

import numpy as np

from ..metrics import aggregated_jaccard_index, classification_f1, match_pairs, panoptic_quality
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
    """Pooled detection scores, mean AJI/PQ where labels exist, per-type classification F1
    (:func:`~boneimg.metrics.classification_f1`, HoVer-Net's F_c).

    Returns a dict: ``n_images``, ``precision``, ``recall``, ``f1``, ``count_ratio``
    (predicted / true), ``aji``, ``pq`` (None without labels), ``f1_<type>`` for the types the
    annotation has.
    """
    from skimage.transform import resize

    tp = fp = fn = 0
    aji, pq, typed = [], [], []
    for record, scale, maps in predicted:
        labels, centres, _ = instances(maps, working_pixel_size_um, **postprocess)
        xy = ((centres + 0.5) / scale - 0.5)[:, ::-1]
        truth = record.centres()
        pairs = match_pairs(xy, truth, match_radius_px(record))
        tp, fp, fn = tp + len(pairs), fp + len(xy) - len(pairs), fn + len(truth) - len(pairs)
        if record.labels is not None:
            full = resize(labels, record.labels.shape, order=0, preserve_range=True, anti_aliasing=False)
            full = full.astype(np.int32)
            aji.append(aggregated_jaccard_index(record.labels, full))
            pq.append(panoptic_quality(record.labels, full).pq)
        if record.cell_types is not None and maps["cell_type"] is not None and len(pairs):
            at = centres[pairs[:, 0]].astype(int)
            kind = np.array(CELL_TYPES)[maps["cell_type"][at[:, 0], at[:, 1]].argmax(axis=1)]
            typed.append(np.stack([kind, record.cell_types[pairs[:, 1]]], axis=1))
    result = {
        "n_images": len(predicted),
        "precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
        "f1": 2 * tp / max(1, 2 * tp + fp + fn), "count_ratio": (tp + fp) / max(1, tp + fn),
        "aji": float(np.mean(aji)) if aji else None, "pq": float(np.mean(pq)) if pq else None,
    }
    if typed:
        kind, true = np.concatenate(typed).T
        for name in CELL_TYPES:
            f = classification_f1(kind, true, name, fp_detection=fp, fn_detection=fn)
            if not np.isnan(f):
                result[f"f1_{name}"] = f
    return result


#: Centre thresholds tried when choosing one on validation images.
CENTRE_THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.05, 0.601, 0.025))


def choose_centre_threshold(predicted, working_pixel_size_um, postprocess, candidates=CENTRE_THRESHOLDS):
    """The centre threshold with the best detection F1 on `predicted` (validation images)."""
    best = max(candidates, key=lambda t: score(predicted, working_pixel_size_um,
                                               {**postprocess, "centre_threshold": float(t)})["f1"])
    return round(float(best), 3)
