"""Detection and instance-segmentation scores: pure functions returning small typed results.

- :func:`match_points`: one-to-one (Hungarian) matching of detected to true centres within a
  distance, giving precision, recall and F1 (the CRCHistoPhenotypes protocol).
- :func:`classification_f1`: HoVer-Net's per-type F1 of detected and classified nuclei.
- :func:`aggregated_jaccard_index`: AJI of Kumar et al., IEEE TMI 2017.
- :func:`panoptic_quality`: detection, segmentation and panoptic quality (Kirillov et al. 2019)
  as used for nuclei by HoVer-Net (Graham et al. 2019).
- :func:`label_centroids`: centre of each object of a label image, as (x, y) pixels.

Coordinates are pixels with x = column, y = row. Empty inputs are allowed everywhere; the
value given when a score is 0/0 is stated in each docstring.
"""

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from .errors import BoneImgError


class DetectionScore(NamedTuple):
    """Result of matching detected points to true points.

    Attributes
    ----------
    tp, fp, fn : int
        Matched detections, unmatched detections, unmatched true points.
    precision, recall, f1 : float
        ``tp / (tp + fp)``, ``tp / (tp + fn)`` and their harmonic mean; 1.0 when both sets are
        empty, 0.0 when only one of them is.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @property
    def n_pred(self):
        return self.tp + self.fp

    @property
    def n_true(self):
        return self.tp + self.fn

    @property
    def count_ratio(self):
        """Detected / true count (NaN when there is no true point)."""
        return self.n_pred / self.n_true if self.n_true else float("nan")


class PanopticQuality(NamedTuple):
    """Panoptic quality of an instance segmentation: ``pq = dq * sq``.

    Attributes
    ----------
    dq : float
        Detection quality ``tp / (tp + fp/2 + fn/2)``.
    sq : float
        Segmentation quality, mean IoU of the matched pairs (0.0 when nothing matched).
    pq : float
        Panoptic quality.

    Both label images empty gives 1.0 for all three.
    """

    dq: float
    sq: float
    pq: float


def _points(xy, name):
    arr = np.asarray(xy, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise BoneImgError(f"{name} must be an array of shape (n, 2) holding (x, y), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise BoneImgError(f"{name} holds NaN or infinite coordinates")
    return arr


def _ratio(num, den, empty):
    return float(num) / den if den else empty


def match_pairs(pred_xy, true_xy, max_distance):
    """One-to-one matching of two point sets within `max_distance`.

    Among all one-to-one assignments that use only pairs at most `max_distance` apart, the one
    with the most pairs is chosen, and among those the one with the smallest total distance
    (Hungarian algorithm, solved per connected group of candidate pairs so large sets stay fast).

    Parameters
    ----------
    pred_xy, true_xy : array_like of shape (n, 2) and (m, 2)
        Points as (x, y).
    max_distance : float
        Largest distance of a matched pair, in the points' units (inclusive).

    Returns
    -------
    ndarray of shape (k, 2), int
        Index into `pred_xy` and into `true_xy` of each matched pair.
    """
    pred, true = _points(pred_xy, "pred_xy"), _points(true_xy, "true_xy")
    if not np.isfinite(max_distance) or max_distance < 0:
        raise BoneImgError(f"max_distance must be a finite number >= 0, got {max_distance!r}")
    if len(pred) == 0 or len(true) == 0:
        return np.zeros((0, 2), int)
    dist = cKDTree(pred).sparse_distance_matrix(cKDTree(true), max_distance, output_type="coo_matrix")
    # sparse_distance_matrix drops exact zeros; add back coincident pairs.
    same = cKDTree(pred).query_ball_tree(cKDTree(true), 0.0)
    rows = [i for i, js in enumerate(same) for _ in js]
    cols = [j for js in same for j in js]
    r = np.concatenate([dist.row, np.asarray(rows, int)])
    c = np.concatenate([dist.col, np.asarray(cols, int)])
    d = np.concatenate([dist.data, np.zeros(len(rows))])
    if len(r) == 0:
        return np.zeros((0, 2), int)
    key = np.unique(np.stack([r, c], 1), axis=0, return_index=True)[1]
    r, c, d = r[key], c[key], d[key]
    # Connected groups of the bipartite candidate graph are independent assignment problems.
    n_p, n_t = len(pred), len(true)
    graph = sparse.coo_matrix((np.ones(len(r)), (r, n_p + c)), shape=(n_p + n_t, n_p + n_t))
    _, component = sparse.csgraph.connected_components(graph, directed=False)
    group = component[r]
    order = np.argsort(group, kind="stable")
    r, c, d, group = r[order], c[order], d[order], group[order]
    bounds = np.flatnonzero(np.diff(group)) + 1
    pairs = []
    big = (max_distance + 1.0) * (n_p + n_t + 1)  # any extra pair beats any distance saving
    for rr, cc, dd in zip(np.split(r, bounds), np.split(c, bounds), np.split(d, bounds)):
        if len(rr) == 1:
            pairs.append((rr[0], cc[0]))
            continue
        ur, ir = np.unique(rr, return_inverse=True)
        uc, ic = np.unique(cc, return_inverse=True)
        cost = np.full((len(ur), len(uc)), 2 * big)
        cost[ir, ic] = dd - big
        i, j = linear_sum_assignment(cost)
        ok = cost[i, j] < 0
        pairs.extend(zip(ur[i[ok]], uc[j[ok]]))
    return np.asarray(pairs, int).reshape(-1, 2)


def match_points(pred_xy, true_xy, max_distance):
    """Score detected points against true points, one-to-one within `max_distance`.

    Parameters
    ----------
    pred_xy, true_xy : array_like of shape (n, 2) and (m, 2)
        Detected and true centres as (x, y).
    max_distance : float
        Largest distance at which a detection counts as finding a true point (inclusive), in
        the same units as the points (pixels for the CRCHisto protocol's 6 px).

    Returns
    -------
    DetectionScore

    Examples
    --------
    >>> match_points([(0, 0), (10, 0)], [(1, 0), (30, 0)], 3)
    DetectionScore(tp=1, fp=1, fn=1, precision=0.5, recall=0.5, f1=0.5)
    """
    n_pred, n_true = len(_points(pred_xy, "pred_xy")), len(_points(true_xy, "true_xy"))
    tp = len(match_pairs(pred_xy, true_xy, max_distance))
    fp, fn = n_pred - tp, n_true - tp
    empty = 1.0 if n_pred == n_true == 0 else 0.0
    precision = _ratio(tp, n_pred, empty)
    recall = _ratio(tp, n_true, empty)
    f1 = _ratio(2 * tp, n_pred + n_true, empty)
    return DetectionScore(tp, fp, fn, precision, recall, f1)


def classification_f1(pred_types, true_types, cell_type, *, fp_detection, fn_detection):
    """Per-type F1 of classified detections, F_c of HoVer-Net (Graham et al. 2019).

    ``F_c = 2 (TP_c + TN_c) / (2 (TP_c + TN_c) + 2 FP_c + 2 FN_c + FP_d + FN_d)`` over the
    matched pairs, where FP_d and FN_d are the unmatched detections and true nuclei, so that
    detection errors lower the score too. Pairs whose true type is ``""`` (annotated but not
    classified, as CRCHisto's "unlabelled") are left out: no type is right or wrong for them.

    Parameters
    ----------
    pred_types, true_types : array_like of str, shape (k,)
        Predicted and true type of each matched pair (:func:`match_pairs`).
    cell_type : str
        The type scored.
    fp_detection, fn_detection : int
        Unmatched detections and unmatched true nuclei.

    Returns
    -------
    float
        F_c in [0, 1]; NaN when no true nucleus has type `cell_type`.

    Examples
    --------
    >>> classification_f1(["a", "a", "b"], ["a", "b", "b"], "a", fp_detection=1, fn_detection=0)
    0.5714285714285714
    """
    pred, true = np.asarray(pred_types, str), np.asarray(true_types, str)
    if pred.shape != true.shape or pred.ndim != 1:
        raise BoneImgError(f"pred_types and true_types must be 1-D and of one length, got {pred.shape} and {true.shape}")
    known = true != ""
    pred, true = pred[known], true[known]
    if not (true == cell_type).any():
        return float("nan")
    right = int(np.sum((pred == cell_type) == (true == cell_type)))  # TP_c + TN_c
    wrong = len(true) - right  # FP_c + FN_c
    return 2 * right / (2 * right + 2 * wrong + int(fp_detection) + int(fn_detection))


def _check_labels(true_labels, pred_labels):
    true = np.asarray(true_labels)
    pred = np.asarray(pred_labels)
    if true.shape != pred.shape:
        raise BoneImgError(f"label images differ in shape: true {true.shape}, pred {pred.shape}")
    for name, arr in (("true_labels", true), ("pred_labels", pred)):
        if arr.dtype.kind not in "iub":
            raise BoneImgError(f"{name} must be an integer label image, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise BoneImgError(f"{name} holds negative labels")
    return true, pred


def _sequential(labels):
    """Labels renumbered 1..n (0 stays background), and n."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    out = np.searchsorted(ids, labels).astype(np.int64) + 1
    out[labels == 0] = 0
    return out, len(ids)


def _overlaps(true, pred):
    """Areas of the objects and of every overlapping (true, pred) pair, labels made sequential."""
    t, n_t = _sequential(true)
    p, n_p = _sequential(pred)
    area_t = np.bincount(t.ravel(), minlength=n_t + 1)[1:]
    area_p = np.bincount(p.ravel(), minlength=n_p + 1)[1:]
    both = (t > 0) & (p > 0)
    code = (t[both].astype(np.int64) - 1) * n_p + (p[both].astype(np.int64) - 1)
    codes, inter = np.unique(code, return_counts=True)
    pair_t, pair_p = codes // max(n_p, 1), codes % max(n_p, 1)
    return area_t, area_p, pair_t, pair_p, inter


def aggregated_jaccard_index(true_labels, pred_labels):
    """Aggregated Jaccard Index of an instance segmentation (Kumar et al., IEEE TMI 2017).

    Each true object is paired with the predicted object of highest IoU with it; the index is
    the summed intersections of these pairs over their summed unions plus the area of every
    predicted object never paired. A true object that no prediction touches adds its area to
    the union.

    Parameters
    ----------
    true_labels, pred_labels : ndarray of int, same shape
        Instance label images, 0 = background.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both images are empty.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 0]]); p = np.array([[1, 0, 0, 2]])
    >>> aggregated_jaccard_index(t, p)   # (1) / (2 + 1)
    0.3333333333333333
    """
    true, pred = _check_labels(true_labels, pred_labels)
    area_t, area_p, pair_t, pair_p, inter = _overlaps(true, pred)
    if len(area_t) == 0 and len(area_p) == 0:
        return 1.0
    iou = inter / (area_t[pair_t] + area_p[pair_p] - inter)
    # best prediction per true object: sort by (true, -iou) and keep the first of each true
    order = np.lexsort((-iou, pair_t))
    first = np.ones(len(order), bool)
    first[1:] = pair_t[order][1:] != pair_t[order][:-1]
    best = order[first]
    intersection = inter[best].sum()
    union = (area_t[pair_t[best]] + area_p[pair_p[best]] - inter[best]).sum()
    untouched = np.ones(len(area_t), bool)
    untouched[pair_t[best]] = False
    union += area_t[untouched].sum()
    unused = np.ones(len(area_p), bool)
    unused[pair_p[best]] = False
    union += area_p[unused].sum()
    return float(intersection / union) if union else 1.0


def panoptic_quality(true_labels, pred_labels, iou_threshold=0.5):
    """Panoptic quality of an instance segmentation (one class).

    A true and a predicted object match when their IoU exceeds `iou_threshold`; above 0.5 the
    match is unique by construction, below it the pairs are chosen one-to-one maximising the
    summed IoU.

    Parameters
    ----------
    true_labels, pred_labels : ndarray of int, same shape
        Instance label images, 0 = background.
    iou_threshold : float
        Smallest IoU (exclusive) of a match, in [0, 1).

    Returns
    -------
    PanopticQuality
        ``(dq, sq, pq)``, a named tuple.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2]]); p = np.array([[1, 1, 1, 0]])
    >>> panoptic_quality(t, p)   # one match of IoU 2/3, one miss
    PanopticQuality(dq=0.6666666666666666, sq=0.6666666666666666, pq=0.4444444444444444)
    """
    if not 0.0 <= iou_threshold < 1.0:
        raise BoneImgError(f"iou_threshold must be in [0, 1), got {iou_threshold!r}")
    true, pred = _check_labels(true_labels, pred_labels)
    area_t, area_p, pair_t, pair_p, inter = _overlaps(true, pred)
    n_t, n_p = len(area_t), len(area_p)
    if n_t == 0 and n_p == 0:
        return PanopticQuality(1.0, 1.0, 1.0)
    iou = inter / (area_t[pair_t] + area_p[pair_p] - inter)
    keep = iou > iou_threshold
    pair_t, pair_p, iou = pair_t[keep], pair_p[keep], iou[keep]
    if iou_threshold < 0.5 and len(iou):
        ut, it = np.unique(pair_t, return_inverse=True)
        up, ip = np.unique(pair_p, return_inverse=True)
        matrix = np.zeros((len(ut), len(up)))
        matrix[it, ip] = iou
        i, j = linear_sum_assignment(-matrix)
        ok = matrix[i, j] > iou_threshold
        iou = matrix[i[ok], j[ok]]
    tp = len(iou)
    fp, fn = n_p - tp, n_t - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou.sum() / tp) if tp else 0.0
    return PanopticQuality(float(dq), sq, float(dq * sq))


def label_centroids(labels):
    """Centroid of every object of a label image.

    Parameters
    ----------
    labels : ndarray of int, shape (M, N)

    Returns
    -------
    ids : ndarray of shape (n,)
        The labels present (excluding 0), ascending.
    xy : ndarray of shape (n, 2)
        Centroid of each as (x, y) = (column, row) pixels.
    """
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return ids, np.zeros((0, 2))
    centres = np.asarray(ndi.center_of_mass(np.ones(labels.shape), labels, ids), float).reshape(-1, labels.ndim)
    return ids, centres[:, ::-1].copy()
