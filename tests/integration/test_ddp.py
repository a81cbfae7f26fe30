"""Two CPU processes (gloo): ranks draw different tasks, end with equal weights."""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out_dir, kind="init"):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    import speechbrain as sb

    from speechbrain_meta import (
        FOMAML,
        InnerLoop,
        MetaInitBrain,
        MetaOptimizerBrain,
        MetaSGD,
    )

    base = MetaInitBrain if kind == "init" else MetaOptimizerBrain
    rule = None if kind == "init" else MetaSGD(init_lr=0.1)
    extra = (
        {}
        if kind == "init"
        else {"rule_opt_class": lambda p: torch.optim.SGD(p, lr=0.5)}
    )

    class Regressor(base):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x.data)

        def compute_objectives(self, predictions, batch, stage):
            return torch.nn.functional.mse_loss(predictions, batch.y.data)

    run_opts = {
        "device": "cpu",
        "distributed_backend": "gloo",
        "noprogressbar": True,
    }
    sb.utils.distributed.ddp_init_group(run_opts)
    torch.manual_seed(0)  # same initialisation on both ranks
    brain = Regressor(
        modules={"model": torch.nn.Linear(2, 1)},
        opt_class=lambda p: torch.optim.SGD(p, lr=0.5),
        meta_algorithm=FOMAML(
            InnerLoop(inner_steps=2, inner_lr=0.1, update_rule=rule)
        ),
        run_opts=run_opts,
        **extra,
    )
    gen = torch.Generator().manual_seed(1)
    data = [
        {
            "x": torch.randn(2, generator=gen),
            "y": torch.randn(1, generator=gen),
            "task": t % 4,
        }
        for t in range(40)
    ]
    tasks = []
    brain.on_fit_batch_start = lambda ep, s: tasks.append(
        int(ep.support.task[0])
    )
    brain.fit(
        range(1),
        data,
        train_loader_kwargs={
            "episodes": {
                "group_by": "task",
                "n_support": 3,
                "n_query": 3,
                "episodes_per_epoch": 3,
            }
        },
    )
    weights = torch.cat(
        [p.detach().reshape(-1) for p in brain.modules.parameters()]
        + [p.detach().reshape(-1) for p in brain.meta_algorithm.parameters()]
    )
    torch.save(
        {"tasks": tasks, "weights": weights, "steps": brain.optimizer_step},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    # Both ranks finish writing before the group goes (a rank leaving while
    # the other still talks to it aborts gloo's threads).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("kind", ["init", "rule"])
def test_ddp_ranks_sync_meta_gradients(tmp_path, kind):
    """Both the initialisation and a learned rule (its own optimiser, its
    gradients formed outside any DDP wrapper) stay identical across ranks."""
    try:
        mp.spawn(_worker, args=(_free_port(), str(tmp_path), kind), nprocs=2)
    except mp.ProcessExitedException:
        # gloo occasionally aborts in its own teardown ("terminate called
        # without an active exception") after both ranks wrote their
        # results; a failure before that leaves a file missing: re-raise.
        if not all((tmp_path / f"rank{r}.pt").exists() for r in (0, 1)):
            raise
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["steps"] == r1["steps"] == 3
    assert all(a != b for a, b in zip(r0["tasks"], r1["tasks"]))
    torch.testing.assert_close(r0["weights"], r1["weights"], rtol=0, atol=0)
    if kind == "rule":
        # The rates learned (and identically on both ranks).
        rates = r0["weights"][3:]
        assert rates.numel() == 3
        assert not torch.allclose(rates, torch.full_like(rates, math.log(0.1)))
