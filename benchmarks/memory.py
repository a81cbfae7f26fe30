#!/usr/bin/env python3
"""Memory over a long meta-training run: second-order MAML, 500 outer steps.

The SynthDigits recipe's model and ``hparams/maml.yaml`` (second order,
1 inner step, meta-batches of 2 tasks of 5 + 5 utterances, 1-3 s each: a
random waveform with a random digit string, as memory does not depend on
what is said). After every outer step: the process's resident memory
(RSS), the CUDA memory allocated where a GPU is used, the live tensors and
how many of them hold an autograd graph. Prints the curve every 50 steps
and the growth after the first 10 steps; writes ``DIR/memory.json``.

    python benchmarks/memory.py [--steps 500] [--device cpu] [--json DIR]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
import warnings

import speechbrain as sb
import torch

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import CTCASR
from speechbrain_meta.data import Episode
from speechbrain_meta.layered_yaml import load_layered_hparams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def rss_mb():
    """Resident memory of this process, MiB (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_tensors():
    """Live tensors, and those holding an autograd graph."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(tensors), sum(t.grad_fn is not None for t in tensors)


def _episode(encoder, rng, task, dtype=torch.float32):
    def batch(n):
        utts = []
        for i in range(n):
            digits = " ".join(rng.choice("0123456789") for _ in range(4))
            seconds = rng.uniform(1.0, 3.0)
            utts.append(
                {
                    "id": f"{task}-{i}",
                    "sig": torch.randn(int(16000 * seconds), dtype=dtype) * 0.1,
                    "tokens": torch.LongTensor(
                        encoder.encode_sequence(list(digits))
                    ),
                }
            )
        return sb.dataio.batch.PaddedBatch(utts)

    return Episode(batch(5), batch(5), task=task)


def build(device, dtype=torch.float32):
    """The recipe's second-order MAML brain, and 8 episodes for it.

    Arguments
    ---------
    device : str
        Where the model runs.
    dtype : torch.dtype
        The model's float type.

    Returns
    -------
    brain : MetaBrain
        With optimisers and global feature statistics fitted.
    episodes : list of Episode
    """
    out = tempfile.mkdtemp()
    hparams, _ = load_layered_hparams(
        os.path.join(RECIPE, "hparams", "maml.yaml"),
        os.path.join(RECIPE, "hparams", "models", "common.yaml"),
        {"output_folder": out},
    )
    encoder = sb.dataio.encoder.CTCTextEncoder()
    encoder.update_from_iterable(list("0123456789 "), sequence_input=False)
    encoder.insert_blank(index=hparams["blank_index"])
    Brain = meta_brain_class(CTCASR, hparams["meta_brain_class"])
    modules = {k: m.to(dtype) for k, m in hparams["modules"].items()}
    if dtype != torch.float32:
        # SpeechBrain's Fbank builds float32 filters: features in float32,
        # on the CPU (the same features on every device), then cast.
        fbank = hparams["compute_features"]
        hparams["compute_features"] = lambda wav: fbank(wav.cpu().float()).to(
            wav.device, dtype
        )
    brain = Brain(
        modules=modules,
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": device},
    )
    brain.tokenizer = encoder
    brain.init_optimizers()
    rng = random.Random(0)
    episodes = [_episode(encoder, rng, f"t{i}", dtype) for i in range(8)]
    # Global feature statistics, as the recipe fits them before training;
    # without dropout, so that they are the same on every device.
    brain.modules.train()
    for module in brain.modules.modules():
        if isinstance(
            module, (torch.nn.modules.dropout._DropoutNd, torch.nn.RNNBase)
        ):
            module.eval()
    with torch.no_grad():
        for episode in episodes:
            brain.compute_forward(episode.support.to(brain.device), None)
    return brain, episodes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="results/benchmarks")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    brain, episodes = build(args.device)
    accumulate = brain.grad_accumulation_factor
    cuda = args.device.startswith("cuda")
    curve = []
    start = time.perf_counter()
    for step in range(1, args.steps * accumulate + 1):
        brain.step = step
        brain.fit_batch(episodes[step % len(episodes)])
        if step % accumulate:
            continue
        outer = step // accumulate
        point = {
            "step": outer,
            "rss_mb": round(rss_mb(), 1),
            "seconds": round(time.perf_counter() - start, 2),
        }
        if cuda:
            point["cuda_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
            point["cuda_peak_mb"] = round(
                torch.cuda.max_memory_allocated() / 2**20, 1
            )
        if outer % 50 == 0 or outer in (1, 5, 10):
            point["tensors"], point["graph_tensors"] = live_tensors()
            print(json.dumps(point), flush=True)
        curve.append(point)
        if outer % 50 == 0:  # a run cut short still leaves its curve
            _write(args, curve)
    summary = _write(args, curve)
    print("| steps | RSS at step 10 (MiB) | max RSS after (MiB) | growth | "
          "graph tensors between steps |")  # fmt: skip
    print("|---|---|---|---|---|")
    print(
        f"| {args.steps} | {summary['rss_after_10_mb']} | "
        f"{summary['rss_max_after_10_mb']} | "
        f"{summary['rss_growth_after_10_mb']} | "
        f"{summary['graph_tensors_between_steps']} |"
    )
    return summary


def _write(args, curve):
    """Summarises the curve so far and writes ``memory.json``."""
    settled = [p["rss_mb"] for p in curve[10:]]
    summary = {
        "steps": len(curve),
        "device": args.device,
        "rss_after_10_mb": settled[0] if settled else None,
        "rss_max_after_10_mb": max(settled) if settled else None,
        "rss_growth_after_10_mb": round(max(settled) - settled[0], 1)
        if settled
        else None,
        "graph_tensors_between_steps": max(
            p.get("graph_tensors", 0) for p in curve
        ),
    }
    cuda = [p["cuda_peak_mb"] for p in curve[10:] if "cuda_peak_mb" in p]
    if cuda:
        summary["cuda_peak_after_10_mb"] = cuda[0]
        summary["cuda_peak_growth_after_10_mb"] = round(cuda[-1] - cuda[0], 1)
        allocated = [p["cuda_mb"] for p in curve[10:]]
        summary["cuda_allocated_growth_after_10_mb"] = round(
            max(allocated) - allocated[0], 1
        )
    os.makedirs(args.json, exist_ok=True)
    with open(os.path.join(args.json, "memory.json"), "w") as f:
        json.dump({"summary": summary, "curve": curve}, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
