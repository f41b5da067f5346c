"""`run_study`: analyse every image of a design, in parallel, resumably, then aggregate and report."""

from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
import json
import multiprocessing
import numbers
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from ..errors import BoneImgError
from ..io.atomic import atomic_path
from ..io.write import provenance, save_table
from .analyses import registered_analyses
from .design import check_out_dir, choose_control, read_design
from .jobs import failed_record, is_done, load_record, make_job, run_job, save_result
from .settings import resolve_settings
from .stats import aggregate_animals, numeric_measurements, treatment_effects

DESIGN_COLUMNS = ("group", "animal", "bone", "timepoint", "reference")


@dataclass
class Study:
    """A finished study: its tables, and the folder they were written to.

    Attributes
    ----------
    out_dir : pathlib.Path
        Holds ``images.csv``, ``animals.csv``, ``effects.csv``, ``failures.csv``,
        ``report.html``, ``qc/`` (one overlay per image), ``records/`` (one result per image, for
        resuming), ``design.csv``, ``study.json`` and a copy of the settings file.
    images : pandas.DataFrame
        One row per analysed image: its design entry, modality, pixel size, QC overlay, warnings
        and every measurement (units in the column names).
    animals : pandas.DataFrame
        One row per animal: numeric measurements averaged per bone, then per animal.
    effects : pandas.DataFrame
        One row per measurement and group compared with the control; see
        :func:`boneimg.study.stats.treatment_effects`.
    failures : pandas.DataFrame
        One row per image that could not be analysed, with the reason.
    control : str
        The control group.
    settings : dict
        The settings the study ran with.
    """

    out_dir: Path
    images: pd.DataFrame
    animals: pd.DataFrame
    effects: pd.DataFrame
    failures: pd.DataFrame
    control: str
    settings: dict

    @property
    def report(self):
        """Path of the HTML report."""
        return self.out_dir / "report.html"


class StudyCancelled(RuntimeError):
    """Raised by :func:`run_study` when its `should_cancel` callback asked it to stop."""


def run_study(design, out_dir, *, settings=None, workers=None, scheduler=None, quiet=False, progress=None,
              should_cancel=None, **params):
    """Analyse a treatment study: every image, then per-animal values and effects vs control.

    Parameters
    ----------
    design : str, os.PathLike or pandas.DataFrame
        A CSV file or DataFrame with one row per image and columns ``path``, ``animal``,
        ``group`` (optional ``bone``, ``timepoint``, ``modality``, ``pixel_size_um``,
        ``reference``), or a folder laid out as ``GROUP/ANIMAL/image``. See
        :func:`boneimg.study.design.read_design`.
    out_dir : str or os.PathLike
        Output folder; it must not lie inside a folder holding input images. Running again on
        the same folder resumes: images already done are not analysed again and the results are
        identical to an uninterrupted run.
    settings : str or os.PathLike, optional
        A TOML or YAML settings file (see :mod:`boneimg.study.settings`); copied into `out_dir`.
    workers : int, optional
        Local worker processes (default: one per CPU core); 1 analyses in this process.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``): the images are analysed
        on that cluster's workers, which need boneimg installed, must reach the input paths, and
        are best started with one thread each (``dask worker ADDRESS --nthreads 1 --nworkers
        N``). Results come back to this process, which writes them. Not with `workers`.
    quiet : bool
        No progress bar and no messages.
    progress : callable, optional
        Called as ``progress(done, total)`` (images) after each image's result is written.
    should_cancel : callable, optional
        Called between images; when it returns True the run stops (images not started are
        dropped, results written so far are kept) and :class:`StudyCancelled` is raised.
        Running again on the same `out_dir` resumes.
    **params
        Override the settings file: ``control`` (the control group; default the first group in
        the design), ``test`` ("parametric" or "nonparametric"), ``confidence``,
        ``n_resamples``, ``seed``, and per-modality analysis parameters as dicts, e.g.
        ``radiograph={"min_area_mm2": 0.01}``.

    Returns
    -------
    Study

    Raises
    ------
    BoneImgError
        If the design, settings or out_dir are invalid. An image that cannot be analysed does not
        raise: it is listed in ``failures.csv`` and the study goes on.
    StudyCancelled
        If `should_cancel` asked the run to stop.
    """
    if scheduler is not None and workers is not None:
        raise BoneImgError("give either workers (local processes) or scheduler (a Dask cluster), not both")
    if workers is not None and not (isinstance(workers, numbers.Integral) and workers >= 1):
        raise BoneImgError(f"workers must be a positive integer, got {workers!r}")
    resolved = resolve_settings(settings, **params)
    table, source = read_design(design)
    check_out_dir(out_dir, table, source)
    control, how = choose_control(table, resolved["study"]["control"])
    say = _messenger(quiet)
    say(f"control group: {control} ({how}; choose another with control=... or --control)")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_info = {"settings": resolved, "control": control,
                "settings_file": None if settings is None else os.path.abspath(settings)}
    _write_inputs(out, table, source, settings, run_info)
    analyses = {m: (a, resolved["analyses"].get(m, {})) for m, a in registered_analyses().items()}
    jobs = [make_job(row, analyses) for row in table.to_dict("records")]
    todo = [job for job in jobs if not is_done(load_record(out, job), job)]
    if len(todo) < len(jobs):
        say(f"resuming in {out}: {len(jobs) - len(todo)} of {len(jobs)} images already done")
    _analyse(todo, out, total=len(jobs), workers=workers, scheduler=scheduler, quiet=quiet, say=say,
             progress=progress, should_cancel=should_cancel)

    records = [load_record(out, job) for job in jobs]  # from disk, so a resumed run reads the same
    images, failures, measurements = _image_tables(table, records)
    numeric = numeric_measurements(images, measurements)
    animals = aggregate_animals(images, numeric)
    options = {k: v for k, v in resolved["study"].items() if k != "control"}
    effects = treatment_effects(animals, numeric, control=control, **options)
    study = Study(out, images, animals, effects, failures, control, resolved)
    for name, frame in (("images", images), ("animals", animals), ("effects", effects), ("failures", failures)):
        save_table(out / f"{name}.csv", frame, source=source, parameters=run_info)
    from .report import write_report

    write_report(study, source=source)
    say(f"{len(images)} images analysed, {len(failures)} failed; tables and report.html in {out}")
    return study


