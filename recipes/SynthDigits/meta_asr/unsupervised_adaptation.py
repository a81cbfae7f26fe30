#!/usr/bin/env python3
"""The main job's exported models adapted without transcripts.

Loads each method's exported model of the main job (``seed<S>/<method>/
inference``) with ``AdaptiveASR``, as a user would, and scores its
adaptation from untranscribed audio (``unsupervised_adaptation``: the
export's, or ``UNSUPERVISED_ADAPTATION``) under the main job's few-shot
protocol: the same episodes of every evaluation set, the support given as
audio only (k = 1, 5, 10; the transcripts only score the query), and
episodically, each query utterance adapted to alone
(``transcribe_adapting``). The k = 0 row is the unadapted model on the
same queries. Also counts, per set and k, the tasks whose CER went up by
more than 2 points: how often the default still hurts.

Usage::

    python unsupervised_adaptation.py --benchmark_folder DIR \
        --output_folder OUT [--seeds 1234] [--methods joint,fomaml] \
        [--sets real]
    python unsupervised_adaptation.py --merge OUT1,OUT2 --output_folder OUT \
        --benchmark_folder DIR

Writes ``OUT/<seed>/<method>/<set>/few_shot_results.{json,md}`` and
``OUT/unsupervised.{json,md}`` (the table over what was run).

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exported_models import main_job_protocols  # noqa: E402

WORSE = 0.02  # a task is hurt when its CER rises by more than this


def score_method(folder, protocol, method, seed):
    """The unadapted, unsupervised k-shot and per-utterance rows."""
    from speechbrain_meta.inference import AdaptiveASR

    asr = AdaptiveASR.from_hparams(
        source=folder,
        savedir=os.path.join(folder, "..", "unsupervised_savedir"),
        run_opts={"device": "cpu"},
    )
    rows = protocol.evaluate_interface(asr, method, unsupervised=True)
    rows.append(protocol.evaluate_each_utterance(asr, method))
    for row in rows:
        row.update(seeds=[seed], budget="unsupervised")
    return rows


def hurt(rows):
    """Per adapted row: the tasks whose CER rose by more than ``WORSE``."""
    base = next(r for r in rows if r["k_shot"] == 0 and "per_utterance"
                not in (r.get("adaptation") or {}))  # fmt: skip
    out = {}
    for r in rows:
        if r is base:
            continue
        label = "each" if r["k_shot"] == 0 else f"k={r['k_shot']}"
        out[label] = sum(
            r["cer_per_task"][t] > base["cer_per_task"][t] + WORSE
            for t in base["cer_per_task"]
        )
    return out


def main(argv=None):
    """Scores every (seed, method, set) asked; writes the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--seeds", default="1234")
    parser.add_argument("--methods", default="joint,fomaml,metasgd")
    parser.add_argument("--sets", default="test,test_voices,real")
    parser.add_argument(
        "--merge",
        default=None,
        help="comma-separated output folders of earlier runs: write their "
        "rows together (with means over seeds) instead of running",
    )
    args = parser.parse_args(argv)
    if args.merge:
        table = []
        for folder in args.merge.split(","):
            with open(os.path.join(folder, "unsupervised.json")) as f:
                table.extend(json.load(f))
        print(write_table(table, args.output_folder))
        return 0

    from speechbrain_meta.evaluation import write_results

    table = []
    for seed in (int(s) for s in args.seeds.split(",")):
        protocols = main_job_protocols(
            args.benchmark_folder, seed, os.path.join(args.output_folder, "hp")
        )
        for method in args.methods.split(","):
            folder = os.path.join(
                args.benchmark_folder, f"seed{seed}", method, "inference"
            )
            for split in args.sets.split(","):
                if split not in protocols:
                    continue
                rows = score_method(folder, protocols[split], method, seed)
                write_results(
                    os.path.join(args.output_folder, str(seed), method, split),
                    protocols[split].description(),
                    rows,
                    title=f"SynthDigits {split}: {method} (seed {seed}) "
                    "adapted without transcripts",
                )
                cer = {}
                for r in rows:
                    per_utt = "per_utterance" in (r.get("adaptation") or {})
                    label = "each" if per_utt else f"k={r['k_shot']}"
                    cer[label] = round(100 * r["cer_mean"], 1)
                table.append(
                    {
                        "seed": seed,
                        "method": method,
                        "set": split,
                        "cer": cer,
                        "tasks": len(rows[0]["cer_per_task"]),
                        "hurt_tasks": hurt(rows),
                        "abstained": {
                            f"k={r['k_shot']}": r.get("abstained_episodes", 0)
                            for r in rows
                            if r["k_shot"]
                        },
                    }
                )
                print(json.dumps(table[-1]), flush=True)
    print(write_table(table, args.output_folder))
    return 0


