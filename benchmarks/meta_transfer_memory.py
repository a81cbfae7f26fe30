#!/usr/bin/env python3
"""Peak memory and time of one second-order outer step: meta-transfer vs MAML.

The SynthDigits recipe's model (Fbank -> CRDNN -> CTC, hparams/joint.yaml)
takes one MAML outer step (second order, 2 inner steps, K = 5 support and
Q = 5 query utterances of 2 s) either on all its weights (the peer:
full-model MAML) or on light task parameters over the frozen backbone
(``MetaTransferBrain`` with ScaleShift, LHUC, LoRA or bottleneck adapters).
Each measurement runs in a fresh process: the peak resident memory of the
step above the process's memory after building the model and one
no-gradient forward. Prints a markdown table (ratios to the peer) and
writes JSON.

    python benchmarks/meta_transfer_memory.py [--repeats 3] [--out DIR]
                                              [--device cuda:0]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import functools
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")

CASES = {
    # name: (adapter class path or None, adapter kwargs, all_conv)
    "maml_full": (None, {}, False),
    "scale_shift": ("speechbrain_meta.task_params.ScaleShift", {}, True),
    "lhuc": ("speechbrain_meta.task_params.LHUC", {}, True),
    # Only above the LSTM: the inner graph stops there.
    "scale_shift_linear_only": (
        "speechbrain_meta.task_params.ScaleShift",
        {},
        False,
    ),
    "meta_lora": (
        "speechbrain.nnet.adapters.LoRA",
        {"rank": 8, "alpha": 8},
        False,
    ),
    "meta_adapter": (
        "speechbrain.nnet.adapters.HoulsbyAdapterLinear",
        {"projection_size": 16},
        False,
    ),
}


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _import(path):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def measure(case, device):
    """One measurement of one case, in this process."""
    import torch
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.nnet.adapters import AdaptedModel

    from speechbrain_meta import (
        MAML,
        InnerLoop,
        MetaInitBrain,
        MetaTransferBrain,
        meta_brain_class,
    )
    from speechbrain_meta.asr import CTCASR
    from speechbrain_meta.data import Episode
    from speechbrain_meta.layered_yaml import load_layered_hparams
    from speechbrain_meta.task_params import insert_adapters

    torch.set_num_threads(2)
    spec = importlib.util.spec_from_file_location(
        "synthdigits_train", os.path.join(RECIPE, "train.py")
    )
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    hparams, _ = load_layered_hparams(
        os.path.join(RECIPE, "hparams", "joint.yaml"),
        recipe.COMMON,
        {"output_folder": "/tmp/sbm_mem"},
    )
    adapter, kwargs, all_conv = CASES[case]
    modules = hparams["modules"]
    if adapter is None:
        patterns, meta_class = ["*"], MetaInitBrain
    else:
        modules = insert_adapters(
            modules,
            ["encoder", "ctc_lin"],
            functools.partial(
                AdaptedModel,
                adapter_class=_import(adapter),
                all_linear=True,
                all_conv=all_conv,
                adapter_kwargs=kwargs,
            ),
        )
        patterns, meta_class = ["*task_*", "*adapter_*"], MetaTransferBrain
    algorithm = MAML(InnerLoop(2, inner_lr=0.1, adapt_params=patterns))
    brain = meta_brain_class(CTCASR, meta_class)(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(p, lr=1e-4),
        hparams=hparams,
        run_opts={"device": device},
        meta_algorithm=algorithm,
    )
    brain.tokenizer = None
    gen = torch.Generator().manual_seed(0)

    def utterance(i):
        n = int(16000 * (1.6 + 0.4 * torch.rand(1, generator=gen).item()))
        digits = torch.randint(1, 11, (7,), generator=gen)
        return {
            "id": str(i),
            "sig": 0.1 * torch.randn(n, generator=gen),
            "tokens": digits,
            "wrd": "1 2 3 4",
        }

    episode = Episode(
        PaddedBatch([utterance(i) for i in range(5)]),
        PaddedBatch([utterance(i) for i in range(5, 10)]),
        task="x",
    ).to(brain.device)
    brain.on_fit_start()
    brain.modules.train()
    with torch.no_grad():
        brain.task_loss({}, episode.query)
    base = _maxrss_mib()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        objective, _ = brain.meta_algorithm.outer_loss(brain, episode, 0)
        objective.backward()
        brain.optimizers_step()
        times.append(time.perf_counter() - start)
    trainable = sum(
        p.numel() for p in brain.meta_parameters(algorithm.inner_loop).values()
    )
    total = sum(p.numel() for p in brain.modules.parameters())
    return {
        "case": case,
        "peak_mib": _maxrss_mib() - base,
        "step_seconds": times[-1],
        "trainable_params": trainable,
        "total_params": total,
    }


def main(argv=None):
    """Runs every case in fresh processes and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/benchmarks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.case, args.device)))
        return None
    runs = {case: [] for case in CASES}
    for _ in range(args.repeats):
        for case in CASES:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    case,
                    "--device",
                    args.device,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
    peer = "maml_full"
    peer_mem = statistics.median(r["peak_mib"] for r in runs[peer])
    peer_time = statistics.median(r["step_seconds"] for r in runs[peer])
    rows = []
    for case, results in runs.items():
        mem = statistics.median(r["peak_mib"] for r in results)
        sec = statistics.median(r["step_seconds"] for r in results)
        rows.append(
            {
                "case": case,
                "peak_mib_median": round(mem, 1),
                "peer_peak_mib_median": round(peer_mem, 1),
                "memory_ratio": round(mem / peer_mem, 3),
                "step_seconds_median": round(sec, 3),
                "peer_step_seconds_median": round(peer_time, 3),
                "time_ratio": round(sec / peer_time, 3),
                "trainable_params": results[0]["trainable_params"],
                "total_params": results[0]["total_params"],
                "repeats": len(results),
            }
        )
    lines = [
        "| case | trainable params | peak MiB (median) | vs full MAML | "
        "step s | vs full MAML |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['trainable_params']:,} "
            f"({100 * r['trainable_params'] / r['total_params']:.2f}%) | "
            f"{r['peak_mib_median']:.0f} | {r['memory_ratio']:.2f}x | "
            f"{r['step_seconds_median']:.2f} | {r['time_ratio']:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "meta_transfer_memory.json")
    with open(path, "w", encoding="utf-8") as fout:
        json.dump(
            {
                "device": args.device,
                "inner_steps": 2,
                "support": 5,
                "query": 5,
                "rows": rows,
            },
            fout,
            indent=2,
        )
    print(f"written: {path}")
    return rows


if __name__ == "__main__":
    main()
