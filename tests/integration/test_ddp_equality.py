"""Two gloo ranks meta-train exactly as one process does.

Each method runs 3 meta-batches of 4 tasks twice: in one process
(``grad_accumulation_factor: 4``) and on two CPU ranks that each take 2 of
the 4 tasks (``grad_accumulation_factor: 2``), the tasks split as a
``DistributedSampler`` splits them. Both ranks must end with the
parameters (model, task parameters, learned rates) and the outer
optimisers' state of the one-process run, and the weights must have moved.

The outer optimisers are SGD with momentum, whose update is proportional
to the gradient: a sum over ranks instead of a mean, a rank's own gradient
or a broadcast of rank 0's would change the result (Adam would hide a
constant factor). Tolerance: float64, ``rtol=1e-9``: the two runs add the
same per-task gradients in another order (``(g0+g1)/2`` and ``(g2+g3)/2``
averaged over ranks, against ``g0/4+...+g3/4``), which changes the last
bits only.

``SBM_TEST_DEVICE=cuda`` runs it on GPUs (rank r on ``cuda:r`` modulo the
GPUs there are) with ``SBM_TEST_BACKEND`` (default nccl; NCCL needs one
GPU per rank).
"""

import copy
import functools
import os

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.adapters import AdaptedModel
from test_ddp import _run_two_ranks, _torchrun_env

from speechbrain_meta import (
    FOMAML,
    MAML,
    InnerLoop,
    MetaInitBrain,
    MetaOptimizerBrain,
    MetaSGD,
    MetaTransferBrain,
    Reptile,
)
from speechbrain_meta.data import Episode
from speechbrain_meta.task_params import LHUC, insert_adapters

DEVICE = os.environ.get("SBM_TEST_DEVICE", "cpu")
BACKEND = os.environ.get(
    "SBM_TEST_BACKEND", "nccl" if DEVICE.startswith("cuda") else "gloo"
)
TASKS_PER_META_BATCH = 4
META_BATCHES = 3
METHODS = ["fomaml", "reptile", "maml", "maml_recompute", "metasgd", "lhuc"]


def _brain_class(base):
    class Regressor(base):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x.data.to(self.device))

        def compute_objectives(self, predictions, batch, stage):
            return torch.nn.functional.mse_loss(
                predictions, batch.y.data.to(self.device)
            )

    return Regressor


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def _device(rank):
    if DEVICE.startswith("cuda"):
        return f"cuda:{rank % torch.cuda.device_count()}"
    return DEVICE


