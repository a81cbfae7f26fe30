#!/usr/bin/env python3
"""Runs every benchmark, one fresh process each, and lists what they wrote.

    python benchmarks/run_all.py [--quick] [--json DIR] [--device cuda]

Each benchmark prints its markdown table and writes ``DIR/<name>.json``
(rows ``{case, ours, peer, unit, ratio, goal, meets}``, see
``timing.py``). ``--quick`` runs the short versions (fewer repeats,
shapes and steps: a smoke test, not figures to report). Measure alone: a
second job on the machine distorts timings many times over.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def benchmarks(out, device, quick):
    """``(name, argv)`` of every benchmark.

    Arguments
    ---------
    out : str
        The JSON folder.
    device : str
        ``cpu`` or a CUDA device.
    quick : bool
        The short versions.

    Returns
    -------
    list of tuple

    Example
    -------
    >>> [name for name, _ in benchmarks("out", "cpu", True)][:2]
    ['ctc', 'outer_step']
    """
    repeats = ["--repeats", "2" if quick else "5"]
    return [
        ("ctc", ["--json", out, "--device", device] + repeats
         + (["--quick"] if quick else [])),
        ("outer_step", ["--json", out, "--device", device] + repeats),
        ("allreduce", ["--json", out] + (["--repeats", "3"] if quick else [])),
        ("meta_transfer_memory", ["--out", out, "--device", device]
         + (["--repeats", "1"] if quick else [])),
        ("memory", ["--json", out, "--device", device,
                    "--steps", "30" if quick else "500"]),
        ("adaptation", ["--json", out, "--device", device] + repeats),
        ("peers", ["--json", out, "--device", device] + repeats
         + (["--quick"] if quick else [])),
        ("scaling", ["--json", out] + repeats
         + (["--rounds", "1"] if quick else [])),
    ]  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default="results/benchmarks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    status = {}
    for name, options in benchmarks(args.json, args.device, args.quick):
        if only is not None and name not in only:
            continue
        print(f"\n## {name}\n", flush=True)
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, os.path.join(HERE, f"{name}.py"), *options],
            cwd=ROOT,
        )
        status[name] = (run.returncode, time.perf_counter() - start)
    print("\n| benchmark | exit | seconds |\n|---|---|---|")
    for name, (code, seconds) in status.items():
        print(f"| {name} | {code} | {seconds:.0f} |")
    return 0 if all(code == 0 for code, _ in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
