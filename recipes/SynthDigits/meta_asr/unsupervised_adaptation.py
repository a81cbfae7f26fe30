#!/usr/bin/env python3
"""The main job's rows without transcripts, per seed, as one table.

The main job scores every method's adaptation without transcripts (its
exported ``unsupervised_adaptation``, chosen on meta-dev) through the
exported model: the ``unsupervised`` budget (k = 1, 5, 10 untranscribed
support utterances; k = 0 is the unadapted model on the same queries) and
``unsupervised_each`` (each query utterance adapted to alone,
``transcribe_adapting``). This script reads those rows from
``DIR/seed<S>/<method>/few_shot/<set>/few_shot_results.json`` and writes
them per seed, method and set, with the means over the seeds and, per
k, the tasks whose CER went up by more than 2 points: how often the
adaptation still hurts (the per-utterance row against the unadapted model
on each utterance alone, column ``alone``: a model whose RNN runs over
padded frames transcribes an utterance alone differently from the k = 0
row's padded batch). It runs no model.

Usage::

    python unsupervised_adaptation.py --benchmark_folder DIR \
        [--output_folder OUT] [--seeds 1234,1235] [--methods joint,lhuc] \
        [--sets real]

Writes ``OUT/unsupervised.{json,md}`` (default OUT: DIR).

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import glob
import os
import sys

WORSE = 0.02  # a task is hurt when its CER rises by more than this


def table_row(rows, method, seed, split):
    """One (seed, method, set)'s CER per k, hurt tasks and abstentions.

    Arguments
    ---------
    rows : list of dict
        The set's few-shot results of one run (every budget).
    method : str
        The method.
    seed : int
        Its training seed.
    split : str
        The set.

    Returns
    -------
    dict or None
        None when the run has no rows without transcripts.

    Example
    -------
    >>> rows = [
    ...     {"budget": "unsupervised", "k_shot": 0, "cer_mean": 0.5,
    ...      "cer_per_task": {"a": 0.5}},
    ...     {"budget": "unsupervised", "k_shot": 5, "cer_mean": 0.6,
    ...      "cer_per_task": {"a": 0.6}, "abstained_episodes": 0},
    ...     {"budget": "unsupervised_each", "k_shot": 0, "cer_mean": 0.4,
    ...      "cer_per_task": {"a": 0.4}}]
    >>> row = table_row(rows, "joint", 1, "real")
    >>> row["cer"], row["hurt_tasks"]
    ({'k=0': 50.0, 'k=5': 60.0, 'each': 40.0}, {'k=5': 1, 'each': 0})
    """
    mine = [r for r in rows if r.get("budget") == "unsupervised"]
    base = next((r for r in mine if r["k_shot"] == 0), None)
    if base is None:
        return None
    labelled = [(f"k={r['k_shot']}", r) for r in mine]
    labelled += [
        ("each", r) for r in rows if r.get("budget") == "unsupervised_each"
    ]
    cer = {label: round(100 * r["cer_mean"], 1) for label, r in labelled}
    for label, r in labelled:
        if "unadapted_cer_mean" in r:  # each utterance alone, unadapted
            cer["alone"] = round(100 * r["unadapted_cer_mean"], 1)

    def bases(r):
        # an episodic row is compared with its own unadapted transcripts
        return r.get("unadapted_cer_per_task") or base["cer_per_task"]

    return {
        "seed": seed,
        "method": method,
        "set": split,
        "cer": cer,
        "tasks": len(base["cer_per_task"]),
        "hurt_tasks": {
            label: sum(
                r["cer_per_task"][t] > bases(r)[t] + WORSE
                for t in base["cer_per_task"]
            )
            for label, r in labelled
            if r is not base
        },
        "abstained": {
            label: r.get("abstained_episodes", 0)
            for label, r in labelled
            if label not in ("k=0", "each")
        },
        "adaptation": base.get("adaptation"),
    }


def main(argv=None):
    """Collects the rows of every (seed, method, set) asked; writes the
    table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark_folder", required=True)
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--seeds", default=None, help="default: all run")
    parser.add_argument("--methods", default=None, help="default: all run")
    parser.add_argument("--sets", default="test,test_voices,real")
    args = parser.parse_args(argv)
    from speechbrain_meta.evaluation import load_results

    folder = args.benchmark_folder
    seeds = (
        [int(s) for s in args.seeds.split(",")]
        if args.seeds
        else sorted(
            int(os.path.basename(p)[4:])
            for p in glob.glob(os.path.join(folder, "seed*"))
            if os.path.basename(p)[4:].isdigit()
        )
    )
    table = []
    for seed in seeds:
        run = os.path.join(folder, f"seed{seed}")
        methods = (
            args.methods.split(",")
            if args.methods
            else sorted(
                os.path.basename(os.path.dirname(p))
                for p in glob.glob(os.path.join(run, "*", "few_shot"))
            )
        )
        for method in methods:
            for split in args.sets.split(","):
                path = os.path.join(run, method, "few_shot", split)
                if not os.path.isfile(
                    os.path.join(path, "few_shot_results.json")
                ):
                    continue
                row = table_row(
                    load_results(path)["results"], method, seed, split
                )
                if row is not None:
                    table.append(row)
    if not table:
        print(f"{folder}: no rows without transcripts (budget "
              "'unsupervised') in its runs", file=sys.stderr)  # fmt: skip
        return 1
    print(write_table(table, args.output_folder or folder))
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
    >>> last = write_table(table, tempfile.mkdtemp()).splitlines()[-1]
    >>> last.split(" | ")[:6]
    ['| mean of 2', 'joint', 'real', '45.0', '-', '44.5']
    >>> last.split(" | ")[-2:]
    ['k=5: 2/6', 'k=5: 0 |']
    """
    from speechbrain_meta.reports import markdown_table, write_json

    labels = ["k=0", "k=1", "k=5", "k=10", "alone", "each"]
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
    names = {"alone": "k=0, each utterance alone", "each": "each adapted"}
    header = (
        ["seed", "method", "set"]
        + [f"CER % {names.get(x, x)}" for x in labels]
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
