#!/usr/bin/env python3
"""Meta-training throughput on 1 and 2 processes (gloo) on this machine.

A meta-batch of 2 tasks per outer step on the SynthTones CRDNN (the
episode of ``outer_step.py``: K = 5 + Q = 5 utterances), one thread per
process: one process runs both tasks (``grad_accumulation_factor: 2``),
two processes started as ``torchrun`` starts them (``RANK``,
``LOCAL_RANK``, SpeechBrain's DDP wrapping, our bucketed all-reduce) run
one task each. The row compares the time of an outer step on two
processes with one process's; the efficiency is the speed-up over 2. The
goal is an efficiency of at least 80 %, a ratio of at most
0.625. The two runs alternate ``--rounds`` times (this VM's speed drifts
over minutes); each figure is the median of the rounds' medians, min and
max over all rounds. Prints a markdown table, writes
``DIR/scaling.json``.

    python benchmarks/scaling.py [--repeats 5] [--rounds 3] [--json DIR]
        [--method fomaml]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import socket
import statistics
import sys

import torch
import torch.multiprocessing as mp
from timing import measure, report, row

TASKS_PER_OUTER_STEP = 2


def _outer_step_time(rank, world_size, port, args, queue):
    if world_size > 1:  # torchrun's variables; one process runs plain
        os.environ.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    torch.set_num_threads(1)
    from outer_step import ASR, load, meta_brain_class, setup

    from speechbrain_meta.distributed import init_process_group

    init_process_group({"device": "cpu", "distributed_backend": "gloo"})
    folder = os.path.join(args.json, "scaling_data")
    episode, _, build = setup(folder, "cpu")
    hparams = load(args.method, folder)
    brain = build(meta_brain_class(ASR, hparams["meta_brain_class"]), hparams)
    brain.grad_accumulation_factor = TASKS_PER_OUTER_STEP // world_size

    def outer_step():
        if world_size > 1:
            torch.distributed.barrier()
        for _ in range(brain.grad_accumulation_factor):
            brain.step += 1  # as Brain.fit's loop counts batches
            brain.fit_batch(episode)

    times = measure(outer_step, args.repeats, 2)
    if rank == 0:
        queue.put((times, brain.optimizer_step))
    if world_size > 1:
        torch.distributed.barrier()


def _run(world_size, args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(
        _outer_step_time,
        args=(world_size, port, args, queue),
        nprocs=world_size,
    )
    return queue.get()


def _pooled(rounds):
    """Median of the rounds' medians; min and max over all rounds."""
    return {
        "median": statistics.median(r["median"] for r in rounds),
        "min": min(r["min"] for r in rounds),
        "max": max(r["max"] for r in rounds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="results/benchmarks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", default="fomaml")
    args = parser.parse_args(argv)
    ones, twos = [], []
    for _ in range(args.rounds):
        one, steps_one = _run(1, args)
        two, steps_two = _run(2, args)
        assert steps_one == steps_two, (steps_one, steps_two)  # same updates
        ones.append(one)
        twos.append(two)
    one, two = _pooled(ones), _pooled(twos)
    r = row(
        f"{args.method} outer step ({TASKS_PER_OUTER_STEP} tasks), "
        "2 processes vs 1",
        two,
        one,
        goal=0.625,
        peer_name="1 process, the 2 tasks in turn",
        efficiency=round(one["median"] / two["median"] / 2, 3),
        outer_steps_per_s_1=1 / one["median"],
        outer_steps_per_s_2=1 / two["median"],
    )
    print(
        report(
            "scaling",
            [r],
            args.json,
            settings={
                "method": args.method,
                "threads_per_process": 1,
                "rounds": args.rounds,
                "round_medians_1": [r["median"] for r in ones],
                "round_medians_2": [r["median"] for r in twos],
            },
        )
    )
    print(
        f"outer steps/s: 1 process {r['outer_steps_per_s_1']:.2f}, "
        f"2 processes {r['outer_steps_per_s_2']:.2f}; efficiency "
        f"{r['efficiency']:.0%}"
    )
    return [r]


if __name__ == "__main__":
    main(sys.argv[1:])
