"""Per-animal aggregation and treatment effects versus the control group.

The animal is the unit of replication: images are averaged per bone and bones per animal before
groups are compared. Effects are differences of group means with bootstrap confidence intervals
(scipy.stats.bootstrap, BCa, seeded per row so a rerun gives identical intervals), tested with
Welch's t-test or the Mann-Whitney U test against the control, Holm-adjusted over the arms
compared with the control (statsmodels), with Welch's ANOVA or the Kruskal-Wallis test across all
groups when there are more than two.
"""

import warnings
import zlib

import numpy as np
import pandas as pd

_TESTS = {
    # test setting -> (pairwise test name, omnibus test name)
    "parametric": ("Welch t-test", "Welch ANOVA"),
    "nonparametric": ("Mann-Whitney U", "Kruskal-Wallis H"),
}


def numeric_measurements(table, names):
    """The measurements among `names` that hold numbers (strings such as a lesion class do not
    average)."""
    return [n for n in names if pd.api.types.is_numeric_dtype(table[n]) and not table[n].isna().all()]


def aggregate_animals(images, measurements):
    """Average the measurements of each animal: images per bone, then bones per animal.

    Parameters
    ----------
    images : pandas.DataFrame
        One row per image with columns ``group``, ``animal``, the `measurements` and optionally
        ``bone`` and ``timepoint``. An animal is one ``(group, animal)`` pair (per timepoint).
    measurements : list of str
        Numeric measurement columns; a NaN (the measurement does not apply to that image) is
        left out of the mean.

    Returns
    -------
    pandas.DataFrame
        One row per animal (and timepoint), in the order animals first appear: ``group``,
        ``animal``, [``timepoint``], ``n_images``, [``n_bones``], then the measurements.
    """
    keys = ["group", "animal"] + (["timepoint"] if "timepoint" in images else [])
    per_bone = images.groupby(keys + (["bone"] if "bone" in images else []), sort=False)
    bones = per_bone[measurements].mean()
    bones.insert(0, "n_images", per_bone.size())
    per_animal = bones.groupby(level=keys, sort=False)
    animals = per_animal[measurements].mean()
    animals.insert(0, "n_images", per_animal["n_images"].sum())
    if "bone" in images:
        animals.insert(1, "n_bones", per_animal.size())
    return animals.reset_index()


def treatment_effects(animals, measurements, *, control, test="parametric", confidence=0.95,
                      n_resamples=9999, seed=0):
    """Compare every group with the control group, per measurement (and timepoint).

    Parameters
    ----------
    animals : pandas.DataFrame
        One row per animal, as :func:`aggregate_animals` returns.
    measurements : list of str
        Numeric measurement columns, units in their names.
    control : str
        The control group.
    test : {"parametric", "nonparametric"}
        Welch's t-test (Welch's ANOVA across all groups), or the Mann-Whitney U test
        (Kruskal-Wallis). The effect sizes are differences of means either way.
    confidence : float
        Level of the bootstrap confidence intervals.
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the bootstrap; each row draws from its own stream derived from the seed and the
        row's measurement, group and timepoint, so rows do not depend on each other.

    Returns
    -------
    pandas.DataFrame
        One row per measurement and non-control group: ``measurement``, ``group``, ``control``,
        ``n``, ``mean``, ``sd``, ``median`` (animals of the group) and the same with
        ``_control``, ``difference`` (group mean minus control mean, in the measurement's unit)
        with ``difference_ci_low``/``_high``, ``percent_change_pct`` with
        ``percent_change_ci_low_pct``/``_high_pct``, ``ci_method``, ``test``, ``statistic``,
        ``p_value``, ``p_adjusted`` (Holm over the arms compared with the control),
        ``omnibus_test``, ``omnibus_p``; and ``timepoint`` first when the animals have one.
    """
    from statsmodels.stats.multitest import multipletests

    groups = list(dict.fromkeys(animals["group"]))
    arms = [g for g in groups if g != control]
    bootstrap = {"confidence": confidence, "n_resamples": n_resamples,
                 "ci_text": f"{100 * confidence:g} %, {n_resamples} resamples, seed {seed}"}
    timed = "timepoint" in animals
    rows = []
    for timepoint, table in animals.groupby("timepoint", sort=False) if timed else [(None, animals)]:
        for name in measurements:
            samples = {g: table.loc[table["group"] == g, name].dropna().to_numpy(float) for g in groups}
            omnibus_test, omnibus_p = (_omnibus(samples, test) if len(groups) > 2
                                       else ("none: one group compared with the control", np.nan))
            family = []
            for arm in arms:
                stream = zlib.crc32(f"{timepoint}\0{name}\0{arm}".encode())
                rng = np.random.default_rng([seed, stream])
                row = {"timepoint": timepoint} if timed else {}
                row.update(measurement=name, group=arm, control=control)
                row.update(_compare(samples[arm], samples[control], test, rng=rng, **bootstrap))
                row.update(omnibus_test=omnibus_test, omnibus_p=omnibus_p)
                family.append(row)
            tested = [r for r in family if np.isfinite(r["p_value"])]
            if tested:
                adjusted = multipletests([r["p_value"] for r in tested], method="holm")[1]
                for r, p in zip(tested, adjusted):
                    r["p_adjusted"] = float(p)
            rows += family
    columns = (["timepoint"] if timed else []) + _COLUMNS
    return pd.DataFrame(rows, columns=columns)


