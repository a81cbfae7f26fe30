"""MetaTransferBrain: task parameters on a frozen model."""

import functools
from collections import OrderedDict

import pytest
import speechbrain as sb
import torch
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.nnet.adapters import AdaptedModel, HoulsbyAdapterLinear, LoRA
from test_meta_optimizer import EPISODES, _query_losses, _tasks
from torch.func import functional_call

from speechbrain_meta import FOMAML, MAML, InnerLoop, MetaSGD, MetaTransferBrain
from speechbrain_meta.task_params import LHUC, ScaleShift, insert_adapters


def _as_leaves(params):
    return OrderedDict(
        (n, p.detach().clone().requires_grad_(True)) for n, p in params.items()
    )


ADAPTERS = {
    "scale_shift": dict(
        adapter_class=ScaleShift, all_linear=True, all_conv=True
    ),
    "lhuc": dict(adapter_class=LHUC, all_linear=True, all_conv=True),
    "lora": dict(
        adapter_class=LoRA,
        all_linear=True,
        adapter_kwargs={"rank": 2, "alpha": 2},
    ),
    "adapter": dict(
        adapter_class=HoulsbyAdapterLinear,
        all_linear=True,
        adapter_kwargs={"projection_size": 4},
    ),
}


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_identity_at_initialisation_on_a_crdnn(kind):
    torch.manual_seed(0)
    model = CRDNN(
        input_shape=[None, None, 20],
        cnn_blocks=1,
        cnn_channels=[8],
        rnn_layers=1,
        rnn_neurons=16,
        dnn_blocks=1,
        dnn_neurons=16,
        time_pooling=True,
        time_pooling_size=2,
    ).eval()
    x = torch.randn(2, 30, 20)
    before = model(x)
    modules = insert_adapters(
        {"encoder": model},
        ["encoder"],
        functools.partial(AdaptedModel, **ADAPTERS[kind]),
    )
    after = modules["encoder"](x)
    assert torch.equal(before, after)
    trainable = [
        n for n, p in modules["encoder"].named_parameters() if p.requires_grad
    ]
    assert trainable and all("task_" in n or "adapter_" in n for n in trainable)


