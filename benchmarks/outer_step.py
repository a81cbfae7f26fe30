#!/usr/bin/env python3
"""Wall-clock time of one outer step per algorithm vs one plain fit_batch.

Uses the SynthTones recipe's CRDNN CTC model (hparams/maml.yaml) and one
fixed episode (K support + Q query utterances). The peer is SpeechBrain's
plain ``Brain.fit_batch`` on the same K + Q utterances as one batch,
measured in the same run. Prints a markdown table and writes JSON.

    python benchmarks/outer_step.py [--repeats 10] [--out DIR] [--device cuda:0]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import json
import os
import sys

import speechbrain as sb
import torch
from timing import measure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthTones", "meta_asr")
sys.path.insert(0, RECIPE)

from synth_tones_prepare import prepare_synth_tones  # noqa: E402
from train import COMMON, dataio_prepare  # noqa: E402

from speechbrain_meta import (  # noqa: E402
    MAML,
    InnerLoop,
    LayerStepLR,
    LearnedUpdate,
    MetaOptimizerBrain,
    MetaSGD,
    meta_brain_class,
)
from speechbrain_meta.asr import CTCASR as ASR  # noqa: E402
from speechbrain_meta.data import TaskSampler  # noqa: E402
from speechbrain_meta.layered_yaml import load_layered_hparams  # noqa: E402

ALGORITHMS = {
    "maml": ("maml.yaml", {"inner_steps": 3}),
    "fomaml": ("fomaml.yaml", {"inner_steps": 3}),
    "reptile": ("reptile.yaml", {"inner_steps": 3}),
    "anil": ("anil.yaml", {"inner_steps": 3}),
}

# Learned update rules (MetaOptimizerBrain), 3 inner steps: name ->
# (rule factory, first order).
RULES = {
    "metasgd (2nd order)": (lambda: MetaSGD(0.1), False),
    "metasgd": (lambda: MetaSGD(0.1), True),
    "layer_step_lr": (lambda: LayerStepLR(0.1, inner_steps=3), True),
    "learned_update": (lambda: LearnedUpdate(0.1, inner_steps=3), True),
}


def load(method, out):
    path = os.path.join(RECIPE, "hparams", ALGORITHMS[method][0])
    overrides = {
        "output_folder": out,
        "data_folder": os.path.join(out, "data"),
        "meta": dict(ALGORITHMS[method][1]),
    }
    return load_layered_hparams(path, COMMON, overrides)[0]


def median_time(fn, repeats, warmup=2):
    return measure(fn, repeats, warmup)["median"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="results/benchmarks/outer_step")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    base = load("maml", args.out)
    prepare_synth_tones(base["data_folder"], **base["corpus"])
    datasets, tokenizer = dataio_prepare(base)
    sampler = TaskSampler(datasets["train"], "spk_id", 5, 5, 1, seed=0)
    examples = [datasets["train"][i] for i in next(iter(sampler))]
    episode = sampler.collate_fn()(examples)
    pooled = sb.dataio.batch.PaddedBatch(examples)

    def build(brain_class, hparams):
        brain = brain_class(
            modules=hparams["modules"],
            opt_class=hparams["opt_class"],
            hparams=hparams,
            run_opts={"device": args.device},
        )
        brain.tokenizer = tokenizer
        brain.grad_accumulation_factor = 1  # one outer step per call
        brain.on_fit_start()
        brain.modules.train()
        return brain

    rows = []
    plain = build(ASR, load("maml", args.out))
    peer = median_time(lambda: plain.fit_batch(pooled), args.repeats)
    for method in ALGORITHMS:
        hparams = load(method, args.out)
        Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
        brain = build(Brain, hparams)
        seconds = median_time(lambda: brain.fit_batch(episode), args.repeats)
        inner = hparams["meta_algorithm"].inner_loop
        rows.append(
            {
                "case": method,
                "inner_steps": inner.inner_steps,
                "first_order": inner.first_order,
                "utterances": episode.n_support + episode.n_query,
                "outer_step_s": seconds,
                "plain_fit_batch_s": peer,
                "ratio": seconds / peer,
                "floor_ratio": inner.inner_steps + 1,
            }
        )
    for name, (make_rule, first_order) in RULES.items():
        hparams = load("maml", args.out)
        hparams["meta_algorithm"] = MAML(
            InnerLoop(3, update_rule=make_rule(), first_order=first_order)
        )
        hparams["rule_opt_class"] = lambda p: torch.optim.Adam(p, lr=1e-3)
        brain = build(meta_brain_class(ASR, MetaOptimizerBrain), hparams)
        seconds = median_time(lambda: brain.fit_batch(episode), args.repeats)
        rows.append(
            {
                "case": name,
                "inner_steps": 3,
                "first_order": first_order,
                "utterances": episode.n_support + episode.n_query,
                "outer_step_s": seconds,
                "plain_fit_batch_s": peer,
                "ratio": seconds / peer,
                "floor_ratio": 4,
            }
        )
    params = sum(p.numel() for p in plain.modules.parameters())
    print(
        f"\nCRDNN CTC, {params} parameters, K=5 + Q=5 utterances, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}\n"
    )
    print(
        "| algorithm | inner steps | order | outer step (s) "
        "| plain fit_batch (s) | ratio | (k+1) floor |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        order = "first" if r["first_order"] else "second"
        print(
            f"| {r['case']} | {r['inner_steps']} | {order} | "
            f"{r['outer_step_s']:.3f} | {r['plain_fit_batch_s']:.3f} | "
            f"{r['ratio']:.2f} | {r['floor_ratio']} |"
        )
    with open(os.path.join(args.out, "outer_step.json"), "w") as f:
        json.dump({"model_parameters": params, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
