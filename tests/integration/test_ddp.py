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


def _torchrun_env(rank, port):
    """The variables torchrun sets for rank ``rank`` of 2 local processes."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def _run_two_ranks(worker, out_dir, prefix, *args):
    """``worker(rank, port, out_dir, *args)`` on 2 ranks; what each saved.

    Each rank saves ``out_dir/<prefix><rank>.pt``. gloo occasionally
    aborts in its own teardown ("terminate called without an active
    exception": SIGABRT) after both ranks wrote their results; that one
    case is tolerated. Any other failure (an exception, another signal, a
    non-zero exit, a missing file) is re-raised, even after the files
    were written.
    """
    paths = [os.path.join(out_dir, f"{prefix}{rank}.pt") for rank in (0, 1)]
    try:
        mp.spawn(worker, args=(_free_port(), str(out_dir), *args), nprocs=2)
    except mp.ProcessExitedException as err:
        teardown = err.signal_name == "SIGABRT"
        if not (teardown and all(os.path.exists(path) for path in paths)):
            raise
    return [torch.load(path) for path in paths]


def _worker(rank, port, out_dir, kind="init"):
    _torchrun_env(rank, port)
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
    r0, r1 = _run_two_ranks(_worker, tmp_path, "rank", kind)
    assert r0["steps"] == r1["steps"] == 3
    assert all(a != b for a, b in zip(r0["tasks"], r1["tasks"]))
    torch.testing.assert_close(r0["weights"], r1["weights"], rtol=0, atol=0)
    if kind == "rule":
        # The rates learned (and identically on both ranks).
        rates = r0["weights"][3:]
        assert rates.numel() == 3
        assert not torch.allclose(rates, torch.full_like(rates, math.log(0.1)))


def _normalised_regressor():
    """A FOMAML brain whose model starts with a global InputNormalization,
    its statistics set as after 12 training frames of mean 0 and std 1."""
    from speechbrain.processing.features import InputNormalization

    from speechbrain_meta import FOMAML, InnerLoop, MetaInitBrain

    class Regressor(MetaInitBrain):
        def compute_forward(self, batch, stage):
            feats = self.modules.normalize(batch.x.data.unsqueeze(1))
            return self.modules.model(feats.squeeze(1))

        def compute_objectives(self, predictions, batch, stage):
            return torch.nn.functional.mse_loss(predictions, batch.y.data)

    torch.manual_seed(0)
    normalize = InputNormalization()
    normalize.count = 12
    normalize.glob_mean = torch.zeros(2)
    normalize.glob_std = torch.ones(2)
    return Regressor(
        modules={"normalize": normalize, "model": torch.nn.Linear(2, 1)},
        opt_class=lambda p: torch.optim.SGD(p, lr=0.5),
        meta_algorithm=FOMAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
        run_opts={
            "device": "cpu",
            "distributed_backend": "gloo",
            "noprogressbar": True,
        },
    )


def _scaled_episode(rank):
    """A task whose inputs sit far from the other rank's (mean +-4)."""
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_meta.data import Episode

    gen = torch.Generator().manual_seed(rank)
    shift = 4.0 if rank == 0 else -4.0

    def batch(n):
        x = torch.randn(n, 2, generator=gen) + shift
        y = torch.randn(n, 1, generator=gen)
        return PaddedBatch(
            [{"id": str(i), "x": x[i], "y": y[i]} for i in range(n)]
        )

    return Episode(batch(3), batch(3), task=f"t{rank}")


def _adapted(brain, episode):
    fast = brain.run_inner_loop(
        brain.meta_parameters(brain.inner_loop),
        episode.support,
        brain.inner_loop,
    )
    return {k.replace("module.", ""): v.detach() for k, v in fast.items()}


def _statistics_worker(rank, port, out_dir):
    _torchrun_env(rank, port)
    import speechbrain as sb

    sb.utils.distributed.ddp_init_group(
        {"device": "cpu", "distributed_backend": "gloo"}
    )
    brain = _normalised_regressor()
    brain.on_fit_start()
    episode = _scaled_episode(rank)
    calls = []
    all_reduce = torch.distributed.all_reduce

    def counted(*args, **kwargs):
        calls.append(1)
        return all_reduce(*args, **kwargs)

    torch.distributed.all_reduce = counted
    try:
        fast = _adapted(brain, episode)
        support_calls = len(calls)
        brain.step = 1
        brain.fit_batch(episode)
    finally:
        torch.distributed.all_reduce = all_reduce
    normalize = brain.modules.normalize
    torch.save(
        {
            "fast": fast,
            "support_calls": support_calls,
            "count": normalize.count,
            "mean": normalize.glob_mean,
        },
        os.path.join(out_dir, f"stats{rank}.pt"),
    )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_support_statistics_stay_in_their_process(tmp_path):
    """A rank's support forwards normalise as one process would on its task
    (no all_reduce of the statistics they discard); the query forward's
    update is still combined over the ranks, as SpeechBrain's is."""
    ranks = _run_two_ranks(_statistics_worker, tmp_path, "stats")
    for rank, result in enumerate(ranks):
        alone = _adapted(_normalised_regressor(), _scaled_episode(rank))
        assert result["support_calls"] == 0
        for name, weight in alone.items():
            torch.testing.assert_close(result["fast"][name], weight)
    # Both ranks' queries (3 frames each, means +4 and -4) joined the
    # 12 frames of mean 0 on both ranks.
    assert ranks[0]["count"] == ranks[1]["count"] == 18
    torch.testing.assert_close(ranks[0]["mean"], ranks[1]["mean"])
    assert float(ranks[0]["mean"].abs().max()) < 0.5


def _batchnorm_worker(rank, port, out_dir):
    _torchrun_env(rank, port)
    import speechbrain as sb
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_meta import MAML, InnerLoop, MetaInitBrain
    from speechbrain_meta.data import Episode

    sb.utils.distributed.ddp_init_group(
        {"device": "cpu", "distributed_backend": "gloo"}
    )

    class Regressor(MetaInitBrain):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x.data)

        def compute_objectives(self, predictions, batch, stage):
            return torch.nn.functional.mse_loss(predictions, batch.y.data)

    torch.manual_seed(0)
    brain = Regressor(
        modules={
            "model": torch.nn.Sequential(
                torch.nn.Linear(2, 4),
                torch.nn.BatchNorm1d(4),
                torch.nn.Tanh(),
                torch.nn.Linear(4, 1),
            )
        },
        opt_class=lambda p: torch.optim.SGD(p, lr=0.5),
        meta_algorithm=MAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
        run_opts={"device": "cpu", "distributed_backend": "gloo"},
    )
    # The wrapping a GPU run gets (its DDP built here for CPU tensors).
    brain.device_type = "cuda"
    brain.on_fit_start()
    brain.device_type = "cpu"
    kinds = sorted({type(m).__name__ for m in brain.modules.modules()})
    gen = torch.Generator().manual_seed(rank)

    def batch(n):
        x = torch.randn(n, 2, generator=gen) * (1 + 3 * rank)
        y = torch.randn(n, 1, generator=gen)
        return PaddedBatch(
            [{"id": str(i), "x": x[i], "y": y[i]} for i in range(n)]
        )

    brain.step = 1
    brain.fit_batch(Episode(batch(4), batch(4), task=f"t{rank}"))
    weights = torch.cat(
        [p.detach().reshape(-1) for p in brain.modules.parameters()]
    )
    torch.save(
        {"kinds": kinds, "weights": weights},
        os.path.join(out_dir, f"bn{rank}.pt"),
    )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_batchnorm_stays_per_rank_and_second_order_runs(tmp_path):
    """Under torchrun a meta-brain keeps plain BatchNorm, also where
    SpeechBrain would convert it to SyncBatchNorm (GPUs): second-order
    MAML through it runs, and the ranks end with equal weights."""
    ranks = _run_two_ranks(_batchnorm_worker, tmp_path, "bn")
    for result in ranks:
        assert "SyncBatchNorm" not in result["kinds"]
        assert "BatchNorm1d" in result["kinds"]
        assert "DistributedDataParallel" in result["kinds"]
    torch.testing.assert_close(
        ranks[0]["weights"], ranks[1]["weights"], rtol=0, atol=0
    )
