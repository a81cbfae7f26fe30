#!/usr/bin/env python3
"""Second-order MAML's meta-gradient on CUDA equals the CPU's.

The SynthDigits recipe's CRDNN (``hparams/maml.yaml``, adapting in eval
mode) in float64: one ``fit_batch`` on the same episode from the same
initial weights, on the CPU and on CUDA, where the LSTM's forwards run
without cuDNN (no double backward and no eval-mode backward there) and
the convolutions and normalisations with it. Prints the largest relative
difference per parameter tensor; exits 1 above ``--rtol``.

Measured on an H100 (torch 2.11, cuDNN 9.19): the forward outputs already
differ by 4.5e-8 relative between the devices, the first-order gradient by
1.4e-6 and the second-order one by 6.4e-6, the same with cuDNN off
everywhere; a wrong second-order path (statistics fitted with another
dropout mask) gave 8e-2. Hence the default tolerance of 1e-4.

    python scripts/cuda_gradient_check.py [--rtol 1e-4]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import sys

import torch

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks")
)
from memory import build  # noqa: E402


def meta_gradient(device):
    """The gradient one fit_batch accumulates (no step), on ``device``."""
    torch.manual_seed(0)  # same weights and signals on every device
    brain, episodes = build(device, torch.float64)
    brain.grad_accumulation_factor = 2
    brain.step = 1  # mid meta-batch: accumulate, do not step
    brain.fit_batch(episodes[0])
    return {
        name: p.grad.detach().cpu()
        for name, p in brain.modules.named_parameters()
        if p.grad is not None
    }


def main():
    """Compares the two gradients; exits 1 above the tolerance."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    reference = meta_gradient("cpu")
    other = meta_gradient(args.device)
    assert set(reference) == set(other)
    worst = 0.0
    for name, g in reference.items():
        diff = float((other[name] - g).norm() / g.norm().clamp_min(1e-30))
        worst = max(worst, diff)
        print(f"{name}: |g| {float(g.norm()):.3e}, relative diff. {diff:.2e}")
    print(f"{len(reference)} tensors, largest relative difference {worst:.2e}")
    sys.exit(0 if worst <= args.rtol else 1)


if __name__ == "__main__":
    main()