class Regressor(MetaTransferBrain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch.x.data.to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(
            predictions, batch.y.data.to(self.device)
        )


def _pretrained(kind="scale_shift"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    )
    return insert_adapters(
        {"model": model},
        ["model"],
        functools.partial(AdaptedModel, **ADAPTERS[kind]),
    )


def _brain(kind="scale_shift", algorithm=MAML, rule=None, **kwargs):
    modules = _pretrained(kind)
    return Regressor(
        modules=modules,
        opt_class=lambda p: torch.optim.Adam(p, lr=0.01),
        rule_opt_class=lambda p: torch.optim.Adam(p, lr=0.01),
        meta_algorithm=algorithm(
            InnerLoop(
                2,
                inner_lr=0.1,
                update_rule=rule,
                adapt_params=["*task_*", "*adapter_*"],
            )
        ),
        run_opts={"device": "cpu"},
        **kwargs,
    )


@pytest.mark.parametrize("kind", ["scale_shift", "lhuc", "lora"])
def test_frozen_backbone_gets_no_gradient(kind):
    brain = _brain(kind)
    backbone = {
        n: p.detach().clone()
        for n, p in brain.modules.named_parameters()
        if not p.requires_grad
    }
    task = {
        n: p.detach().clone()
        for n, p in brain.modules.named_parameters()
        if p.requires_grad
    }
    assert backbone and task
    brain.fit(
        range(1),
        _tasks(6, 20, seed=0),
        progressbar=False,
        train_loader_kwargs={"episodes": {**EPISODES, "episodes_per_epoch": 4}},
    )
    for n, p in brain.modules.named_parameters():
        if n in backbone:
            assert p.grad is None, n
            assert torch.equal(p, backbone[n]), n
    assert any(
        not torch.equal(p, task[n])
        for n, p in brain.modules.named_parameters()
        if n in task
    )
    # A tiny model (rank-2 LoRA is large next to 2-16-1 layers).
    assert 0 < brain.trainable_fraction() < 0.6


def test_task_state_round_trip(tmp_path):
    brain = _brain("lhuc")
    data = _tasks(2, 20, seed=3)
    loader = brain.make_dataloader(
        data,
        sb.Stage.TEST,
        ckpt_prefix=None,
        episodes={**EPISODES, "episodes_per_epoch": 1},
    )
    episode = next(iter(loader))
    fast = brain.adapted_weights(episode.support, inner_steps=3)
    path = tmp_path / "speaker_7.pt"
    size = brain.save_task_state(path, fast)
    assert size < 0.5 * brain.model_state_bytes() + 2000
    saved = torch.load(path)
    assert set(saved) == {
        n for n, p in brain.modules.named_parameters() if p.requires_grad
    }
    with torch.no_grad():
        expected = brain.task_loss(fast, episode.query)
    fresh = _brain("lhuc")
    with torch.no_grad():
        assert not torch.equal(fresh.task_loss({}, episode.query), expected)
    fresh.load_task_state(path)
    with torch.no_grad():
        torch.testing.assert_close(fresh.task_loss({}, episode.query), expected)
    torch.save({"model.bogus": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(KeyError, match="does not fit"):
        fresh.load_task_state(tmp_path / "bad.pt")


@pytest.mark.parametrize("kind", ["scale_shift", "lhuc", "lora", "adapter"])
def test_task_parameter_meta_gradient_matches_finite_differences(kind):
    modules = _pretrained(kind)
    model = modules["model"].double()
    gen = torch.Generator().manual_seed(1)
    support = (
        torch.randn(6, 2, generator=gen, dtype=torch.float64),
        torch.randn(6, 1, generator=gen, dtype=torch.float64),
    )
    query = (
        torch.randn(5, 2, generator=gen, dtype=torch.float64),
        torch.randn(5, 1, generator=gen, dtype=torch.float64),
    )
    with torch.no_grad():  # away from the identity start
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(
                    0.3
                    * torch.randn(p.shape, generator=gen, dtype=torch.float64)
                )

    def loss_fn(fast, batch):
        return torch.nn.functional.mse_loss(
            functional_call(model, fast, (batch[0],)), batch[1]
        )

    inner = InnerLoop(2, inner_lr=0.3, adapt_params=["*task_*", "*adapter_*"])
    theta = _as_leaves(inner.select(model.named_parameters()))
    assert theta and all("task_" in n or "adapter_" in n for n in theta)

    def objective(params):
        with torch.enable_grad():
            return loss_fn(
                inner.run(loss_fn, _as_leaves(params), support), query
            )

    analytic = torch.autograd.grad(
        loss_fn(inner.run(loss_fn, theta, support), query),
        list(theta.values()),
    )
    eps = 1e-6
    for (name, p), g in zip(theta.items(), analytic):
        for i in range(p.numel()):
            plus = OrderedDict(
                (n, q.detach().clone()) for n, q in theta.items()
            )
            minus = OrderedDict(
                (n, q.detach().clone()) for n, q in theta.items()
            )
            plus[name].view(-1)[i] += eps
            minus[name].view(-1)[i] -= eps
            numeric = (objective(plus) - objective(minus)).item() / (2 * eps)
            assert g.view(-1)[i].item() == pytest.approx(
                numeric, rel=1e-5, abs=1e-9
            )


def _scaled_tasks(n_tasks, per_task, seed):
    """One shared function, each task scales and shifts its output."""
    gen = torch.Generator().manual_seed(seed)
    data = []
    for t in range(n_tasks):
        scale = 1 + torch.rand(1, generator=gen) * 2
        shift = torch.randn(1, generator=gen)
        for i in range(per_task):
            x = torch.randn(2, generator=gen)
            y = torch.sin(x.sum()) * scale + shift
            data.append(
                {"id": f"{t}_{i}", "task": t, "x": x, "y": y.reshape(1)}
            )
    return data


@pytest.mark.parametrize("algorithm", [MAML, FOMAML], ids=["maml", "fomaml"])
@pytest.mark.parametrize("rule", [None, "metasgd"])
def test_tiny_meta_transfer_run_improves_query_loss(algorithm, rule):
    brain = _brain(
        "scale_shift", algorithm, rule=MetaSGD(0.1) if rule else None
    )
    brain.fit(
        range(3),
        _scaled_tasks(20, 20, seed=0),
        progressbar=False,
        train_loader_kwargs={"episodes": EPISODES},
    )
    assert ("update_rule" in brain.optimizers_dict) == bool(rule)
    before, after = _query_losses(brain, _scaled_tasks(6, 20, seed=99))
    assert after < 0.8 * before
