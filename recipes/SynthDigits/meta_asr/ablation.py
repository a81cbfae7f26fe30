#!/usr/bin/env python3
"""The base recogniser's settings, one at a time: train joint, score it.

Each variant is the joint model of this recipe trained with some hparams
overrides (``NAME='{yaml}'``), then scored unadapted (k = 0) and after
plain Adam fine-tuning (k = 10, 20 steps, eval mode) on the same fixed
episodes of every set (meta-dev languages, unseen languages, unseen
voices, real voices). Meta-dev is what decides; the other sets are
reported to explain. It writes ``DIR/ablation.{json,md}``; a rerun skips
what is done.

Usage::

    python ablation.py --output_folder DIR --seeds 1234,1235 base='{}'
    python ablation.py --output_folder DIR sentence='{norm_type: sentence}'

A corpus setting changes the synthetic evaluation sets too. To compare
like for like, ``--trained NAME=PATTERN`` scores models already trained
(``PATTERN`` with ``{seed}``, e.g. ``OTHER/slow/{seed}``; copied into
``DIR/NAME/<seed>``, the originals untouched) under variant ``NAME``'s
overrides instead of training them: one variant's models on another's
corpus::

    python ablation.py --output_folder DIR --trained \
        'slow@default=SLOW/slow/{seed}' 'slow@default={}'

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shutil

import yaml

from speechbrain_meta.recipe import recover_selected

HERE = os.path.dirname(os.path.abspath(__file__))
SETS = {
    "dev": "lang",
    "test": "lang",
    "test_voices": "spk_id",
    "real": "spk_id",
}


def score_joint(folder, overrides, lrs=(0.001, 0.003)):
    """Trains (unless done) and scores one joint model.

    Arguments
    ---------
    folder : str
        Its output folder.
    overrides : dict
        Hparams overrides (``data_folder`` included).
    lrs : tuple of float
        Adam rates of the k = 10 fine-tuning.

    Returns
    -------
    dict
        ``<set>/k0`` and ``<set>/k10/adam<lr>`` to CER, and per task.
    """
    # train.py under its own name: another recipe's train.py may be
    # imported as `train` in the same process.
    spec = importlib.util.spec_from_file_location(
        "synthdigits_meta_asr_train", os.path.join(HERE, "train.py")
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)

    from speechbrain_meta.adaptation import Adaptation
    from speechbrain_meta.evaluation import FewShotProtocol

    overrides = {**overrides, "output_folder": folder, "run_few_shot": False}
    joint = os.path.join(HERE, "hparams", "joint.yaml")
    train.run(joint, {"device": "cpu", "noprogressbar": True}, overrides)
    hparams = train.layered_experiment(joint, train.COMMON, overrides)
    datasets, tokenizer, _ = train.dataio_prepare(
        hparams, train.prepare_corpora(hparams)
    )
    recover_selected(hparams)
    brain = train.make_brain(hparams, {"device": "cpu"}, tokenizer)
    tasks = train.few_shot_tasks(hparams, datasets)
    out = {}
    for split, group_by in SETS.items():
        if datasets.get(split) is None:
            continue
        protocol = FewShotProtocol(
            datasets[split],
            group_by,
            [0, 10],
            1,
            20,
            seed=hparams["few_shot"]["seed"],
            tasks=tasks.get(split),
        )
        for lr in lrs:
            rows = protocol.evaluate(
                brain, "joint", Adaptation("adam", lr=lr, steps=20)
            )
            for row in rows:
                key = f"{split}/k{row['k_shot']}"
                key += f"/adam{lr:g}" if row["k_shot"] else ""
                out[key] = row["cer_mean"]
                out[key + "/tasks"] = row["cer_per_task"]
    return out


def parse_args(argv):
    """Command-line options; each variant's yaml is parsed and its keys
    checked against the joint model's settings here, before anything runs.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME='{yaml}'")
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--seeds", default="1234")
    parser.add_argument(
        "--trained",
        action="append",
        default=[],
        metavar="NAME=PATTERN",
        help="score the models in PATTERN (with {seed}) as variant NAME "
        "instead of training them",
    )
    args = parser.parse_args(argv)
    from speechbrain_meta.layered_yaml import layer_keys

    hparams = os.path.join(HERE, "hparams")
    known = set(layer_keys(os.path.join(hparams, "models", "common.yaml")))
    known |= set(layer_keys(os.path.join(hparams, "joint.yaml")))
    for item in args.variants:
        name, sep, text = item.partition("=")
        overrides = yaml.safe_load(text) if sep else None
        if not name or not isinstance(overrides, dict):
            parser.error(f"{item!r}: expected NAME='{{yaml mapping}}'")
        unknown = sorted(set(overrides) - known)
        if unknown:
            parser.error(f"{name}: {unknown} are not settings of joint")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    names = {item.partition("=")[0] for item in args.variants}
    trained = {}
    for item in args.trained:
        name, sep, pattern = item.partition("=")
        if not sep or "{seed}" not in pattern or name not in names:
            parser.error(
                f"--trained {item!r}: expected NAME=PATTERN, NAME one of the "
                "variants, PATTERN with {seed}"
            )
        for seed in args.seeds:
            if not os.path.isdir(pattern.format(seed=seed)):
                parser.error(f"--trained {item!r}: no folder for seed {seed}")
        trained[name] = pattern
    args.trained = trained
    return args


