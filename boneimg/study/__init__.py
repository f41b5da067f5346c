"""Treatment studies: batch analysis of image folders, per-animal aggregation, effects vs control.

>>> import boneimg as bi
>>> study = bi.run_study("design.csv", "results/")   # doctest: +SKIP
>>> study.effects[["measurement", "group", "percent_change_pct", "p_adjusted"]]  # doctest: +SKIP
"""

from .analyses import Analysis, register_analysis, registered_analyses
from .runner import Study, run_study

__all__ = ["Analysis", "Study", "register_analysis", "registered_analyses", "run_study"]
