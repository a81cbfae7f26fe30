#!/usr/bin/env python3
"""One MAML meta-gradient: our inner loop against the peer libraries.

The model (``--model``) is ``blstm_ctc``, a 2-layer BLSTM CTC acoustic
model (40 features, ``--hidden`` cells per direction, 30 output classes)
trained by our twice-differentiable CTC, or ``attention``, the joint
CTC/attention recogniser of upstream's seq2seq recipes: the same BLSTM
encoder and CTC head, and SpeechBrain's ``AttentionalRNNDecoder``
(location-aware attention, one GRU layer of ``--hidden`` cells) with
teacher forcing, loss 0.5 x CTC + 0.5 x NLL. Both on random features: a
support and a query batch of ``--batch`` utterances of ``--frames``
frames, ``--inner-steps`` SGD inner steps. For
each order (second, first) one meta-gradient (inner loop, query loss,
gradient with respect to the initial weights) is made by:

* **ours**: ``speechbrain_meta.InnerLoop.run`` (``functional_call`` on
  the module's own parameters; the support forwards whose graph is
  differentiated twice in ``twice_differentiable_lstms``, as
  ``MetaBrain`` runs them), second order also with
  ``recompute_inner_steps`` (each inner step's graph rebuilt when the
  meta-gradient reaches it), which is also compared with ours keeping
  the graph;
* **higher** 0.2.1: ``innerloop_ctx(model, SGD, copy_initial_weights=False)``
  (first order: ``track_higher_grads=False``, the query gradient taken
  with respect to the fast weights);
* **torchopt** 0.7.3: ``MetaSGD`` on the module, its state restored after
  the task (second order only: torchopt has no first-order MetaSGD mode);
* **deepcopy**: plain PyTorch, the module deep-copied per task and trained
  by ``torch.optim.SGD`` (first order only: a copy has no graph back to
  the original weights).

Rows: step time (median of ``--repeats`` after a warm-up, the peer in the
same process) and extra peak memory of one step (each measured in a fresh
process: on CPU the peak resident set size, Linux's ``VmHWM``, reset
after a warm-up step; on CUDA ``max_memory_allocated``), ours against each
peer, and the largest relative difference of the meta-gradients.
The goal: second order at most 1/4.5 of every peer's time and
at most half its extra memory. Peers come from the ``bench`` extra
(``pip install speechbrain-meta[bench]``); a missing one is reported and
skipped. learn2learn 0.2.0 is not included: ``pip wheel learn2learn==0.2.0``
fails on Python 3.11 (its shipped Cython output, ``meta_dataset.c``,
includes ``longintrepr.h``, which Python 3.11 moved), and it is not
patched here.

    python benchmarks/peers.py [--quick] [--json DIR] [--device cuda]
        [--model attention]

Authors
 * speechbrain-meta developers 2026
"""

import copy
import ctypes
import os
import re
import subprocess
import sys

import torch
from timing import benchmark_parser, measure, report, row

from speechbrain_meta.inner import InnerLoop
from speechbrain_meta.losses import ctc_loss_pure
from speechbrain_meta.lstm import twice_differentiable_lstms

FEATURES, CLASSES, LABELS = 40, 30, 30
LR = 0.01


def ctc(log_probs, batch):
    """Our CTC (differentiable twice) of a batch's labels."""
    _, targets, in_lens, target_lens = batch
    return ctc_loss_pure(
        log_probs.transpose(0, 1), targets, in_lens, target_lens
    )


class BLSTMCTC(torch.nn.Module):
    """2-layer bidirectional LSTM and a linear layer to log-probabilities."""

    def __init__(self, hidden):
        super().__init__()
        self.rnn = torch.nn.LSTM(
            FEATURES, hidden, 2, batch_first=True, bidirectional=True
        )
        self.out = torch.nn.Linear(2 * hidden, CLASSES)

    def forward(self, x):
        return self.out(self.rnn(x)[0]).log_softmax(-1)

    @staticmethod
    def inputs(batch):
        """The forward's arguments for a batch."""
        return (batch[0],)

    @staticmethod
    def objective(outputs, batch):
        """The loss of the forward's outputs."""
        return ctc(outputs, batch)