def write_table(table, output_folder):
    """Writes ``unsupervised.{json,md}``: a row per seed, method and set,
    then, with several seeds, each method and set's mean over them (CER;
    hurt tasks and abstained episodes summed).

    Arguments
    ---------
    table : list of dict
        The rows ``main`` makes (``seed``, ``method``, ``set``, ``cer``,
        ``tasks``, ``hurt_tasks``, ``abstained``).
    output_folder : str
        Where to write.

    Returns
    -------
    str
        The markdown table.

    Example
    -------
    >>> import tempfile
    >>> row = {"method": "joint", "set": "real", "tasks": 3,
    ...        "hurt_tasks": {"k=5": 1}, "abstained": {"k=5": 0}}
    >>> table = [dict(row, seed=1, cer={"k=0": 50.0, "k=5": 48.0}),
    ...          dict(row, seed=2, cer={"k=0": 40.0, "k=5": 41.0})]
    >>> print(write_table(table, tempfile.mkdtemp()).splitlines()[-1])
    | mean of 2 | joint | real | 45.0 | - | 44.5 | - | - | k=5: 2/6 | k=5: 0 |
    """
    from speechbrain_meta.reports import markdown_table, write_json

    labels = ["k=0", "k=1", "k=5", "k=10", "each"]
    rows = list(table)
    groups = {}
    for t in table:
        groups.setdefault((t["method"], t["set"]), []).append(t)
    for (method, split), runs in groups.items():
        if len(runs) < 2:
            continue
        mean = {
            x: round(sum(r["cer"][x] for r in runs) / len(runs), 1)
            for x in labels
            if all(x in r["cer"] for r in runs)
        }
        rows.append(
            {
                "seed": f"mean of {len(runs)}",
                "method": method,
                "set": split,
                "cer": mean,
                "tasks": sum(r["tasks"] for r in runs),
                "hurt_tasks": {
                    k: sum(r["hurt_tasks"].get(k, 0) for r in runs)
                    for k in runs[0]["hurt_tasks"]
                },
                "abstained": {
                    k: sum(r["abstained"].get(k, 0) for r in runs)
                    for k in runs[0]["abstained"]
                },
            }
        )
    write_json(os.path.join(output_folder, "unsupervised.json"), table)
    header = (
        ["seed", "method", "set"]
        + [f"CER % {x}" for x in labels]
        + ["tasks hurt (> 2 points)", "episodes abstained"]
    )
    body = []
    for t in rows:
        hurt_cells = ", ".join(f"{k}: {v}/{t['tasks']}"
                               for k, v in t["hurt_tasks"].items())  # fmt: skip
        abstained = ", ".join(f"{k}: {v}" for k, v in t["abstained"].items())
        body.append(
            [t["seed"], t["method"], t["set"]]
            + [t["cer"].get(x, "-") for x in labels]
            + [hurt_cells, abstained]
        )
    text = markdown_table(header, body)
    with open(os.path.join(output_folder, "unsupervised.md"), "w") as f:
        f.write(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
