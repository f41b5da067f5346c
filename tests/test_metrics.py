"""Detection and segmentation scores on tiny arrays with closed-form answers."""

import numpy as np
import pytest

import boneimg as bi
from boneimg.metrics import (
    DetectionScore,
    aggregated_jaccard_index,
    classification_f1,
    label_centroids,
    match_pairs,
    match_points,
    panoptic_quality,
)


def test_match_points_counts_and_scores():
    score = match_points([(0, 0), (10, 0), (50, 50)], [(1, 0), (10, 2), (30, 0), (80, 80)], 3)
    assert (score.tp, score.fp, score.fn) == (2, 1, 2)
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(2 / 4)
    assert score.f1 == pytest.approx(2 * 2 / (3 + 4))
    assert score.count_ratio == pytest.approx(3 / 4)


def test_match_points_is_one_to_one_and_maximises_matches():
    # Greedy nearest matching would pair pred 0 with true 1 (distance 1) and leave true 0
    # unmatched; the optimal assignment matches both.
    pred = [(0.0, 0.0), (2.0, 0.0)]
    true = [(-1.5, 0.0), (1.0, 0.0)]
    assert match_points(pred, true, 1.6).tp == 2
    # two detections on one true point: only one counts
    score = match_points([(0, 0), (0.5, 0)], [(0, 0)], 2)
    assert (score.tp, score.fp, score.fn) == (1, 1, 0)


def test_match_points_distance_is_inclusive_and_exact_zero_counts():
    assert match_points([(0, 0)], [(3, 4)], 5).tp == 1
    assert match_points([(0, 0)], [(3, 4)], 4.999).tp == 0
    assert match_points([(2, 2)], [(2, 2)], 0).tp == 1


def test_match_points_empty_inputs():
    assert match_points([], [], 6) == DetectionScore(0, 0, 0, 1.0, 1.0, 1.0)
    assert match_points([(1, 1)], [], 6) == DetectionScore(0, 1, 0, 0.0, 0.0, 0.0)
    assert match_points(np.zeros((0, 2)), [(1, 1)], 6) == DetectionScore(0, 0, 1, 0.0, 0.0, 0.0)


def test_match_points_rejects_bad_shapes():
    with pytest.raises(bi.BoneImgError, match="shape"):
        match_points([1, 2, 3], [(0, 0)], 1)
    with pytest.raises(bi.BoneImgError, match="max_distance"):
        match_points([(0, 0)], [(0, 0)], -1)


def test_match_pairs_large_random_sets_match_brute_force():
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    pred = rng.uniform(0, 60, (80, 2))
    true = rng.uniform(0, 60, (70, 2))
    pairs = match_pairs(pred, true, 4.0)
    d = cdist(pred, true)
    cost = np.where(d <= 4.0, d - 1e6, 0.0)
    i, j = linear_sum_assignment(cost)
    assert len(pairs) == int((d[i, j] <= 4.0).sum())
    assert (d[pairs[:, 0], pairs[:, 1]] <= 4.0).all()
    assert len(set(pairs[:, 0])) == len(pairs) == len(set(pairs[:, 1]))


def test_aji_closed_form():
    true = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 0, 2]])
    # true 1 pairs with pred 1: I = 1, U = 2; pred 2 unused adds 1 -> 1 / 3
    assert aggregated_jaccard_index(true, pred) == pytest.approx(1 / 3)
    assert aggregated_jaccard_index(true, true) == 1.0
    # a true object no prediction touches adds its area to the union
    true = np.array([[1, 1, 0, 2, 2]])
    pred = np.array([[1, 1, 0, 0, 0]])
    assert aggregated_jaccard_index(true, pred) == pytest.approx(2 / 4)


def test_aji_counts_a_prediction_paired_twice_once_in_the_union():
    # one prediction covering two true objects: both pair with it (Kumar's definition)
    true = np.array([[1, 1, 2, 2]])
    pred = np.array([[1, 1, 1, 1]])
    # C = 2 + 2, U = 4 + 4
    assert aggregated_jaccard_index(true, pred) == pytest.approx(0.5)


def test_aji_empty_and_label_values():
    empty = np.zeros((3, 3), int)
    assert aggregated_jaccard_index(empty, empty) == 1.0
    one = empty.copy()
    one[1, 1] = 7
    assert aggregated_jaccard_index(one, empty) == 0.0
    assert aggregated_jaccard_index(empty, one) == 0.0
    # arbitrary (non-sequential) label values
    assert aggregated_jaccard_index(one * 3, one) == 1.0


def test_panoptic_quality_closed_form():
    true = np.array([[1, 1, 0, 2]])
    pred = np.array([[1, 1, 1, 0]])
    dq, sq, pq = panoptic_quality(true, pred)
    # one match (IoU 2/3), one false negative
    assert dq == pytest.approx(1 / (1 + 0.5))
    assert sq == pytest.approx(2 / 3)
    assert pq == pytest.approx(dq * sq)


def test_panoptic_quality_threshold_and_empties():
    true = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 0, 0]])  # IoU exactly 0.5: not a match above 0.5
    assert panoptic_quality(true, pred) == (0.0, 0.0, 0.0)
    assert panoptic_quality(true, pred, iou_threshold=0.4) == pytest.approx((1.0, 0.5, 0.5))
    empty = np.zeros((2, 2), int)
    assert panoptic_quality(empty, empty) == (1.0, 1.0, 1.0)
    assert panoptic_quality(true, true) == (1.0, 1.0, 1.0)
    with pytest.raises(bi.BoneImgError, match="iou_threshold"):
        panoptic_quality(true, pred, iou_threshold=1.0)


def test_label_checks():
    with pytest.raises(bi.BoneImgError, match="shape"):
        aggregated_jaccard_index(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(bi.BoneImgError, match="integer"):
        panoptic_quality(np.zeros((2, 2)), np.zeros((2, 2), int))


def test_label_centroids_are_xy():
    labels = np.zeros((5, 7), int)
    labels[1, 2:5] = 4  # row 1, columns 2..4
    ids, xy = label_centroids(labels)
    assert ids.tolist() == [4]
    assert xy.tolist() == [[3.0, 1.0]]
    ids, xy = label_centroids(np.zeros((3, 3), int))
    assert len(ids) == 0 and xy.shape == (0, 2)


def test_classification_f1_is_hovernets_f_c():
    predicted = ["tumour", "tumour", "immune", "immune", "tumour"]
    true = ["tumour", "immune", "immune", "tumour", ""]  # the last pair has no true type: left out
    # tumour: TP 1 (pair 0), TN 1 (pair 2), FP 1 (pair 1), FN 1 (pair 3); 2 missed, 1 false detection
    assert classification_f1(predicted, true, "tumour", fp_detection=1, fn_detection=2) == pytest.approx(4 / 11)
    # perfect typing still pays for detection errors
    assert classification_f1(true[:4], true[:4], "immune", fp_detection=0, fn_detection=0) == 1.0
    assert classification_f1(true[:4], true[:4], "immune", fp_detection=4, fn_detection=4) == pytest.approx(0.5)
    assert np.isnan(classification_f1(predicted, true, "stromal", fp_detection=0, fn_detection=0))
    with pytest.raises(bi.BoneImgError, match="one length"):
        classification_f1(["a"], ["a", "b"], "a", fp_detection=0, fn_detection=0)
