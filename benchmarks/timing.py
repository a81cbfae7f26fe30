"""Timing and reporting shared by the benchmarks.

Every figure is the median of ``repeats`` runs after ``warmup`` runs, with
min and max beside it. A benchmark's result is a list of rows
``{"case", "ours", "peer", "unit", "ratio", "goal", "meets", ...}`` (the
peer measured in the same process on the same model and data), printed as
a markdown table and written to ``DIR/<benchmark>.json``.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import json
import os
import statistics
import time


def benchmark_parser(doc, repeats=5, quick=False):
    """The options every timing benchmark takes: repeats, JSON folder, device.

    Arguments
    ---------
    doc : str
        The benchmark's module docstring (its first line describes it).
    repeats : int
        The default number of timed runs.
    quick : bool
        Whether the benchmark has a ``--quick`` (short) version.

    Returns
    -------
    argparse.ArgumentParser
        More options may be added.

    Example
    -------
    >>> args = benchmark_parser("Demo.", quick=True).parse_args([])
    >>> args.repeats, args.json, args.device, args.quick
    (5, 'results/benchmarks', 'cpu', False)
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if quick:
        parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--json", default="results/benchmarks")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    return parser


def measure(fn, repeats=5, warmup=1, sync=None):
    """Wall-clock seconds of ``fn()``: median, min and max.

    Arguments
    ---------
    fn : callable
        What to time (no arguments).
    repeats : int
        Timed runs (at least 5 for a reported figure).
    warmup : int
        Untimed runs first.
    sync : callable, optional
        Called before each clock read (``torch.cuda.synchronize`` on GPU).

    Returns
    -------
    dict
        ``median``, ``min``, ``max`` in seconds.

    Example
    -------
    >>> t = measure(lambda: sum(range(1000)), repeats=5)
    >>> t["min"] <= t["median"] <= t["max"]
    True
    """
    return measure_interleaved([fn], repeats, warmup, sync)[0]


def measure_interleaved(fns, repeats=5, warmup=1, sync=None):
    """``measure`` of several functions, their runs taken in turn.

    One run of each, then again: a machine whose speed drifts during the
    run (a shared or burstable virtual machine slows down under sustained
    load) slows them alike, and their ratio stays fair.

    Arguments
    ---------
    fns : list of callable
        What to time.
    repeats : int
        Timed runs of each.
    warmup : int
        Untimed runs of each first.
    sync : callable, optional
        Called before each clock read.

    Returns
    -------
    list of dict
        ``measure``'s result for each function.

    Example
    -------
    >>> fast, slow = measure_interleaved(
    ...     [lambda: sum(range(10)), lambda: sum(range(100000))]
    ... )
    >>> fast["median"] < slow["median"]
    True
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            if sync is not None:
                sync()
            start = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            fn_times.append(time.perf_counter() - start)
    return [
        {
            "median": statistics.median(t),
            "min": min(t),
            "max": max(t),
        }
        for t in times
    ]


def row(case, ours, peer, unit="s", goal=None, **extra):
    """One result row: ours against the peer, as a ratio.

    Arguments
    ---------
    case : str
        What is measured.
    ours, peer : dict
        ``measure`` results (the peer's in the same run).
    unit : str
        The unit of ``ours`` and ``peer``.
    goal : float, optional
        The largest ratio that meets the goal.
    **extra
        More columns (settings, the peer's name).

    Returns
    -------
    dict

    Example
    -------
    >>> r = row("x", {"median": 2.0, "min": 1.9, "max": 2.1},
    ...         {"median": 1.0, "min": 1.0, "max": 1.0}, goal=2.5)
    >>> r["ratio"], r["meets"]
    (2.0, True)
    """
    ratio = ours["median"] / peer["median"]
    return {
        "case": case,
        "ours": ours["median"],
        "ours_min": ours["min"],
        "ours_max": ours["max"],
        "peer": peer["median"],
        "peer_min": peer["min"],
        "peer_max": peer["max"],
        "unit": unit,
        "ratio": round(ratio, 3),
        "goal": goal,
        "meets": None if goal is None else bool(ratio <= goal),
        **extra,
    }


def report(name, rows, out_dir, settings=None):
    """Prints the rows as a markdown table and writes ``<name>.json``.

    Arguments
    ---------
    name : str
        The benchmark.
    rows : list of dict
        From ``row``.
    out_dir : str
        Where the JSON goes.
    settings : dict, optional
        What was measured on (model, data, threads, device).

    Returns
    -------
    str
        The markdown table.

    Example
    -------
    >>> import tempfile
    >>> r = row("x", {"median": 2.0, "min": 2.0, "max": 2.0},
    ...         {"median": 1.0, "min": 1.0, "max": 1.0})
    >>> print(report("demo", [r], tempfile.mkdtemp()))
    | case | ours | peer | unit | ratio | goal | meets |
    |---|---|---|---|---|---|---|
    | x | 2 (2-2) | 1 (1-1) | s | 2 | - | - |
    """

    def fig(r, key):
        return f"{r[key]:.4g} ({r[key + '_min']:.4g}-{r[key + '_max']:.4g})"

    lines = [
        "| case | ours | peer | unit | ratio | goal | meets |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = "-" if r["goal"] is None else f"<= {r['goal']}"
        meets = "-" if r["meets"] is None else ("yes" if r["meets"] else "no")
        lines.append(
            f"| {r['case']} | {fig(r, 'ours')} | {fig(r, 'peer')} | "
            f"{r['unit']} | {r['ratio']:.3g} | {goal} | {meets} |"
        )
    table = "\n".join(lines)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"settings": settings or {}, "rows": rows}, f, indent=2)
    return table
