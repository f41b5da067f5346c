"""Per-animal aggregation and treatment effects, checked against hand-computed values and scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from boneimg.study.stats import aggregate_animals, numeric_measurements, treatment_effects


def animals_table(groups):
    """One row per animal from {group: [values]} for a measurement named X_mm2."""
    return pd.DataFrame([{"group": g, "animal": f"{g}{i}", "X_mm2": v}
                         for g, values in groups.items() for i, v in enumerate(values)])


def test_images_average_per_bone_then_per_animal():
    images = pd.DataFrame({
        "group": ["ctl"] * 4 + ["drug"] * 2,
        "animal": ["m1", "m1", "m1", "m2", "m3", "m3"],
        "bone": ["left", "left", "right", "left", "left", "right"],
        "X_mm2": [1.0, 3.0, 10.0, 5.0, 2.0, np.nan],
        "Y_pct": [np.nan, 4.0, 8.0, 1.0, 2.0, 6.0],
    })
    animals = aggregate_animals(images, ["X_mm2", "Y_pct"])
    assert animals["animal"].tolist() == ["m1", "m2", "m3"]
    # m1: left bone (1 + 3) / 2 = 2, right bone 10 -> 6, not the image mean 14 / 3
    assert animals["X_mm2"].tolist() == [6.0, 5.0, 2.0]
    # a NaN image (the measurement does not apply) is left out, not counted as 0
    assert animals["Y_pct"].tolist() == [6.0, 1.0, 4.0]
    assert animals["n_images"].tolist() == [3, 1, 2]
    assert animals["n_bones"].tolist() == [2, 1, 2]


def test_without_bones_images_average_per_animal_and_animal_ids_are_per_group():
    images = pd.DataFrame({"group": ["a", "a", "b"], "animal": ["1", "1", "1"], "X_mm2": [1.0, 2.0, 7.0]})
    animals = aggregate_animals(images, ["X_mm2"])
    rows = animals[["group", "animal", "n_images", "X_mm2"]].values.tolist()
    assert rows == [["a", "1", 2, 1.5], ["b", "1", 1, 7.0]]
    assert "n_bones" not in animals


def test_numeric_measurements_skip_text_and_empty_columns():
    table = pd.DataFrame({"A_mm2": [1.0, 2.0], "lesion_class": ["none", "mixed"], "B_pct": [np.nan, np.nan]})
    assert numeric_measurements(table, ["A_mm2", "lesion_class", "B_pct"]) == ["A_mm2"]


def test_two_groups_welch_t_summary_and_difference():
    ctl, drug = [4.0, 5.0, 6.5, 5.5, 4.8], [2.0, 2.5, 3.1, 1.9, 2.6]
    effects = treatment_effects(animals_table({"ctl": ctl, "drug": drug}), ["X_mm2"], control="ctl",
                                n_resamples=2000)
    assert len(effects) == 1
    row = effects.iloc[0]
    assert (row.measurement, row.group, row.control, row.test) == ("X_mm2", "drug", "ctl", "Welch t-test")
    assert row.n == 5 and row.n_control == 5
    assert row["mean"] == pytest.approx(np.mean(drug)) and row.mean_control == pytest.approx(np.mean(ctl))
    assert row.sd == pytest.approx(np.std(drug, ddof=1)) and row["median"] == pytest.approx(2.5)
    assert row.difference == pytest.approx(np.mean(drug) - np.mean(ctl))
    assert row.percent_change_pct == pytest.approx(100 * (np.mean(drug) / np.mean(ctl) - 1))
    welch = stats.ttest_ind(drug, ctl, equal_var=False)
    assert row.statistic == pytest.approx(welch.statistic) and row.p_value == pytest.approx(welch.pvalue)
    assert row.p_adjusted == row.p_value  # one comparison: Holm changes nothing
    assert row.omnibus_test == "none: one group compared with the control" and np.isnan(row.omnibus_p)
    assert row.difference_ci_low < row.difference < row.difference_ci_high < 0
    assert row.percent_change_ci_low_pct < row.percent_change_pct < row.percent_change_ci_high_pct < 0
    assert row.ci_method == "bootstrap BCa, 95 %, 2000 resamples, seed 0"


def test_three_groups_holm_and_omnibus_parametric_and_nonparametric():
    groups = {"veh": [10.0, 12.0, 11.0, 13.5, 9.0], "a": [9.5, 11.0, 12.5, 10.0, 8.0],
              "b": [6.0, 5.5, 7.0, 4.0, 6.5]}
    animals = animals_table(groups)
    for test, pairwise, omnibus in [
        ("parametric", lambda x, y: stats.ttest_ind(x, y, equal_var=False).pvalue,
         stats.f_oneway(*groups.values(), equal_var=False).pvalue),
        ("nonparametric", lambda x, y: stats.mannwhitneyu(x, y, alternative="two-sided").pvalue,
         stats.kruskal(*groups.values()).pvalue),
    ]:
        effects = treatment_effects(animals, ["X_mm2"], control="veh", test=test, n_resamples=1000)
        assert effects["group"].tolist() == ["a", "b"]
        p_a, p_b = pairwise(groups["a"], groups["veh"]), pairwise(groups["b"], groups["veh"])
        assert effects["p_value"].tolist() == pytest.approx([p_a, p_b])
        # Holm by hand: the smaller p times 2, the larger times 1, kept monotone
        low, high = sorted([p_a, p_b])
        holm = {low: min(1, 2 * low), high: max(min(1, 2 * low), high)}
        assert effects["p_adjusted"].tolist() == pytest.approx([holm[p_a], holm[p_b]])
        assert effects["omnibus_p"].tolist() == pytest.approx([omnibus, omnibus])
    assert effects["test"].tolist() == ["Mann-Whitney U"] * 2
    assert effects["omnibus_test"].tolist() == ["Kruskal-Wallis H"] * 2


def test_bootstrap_is_reproducible_and_rows_are_independent():
    groups = {"veh": [10.0, 12.0, 11.0, 13.5], "a": [9.5, 11.0, 12.5, 10.0], "b": [6.0, 5.5, 7.0, 4.0]}
    first = treatment_effects(animals_table(groups), ["X_mm2"], control="veh", n_resamples=500, seed=3)
    again = treatment_effects(animals_table(groups), ["X_mm2"], control="veh", n_resamples=500, seed=3)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    # dropping arm "a" leaves arm "b"'s interval as it was: each row has its own random stream
    alone = treatment_effects(animals_table({"veh": groups["veh"], "b": groups["b"]}), ["X_mm2"],
                              control="veh", n_resamples=500, seed=3)
    assert alone["difference_ci_low"].iloc[0] == first["difference_ci_low"].iloc[1]
    other = treatment_effects(animals_table(groups), ["X_mm2"], control="veh", n_resamples=500, seed=4)
    assert other["difference_ci_low"].iloc[1] != first["difference_ci_low"].iloc[1]


def test_degenerate_groups_are_reported_not_tested():
    effects = treatment_effects(
        animals_table({"veh": [3.0, 4.0, 5.0], "one": [1.0], "same": [3.0, 3.0], "zero": [0.0, 0.0, 0.0]}),
        ["X_mm2"], control="veh", n_resamples=500)
    one, same, zero = (effects.iloc[i] for i in range(3))
    assert one.test == "not tested: fewer than 2 animals in a group" and np.isnan(one.p_value)
    assert one.ci_method == "none"
    assert np.isnan(one.difference_ci_low) and one.difference == pytest.approx(-3.0)
    # a group with no lesion in any animal (variance exactly 0) is still compared, without warnings
    assert zero.test == "Welch t-test" and zero.percent_change_pct == pytest.approx(-100.0)
    assert (zero.percent_change_ci_low_pct, zero.percent_change_ci_high_pct) == (-100.0, -100.0)
    assert zero.p_value == pytest.approx(stats.ttest_ind([0.0, 0.0, 0.0], [3.0, 4.0, 5.0], equal_var=False).pvalue)
    assert same.test == "Welch t-test"
    # Holm over the two arms that were tested
    assert np.isfinite(same.p_adjusted) and np.isfinite(zero.p_adjusted) and np.isnan(one.p_adjusted)
    assert effects["omnibus_test"].iloc[0] == "not tested: fewer than 2 animals in a group"

    flat = treatment_effects(animals_table({"veh": [2.0, 2.0], "a": [1.0, 1.0]}), ["X_mm2"], control="veh")
    row = flat.iloc[0]
    assert row.test == "not tested: no variation within the groups" and row.ci_method == "exact: no variation"
    assert (row.difference_ci_low, row.difference_ci_high) == (-1.0, -1.0)
    assert (row.percent_change_ci_low_pct, row.percent_change_ci_high_pct) == (-50.0, -50.0)


def test_percent_change_needs_control_values_away_from_zero():
    row = treatment_effects(animals_table({"veh": [0.0, 0.0, 0.0], "a": [1.0, 2.0, 0.5]}), ["X_mm2"],
                            control="veh", n_resamples=500).iloc[0]
    assert np.isnan(row.percent_change_pct) and np.isnan(row.percent_change_ci_low_pct)
    assert row.difference == pytest.approx(3.5 / 3) and row.difference_ci_low < row.difference
    # a control with one animal at 0 (no lesion): resamples of only that animal make the ratio
    # unbounded, so the % change gets no interval; the difference does
    row = treatment_effects(animals_table({"veh": [0.0, 2.0, 4.0], "a": [0.0, 2.0]}), ["X_mm2"],
                            control="veh", n_resamples=500).iloc[0]
    assert row.percent_change_pct == pytest.approx(-50.0) and np.isnan(row.percent_change_ci_high_pct)
    assert row.ci_method.endswith("none for the % change (a control value is 0 or of the other sign)")
    assert row.difference_ci_low < -1.0 < row.difference_ci_high


def test_effects_per_timepoint():
    animals = pd.concat([animals_table({"veh": [5.0, 6.0, 7.0], "a": [5.5, 6.5, 7.5]}).assign(timepoint="d7"),
                         animals_table({"veh": [9.0, 10.0, 11.0], "a": [3.0, 4.0, 5.0]}).assign(timepoint="d21")])
    effects = treatment_effects(animals, ["X_mm2"], control="veh", n_resamples=500)
    assert effects.columns[0] == "timepoint"
    assert effects["timepoint"].tolist() == ["d7", "d21"]
    assert effects["difference"].tolist() == pytest.approx([0.5, -6.0])
