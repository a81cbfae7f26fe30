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
    args = parser.parse_args(argv)

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
    os.makedirs(args.output_folder, exist_ok=True)
    with open(os.path.join(args.output_folder, "unsupervised.json"), "w") as f:
        json.dump(table, f, indent=1)
    labels = ["k=0", "k=1", "k=5", "k=10", "each"]
    lines = [
        "| seed | method | set | "
        + " | ".join(f"CER % {x}" for x in labels)
        + " | tasks hurt (> 2 points) | episodes abstained |",
        "|---" * (len(labels) + 5) + "|",
    ]
    for t in table:
        cells = [str(t["cer"].get(x, "-")) for x in labels]
        hurt_cells = ", ".join(f"{k}: {v}/{t['tasks']}"
                               for k, v in t["hurt_tasks"].items())  # fmt: skip
        abstained = ", ".join(f"{k}: {v}" for k, v in t["abstained"].items())
        lines.append(
            f"| {t['seed']} | {t['method']} | {t['set']} | "
            + " | ".join(cells)
            + f" | {hurt_cells} | {abstained} |"
        )
    with open(os.path.join(args.output_folder, "unsupervised.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