class AttentionCTC(BLSTMCTC):
    """``BLSTMCTC`` with SpeechBrain's attentional GRU decoder beside the
    CTC head (joint CTC/attention, teacher forcing)."""

    def __init__(self, hidden):
        from speechbrain.nnet.RNN import AttentionalRNNDecoder

        super().__init__(hidden)
        self.embedding = torch.nn.Embedding(CLASSES, 32)
        self.decoder = AttentionalRNNDecoder(
            rnn_type="gru",
            attn_type="location",
            hidden_size=hidden,
            attn_dim=hidden,
            num_layers=1,
            enc_dim=2 * hidden,
            input_size=32,
            channels=10,
            kernel_size=100,
            re_init=True,
        )
        self.seq_out = torch.nn.Linear(hidden, CLASSES)

    def forward(self, x, bos_targets):
        encoded = self.rnn(x)[0]
        p_ctc = self.out(encoded).log_softmax(-1)
        lengths = torch.ones(x.shape[0], device=x.device)
        decoded, _ = self.decoder(self.embedding(bos_targets), encoded, lengths)
        return p_ctc, self.seq_out(decoded).log_softmax(-1)

    @staticmethod
    def inputs(batch):
        # The decoder reads <bos> (class 0) and the targets but the last.
        targets = batch[1]
        bos = torch.zeros_like(targets[:, :1])
        return (batch[0], torch.cat([bos, targets[:, :-1]], dim=1))

    @staticmethod
    def objective(outputs, batch):
        p_ctc, p_seq = outputs
        nll = torch.nn.functional.nll_loss(
            p_seq.reshape(-1, CLASSES), batch[1].reshape(-1)
        )
        return 0.5 * ctc(p_ctc, batch) + 0.5 * nll


MODELS = {"blstm_ctc": BLSTMCTC, "attention": AttentionCTC}


def loss(model, call, batch):
    """``model``'s loss on a batch, its forward made by ``call`` (the
    module itself, a peer's functional copy, ...)."""
    return model.objective(call(*model.inputs(batch)), batch)


def make(args, device):
    """The model and a support and a query batch (seeded)."""
    torch.manual_seed(0)
    model = MODELS[args.model](args.hidden).to(device)

    def batch():
        x = torch.randn(args.batch, args.frames, FEATURES)
        targets = torch.randint(1, CLASSES, (args.batch, LABELS))
        in_lens = torch.full((args.batch,), args.frames)
        target_lens = torch.full((args.batch,), LABELS)
        return tuple(t.to(device) for t in (x, targets, in_lens, target_lens))

    return model, batch(), batch()


def ours(model, support, query, k, first_order, recompute=False):
    inner = InnerLoop(
        k, inner_lr=LR, first_order=first_order, recompute_inner_steps=recompute
    )
    params = inner.select(model.named_parameters())

    def loss_fn(fast, batch):
        return loss(
            model,
            lambda *inputs: torch.func.functional_call(model, fast, inputs),
            batch,
        )

    fast = inner.run(
        loss_fn,
        params,
        support,
        forward_context=lambda twice: twice_differentiable_lstms(model, twice),
    )
    return torch.autograd.grad(loss_fn(fast, query), list(params.values()))


def higher_step(model, support, query, k, first_order):
    import higher

    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with higher.innerloop_ctx(
        model,
        opt,
        copy_initial_weights=False,
        track_higher_grads=not first_order,
    ) as (fmodel, diffopt):
        for _ in range(k):
            diffopt.step(loss(model, fmodel, support))
        query_loss = loss(model, fmodel, query)
        # First order: the query gradient at the fast weights.
        wrt = fmodel.parameters() if first_order else model.parameters()
        return torch.autograd.grad(query_loss, list(wrt))


def torchopt_step(model, support, query, k, first_order):
    import torchopt

    assert not first_order
    params = list(model.parameters())  # the leaves MetaSGD replaces
    state = torchopt.extract_state_dict(model)
    opt = torchopt.MetaSGD(model, lr=LR)
    for _ in range(k):
        opt.step(loss(model, model, support))
    grads = torch.autograd.grad(loss(model, model, query), params)
    torchopt.recover_state_dict(model, state)
    return grads


def fresh_copy(model):
    """A deep copy of the model's weights. SpeechBrain's attention keeps
    the last forward's tensors on the module (``precomputed_enc_h``,
    ``prev_attn``), which ``copy.deepcopy`` refuses (they are not graph
    leaves); those are dropped, the rest is ``deepcopy``'d."""
    kept = {}
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if torch.is_tensor(value) and not value.is_leaf:
                kept[(module, name)] = value
                setattr(module, name, None)
    try:
        return copy.deepcopy(model)
    finally:
        for (module, name), value in kept.items():
            setattr(module, name, value)


def deepcopy_step(model, support, query, k, first_order):
    assert first_order
    fast = fresh_copy(model)
    opt = torch.optim.SGD(fast.parameters(), lr=LR)
    for _ in range(k):
        opt.zero_grad()
        loss(fast, fast, support).backward()
        opt.step()
    return torch.autograd.grad(loss(fast, fast, query), list(fast.parameters()))


def ours_recompute(model, support, query, k, first_order):
    assert not first_order
    return ours(model, support, query, k, first_order, recompute=True)


METHODS = {
    "ours": ours,
    "ours_recompute": ours_recompute,
    "higher": higher_step,
    "torchopt": torchopt_step,
    "deepcopy": deepcopy_step,
}
SECOND_ORDER = ["ours", "higher", "torchopt"]
# Ours with ``recompute_inner_steps``: second order, compared with the same
# peers and with ours keeping the graph.
RECOMPUTE = "ours_recompute"
FIRST_ORDER = ["ours", "higher", "deepcopy"]