def main(argv=None):
    """Runs the variants and writes the table."""
    args = parse_args(argv)
    seeds = args.seeds
    path = os.path.join(args.output_folder, "ablation.json")
    done = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fin:
            done = json.load(fin)
    for item in args.variants:
        name, _, text = item.partition("=")
        overrides = yaml.safe_load(text) or {}
        for seed in seeds:
            key = f"{name}/{seed}"
            if key in done and done[key]["overrides"] == overrides:
                continue
            # Variants with the same corpus settings share its files.
            corpus = json.dumps(overrides.get("corpus", {}), sort_keys=True)
            digest = hashlib.sha256(corpus.encode()).hexdigest()[:10]
            run = {
                **overrides,
                "seed": seed,
                "data_folder": os.path.join(
                    args.output_folder, f"data_{digest}"
                ),
            }
            folder = os.path.join(args.output_folder, name, str(seed))
            if name in args.trained and not os.path.isdir(folder):
                source = args.trained[name].format(seed=seed)
                shutil.copytree(source, folder, symlinks=True)
            done[key] = {
                "overrides": overrides,
                "scores": score_joint(folder, run),
            }
            os.makedirs(args.output_folder, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fout:
                json.dump(done, fout, indent=1)
    write_table(done, os.path.join(args.output_folder, "ablation.md"))


def write_table(done, path):
    """The ablation as a markdown table: each variant's mean over the seeds
    run, then (with several seeds) one row per seed.
    """
    from speechbrain_meta.reports import markdown_table

    columns = [
        "dev/k0",
        "dev/k10/adam0.003",
        "test/k0",
        "test_voices/k0",
        "real/k0",
        "real/k10/adam0.001",
        "real/k10/adam0.003",
    ]
    names = {}
    for key, entry in done.items():
        name, seed = key.rsplit("/", 1)
        names.setdefault(name, {})[seed] = entry["scores"]

    def cells(runs):
        out = []
        for column in columns:
            values = [r[column] for r in runs if column in r]
            mean = sum(values) / len(values) if values else float("nan")
            out.append(f"{100 * mean:.1f}")
        return out

    rows = []
    for name, runs in names.items():
        seeds = sorted(runs)
        rows.append([name, ", ".join(seeds)] + cells(runs.values()))
    for name, runs in names.items():
        if len(runs) > 1:
            for seed in sorted(runs):
                rows.append([name, seed] + cells([runs[seed]]))
    table = markdown_table(["variant", "seeds"] + columns, rows)
    with open(path, "w", encoding="utf-8") as fout:
        fout.write(table)
    print(table)
    return table


if __name__ == "__main__":
    main()
