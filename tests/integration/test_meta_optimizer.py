"""MetaOptimizerBrain: each learned rule trains, helps, and survives resume."""

import copy
import math

import pytest
import speechbrain as sb
import torch

from speechbrain_meta import (
    FOMAML,
    MAML,
    InnerLoop,
    LayerStepLR,
    LearnedUpdate,
    MetaOptimizerBrain,
    MetaSGD,
    Reptile,
)


class Regressor(MetaOptimizerBrain):
    """A few-shot regression learner: each task is its own line."""

    def compute_forward(self, batch, stage):
        return self.modules.model(batch.x.data.to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(
            predictions, batch.y.data.to(self.device)
        )


def _tasks(n_tasks, per_task, seed):
    gen = torch.Generator().manual_seed(seed)
    data = []
    for t in range(n_tasks):
        slope = torch.randn(2, generator=gen) * 2
        bias = torch.randn(1, generator=gen)
        for i in range(per_task):
            x = torch.randn(2, generator=gen)
            data.append(
                {
                    "id": f"{t}_{i}",
                    "task": t,
                    "x": x,
                    "y": (x @ slope + bias).reshape(1),
                }
            )
    return data


def _rule(name, steps):
    return {
        "metasgd": lambda: MetaSGD(init_lr=0.05),
        "layer_step_lr": lambda: LayerStepLR(init_lr=0.05, inner_steps=steps),
        "learned_update": lambda: LearnedUpdate(
            base_lr=0.05, hidden_size=8, inner_steps=steps, max_update=0.05
        ),
    }[name]()


def _brain(rule, algorithm=MAML, steps=2, checkpointer=None, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    )
    return Regressor(
        modules={"model": model},
        opt_class=lambda p: torch.optim.Adam(p, lr=0.003),
        rule_opt_class=lambda p: torch.optim.Adam(p, lr=0.01),
        meta_algorithm=algorithm(InnerLoop(steps, update_rule=rule)),
        run_opts={"device": "cpu"},
        checkpointer=checkpointer,
        **kwargs,
    )


EPISODES = {
    "group_by": "task",
    "n_support": 5,
    "n_query": 10,
    "episodes_per_epoch": 40,
    "seed": 1,
}


def _query_losses(brain, data, inner_loop=None):
    """Mean query loss of held-out tasks, unadapted and adapted (with
    ``inner_loop``, default the brain's own)."""
    sampler_data = data
    loader = brain.make_dataloader(
        sampler_data,
        sb.Stage.TEST,
        ckpt_prefix=None,
        episodes={**EPISODES, "episodes_per_epoch": 10, "seed": 5},
    )
    before, after = [], []
    for episode in loader:
        for steps, out in ((0, before), (None, after)):
            fast = brain.adapted_weights(
                episode.support, inner_steps=steps, inner_loop=inner_loop
            )
            with torch.no_grad():
                out.append(float(brain.task_loss(fast, episode.query)))
    return sum(before) / len(before), sum(after) / len(after)


@pytest.mark.parametrize("name", ["metasgd", "layer_step_lr", "learned_update"])
@pytest.mark.parametrize("algorithm", [MAML, FOMAML], ids=["maml", "fomaml"])
def test_each_rule_meta_trains_and_adapts(name, algorithm):
    """The rule learns, and what it learned helps: on held-out tasks, the
    trained model adapts better with the learned rule than with the same
    rule at its starting values (plain SGD at ``init_lr`` for MetaSGD),
    which would not be true of a rule that learned nothing useful."""
    brain = _brain(_rule(name, 2), algorithm)
    start = [p.detach().clone() for p in brain.update_rule.parameters()]
    start_state = copy.deepcopy(brain.update_rule.state_dict())
    brain.fit(
        range(4),
        _tasks(20, 20, seed=0),
        progressbar=False,
        train_loader_kwargs={"episodes": EPISODES},
    )
    assert brain.optimizer_step == 160
    moved = [
        not torch.equal(a, b.detach())
        for a, b in zip(start, brain.update_rule.parameters())
    ]
    assert any(moved), "the rule did not learn"
    held_out = _tasks(6, 20, seed=99)
    before, after = _query_losses(brain, held_out)
    assert after < 0.7 * before
    untrained = copy.deepcopy(brain.update_rule)
    untrained.load_state_dict(start_state)
    inner_loop = brain.meta_algorithm.inner_loop.replace(update_rule=untrained)
    _, after_untrained_rule = _query_losses(brain, held_out, inner_loop)
    assert after < 0.9 * after_untrained_rule, (after, after_untrained_rule)


def test_rule_alone_on_a_fixed_initialisation():
    brain = _brain(MetaSGD(init_lr=0.05), meta_train_init=False)
    weights = [p.detach().clone() for p in brain.modules.parameters()]
    brain.fit(
        range(1),
        _tasks(10, 20, seed=0),
        progressbar=False,
        train_loader_kwargs={"episodes": EPISODES},
    )
    assert sorted(brain.optimizers_dict) == ["update_rule"]
    for a, b in zip(weights, brain.modules.parameters()):
        assert torch.equal(a, b)
    rates = brain.update_rule.learning_rates("model.0.weight")
    assert not torch.allclose(rates, torch.full_like(rates, 0.05))


def test_rule_state_survives_checkpoint_and_resume(tmp_path):
    def make():
        counter = sb.utils.epoch_loop.EpochCounter(2)
        brain = _brain(
            LearnedUpdate(base_lr=0.05, hidden_size=8, inner_steps=2),
            checkpointer=sb.utils.checkpoints.Checkpointer(tmp_path),
        )
        brain.checkpointer.add_recoverable("model", brain.modules.model)
        brain.checkpointer.add_recoverable("counter", counter)
        return brain, counter

    brain, counter = make()
    brain.fit(
        counter,
        _tasks(10, 20, seed=0),
        progressbar=False,
        train_loader_kwargs={"episodes": EPISODES},
    )
    brain.checkpointer.save_checkpoint()
    rule_state = {
        k: v.clone() for k, v in brain.update_rule.state_dict().items()
    }
    opt_state = brain.rule_optimizer.state_dict()

    fresh, counter = make()
    assert not torch.equal(
        fresh.update_rule.log_base_lr, rule_state["log_base_lr"]
    )
    fresh.on_fit_start()  # builds the optimisers, recovers the checkpoint
    for k, v in fresh.update_rule.state_dict().items():
        assert torch.equal(v, rule_state[k]), k
    recovered = fresh.rule_optimizer.state_dict()
    assert recovered["param_groups"] == opt_state["param_groups"]
    for i, state in opt_state["state"].items():
        assert torch.equal(recovered["state"][i]["exp_avg"], state["exp_avg"])


def test_reptile_and_plain_sgd_refused():
    with pytest.raises(ValueError, match="Reptile"):
        _brain(MetaSGD(0.1), algorithm=Reptile)
    with pytest.raises(ValueError, match="nothing to learn"):
        _brain(None)


def test_diverging_validation_adaptation_does_not_stop_the_run(caplog):
    from speechbrain_meta import FineTune, MetaInitBrain

    class Plain(MetaInitBrain):
        compute_forward = Regressor.compute_forward
        compute_objectives = Regressor.compute_objectives

    torch.manual_seed(0)
    brain = Plain(
        modules={"model": torch.nn.Linear(2, 1)},
        meta_algorithm=FineTune(InnerLoop(3, inner_lr=1e30)),
        run_opts={"device": "cpu"},
    )
    data = _tasks(4, 20, seed=1)
    episodes = {**EPISODES, "episodes_per_epoch": 3}
    loss = brain.evaluate(
        data, progressbar=False, test_loader_kwargs={"episodes": episodes}
    )
    assert brain.diverged_adaptations == 3
    # Finite: each query was scored with the unadapted weights.
    loader = brain.make_dataloader(
        data, sb.Stage.TEST, ckpt_prefix=None, episodes=episodes
    )
    with torch.no_grad():
        unadapted = [float(brain.task_loss({}, ep.query)) for ep in loader]
    assert math.isfinite(loss)
    assert loss == pytest.approx(sum(unadapted) / len(unadapted))
    assert "diverged" in caplog.text
