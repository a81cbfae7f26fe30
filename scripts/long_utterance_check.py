#!/usr/bin/env python3
"""Second-order MAML meta-gradients on long utterances: finite or not.

On an H100, second-order MAML on the LibriSpeech recipe's full-size model
(CRDNN, 4 x BiLSTM-512) with 12.3 s utterances once gave non-finite
meta-gradients from a finite query loss. This script runs that case on any
device, through ``MetaBrain.fit_batch`` as training does: the recipe's
``maml.yaml`` model at its full size, one episode of ``--support`` +
``--query`` utterances of each length (the longest; the others 70-100 %
of it, so that batches are padded; 16 kHz noise with random transcripts
of 15 characters a second, as ``benchmarks/recipe_cost.py``),
in each dtype. For each case it prints the query loss, whether every
meta-gradient is finite, the largest meta-gradient and the module holding
it, and the largest magnitudes met in the second-order pass; with a
non-finite meta-gradient it runs the episode again under
``torch.autograd.detect_anomaly`` and prints the operation whose backward
first produced it. Writes ``DIR/long_utterance_check.json``.

    python scripts/long_utterance_check.py [--seconds 3,8,12,16]
        [--dtypes float32,float64] [--sharpen 1] [--device cpu] [--json DIR]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback

import speechbrain as sb
import torch

from speechbrain_meta import meta_brain_class
from speechbrain_meta.data import Episode
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import WarmStartASR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "LibriSpeech", "speaker_adaptation")
sys.path.insert(0, RECIPE)
from librispeech_prepare import LABELS  # noqa: E402


def build_brain(device, dtype, method="maml", overrides=None):
    """The recipe's method at full size, ready for ``fit_batch``.

    Arguments
    ---------
    device : str
        Where it runs.
    dtype : torch.dtype
        Of its weights and inputs.
    method : str
        The recipe's hparams file (without ``.yaml``).
    overrides : dict, optional
        More hparams overrides (a smaller model for tests).

    Returns
    -------
    tuple
        ``(brain, hparams)``.
    """
    hparams, _ = load_layered_hparams(
        os.path.join(RECIPE, "hparams", f"{method}.yaml"),
        os.path.join(RECIPE, "hparams", "models", "common.yaml"),
        {
            "output_folder": tempfile.mkdtemp(),
            "data_folder": "unused",
            **(overrides or {}),
        },
    )
    features = hparams["compute_features"]
    # Fbank builds its filterbank in float32: features in float32, then the
    # checked dtype from the normalisation on.
    hparams["compute_features"] = lambda wavs: features(wavs.float()).to(dtype)
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
    brain.modules.to(dtype)
    brain.init_optimizers()
    return brain, hparams


def make_batch(encoder, n, seconds, rng, dtype):
    """``n`` utterances of noise with random transcripts (PaddedBatch)."""
    letters = sorted(LABELS - {" "})
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    utts = []
    for i in range(n):
        # Lengths from 70 to 100 % of `seconds`: padded, as real batches.
        length = seconds * (1.0 if i == 0 else rng.uniform(0.7, 1.0))
        text = "".join(rng.choice(letters) for _ in range(int(15 * length)))
        signal = torch.randn(int(16000 * length), generator=generator)
        utts.append(
            {
                "id": str(i),
                "sig": (0.1 * signal).to(dtype),
                "tokens": torch.LongTensor(encoder.encode_sequence(list(text))),
            }
        )
    return sb.dataio.batch.PaddedBatch(utts)


def run_case(brain, episode, anomaly=False):
    """One ``fit_batch`` that keeps its meta-gradients (no outer step).

    Arguments
    ---------
    brain : MetaBrain
        The model (its gradients are set).
    episode : Episode
        The task.
    anomaly : bool
        Under ``torch.autograd.detect_anomaly``.

    Returns
    -------
    dict
        ``loss``, ``finite``, ``max_grad`` and where, ``seconds``,
        ``anomaly`` (the failing operation, with ``anomaly``).
    """
    for p in brain.modules.parameters():
        p.grad = None
    brain.grad_accumulation_factor = 2
    brain.step = 1  # not a step boundary: the gradients stay in .grad
    start = time.perf_counter()
    record = {}
    try:
        with torch.autograd.set_detect_anomaly(anomaly, check_nan=True):
            loss = brain.fit_batch(episode)
    except RuntimeError as err:
        record["anomaly"] = str(err).splitlines()[0]
        record["anomaly_trace"] = traceback.format_exc()[-3000:]
        loss = torch.tensor(float("nan"))
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    record["loss"] = float(loss)
    grads = {
        name: p.grad
        for name, p in brain.modules.named_parameters()
        if p.grad is not None
    }
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    record["finite"] = not bad and bool(grads)
    record["non_finite"] = bad[:10]
    finite = {n: float(g.abs().max()) for n, g in grads.items() if n not in bad}
    if finite:
        worst = max(finite, key=finite.get)
        record["max_grad"], record["max_grad_at"] = finite[worst], worst
    return record


def main():
    """Runs every (dtype, length) case; prints and writes the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", default="3,8,12,16")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--support", type=int, default=2)
    parser.add_argument("--query", type=int, default=2)
    parser.add_argument(
        "--sharpen",
        type=float,
        default=1.0,
        help="scale the output layer's weights: posteriors as peaked as a "
        "trained model's (a random one's are nearly uniform)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="results/checks")
    args = parser.parse_args()
    rows = []
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        brain, _ = build_brain(args.device, dtype)
        with torch.no_grad():
            for param in brain.modules.ctc_lin.parameters():
                param.mul_(args.sharpen)
        for seconds in (float(s) for s in args.seconds.split(",")):
            rng = random.Random(int(seconds * 10))
            episode = Episode(
                make_batch(brain.tokenizer, args.support, seconds, rng, dtype),
                make_batch(brain.tokenizer, args.query, seconds, rng, dtype),
                task="t",
            )
            with torch.no_grad():  # global statistics, as training has them
                brain.compute_forward(episode.support.to(brain.device), None)
            row = {"dtype": name, "seconds": seconds, "sharpen": args.sharpen}
            row.update(run_case(brain, episode))
            if not row["finite"]:
                row["anomaly_run"] = run_case(brain, episode, anomaly=True)
            rows.append(row)
            print(json.dumps(row)[:600], flush=True)
        del brain
    print(
        "\n| dtype | seconds | sharpen | query loss | meta-gradient | "
        "max |grad| |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        state = "finite" if r["finite"] else "NON-FINITE"
        print(
            f"| {r['dtype']} | {r['seconds']} | {r['sharpen']} | "
            f"{r['loss']:.4g} | {state} | "
            f"{r.get('max_grad', float('nan')):.3g} "
            f"({r.get('max_grad_at', '-')}) |"
        )
    os.makedirs(args.json, exist_ok=True)
    with open(os.path.join(args.json, "long_utterance_check.json"), "w") as f:
        json.dump({"device": args.device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
