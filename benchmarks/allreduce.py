#!/usr/bin/env python3
"""Gradient all-reduce: bucketed (ours) against one collective per tensor.

Two gloo processes on this machine, the SynthDigits recipe's model (every
parameter tensor with a gradient), the time of averaging the gradients
over the ranks: ``speechbrain_meta.distributed.all_reduce_gradients``
(flattened buckets of 25 MiB) against the per-tensor loop it replaced.
Prints a markdown table, writes ``DIR/allreduce.json``.

    python benchmarks/allreduce.py [--repeats 20] [--json DIR]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import socket
import sys
import tempfile

import torch
import torch.multiprocessing as mp
from timing import measure, report, row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def _per_tensor(parameters):
    """The replaced implementation: one all-reduce per tensor."""
    world_size = torch.distributed.get_world_size()
    for p in parameters:
        torch.distributed.all_reduce(p.grad)
        p.grad.div_(world_size)


def _model_parameters():
    from speechbrain_meta.layered_yaml import load_layered_hparams

    hparams, _ = load_layered_hparams(
        os.path.join(RECIPE, "hparams", "joint.yaml"),
        os.path.join(RECIPE, "hparams", "models", "common.yaml"),
        {"output_folder": tempfile.mkdtemp()},
    )
    params = [p for m in hparams["modules"].values() for p in m.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def _worker(rank, port, args):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from speechbrain_meta.distributed import (
        all_reduce_gradients,
        gradient_buckets,
        init_process_group,
    )

    torch.set_num_threads(1)
    init_process_group({"device": "cpu", "distributed_backend": "gloo"})
    params = _model_parameters()

    def barrier_then(fn):
        def run():
            torch.distributed.barrier()
            fn(params)

        return run

    ours = measure(barrier_then(all_reduce_gradients), args.repeats, 3)
    peer = measure(barrier_then(_per_tensor), args.repeats, 3)
    empty = measure(barrier_then(lambda p: None), args.repeats, 3)
    if rank == 0:
        n = sum(p.numel() for p in params)
        rows = [
            row(
                f"all-reduce of {len(params)} gradient tensors ({n} values),"
                " 2 gloo ranks",
                ours,
                peer,
                peer_name="one all_reduce per tensor",
            )
        ]
        table = report(
            "allreduce",
            rows,
            args.json,
            settings={
                "tensors": len(params),
                "values": n,
                "buckets": len(gradient_buckets(params)),
                "barrier_only_s": empty["median"],
                "repeats": args.repeats,
            },
        )
        print(table)
        print(
            f"(a barrier alone: {empty['median'] * 1e3:.2f} ms; "
            f"{len(gradient_buckets(params))} bucket(s))"
        )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default="results/benchmarks")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, args), nprocs=2)


if __name__ == "__main__":
    main()
