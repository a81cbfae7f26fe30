#!/usr/bin/env python3
"""Our twice-differentiable CTC against PyTorch's native CTC.

For each shape (frames T, labels per utterance S, batch B) on random
log-probabilities over 30 classes:

* **forward+backward**: ``speechbrain_meta.losses.ctc_loss_pure`` against
  ``torch.nn.functional.ctc_loss``, loss and gradient with respect to the
  log-probabilities (goal: within 2x native at T = 400);
* **double backward**: a Hessian-vector product through our CTC (the
  gradient with ``create_graph``, then the gradient of its inner product
  with a vector), against our own forward+backward (native CTC has no
  double backward: the peer here is the first-order cost);
* a check that both losses and gradients agree (float64). Gradients are
  taken with respect to the logits before ``log_softmax``: native CTC's
  backward returns the logits' gradient (``exp(log_probs) - occupancy``)
  in place of the log-probabilities' own.

Prints a markdown table, writes ``DIR/ctc.json`` (rows as in
``timing.report``).

    python benchmarks/ctc.py [--quick] [--json DIR] [--device cuda]

Authors
 * speechbrain-meta developers 2026
"""

import sys

import torch
from timing import benchmark_parser, measure_interleaved, report, row

from speechbrain_meta.losses import ctc_loss_pure

CLASSES = 30
SHAPES = [  # (T, S, B)
    (100, 30, 8),
    (200, 30, 16),
    (400, 30, 16),
    (400, 100, 16),
    (800, 100, 8),
    (800, 100, 32),
]
QUICK_SHAPES = [(100, 30, 8), (400, 100, 16)]


def _inputs(T, S, B, device, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, CLASSES, generator=gen, dtype=dtype)
    targets = torch.randint(1, CLASSES, (B, S), generator=gen)
    input_lengths = torch.full((B,), T, dtype=torch.long)
    input_lengths[1::2] = T - T // 10  # padded utterances too
    target_lengths = torch.full((B,), S, dtype=torch.long)
    target_lengths[1::2] = S - S // 5
    return (
        logits.to(device),
        targets.to(device),
        input_lengths.to(device),
        target_lengths.to(device),
    )


def _fwd_bwd(ctc, logits, *args):
    logits = logits.detach().requires_grad_(True)
    loss = ctc(logits.log_softmax(-1), *args)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def _hvp(logits, *args):
    logits = logits.detach().requires_grad_(True)
    loss = ctc_loss_pure(logits.log_softmax(-1), *args)
    (grad,) = torch.autograd.grad(loss, logits, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * logits.detach()).sum(), logits)
    return hvp


def check(T, S, B, device):
    """Largest relative difference of loss and gradient, ours vs native."""
    args = _inputs(T, S, B, device, torch.float64)
    ours = _fwd_bwd(ctc_loss_pure, *args)
    native = _fwd_bwd(torch.nn.functional.ctc_loss, *args)
    return max(
        float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
        for a, b in zip(ours, native)
    )


def main(argv=None):
    args = benchmark_parser(__doc__, quick=True).parse_args(argv)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows = []
    for T, S, B in QUICK_SHAPES if args.quick else SHAPES:
        inputs = _inputs(T, S, B, device)
        shape = f"T={T} S={S} B={B}"
        diff = check(T, S, B, device)
        ours, native = measure_interleaved(
            [
                lambda: _fwd_bwd(ctc_loss_pure, *inputs),
                lambda: _fwd_bwd(torch.nn.functional.ctc_loss, *inputs),
            ],
            args.repeats,
            sync=sync,
        )
        goal = 2.0 if T == 400 else None
        rows.append(
            row(
                f"fwd+bwd {shape}",
                ours,
                native,
                goal=goal,
                peer_name="torch.nn.functional.ctc_loss",
                max_rel_diff_float64=diff,
            )
        )
        hvp, fwd_bwd = measure_interleaved(
            [lambda: _hvp(*inputs), lambda: _fwd_bwd(ctc_loss_pure, *inputs)],
            args.repeats,
            sync=sync,
        )
        rows.append(
            row(
                f"double bwd (HVP) {shape}",
                hvp,
                fwd_bwd,
                peer_name="ours, fwd+bwd",
            )
        )
    settings = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "classes": CLASSES,
        "torch": torch.__version__,
    }
    table = report("ctc", rows, args.json, settings)
    print(table)
    print(
        "max relative difference ours vs native (float64): "
        + ", ".join(f"{r['max_rel_diff_float64']:.1e}" for r in rows[::2])
    )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
