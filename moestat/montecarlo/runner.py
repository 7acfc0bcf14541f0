"""The driver: plan the missing (n, replicate) pairs, run them, store, analyse, draw.

``run_experiment`` is what ``moestat reproduce`` calls.  It never recomputes a
stored replicate: the plan is "every (n, r) of the grid minus what the store
already holds", grouped into tasks of one n (replicate blocks sized so that
each task has enough work), largest n first so that the slowest tasks start
early.  Results are written to the store as each task finishes.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..losses import VORONOI_KINDS
from .analysis import error_slopes, local_slopes, loss_slopes
from .executors import make_executor
from .progress import Progress
from .spec import Spec, load_spec
from .store import Store, StoreError
from .worker import mc_bucket, run_task

#: a task aims at about this many data points (blocks of small-n replicates)
POINTS_PER_TASK = 20000

SLOPE_COLUMNS = ["experiment", "loss", "slope", "ci_low", "ci_high", "median_slope", "predicted", "published",
                 "n_min", "n_max", "n_sizes", "replicates", "failures", "excluded", "capped", "protocol", "quick",
                 "wall_s", "cpu_s", "spec_hash", "theory_row", "command"]


class RunExistsError(RuntimeError):
    """The output folder already holds results of this experiment and neither resume nor overwrite was asked.

    Examples
    --------
    >>> from moestat.montecarlo import RunExistsError
    >>> issubclass(RunExistsError, RuntimeError)
    True
    """


def plan_tasks(spec: Spec, missing: list[tuple[int, int]], block: int | None, extra: dict) -> list[dict]:
    """Tasks (n, block of replicates), largest n first, each labelled with its padded size bucket.

    Sizes of one padded bucket are adjacent in this order, and the process pool keeps the tasks of one
    ``group`` (bucket) on one worker, so each bucket's EM program is compiled once; large sizes first keeps
    the slowest tasks from finishing last.
    """
    by_n: dict[int, list[int]] = {}
    for n, r in missing:
        by_n.setdefault(int(n), []).append(int(r))
    tasks = []
    for n in sorted(by_n, reverse=True):
        reps = sorted(by_n[n])
        b = block or max(1, min(len(reps), math.ceil(POINTS_PER_TASK / n)))
        for i in range(0, len(reps), b):
            tasks.append(dict(extra, spec=spec.raw, n=n, reps=reps[i:i + b], group=mc_bucket(n)))
    return tasks


@dataclass
class RunResult:
    """What :func:`run_experiment` returns.

    Parameters
    ----------
    spec : Spec
        The experiment as run (protocol applied).
    out_dir : str
        Folder of the store and the outputs.
    slopes : pandas.DataFrame
        One row per loss (columns ``SLOPE_COLUMNS``: slope, ci_low, ci_high, median_slope, predicted, ...).
    files : list of str
        Files written (slopes.csv, results.csv, local_slopes.csv, param_slopes.csv, the figure).
    computed : int
        Replicates fitted in this call (0 when everything was stored).
    wall_s : float
        Wall time of all sessions of this experiment in the store.

    Examples
    --------
    >>> import pandas as pd
    >>> from moestat.montecarlo import RunResult, load_spec
    >>> RunResult(spec=load_spec("demystifying-k2"), out_dir="runs/k2", slopes=pd.DataFrame()).computed
    0
    """

    spec: Spec
    out_dir: str
    slopes: pd.DataFrame
    files: list = field(default_factory=list)
    computed: int = 0
    wall_s: float = 0.0
    panels: list = field(default_factory=list)  # per-loss inputs of the figure


def ensure_reference(spec: Spec, store: Store, log) -> dict | None:
    """The misspecified-limit parameters a spec's losses compare with (computed once, stored).

    Looked up in the store, then in the per-user cache (:mod:`moestat.montecarlo.reference`);
    fitted only when neither has it.
    """
    ref = spec.raw.get("reference")
    if not ref:
        return None
    stored = store.get_meta(spec.hash, "reference")
    if stored is not None:
        return stored
    from .reference import cache_reference, cached_reference, fit_reference, reference_key
    params = cached_reference(spec)
    if params is not None:
        log("reference fit %s taken from the per-user cache" % reference_key(spec))
    else:
        log("computing the reference fit (n = %d, %d starts) once for this spec ..."
            % (ref["n"], ref.get("n_init", 10)))
        t0 = time.perf_counter()
        params = fit_reference(spec, ref)
        seconds = time.perf_counter() - t0
        cache_reference(spec, params, seconds)
        log("reference fit done in %.1f s" % seconds)
    store.set_meta(spec.hash, "reference", params)
    return params


def run_experiment(experiment, *, quick: bool = False, out_dir: str | None = None, workers: int | None = None,
                   scheduler=None, resume: bool = False, overwrite: bool = False, protocol: str | None = None,
                   replicates: int | None = None, batch: str = "auto", block: int | None = None,
                   progress: bool = True, figures: bool = True, n_boot: int = 1000, stream=None,
                   throttle: float | None = None) -> RunResult:
    """Run (or complete) an experiment and write slopes.csv, results.csv and the figure into ``out_dir``.

    Parameters
    ----------
    experiment : str or Spec
        A shipped spec name, a path to a JSON spec, or a Spec.
    quick : bool
        Use the spec's quick grid and replicate count.
    out_dir : str
        Output folder; holds ``results.sqlite`` (the store) and the outputs.
        Default ``runs/<experiment>-<protocol>[-quick]``.
    workers : int
        Local worker processes (default: one per core; 1 runs in this process).
    scheduler : str or distributed.Client
        Dask scheduler address; overrides ``workers``.
    resume : bool
        Complete a previous run in ``out_dir`` (only missing replicates run).
    overwrite : bool
        Discard previous results of this experiment in ``out_dir``.
    protocol : "paper" | "mle"
        Override the spec's initialisation protocol.
    replicates : int
        Override the number of replicates per n.
    batch : "auto" | "replicate" | "vmap"
        How a worker fits a task (see :mod:`moestat.montecarlo.worker`).
    throttle : float
        Pause (seconds) after each stored task -- to watch or test interruption.

    Returns
    -------
    RunResult
        The slopes table, the output files and the number of replicates computed.

    Raises
    ------
    ValueError
        A spec file or spec that cannot be read or set up (the message names the file or field).
    RunExistsError
        ``out_dir`` holds results of this experiment and neither ``resume`` nor ``overwrite`` is set.
    StoreError
        ``out_dir/results.sqlite`` is not a moestat results database, or the folder or the
        database cannot be written (read-only, disk full); replicates stored before stay intact.
    OSError
        An output file (CSV, JSON, figure) cannot be written; the previous file is kept whole.

    Examples
    --------
    >>> import io, tempfile
    >>> from moestat.montecarlo import Spec, load_spec, run_experiment
    >>> raw = load_spec("demystifying-k2").raw                # a copy: editing it changes no shipped spec
    >>> raw.update(grid={"full": [{"values": [150, 300]}], "quick": [{"values": [150, 300]}]},
    ...            replicates={"full": 1, "quick": 1})
    >>> out = tempfile.mkdtemp()
    >>> run = run_experiment(Spec(raw), quick=True, out_dir=out, workers=1, progress=False, figures=False,
    ...                      n_boot=50, stream=io.StringIO())
    >>> run.computed, run.slopes["loss"].tolist()
    (2, ['D1', 'TV'])
    >>> run_experiment(Spec(raw), quick=True, out_dir=out, resume=True, progress=False, figures=False,
    ...                n_boot=50, stream=io.StringIO()).computed        # everything is stored
    0
    """
    stream = stream or sys.stderr
    log = lambda msg: print(msg, file=stream, flush=True)  # noqa: E731
    spec = experiment if isinstance(experiment, Spec) else load_spec(experiment)
    spec = spec.with_protocol(protocol)
    out_dir = out_dir or os.path.join("runs", "%s-%s%s" % (spec.name, spec.protocol, "-quick" if quick else ""))
    if spec.raw.get("variants"):
        from .worker import experiment_for
        for v in spec.variants():  # every variant can be set up before any of them runs
            try:
                experiment_for(v.raw)
            except (ValueError, TypeError) as exc:
                raise ValueError("experiment %r, variant %r cannot be set up: %s" % (spec.name, v.variant, exc)) \
                    from None
        kw = dict(quick=quick, workers=workers, scheduler=scheduler, resume=resume, overwrite=overwrite,
                  replicates=replicates, batch=batch, block=block, progress=progress, n_boot=n_boot, stream=stream,
                  throttle=throttle)
        subs = [run_experiment(v, out_dir=os.path.join(out_dir, v.variant), figures=False, **kw)
                for v in spec.variants()]
        return combine_variants(spec, subs, out_dir, quick, figures)
    try:  # fail here, not in every worker, when a family of the spec is not installed or a field is wrong
        from .worker import experiment_for
        experiment_for(spec.raw)
    except (ValueError, TypeError) as exc:
        raise ValueError("experiment %r cannot be set up: %s" % (spec.name, exc)) from None
    except (KeyError, IndexError, AttributeError) as exc:
        raise ValueError("experiment %r cannot be set up: a field of the spec is missing or malformed (%s: %s)"
                         % (spec.name, type(exc).__name__, exc)) from None
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise StoreError("cannot create the output folder %s: %s" % (out_dir, exc.strerror or exc)) from None
    grid = spec.grid(quick)
    R = int(replicates or spec.replicates(quick))
    store = Store(os.path.join(out_dir, "results.sqlite"))
    try:
        _claim(store, spec, out_dir, resume, overwrite)
        reference = ensure_reference(spec, store, log)
        done = store.done(spec.hash)
        missing = [(int(n), r) for n in grid for r in range(R) if (int(n), r) not in done]
        executor = make_executor(workers, scheduler) if missing else None
        ex_name = executor.name if executor else "none"
        extra = {"reference": reference, "batch": batch}
        if not block:
            # vectorised (GPU) fitting wants every replicate of one n in one task; in-process runs stream
            # each replicate to the store; pools get blocks of about POINTS_PER_TASK points
            from .._jax import backend
            vectorised = batch == "vmap" or (batch == "auto" and backend() != "cpu" and scheduler is None)
            block = R if vectorised else (1 if ex_name == "in-process" else None)
        tasks = plan_tasks(spec, missing, block, extra)
        log("%s (%s protocol%s): %d sizes x %d replicates, %d stored, %d to run in %d tasks on %s (%d workers)"
            % (spec.name, spec.protocol, ", quick" if quick else "", len(grid), R, len(grid) * R - len(missing),
               len(missing), len(tasks), ex_name, executor.workers if executor else 0))
        computed = _execute(executor, tasks, store, spec, quick, len(missing), progress, stream, throttle) \
            if missing else 0
        result = analyse(spec, store, out_dir, quick, grid, R, figures=figures, n_boot=n_boot)
        result.computed = computed
        return result
    finally:
        store.close()


def _claim(store: Store, spec: Spec, out_dir: str, resume: bool, overwrite: bool) -> None:
    """Refuse to mix with earlier results unless resuming; discard them when overwriting."""
    have = store.count(spec.hash)
    if have and overwrite:
        store.delete(spec.hash)
    elif have and not resume:
        raise RunExistsError("%s already holds %d results of %s (%s protocol); pass --resume to complete them "
                             "or --overwrite to start again" % (out_dir, have, spec.name, spec.protocol))
    store.register(spec)


def _execute(executor, tasks, store, spec, quick, total, progress, stream, throttle) -> int:
    """Run the tasks, storing each finished task at once; returns the number of new rows."""
    sid = store.start_session(spec.hash, executor.name, executor.workers, quick)
    bar = Progress(total, enabled=progress, stream=stream)
    computed, aborted = 0, True
    try:
        for task, rows in executor.imap_unordered(run_task, tasks):
            computed += store.write(spec.hash, rows)
            store.touch_session(sid, len(rows))
            bar.update(len(rows), extra="n=%d" % task["n"])
            if throttle:
                time.sleep(throttle)
        aborted = False
    finally:
        bar.close()
        executor.close(abort=aborted)  # an interrupted run stops its workers too
    return computed


def capped_count(df: pd.DataFrame) -> int:
    """Replicates whose softmax Voronoi loss sits at its cap sum_j m*_j (optimal mass scale exp(t0) -> 0).

    The per-parameter errors (``err_<group>.log_scale``) belong to the spec's first Voronoi loss.
    """
    cols = [c for c in df.columns if c.startswith("err_") and c.endswith("log_scale")]
    if not cols:
        return 0
    return int((df[cols].to_numpy(dtype=float) == -np.inf).any(axis=1).sum())


def command_line(spec: Spec, quick: bool, replicates: int | None = None) -> str:
    """The ``moestat reproduce`` command of a run (``--replicates`` when it overrode the spec's count)."""
    args = ["moestat", "reproduce", spec.name, "--protocol", spec.protocol]
    if quick:
        args.append("--quick")
    if replicates is not None and int(replicates) != spec.replicates(quick):
        args += ["--replicates", str(int(replicates))]
    return " ".join(shlex.quote(a) for a in args)


def analyse(spec: Spec, store: Store, out_dir: str, quick: bool, grid, R: int, figures: bool = True,
            n_boot: int = 1000) -> RunResult:
    """Slopes table, per-replicate CSV, local slopes, per-parameter slopes and the figure from the store.

    Parameters
    ----------
    spec : Spec
    store : Store
        Holds the replicates (keyed by ``spec.hash``).
    out_dir : str
        Where slopes.csv, results.csv, local_slopes.csv, param_slopes.csv, run.json and the figure go.
    quick : bool
        Label the outputs as a quick run.
    grid : array of int
        The sizes to analyse.
    R : int
        Replicates per size to analyse.
    figures : bool
        Draw the log-log figure (:func:`moestat.plot.convergence` per loss).
    n_boot : int
        Bootstrap resamples of the slope CI.

    Returns
    -------
    RunResult

    Examples
    --------
    >>> import io, tempfile
    >>> from moestat.montecarlo import Spec, load_spec, run_experiment
    >>> raw = load_spec("demystifying-k2").raw                # a copy: editing it changes no shipped spec
    >>> raw.update(grid={"full": [{"values": [150, 300]}], "quick": [{"values": [150, 300]}]},
    ...            replicates={"full": 1, "quick": 1})
    >>> out = tempfile.mkdtemp()
    >>> run = run_experiment(Spec(raw), quick=True, out_dir=out, workers=1, progress=False, figures=False,
    ...                      n_boot=50, stream=io.StringIO())
    >>> import os
    >>> from moestat.montecarlo import Store, analyse
    >>> with Store(os.path.join(out, "results.sqlite")) as st:
    ...     again = analyse(run.spec, st, out, True, run.spec.grid(True), 1, figures=False, n_boot=50)
    >>> bool(again.slopes["slope"].equals(run.slopes["slope"]))
    True
    """
    df = store.frame(spec.hash, grid, R)
    wall = store.wall_seconds(spec.hash)
    rows, fig_input, local = [], [], []
    files = []
    first_voronoi = next((L["name"] for L in spec.losses if L["kind"] in VORONOI_KINDS), None)
    if len(df):
        for L in spec.losses:
            st = loss_slopes(df, L["name"], n_boot=n_boot, seed=spec.seed)
            capped = capped_count(df) if L["name"] == first_voronoi else None
            rows.append({"experiment": spec.name, "loss": L["name"], "slope": st["slope"], "ci_low": st["ci_low"],
                         "ci_high": st["ci_high"], "median_slope": st["median_slope"], "predicted": L.get("predicted"),
                         "published": L.get("published"), "n_min": st["n_min"], "n_max": st["n_max"],
                         "n_sizes": st["n_sizes"], "replicates": st["replicates"], "failures": st["failures"],
                         "excluded": st["excluded"], "capped": capped, "protocol": spec.protocol,
                         "quick": bool(quick),
                         "wall_s": round(wall, 2), "cpu_s": round(float(df["seconds"].sum()), 2),
                         "spec_hash": spec.hash, "theory_row": L.get("theory_row"),
                         "command": command_line(spec, quick, R)})
            fig_input.append(dict(st, loss=L["name"], predicted=L.get("predicted"), published=L.get("published"),
                                  capped=capped))
            ls = local_slopes(st["summary"])
            ls.insert(0, "loss", L["name"])
            local.append(ls)
    slopes = pd.DataFrame(rows, columns=SLOPE_COLUMNS)
    slopes["capped"] = slopes["capped"].astype("Int64")  # blank for losses without a cap
    slopes["theory_row"] = slopes["theory_row"].astype("Int64")  # theory.md §7 row
    tag = "%s-%s%s" % (spec.name, spec.protocol, "-quick" if quick else "")
    paths = {"slopes": os.path.join(out_dir, "slopes.csv"), "results": os.path.join(out_dir, "results.csv"),
             "local": os.path.join(out_dir, "local_slopes.csv"), "params": os.path.join(out_dir, "param_slopes.csv")}
    with replacing(paths["slopes"]) as tmp:
        slopes.to_csv(tmp, index=False)
    with replacing(paths["results"]) as tmp:
        store.export_csv(spec.hash, tmp, grid, R)
    if local:
        with replacing(paths["local"]) as tmp:
            pd.concat(local).to_csv(tmp, index=False)
    if len(df):
        with replacing(paths["params"]) as tmp:
            error_slopes(df, spec.param_rates, n_boot=n_boot, seed=spec.seed).to_csv(tmp, index=False)
    files += list(paths.values())
    if figures and fig_input:
        sub = "%s protocol (%s), %s grid: %d sizes %d..%d, %d replicates, %d failed fits" % (
            spec.protocol, "near-truth init, published noise laws" if spec.protocol == "paper"
            else "random restarts, best likelihood", "quick" if quick else "full", len(grid), int(grid.min()),
            int(grid.max()), R, int(slopes["failures"].max()) if len(slopes) else 0)
        from .plots import slope_figure
        figure = os.path.join(out_dir, tag + ".png")
        with replacing(figure) as tmp:
            slope_figure(fig_input, spec.title, sub, tmp)
        files.append(figure)
    with replacing(os.path.join(out_dir, "run.json")) as tmp, open(tmp, "w") as fh:
        json.dump({"experiment": spec.name, "spec_hash": spec.hash, "protocol": spec.protocol, "quick": quick,
                   "grid": [int(v) for v in grid], "replicates": R, "stored": int(len(df)), "wall_s": wall,
                   "spec": spec.raw}, fh, indent=1)
    return RunResult(spec=spec, out_dir=out_dir, slopes=slopes, files=files, wall_s=wall, panels=fig_input)


def combine_variants(spec: Spec, subs: list[RunResult], out_dir: str, quick: bool, figures: bool = True) -> RunResult:
    """One slopes.csv and one figure for the variants of a spec (each variant's files stay in its subfolder)."""
    slopes = pd.concat([r.slopes for r in subs], ignore_index=True)
    path = os.path.join(out_dir, "slopes.csv")
    slopes.to_csv(path, index=False)
    files = [path] + [f for r in subs for f in r.files]
    panels = [p for r in subs for p in r.panels]
    if figures and panels:
        from .plots import slope_figure
        grid = subs[0].spec.grid(quick)
        sub = "%s protocol, %s grid: %d sizes %d..%d, variants %s on the same data streams" % (
            spec.protocol, "quick" if quick else "full", len(grid), int(grid.min()), int(grid.max()),
            ", ".join(r.spec.variant for r in subs))
        tag = "%s-%s%s" % (spec.name, spec.protocol, "-quick" if quick else "")
        files.append(slope_figure(panels, spec.title, sub, os.path.join(out_dir, tag + ".png")))
    return RunResult(spec=spec, out_dir=out_dir, slopes=slopes, files=files, computed=sum(r.computed for r in subs),
                     wall_s=sum(r.wall_s for r in subs), panels=panels)


@contextlib.contextmanager
def replacing(path: str):
    """Write an output file through a temporary sibling that replaces ``path`` only when complete.

    Yields the temporary path (same folder and extension, so writers that read
    the extension still work).  An interrupted or failed write (a full disk)
    leaves the previous ``path`` as it was and removes the partial file.
    """
    folder, base = os.path.split(path)
    stem, ext = os.path.splitext(base)
    tmp = os.path.join(folder, ".%s.partial-%d%s" % (stem, os.getpid(), ext))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def format_slopes(slopes: pd.DataFrame) -> str:
    """A compact text table of a slopes frame."""
    out = []
    for _, r in slopes.iterrows():
        pub = "" if r["published"] is None or (isinstance(r["published"], float) and np.isnan(r["published"])) \
            else " published %.3f" % float(r["published"])
        capped = "" if pd.isna(r["capped"]) else ", %d at the loss cap" % r["capped"]
        out.append("%-18s %-6s slope %+.3f  95%% CI [%+.3f, %+.3f]  median %+.3f  predicted %s%s  "
                   "(n %d..%d, %d sizes x %d reps, %d failed%s, %s protocol)"
                   % (r["experiment"], r["loss"], r["slope"], r["ci_low"], r["ci_high"], r["median_slope"],
                      "%+.2f" % r["predicted"] if r["predicted"] is not None else "n/a", pub, r["n_min"], r["n_max"],
                      r["n_sizes"], r["replicates"], r["failures"], capped, r["protocol"]))
    return "\n".join(out)
