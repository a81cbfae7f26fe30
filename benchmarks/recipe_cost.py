#!/usr/bin/env python3
"""Seconds per update of a recipe's model: the basis of its GPU hours.

The LibriSpeech speaker-adaptation recipe's CRDNN at its full size, on
utterances of LibriSpeech's mean length (12.3 s, 16 kHz noise with random
transcripts of 15 characters a second: cost does not depend on what is
said): one joint-training update (a pooled batch of (K + Q) x meta-batch
utterances, plain ``fit_batch``) and one meta-training episode (K + Q
utterances) of each meta-learner, median of ``--repeats`` after a warm-up.
Prints a markdown table with the recipe's default budget turned into
hours, and writes ``DIR/recipe_cost.json``.

    python benchmarks/recipe_cost.py [--device cuda] [--json DIR]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import json
import os
import random
import sys
import tempfile

import speechbrain as sb
import torch
from timing import measure

from speechbrain_meta import meta_brain_class
from speechbrain_meta.data import Episode
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import WarmStartASR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "LibriSpeech", "speaker_adaptation")
sys.path.insert(0, RECIPE)
from librispeech_prepare import LABELS  # noqa: E402

METHODS = ["joint", "fomaml", "reptile", "maml", "meta_lhuc"]


def _brain(method, device):
    hparams, _ = load_layered_hparams(
        os.path.join(RECIPE, "hparams", f"{method}.yaml"),
        os.path.join(RECIPE, "hparams", "models", "common.yaml"),
        {"output_folder": tempfile.mkdtemp(), "data_folder": "unused"},
    )
    if hparams.get("adapters") is not None:
        from speechbrain_meta.task_params import insert_adapters

        insert_adapters(
            hparams["modules"], hparams["adapted_modules"], hparams["adapters"]
        )
    Brain = meta_brain_class(WarmStartASR, hparams["meta_brain_class"])
    brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": device},
        meta_algorithm=hparams["meta_algorithm"],
    )
    encoder = sb.dataio.encoder.CTCTextEncoder()
    encoder.update_from_iterable(sorted(LABELS), sequence_input=False)
    encoder.insert_blank(index=hparams["blank_index"])
    brain.tokenizer = encoder
    brain.init_optimizers()
    return brain, hparams


def _batch(encoder, n, seconds, rng):
    letters = sorted(LABELS - {" "})
    utts = []
    for i in range(n):
        text = "".join(rng.choice(letters) for _ in range(int(15 * seconds)))
        utts.append(
            {
                "id": str(i),
                "sig": torch.randn(int(16000 * seconds)) * 0.1,
                "tokens": torch.LongTensor(encoder.encode_sequence(list(text))),
            }
        )
    return sb.dataio.batch.PaddedBatch(utts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=12.3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", default="results/benchmarks")
    args = parser.parse_args()
    rng = random.Random(0)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    rows = []
    for method in args.methods.split(","):
        brain, hp = _brain(method, args.device)
        k, q = hp["n_support"], hp["n_query"]
        brain.modules.train()
        if hp["training"] == "joint":
            brain.grad_accumulation_factor = 1
            n = (k + q) * hp["grad_accumulation_factor"]
            batch = _batch(brain.tokenizer, n, args.seconds, rng)
            updates = hp["joint_epochs"] * (
                hp["episodes_per_epoch"] // hp["grad_accumulation_factor"]
            )
        else:
            batch = Episode(
                _batch(brain.tokenizer, k, args.seconds, rng),
                _batch(brain.tokenizer, q, args.seconds, rng),
                task="t",
            )
            updates = (hp["joint_epochs"] - hp["warm_start_epoch"]) * hp[
                "episodes_per_epoch"
            ]
        # Global feature statistics, as training would have them.
        with torch.no_grad():
            stats = batch.support if isinstance(batch, Episode) else batch
            brain.compute_forward(stats.to(brain.device), None)
        brain.step = 0

        def step(brain=brain, batch=batch):
            brain.step += 1
            brain.fit_batch(batch)

        seconds = measure(step, args.repeats, warmup=1, sync=sync)
        rows.append(
            {
                "method": method,
                "unit": "joint update"
                if hp["training"] == "joint"
                else "episode",
                "seconds": seconds,
                "updates": updates,
                "hours": updates * seconds["median"] / 3600,
            }
        )
        del brain
    device = torch.cuda.get_device_name() if sync is not None else "CPU"
    print(f"\n{device}, utterances of {args.seconds} s\n")
    print("| method | unit | seconds (median [min, max]) | units | hours |")
    print("|---|---|---|---|---|")
    for r in rows:
        s = r["seconds"]
        print(
            f"| {r['method']} | {r['unit']} | {s['median']:.3f} "
            f"[{s['min']:.3f}, {s['max']:.3f}] | {r['updates']} | "
            f"{r['hours']:.1f} |"
        )
    os.makedirs(args.json, exist_ok=True)
    with open(os.path.join(args.json, "recipe_cost.json"), "w") as f:
        json.dump({"device": device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