def _messenger(quiet):
    from tqdm import tqdm

    def say(message):
        if not quiet:  # tqdm.write keeps a progress bar on screen intact
            tqdm.write(f"boneimg study: {message}", file=sys.stderr)
    return say


def _write_inputs(out, table, source, settings, run_info):
    """Keep what the study ran on: the design, a copy of the settings file and the provenance."""
    with atomic_path(out / "design.csv") as tmp:
        table.to_csv(tmp, index=False)
    if settings is not None:
        with atomic_path(out / f"settings{Path(settings).suffix.lower()}") as tmp:
            shutil.copyfile(settings, tmp)
    with atomic_path(out / "study.json") as tmp:
        tmp.write_text(json.dumps(provenance(source, run_info, n_images=len(table)), indent=1), encoding="utf-8")


def _analyse(todo, out, *, total, workers, scheduler, quiet, say, progress, should_cancel):
    """Run the jobs, writing each result as it arrives, with a progress bar."""
    from tqdm import tqdm

    if progress is not None:
        progress(total - len(todo), total)
    if not todo:
        return
    if scheduler is None:
        workers = min(workers or _cpu_count(), len(todo))
        say(f"analysing {len(todo)} images with {workers} local process{'es' if workers > 1 else ''}")
    else:
        say(f"analysing {len(todo)} images on the Dask cluster at {scheduler}")
    failed, done = 0, total - len(todo)
    with tqdm(total=total, initial=total - len(todo), unit="image", desc="boneimg study",
              disable=quiet, file=sys.stderr, dynamic_ncols=True) as bar:
        results = _results(todo, workers, scheduler, say)
        for job, (record, picture) in results:
            save_result(out, job, record, picture)
            failed += record["status"] != "ok"
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()
            done += 1
            if progress is not None:
                progress(done, total)
            if should_cancel is not None and should_cancel() and done < total:
                results.close()  # cancels the jobs not started and shuts the workers down
                raise StudyCancelled(f"cancelled after {done} of {total} images; run again on {out} to resume")


def _results(jobs, workers, scheduler, say):
    """Yield ``(job, run_job(job))`` as the jobs finish, in this process, local processes or on
    a Dask cluster."""
    if scheduler is not None:
        from distributed import Client

        try:
            client = Client(scheduler, set_as_default=False, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise BoneImgError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            if max(client.nthreads().values(), default=1) > 1:
                say("note: the Dask workers run several threads each; start them with --nthreads 1 "
                    "(and --nworkers N) so each image's warnings are recorded with that image")
            yield from _as_completed(client.get_executor(pure=False), jobs)
    elif workers == 1:
        for job in jobs:
            yield job, run_job(job)
    else:
        # spawn, not fork: forking a process that runs threads (progress bar, a caller's) can hang
        context = multiprocessing.get_context("spawn")
        executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread_per_worker)
        yield from _as_completed(executor, jobs)


def _one_thread_per_worker():
    """Worker processes already use every core between them: numba, torch and BLAS, imported
    after this runs, start one thread each instead of one per core."""
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


def _as_completed(executor, jobs):
    futures = {executor.submit(run_job, job): job for job in jobs}
    try:
        for future in as_completed(futures):
            job = futures.pop(future)  # so its result (and a cluster's copy of it) can be freed
            try:
                result = future.result()
            except Exception as exc:  # the worker, not the image, failed: record it, retry on a rerun
                result = failed_record(job, f"the worker running this image failed ({type(exc).__name__}: "
                                            f"{exc}); run the study again to retry"), None
            yield job, result
    finally:  # on an error or interrupt, drop the jobs not yet started
        for future in futures:
            future.cancel()
        executor.shutdown(wait=True)


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _image_tables(design, records):
    """images (analysed) and failures tables, in design order, and the measurement names."""
    given = [c for c in DESIGN_COLUMNS if c in design]
    images, failures, measurements = [], [], {}
    for (_, entry), record in zip(design.iterrows(), records):
        row = {"path": entry["path"], **{c: entry[c] for c in given},
               "modality": record["modality"] or entry.get("modality", "")}
        if record["status"] != "ok":
            failures.append({**row, "reason": record["reason"]})
            continue
        if "pixel_size_um" in design:
            row["pixel_size_um"] = entry["pixel_size_um"]
        spacing = record["spacing_um"]
        row.update(spacing_um="x".join(f"{s:g}" for s in spacing) if spacing else "",
                   analysis=record["analysis"]["function"], qc_overlay=record.get("overlay", ""),
                   warnings="; ".join(record["warnings"]))
        images.append({**row, **record["measurements"]})
        measurements.update(dict.fromkeys(record["measurements"]))
    image_columns = ["path", *given, "modality", *(["pixel_size_um"] if "pixel_size_um" in design else []),
                     "spacing_um", "analysis", "qc_overlay", "warnings", *measurements]
    return (pd.DataFrame(images, columns=image_columns),
            pd.DataFrame(failures, columns=["path", *given, "modality", "reason"]),
            list(measurements))