_COLUMNS = [
    "measurement", "group", "control", "n", "mean", "sd", "median", "n_control", "mean_control",
    "sd_control", "median_control", "difference", "difference_ci_low", "difference_ci_high",
    "percent_change_pct", "percent_change_ci_low_pct", "percent_change_ci_high_pct", "ci_method",
    "test", "statistic", "p_value", "p_adjusted", "omnibus_test", "omnibus_p",
]


def _summary(values, suffix=""):
    n = len(values)
    return {
        f"n{suffix}": n,
        f"mean{suffix}": float(np.mean(values)) if n else np.nan,
        f"sd{suffix}": float(np.std(values, ddof=1)) if n > 1 else np.nan,
        f"median{suffix}": float(np.median(values)) if n else np.nan,
    }


def _compare(values, control, test, *, confidence, n_resamples, rng, ci_text):
    """Summary, effect size with bootstrap CI and test of one arm against the control."""
    from scipy import stats

    row = {**_summary(values), **_summary(control, "_control")}
    difference = row["mean"] - row["mean_control"]
    percent = 100 * difference / row["mean_control"] if row["mean_control"] else np.nan
    row.update(difference=difference, percent_change_pct=percent, difference_ci_low=np.nan,
               difference_ci_high=np.nan, percent_change_ci_low_pct=np.nan,
               percent_change_ci_high_pct=np.nan, statistic=np.nan, p_value=np.nan, p_adjusted=np.nan)
    if min(len(values), len(control)) < 2:
        row.update(test="not tested: fewer than 2 animals in a group", ci_method="none")
        return row
    if np.ptp(values) == 0 and np.ptp(control) == 0:
        # every resample gives the same difference: the interval is that point, and no test applies
        row.update(difference_ci_low=difference, difference_ci_high=difference,
                   percent_change_ci_low_pct=percent, percent_change_ci_high_pct=percent,
                   test="not tested: no variation within the groups", ci_method="exact: no variation")
        return row
    options = {"confidence": confidence, "n_resamples": n_resamples, "rng": rng}
    low, high = _bootstrap((values, control), _difference, **options)
    row.update(difference_ci_low=low, difference_ci_high=high, ci_method=f"bootstrap BCa, {ci_text}")
    if not (np.all(control > 0) or np.all(control < 0)):
        # a resampled control mean can be 0: the percent change has no bounded interval
        row["ci_method"] += "; none for the % change (a control value is 0 or of the other sign)"
    elif np.all(values == 0):  # no lesion in any animal of the arm: every resample gives -100 %
        row.update(percent_change_ci_low_pct=percent, percent_change_ci_high_pct=percent)
    else:
        low, high = _bootstrap((values, control), _percent_change, **options)
        row.update(percent_change_ci_low_pct=low, percent_change_ci_high_pct=high)
    name = _TESTS[test][0]
    with warnings.catch_warnings():
        if np.ptp(values) == 0 or np.ptp(control) == 0:
            # a group of identical values (no lesion in any animal) has variance exactly 0, which
            # scipy flags as possible precision loss; Welch's t is well defined with it
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        if test == "parametric":
            result = stats.ttest_ind(values, control, equal_var=False)
        else:
            result = stats.mannwhitneyu(values, control, alternative="two-sided")
    row.update(test=name, statistic=float(result.statistic), p_value=float(result.pvalue))
    return row


def _bootstrap(samples, statistic, *, confidence, n_resamples, rng):
    """BCa bootstrap interval of `statistic` over the two samples (resampled independently)."""
    from scipy import stats

    ci = stats.bootstrap(samples, statistic, vectorized=True, n_resamples=n_resamples,
                         confidence_level=confidence, method="BCa", rng=rng).confidence_interval
    return float(ci.low), float(ci.high)


def _difference(values, control, axis=-1):
    """Difference of means, for scipy.stats.bootstrap."""
    return np.mean(values, axis=axis) - np.mean(control, axis=axis)


def _percent_change(values, control, axis=-1):
    """Percent change of the mean from the control's, for scipy.stats.bootstrap."""
    return 100 * _difference(values, control, axis) / np.mean(control, axis=axis)


def _omnibus(samples, test):
    """The test across all groups, or a reason it cannot run."""
    from scipy import stats

    groups = [v for v in samples.values() if len(v)]
    name = _TESTS[test][1]
    if len(groups) < 3 or min(map(len, groups)) < 2:
        return "not tested: fewer than 2 animals in a group", np.nan
    if test == "parametric":
        if any(np.ptp(v) == 0 for v in groups):
            return f"not tested ({name}): a group without variation", np.nan
        return name, float(stats.f_oneway(*groups, equal_var=False).pvalue)
    if np.ptp(np.concatenate(groups)) == 0:
        return f"not tested ({name}): all values equal", np.nan
    return name, float(stats.kruskal(*groups).pvalue)