def _brain(method, accumulate, rank=0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()
    modules = {"model": model}
    inner = dict(inner_steps=2, inner_lr=0.1)
    extra = {}
    base = MetaInitBrain
    if method == "fomaml":
        algorithm = FOMAML(InnerLoop(**inner))
    elif method == "reptile":
        algorithm = Reptile(InnerLoop(**inner))
    elif method == "maml":
        algorithm = MAML(InnerLoop(**inner))
    elif method == "maml_recompute":  # the inner steps rerun in backward
        algorithm = MAML(InnerLoop(**inner, recompute_inner_steps=True))
    elif method == "metasgd":
        base = MetaOptimizerBrain
        algorithm = MAML(InnerLoop(**inner, update_rule=MetaSGD(init_lr=0.1)))
        extra["rule_opt_class"] = _sgd
    else:  # meta-transfer: LHUC task parameters on the frozen model
        base = MetaTransferBrain
        modules = insert_adapters(
            modules,
            ["model"],
            functools.partial(
                AdaptedModel, adapter_class=LHUC, all_linear=True
            ),
        )
        modules["model"].double()
        algorithm = MAML(InnerLoop(**inner, adapt_params=["*task_*"]))
    brain = _brain_class(base)(
        modules=modules,
        opt_class=_sgd,
        hparams={"grad_accumulation_factor": accumulate},
        run_opts={"device": _device(rank), "distributed_backend": BACKEND},
        meta_algorithm=algorithm,
        **extra,
    )
    # As fit() does: DDP wrappers under a process group, then optimisers.
    brain.on_fit_start()
    return brain


def _cpu(tree):
    """A nest of dicts of tensors, on the CPU (ranks may use other GPUs)."""
    if isinstance(tree, dict):
        return {k: _cpu(v) for k, v in tree.items()}
    return tree.cpu() if isinstance(tree, torch.Tensor) else tree


def _unwrapped(state):
    """A state dict's keys without DDP's ``module.`` level."""
    return {k.replace("module.", ""): v for k, v in state.items()}


def _episodes():
    """META_BATCHES x TASKS_PER_META_BATCH episodes, one linear task each."""
    gen = torch.Generator().manual_seed(7)
    episodes = []
    for t in range(META_BATCHES * TASKS_PER_META_BATCH):
        w = torch.randn(3, 1, generator=gen, dtype=torch.float64)

        def batch(n, w=w):
            x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
            y = x @ w + 0.1 * torch.randn(n, 1, generator=gen).double()
            return PaddedBatch(
                [{"id": str(i), "x": x[i], "y": y[i]} for i in range(n)]
            )

        episodes.append(Episode(batch(4), batch(4), task=f"t{t}"))
    return episodes


def _train(method, rank, world_size):
    """Runs the meta-batches; this rank's share of each one's tasks."""
    per_rank = TASKS_PER_META_BATCH // world_size
    brain = _brain(method, accumulate=per_rank, rank=rank)
    initial = copy.deepcopy(_unwrapped(brain.modules.state_dict()))
    episodes = _episodes()
    brain.step = 0
    for m in range(META_BATCHES):
        batch = episodes[
            m * TASKS_PER_META_BATCH : (m + 1) * TASKS_PER_META_BATCH
        ]
        for episode in batch[rank * per_rank : (rank + 1) * per_rank]:
            brain.step += 1
            brain.fit_batch(episode)
    state = {
        "initial": initial,
        "modules": _unwrapped(brain.modules.state_dict()),
        "wrapped": sorted(
            name
            for name, module in brain.modules.items()
            if isinstance(module, torch.nn.parallel.DistributedDataParallel)
        ),
        "rule": brain.meta_algorithm.state_dict(),
        "optimizer": brain.optimizer.state_dict()["state"],
        "steps": brain.optimizer_step,
    }
    if hasattr(brain, "rule_optimizer"):
        state["rule_optimizer"] = brain.rule_optimizer.state_dict()["state"]
    return _cpu(state)


def _worker(rank, port, out_dir, method):
    _torchrun_env(rank, port)
    from speechbrain_meta.distributed import init_process_group

    init_process_group(
        {"device": _device(rank), "distributed_backend": BACKEND}
    )
    torch.save(_train(method, rank, 2), os.path.join(out_dir, f"{rank}.pt"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _assert_equal_trees(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _assert_equal_trees(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=path)
    else:
        assert a == b, path


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_equal_one_process(tmp_path, method):
    one = _train(method, rank=0, world_size=1)
    ranks = _run_two_ranks(_worker, tmp_path, "", method)
    assert one["steps"] == META_BATCHES
    # The weights moved (the task parameters, for meta-transfer).
    moved = [
        name
        for name, value in one["modules"].items()
        if not torch.equal(value, one["initial"][name])
    ]
    assert moved
    if method == "lhuc":
        assert all("task_" in name for name in moved)
    assert one["wrapped"] == [] and all(r["wrapped"] for r in ranks)
    for state in ranks:
        state.pop("initial")
        state["wrapped"] = []
        _assert_equal_trees(
            state, {k: v for k, v in one.items() if k != "initial"}
        )
    if method == "metasgd":
        rates = list(one["rule"].values())
        assert any(
            not torch.allclose(r, torch.full_like(r, 0.1).log()) for r in rates
        )
