#!/usr/bin/env python3
"""Where one outer step's time goes: a ``torch.profiler`` breakdown.

Profiles one outer step of ``--method`` (default: second-order ``maml``)
on the SynthTones episode of ``outer_step.py`` (``--model``), after warm-up
steps, and prints two tables: the backward nodes (autograd functions, with
everything they run) and the forward operators (self time), each as a
share of the step. This is the profile behind the rows of
``outer_step.py`` that miss their goal.

    python benchmarks/profile_outer_step.py [--method maml] [--model crdnn]
        [--device cpu]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import collections
import os
import sys
import time

import torch
from outer_step import ALGORITHMS, ASR, MODELS, load, meta_brain_class, setup
from torch.profiler import ProfilerActivity, profile

NODE = "autograd::engine::evaluate_function: "


def breakdown(events, total_us, top):
    """Backward nodes (total time) and forward operators (self time)."""
    nodes = collections.Counter()
    ops = collections.Counter()
    for e in events:
        if e.name.startswith(NODE):
            nodes[e.name[len(NODE) :]] += e.cpu_time_total
        elif e.name.startswith("aten::") and not _in_backward(e):
            ops[e.name] += e.self_cpu_time_total
    lines = []
    for title, counter in (
        ("backward node (with its children)", nodes),
        ("forward operator (self)", ops),
    ):
        lines += [f"\n| {title} | ms | share |", "|---|---|---|"]
        for name, us in counter.most_common(top):
            lines.append(f"| {name} | {us / 1e3:.1f} | {us / total_us:.1%} |")
        rest = sum(counter.values())
        lines.append(f"| all | {rest / 1e3:.1f} | {rest / total_us:.1%} |")
    return "\n".join(lines)


def _in_backward(event):
    """Whether an operator ran under a backward node (its thread, parent)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(NODE):
            return True
        parent = parent.cpu_parent
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="maml", choices=ALGORITHMS)
    parser.add_argument("--model", default="crdnn", choices=MODELS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folder", default="results/benchmarks/profile")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    data = os.path.join(args.folder, "outer_step_data")
    episode, _, build = setup(data, args.device)
    hparams = load(args.method, data, args.model)
    brain = build(meta_brain_class(ASR, hparams["meta_brain_class"]), hparams)
    for _ in range(2):
        brain.fit_batch(episode)
    activities = [ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        brain.fit_batch(episode)
    wall = time.perf_counter() - start
    events = prof.events()
    total = sum(e.self_cpu_time_total for e in events)
    print(
        f"{args.method} ({args.model}): one outer step, {wall:.3f} s wall "
        f"under the profiler, {torch.get_num_threads()} threads"
    )
    n_ops = sum(e.name.startswith("aten::") for e in events)
    n_nodes = sum(e.name.startswith(NODE) for e in events)
    print(
        f"{n_ops} operator calls and {n_nodes} backward nodes in the step: "
        f"{total / max(n_ops, 1):.1f} us of profiled time per operator"
    )
    print(breakdown(events, total, args.top))


if __name__ == "__main__":
    main(sys.argv[1:])
