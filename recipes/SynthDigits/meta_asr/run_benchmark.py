#!/usr/bin/env python3
"""The main job: few-shot adaptation to unseen languages, every method.

Generates the SynthDigits corpus, trains the joint model, meta-trains the
meta-learners from it, and runs the few-shot protocol for every method on
the same episodes; then prints the comparison table and writes

* ``DIR/few_shot_results.json``, ``DIR/few_shot_results.md`` and
  ``DIR/few_shot_cer.png``: held-out languages (cross-lingual);
* ``DIR/test_voices/...``: held-out voices of the training languages;
* ``DIR/benchmark.json``: the run's settings and per-method wall time.

Each method is ``train.py hparams/<method>.yaml`` run in-process with the
same overrides; its model and results live in ``DIR/<method>/``, and a rerun
skips what is done (SpeechBrain checkpoints, cached few-shot results).

Usage::

    python run_benchmark.py [--output_folder DIR] [--methods maml,joint]
                            [--quick] [--device cpu]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import importlib.util
import json
import os
import sys
import time

from speechbrain_meta.evaluation import (
    load_results,
    merge_results,
    results_table,
    validate_results,
    write_results,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_recipe():
    """Loads train.py under a name no other recipe's train.py shadows."""
    spec = importlib.util.spec_from_file_location(
        "synthdigits_meta_asr_train", os.path.join(HERE, "train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Baselines first: the meta-learners and the adapter baselines start from
# the joint model.
METHODS = [
    "joint",
    "scratch",
    "lora",
    "adapter",
    "maml",
    "fomaml",
    "reptile",
    "anil",
    "metasgd",
    "layer_step_lr",
    "learned_update",
    "scale_shift",
    "lhuc",
    "meta_lora",
    "meta_adapter",
]

# The CI-sized run: the same pipeline on a small corpus and budget.
QUICK = {
    "corpus": {
        "speakers_per_language": 2,
        "utts_per_speaker": 16,
        "heldout_utts_per_speaker": 24,
    },
    "joint_epochs": 3,
    "warm_start_epoch": 2,
    "episodes_per_epoch": 8,
    "valid_dataloader_opts": {"episodes": {"episodes_per_epoch": 2}},
    "few_shot": {
        "k_shots": [0, 1, 5, 10],
        "episodes_per_task": 1,
        "query_utterances": 10,
        "adapt_steps": 2,
    },
    "few_shot_voice_tasks": 2,
    "adapt_lr_grid": [0.01, 0.1],
}


def parse_args(argv):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output_folder",
        default=None,
        help="where everything goes (default: results/SynthDigits/"
        "benchmark[_quick])",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the CI-sized run (~2 minutes)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda:0, ...")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    args.methods = methods
    if args.output_folder is None:
        name = "benchmark_quick" if args.quick else "benchmark"
        args.output_folder = os.path.join("results", "SynthDigits", name)
    return args


def method_overrides(args, method):
    """The overrides every method's run gets (plus its output folder)."""
    overrides = {
        "seed": args.seed,
        "output_folder": os.path.join(args.output_folder, method),
        "joint_folder": os.path.join(args.output_folder, "joint"),
        "data_folder": os.path.join(args.output_folder, "data"),
    }
    if args.quick:
        overrides.update(json.loads(json.dumps(QUICK)))
        if method == "adapter":
            overrides["adapt_lr_grid"] = [0.1, 1.0]
        if method not in ("joint", "scratch", "lora", "adapter"):
            overrides.pop("adapt_lr_grid")
        if method == "lora":
            overrides["adapt_lr_grid"] = [1.0, 3.0]
    return overrides


def main(argv=None):
    """Runs the benchmark.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    dict
        Merged few-shot results per evaluation set.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.output_folder, exist_ok=True)
    run_opts = {"device": args.device, "noprogressbar": True}
    order = [m for m in METHODS if m in args.methods]
    seconds = {}
    recipe = _load_recipe()
    for method in order:
        start = time.perf_counter()
        recipe.run(
            os.path.join(HERE, "hparams", f"{method}.yaml"),
            dict(run_opts),
            method_overrides(args, method),
        )
        seconds[method] = round(time.perf_counter() - start, 1)

    merged = {}
    for split in ("test", "test_voices"):
        documents = []
        for method in order:
            path = os.path.join(args.output_folder, method, "few_shot", split)
            if os.path.exists(os.path.join(path, "few_shot_results.json")):
                documents.append(load_results(path))
        if not documents:
            continue
        merged[split] = merge_results(documents)
        validate_results(merged[split])
        out = (
            args.output_folder
            if split == "test"
            else os.path.join(args.output_folder, split)
        )
        title = (
            "SynthDigits: unseen languages"
            if split == "test"
            else "SynthDigits: unseen voices of the training languages"
        )
        write_results(
            out, merged[split]["protocol"], merged[split]["results"], title
        )
        print()
        print(results_table(merged[split]["results"], title=title))
        print(relative_to_joint(merged[split]["results"]))
    with open(
        os.path.join(args.output_folder, "benchmark.json"),
        "w",
        encoding="utf-8",
    ) as fout:
        json.dump(
            {
                "methods": order,
                "quick": args.quick,
                "device": args.device,
                "seed": args.seed,
                "wall_seconds": seconds,
            },
            fout,
            indent=2,
        )
    print("wall time per method (s, includes training when not cached):")
    print(json.dumps(seconds))
    return merged


def relative_to_joint(rows):
    """A line per method: relative CER change against joint at each k.

    Arguments
    ---------
    rows : list of dict
        Merged result rows.

    Returns
    -------
    str
    """
    joint = {r["k_shot"]: r["cer_mean"] for r in rows if r["method"] == "joint"}
    if not joint:
        return ""
    lines = ["Relative CER vs joint (negative = lower CER than joint):"]
    methods = []
    for r in rows:
        if r["method"] not in methods and r["method"] != "joint":
            methods.append(r["method"])
    for m in methods:
        cells = []
        for r in rows:
            if r["method"] == m and joint.get(r["k_shot"]):
                change = r["cer_mean"] / joint[r["k_shot"]] - 1
                cells.append(f"k={r['k_shot']}: {100 * change:+.0f}%")
        lines.append(f"  {m}: " + ", ".join(cells))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
