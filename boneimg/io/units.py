"""Length units as files spell them, converted to micrometres."""

import math

_UM_PER_UNIT = {
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "inch": 25400.0, "in": 25400.0,
}


def um_per_unit(unit):
    """Micrometres in one `unit` (a unit name as written in a file), or None if not a length."""
    if unit is None:
        return None
    return _UM_PER_UNIT.get(str(unit).strip().strip('"').lower())


def length_to_um(value, unit):
    """Convert a positive length to µm; None when the unit is unknown or the value unusable."""
    factor = um_per_unit(unit)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if factor is None or not math.isfinite(value) or value <= 0:
        return None
    return value * factor
