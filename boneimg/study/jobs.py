"""One image of a study: the job a worker runs, and the record of its result kept in ``out_dir``.

A job carries everything a worker needs (so it runs the same in a local process or on a Dask
worker on another machine) and returns its record and QC picture to the caller, which writes
them. A record is one small JSON file written atomically, so it is either whole or absent. On a
rerun a record is reused only if the image was analysed ("ok") from the same input file (size
and modification time), design entry, analysis and parameters, and boneimg version; failed
images are tried again.
"""

from dataclasses import dataclass
import hashlib
import json
import math
import os
import re
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import BoneImgError
from ..io.atomic import atomic_path
from ..io.load import load
from .qc import jpeg_bytes

RECORDS = "records"  # sub-folder of out_dir holding one JSON record per image
QC = "qc"            # sub-folder of out_dir holding one QC overlay (JPEG) per image


@dataclass(frozen=True)
class ImageJob:
    """What a worker needs to analyse one image.

    Attributes
    ----------
    path : str
        The image file or slice folder.
    key : str
        Its name in ``out_dir`` (records and QC overlays).
    modality : str or None
        From the design; None to take the one the file records.
    pixel_size_um : float or None
        From the design, overriding the file (and the reference's).
    reference : str or None
        A lesion-free image of the same bone, passed to the analysis as ``reference=``.
    analyses : dict
        modality -> (Analysis, parameters): what to run once the modality is known.
    spec : dict
        What the result depends on, stored in the record to decide reuse on a rerun.
    """

    path: str
    key: str
    modality: str | None
    pixel_size_um: float | None
    reference: str | None
    analyses: dict
    spec: dict


def make_job(row, analyses):
    """The job of one design row; `analyses` maps modality -> (Analysis, parameters)."""
    path = row["path"]
    modality = row.get("modality") or None
    pixel_size = row.get("pixel_size_um", math.nan)
    pixel_size = None if math.isnan(pixel_size) else float(pixel_size)
    reference = row.get("reference") or None
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).name)[:60]
    spec = {"path": path, "input": _fingerprint(path), "modality": modality, "pixel_size_um": pixel_size,
            "reference": reference, "reference_input": reference and _fingerprint(reference),
            "software": __version__}
    return ImageJob(path, f"{stem}-{digest}", modality, pixel_size, reference, analyses, spec)


def _fingerprint(path):
    """Size and modification time of the input (every file of a slice folder): a changed input
    is analysed again."""
    path = Path(path)
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    except OSError:
        return None
    return hashlib.sha1(repr(stats).encode()).hexdigest()


def analysis_entry(analysis, params):
    """How a record names the analysis that made it."""
    return {"function": analysis.name, "params": json.loads(json.dumps(params))}


def run_job(job):
    """Analyse one image; never raises for a bad image.

    Returns
    -------
    record : dict
        ``status`` "ok" with ``measurements``, or "failed" with ``reason``; warnings raised on
        the way are kept in ``warnings``.
    picture : bytes or None
        The QC overlay, JPEG-encoded.
    """
    start = time.perf_counter()
    record = failed_record(job, None)
    picture = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # independent of the caller's filters
        try:
            image = load(job.path, pixel_size_um=job.pixel_size_um, modality=job.modality)
            if image.modality is None:
                raise BoneImgError("the modality of this image is unknown; give it in the design's "
                                   "'modality' column", path=job.path)
            if image.modality not in job.analyses:
                raise BoneImgError(f"no analysis is registered for {image.modality} images", path=job.path)
            analysis, params = job.analyses[image.modality]
            record.update(modality=image.modality, analysis=analysis_entry(analysis, params),
                          spacing_um=image.spacing_um and list(image.spacing_um))
            if job.reference is not None:
                params = {**params, "reference": load(job.reference, pixel_size_um=job.pixel_size_um,
                                                      modality=image.modality)}
            result = analysis.analyze(image, params)
            record["measurements"] = _plain_measurements(result.measurements)
            record["status"] = "ok"
            picture = _overlay(analysis, image, result, record)
        except Exception as exc:  # a failed image is recorded and the study goes on
            record["reason"] = f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc()
    record["warnings"] += list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    record["seconds"] = time.perf_counter() - start
    return record, picture


def failed_record(job, reason):
    """The record of an image that was not analysed (yet), and why."""
    return {"key": job.key, "spec": job.spec, "status": "failed", "reason": reason, "modality": None,
            "analysis": None, "spacing_um": None, "measurements": {}, "warnings": []}


def _overlay(analysis, image, result, record):
    """The QC picture; a drawing problem is noted but does not fail the image's measurements."""
    try:
        return jpeg_bytes(analysis.draw(image, result))
    except Exception as exc:
        record["warnings"].append(f"QC overlay not drawn: {type(exc).__name__}: {exc}")
        return None


def _plain_measurements(measurements):
    """Measurements as JSON-safe Python scalars, in the analysis's order; a table of details
    (such as the method an analysis chose) becomes its JSON text."""
    plain = {}
    for name, value in dict(measurements).items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None:
            value = math.nan
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"measurement {name!r} is a {type(value).__name__}, not a number or a string")
        plain[str(name)] = float(value) if isinstance(value, bool) else value
    return plain


def record_path(out_dir, job):
    return Path(out_dir) / RECORDS / f"{job.key}.json"


def overlay_path(out_dir, job):
    return Path(out_dir) / QC / f"{job.key}.jpg"


def save_result(out_dir, job, record, picture):
    """Write the QC overlay, then the record (which marks the image done), each atomically."""
    if picture is not None:
        with atomic_path(overlay_path(out_dir, job)) as tmp:
            tmp.write_bytes(picture)
        record = {**record, "overlay": os.path.join(QC, f"{job.key}.jpg")}
    with atomic_path(record_path(out_dir, job)) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")


def load_record(out_dir, job):
    """The stored record of `job`, or None if there is none or it is unreadable."""
    try:
        return json.loads(record_path(out_dir, job).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_done(record, job):
    """Whether a stored record is the result this job would compute now.

    Failed images are tried again: a failure may have been transient (memory, a lost worker).
    """
    if record is None or record.get("status") != "ok" or record.get("spec") != job.spec:
        return False
    entry = job.analyses.get(record.get("modality"))
    return entry is not None and record.get("analysis") == analysis_entry(*entry)
