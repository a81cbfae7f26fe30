"""Second-order MAML meta-gradients on utterances longer than 12 s.

On an H100, second-order MAML on the LibriSpeech recipe's model with
12.3 s utterances once gave non-finite meta-gradients from a finite query
loss. ``scripts/long_utterance_check.py`` runs that case at full size; this
test keeps it in the suite at a width CPU tests afford (the same CRDNN:
convolutions, two bidirectional LSTM layers over every frame, CTC), with
16 s utterances, output posteriors as peaked as a trained model's, through
``MetaBrain.fit_batch`` as training runs it: the query loss and every
meta-gradient are finite, and float32 agrees with float64.
"""

import os
import random
import sys

import pytest
import torch

from speechbrain_meta.data import Episode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from long_utterance_check import build_brain, make_batch, run_case  # noqa

SMALL = {
    "cnn_channels": [4, 8],
    "rnn_layers": 2,
    "rnn_neurons": 24,
    "dnn_neurons": 24,
}


def _meta_gradients(dtype, seconds=16.0, sharpen=30.0):
    torch.manual_seed(0)
    brain, _ = build_brain("cpu", dtype, overrides=SMALL)
    with torch.no_grad():  # posteriors as peaked as a trained model's
        for param in brain.modules.ctc_lin.parameters():
            param.mul_(sharpen)
    rng = random.Random(16)
    episode = Episode(
        make_batch(brain.tokenizer, 2, seconds, rng, dtype),
        make_batch(brain.tokenizer, 2, seconds, rng, dtype),
        task="t",
    )
    with torch.no_grad():  # global statistics, as training has them
        brain.compute_forward(episode.support.to(brain.device), None)
    record = run_case(brain, episode)
    grads = {
        n: p.grad.double().clone()
        for n, p in brain.modules.named_parameters()
        if p.grad is not None
    }
    return record, grads


def test_second_order_meta_gradients_on_16_second_utterances():
    single, grads32 = _meta_gradients(torch.float32)
    assert single["finite"], single
    assert torch.isfinite(torch.tensor(single["loss"]))
    double, grads64 = _meta_gradients(torch.float64)
    assert double["finite"], double
    assert single["loss"] == pytest.approx(double["loss"], rel=1e-3)
    # The meta-gradient itself, not only its finiteness: float32 follows
    # float64 (what an overflow or a cancellation would break first).
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat64 = torch.cat([grads64[n].flatten() for n in grads32])
    assert flat64.abs().max() > 0
    error = (flat32 - flat64).norm() / flat64.norm()
    assert error < 1e-2, float(error)  # 6e-4 measured here
