"""Checks of user-given parameters, shared by the analyses, raising BoneImgError that names them."""

import math

from .errors import BoneImgError


def number(name, value, *, low=0.0, strict=False):
    """`value` as a float, after checking it is a finite real number >= `low` (> `low` if `strict`).

    Booleans are refused although Python counts them as integers.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise BoneImgError(f"{name} must be a finite number {relation} {low:g}, got {value!r}")
    return float(value)