def available(name):
    """Whether a peer library can be imported."""
    if name in ("ours", "deepcopy"):
        return True
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def peak_memory(args, method, first_order):
    """Extra peak memory (MiB) of one meta-gradient, in a fresh process.

    Returns a ``measure``-like dict (one run: median = min = max).
    """
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-of",
        method,
        "--hidden", str(args.hidden),
        "--batch", str(args.batch),
        "--frames", str(args.frames),
        "--inner-steps", str(args.inner_steps),
        "--model", args.model,
        "--device", args.device,
    ] + (["--first-order"] if first_order else [])  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    mib = float(run.stdout.strip().splitlines()[-1])
    return {"median": mib, "min": mib, "max": mib}


def measure_memory(args):
    """Prints the extra peak memory of one step (``--memory-of``)."""
    device = torch.device(args.device)
    model, support, query = make(args, device)
    step = METHODS[args.memory_of]
    # A warm-up step: imports, kernels and caches are not the step's.
    step(model, support, query, args.inner_steps, args.first_order)
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(model, support, query, args.inner_steps, args.first_order)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - before
    else:
        before = _reset_peak_rss()
        step(model, support, query, args.inner_steps, args.first_order)
        extra = _peak_rss() - before
    print(extra / 2**20)


def _peak_rss():
    """The process's peak resident set size in bytes (Linux ``VmHWM``)."""
    with open("/proc/self/status") as f:
        status = f.read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def _reset_peak_rss():
    """Resets the peak to the current resident set size; returns it.

    Memory that the allocator keeps after ``free`` is handed back first
    (``malloc_trim``), or a step would reuse it unseen.
    """
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _peak_rss()


def max_rel_diff(a, b):
    """Largest difference of two gradient lists, relative to b's largest."""
    scale = max(float(g.abs().max()) for g in b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) / scale


def main(argv=None):
    parser = benchmark_parser(__doc__, quick=True)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--inner-steps", type=int, default=3)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--model", choices=sorted(MODELS), default="blstm_ctc")
    parser.add_argument("--memory-of", choices=sorted(METHODS))
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.batch, args.frames = 64, 4, 50
        args.repeats = min(args.repeats, 3)
    if args.memory_of:
        return measure_memory(args)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model, support, query = make(args, device)
    k = args.inner_steps
    rows, missing = [], set()
    for first_order, names in ((False, SECOND_ORDER), (True, FIRST_ORDER)):
        order = "1st order" if first_order else "2nd order"

        def time_of(name):
            return measure(
                lambda: METHODS[name](model, support, query, k, first_order),
                args.repeats,
                sync=sync,
            )

        reference = ours(model, support, query, k, first_order)
        variants = ["ours"] + ([] if first_order else [RECOMPUTE])
        times = {v: time_of(v) for v in variants}
        memories = {v: peak_memory(args, v, first_order) for v in variants}
        peers = {}
        for name in names[1:]:
            if not available(name):
                missing.add(name)
                continue
            grads = METHODS[name](model, support, query, k, first_order)
            peers[name] = (
                max_rel_diff(reference, grads),
                time_of(name),
                peak_memory(args, name, first_order),
            )
        if not first_order:  # recomputing against keeping the graph
            grads = METHODS[RECOMPUTE](model, support, query, k, first_order)
            peers["ours"] = (
                max_rel_diff(reference, grads),
                times["ours"],
                memories["ours"],
            )
        for variant in variants:
            label = order + (", recompute" if variant == RECOMPUTE else "")
            for name, (diff, peer_time, peer_memory) in peers.items():
                if name == variant:
                    continue
                goal = name != "ours" and not first_order
                rows.append(
                    row(
                        f"MAML {label} time vs {name}",
                        times[variant],
                        peer_time,
                        goal=round(1 / 4.5, 3) if goal else None,
                        peer_name=name,
                        max_rel_grad_diff=diff,
                    )
                )
                rows.append(
                    row(
                        f"MAML {label} extra peak memory vs {name}",
                        memories[variant],
                        peer_memory,
                        unit="MiB",
                        goal=0.5 if goal else None,
                        peer_name=name,
                    )
                )
    settings = {
        "model": (
            f"2-layer BLSTM {args.hidden} + linear, CTC ({CLASSES})"
            + (
                f" + AttentionalRNNDecoder (GRU {args.hidden}, location), "
                "0.5 CTC + 0.5 NLL"
                if args.model == "attention"
                else ""
            )
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": args.batch,
        "frames": args.frames,
        "inner_steps": k,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "missing_peers": sorted(missing),
    }
    print(report("peers", rows, args.json, settings))
    print(
        "meta-gradient agreement (max relative difference): "
        + ", ".join(
            f"{r['peer_name']} {r['max_rel_grad_diff']:.1e}"
            for r in rows
            if "max_rel_grad_diff" in r
        )
    )
    if missing:
        print(
            "not installed (pip install speechbrain-meta[bench]): "
            + ", ".join(sorted(missing))
        )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
