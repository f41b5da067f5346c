"""Study settings: one TOML or YAML file with the study options and each analysis's parameters.

    [study]                  # all optional
    control = "vehicle"      # default: the first group in the design
    test = "parametric"      # Welch t / Welch ANOVA; "nonparametric": Mann-Whitney / Kruskal-Wallis
    confidence = 0.95        # of the bootstrap confidence intervals
    n_resamples = 9999       # bootstrap resamples
    seed = 0                 # of the bootstrap, so that a rerun gives identical intervals

    [radiograph]             # keyword arguments of the radiograph analysis
    [ct]                     # ... of the micro-CT analysis
    [brightfield]            # ... of the histology section analysis (alias: [section])
"""

import json
import math
import numbers
import tomllib
from pathlib import Path

from ..errors import BoneImgError
from .analyses import MODALITY_ALIASES, canonical_modality

STUDY_DEFAULTS = {"control": None, "test": "parametric", "confidence": 0.95, "n_resamples": 9999, "seed": 0}
TESTS = ("parametric", "nonparametric")


def read_settings(path):
    """Parse a settings file: TOML (``.toml``) or YAML (``.yaml``, ``.yml``).

    Returns
    -------
    dict
        The file's tables as they are written; see :func:`resolve_settings` for their meaning.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise BoneImgError("settings must be a TOML (.toml) or YAML (.yaml, .yml) file", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BoneImgError(f"cannot read the settings file ({exc.strerror or exc})", path=path) from None
    try:
        if suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text) or {}
    except Exception as exc:  # tomllib and yaml raise their own error types for bad syntax
        raise BoneImgError(f"cannot parse the settings file: {exc}", path=path) from None
    if not isinstance(raw, dict):
        raise BoneImgError("the settings file must hold tables ([study], [radiograph], ...)", path=path)
    return raw


def resolve_settings(path=None, **overrides):
    """The settings a study runs with: defaults, then the file at `path`, then `overrides`.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A settings file (see the module docstring).
    **overrides
        Study options (``control``, ``test``, ``confidence``, ``n_resamples``, ``seed``) and
        per-modality analysis parameters as dicts (``radiograph={...}``), which update the
        file's table of that modality. None means not given.

    Returns
    -------
    dict
        ``{"study": {option: value}, "analyses": {modality: {parameter: value}}}``.
    """
    where = None if path is None else str(path)
    tables = read_settings(path) if path is not None else {}
    study = dict(STUDY_DEFAULTS)
    analyses = {}
    for key, table in tables.items():
        key = str(key)
        if not isinstance(table, dict):
            raise BoneImgError(f"settings entry {key!r} must be a table of options", path=where)
        if key == "study":
            study.update(_study_options(table, where))
        else:
            _merge_analysis(analyses, key, table, where)
    for key, value in overrides.items():
        if value is None:  # not given: the file or the default decides
            continue
        if key in STUDY_DEFAULTS:
            study.update(_study_options({key: value}, None))
        elif key.lower() in MODALITY_ALIASES and isinstance(value, dict):
            modality = canonical_modality(key)
            analyses[modality] = {**analyses.get(modality, {}), **value}
        else:
            raise BoneImgError(
                f"unknown study parameter {key!r}; expected one of {', '.join(STUDY_DEFAULTS)} "
                "or a modality name with a dict of analysis parameters")
    for modality, params in analyses.items():
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError):
            raise BoneImgError(f"{modality} parameters must be plain numbers, strings, lists or tables "
                               f"(they are recorded with the results), got {params!r}", path=where) from None
    return {"study": study, "analyses": analyses}


def _merge_analysis(analyses, key, table, where):
    if key.lower() not in MODALITY_ALIASES:
        raise BoneImgError(f"unknown settings table [{key}]; expected [study] or a modality "
                           f"({', '.join(MODALITY_ALIASES)})", path=where)
    modality = canonical_modality(key)
    if modality in analyses:
        raise BoneImgError(f"the settings give {modality} parameters twice ([{key}] is an alias)", path=where)
    analyses[modality] = dict(table)


def _study_options(options, where):
    unknown = set(options) - set(STUDY_DEFAULTS)
    if unknown:
        raise BoneImgError(f"unknown [study] option(s) {', '.join(sorted(unknown))}; expected "
                           f"{', '.join(STUDY_DEFAULTS)}", path=where)
    checks = {
        "control": (lambda v: v is None or isinstance(v, str), "a group name"),
        "test": (lambda v: v in TESTS, f"one of {', '.join(TESTS)}"),
        "confidence": (lambda v: _real(v) and 0 < v < 1, "a number between 0 and 1"),
        "n_resamples": (lambda v: _integer(v) and v >= 100, "an integer of at least 100"),
        "seed": (lambda v: _integer(v) and v >= 0, "a non-negative integer"),
    }
    for key, value in options.items():
        valid, expected = checks[key]
        if not valid(value):
            raise BoneImgError(f"study option {key} must be {expected}, got {value!r}", path=where)
    return options


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
