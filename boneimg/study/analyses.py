"""Which analysis a study runs on each modality: a small registry the study dispatches on.

The study code relies only on what an analysis returns: ``result.measurements`` (a dict from
measurement symbol, units in the name, to a number or a string) and the arrays the QC overlay
draws. Entries name their functions as ``"module:attribute"`` strings so that ``import
boneimg.study`` imports no analysis, and an analysis that is not installed fails only the images
that need it, with a message that says so.
"""

from dataclasses import dataclass
import importlib

from ..errors import BoneImgError
from ..io.image import MODALITIES

# Names a design table or settings file may use for a modality -> the Image.modality it means.
MODALITY_ALIASES = {
    "brightfield": "brightfield", "histology": "brightfield", "section": "brightfield",
    "ct": "ct", "microct": "ct", "micro-ct": "ct",
    "radiograph": "radiograph", "xray": "radiograph", "x-ray": "radiograph",
}


def canonical_modality(name, *, where=None):
    """Map a modality name or alias (case-insensitive) to one of ``Image`` modalities.

    Raises
    ------
    BoneImgError
        If `name` is not a known modality; `where` (a file) is named in the message.
    """
    modality = MODALITY_ALIASES.get(str(name).strip().lower())
    if modality is None:
        raise BoneImgError(
            f"unknown modality {name!r}; use one of {', '.join(MODALITIES)} "
            f"(aliases: {', '.join(a for a in MODALITY_ALIASES if a not in MODALITIES)})",
            path=where,
        )
    return modality


def _resolve(target):
    if callable(target):
        return target
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise BoneImgError(f"the analysis {target} is not available in this boneimg installation "
                           f"({type(exc).__name__}: {exc})") from None


def _name(target):
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


@dataclass(frozen=True)
class Analysis:
    """How a study analyses images of one modality.

    Parameters
    ----------
    function : callable or str
        ``function(image, **params) -> result`` with ``result.measurements``; a string
        ``"module:attribute"`` is imported when first called (in the worker process).
    overlay : callable or str
        ``overlay(image, result) -> ndarray of shape (M, N, 3), uint8``: the QC picture of what
        the analysis found.
    """

    function: object
    overlay: object = "boneimg.study.qc:draw_overlay"

    @property
    def name(self):
        """``"module:attribute"`` of the analysis function: recorded with every result."""
        return _name(self.function)

    def analyze(self, image, params):
        return _resolve(self.function)(image, **params)

    def draw(self, image, result):
        return _resolve(self.overlay)(image, result)


_REGISTRY = {
    "brightfield": Analysis("boneimg.histology.section:analyze_section"),
    "ct": Analysis("boneimg.ct.lesions:analyze_ct"),
    "radiograph": Analysis("boneimg.ct.radiograph:analyze_radiograph"),
}


def register_analysis(modality, function, *, overlay=None):
    """Make studies analyse images of `modality` with `function`.

    Parameters
    ----------
    modality : str
        A modality or alias (see :data:`MODALITY_ALIASES`).
    function : callable or str
        ``function(image, **params)`` returning an object with a ``measurements`` dict. It must
        be importable by name (a module-level function) so worker processes can run it.
    overlay : callable or str, optional
        QC drawer ``overlay(image, result) -> RGB uint8``; the default draws the result's
        ``regions``, ``bone``, ``lesions`` and ``osteoclasts``.

    Returns
    -------
    Analysis
        The entry it replaced, so a caller can put it back.
    """
    modality = canonical_modality(modality)
    previous = _REGISTRY[modality]
    _REGISTRY[modality] = Analysis(function) if overlay is None else Analysis(function, overlay)
    return previous


def registered_analyses():
    """A copy of the registry: modality -> Analysis."""
    return dict(_REGISTRY)
