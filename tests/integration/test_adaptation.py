"""Adaptation settings, safe adaptation, and their choice on meta-dev."""

import pytest
import torch

from speechbrain_meta import FineTune, InnerLoop, MetaInitBrain
from speechbrain_meta.adaptation import Adaptation, held_out_loss
from speechbrain_meta.evaluation import (
    FewShotProtocol,
    candidate_adaptations,
    select_adaptation,
)


class Line(MetaInitBrain):
    """y = w x + b, one task per line."""

    def compute_forward(self, batch, stage):
        return self.modules.model(batch.x.data)

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch.y.data)


def _brain(inner_lr=0.1):
    torch.manual_seed(0)
    return Line(
        modules={"model": torch.nn.Linear(1, 1)},
        meta_algorithm=FineTune(InnerLoop(3, inner_lr=inner_lr)),
        run_opts={"device": "cpu"},
    )


def _task(slope, n, seed, noise=0.0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(1, generator=gen)
        y = slope * x + noise * torch.randn(1, generator=gen)
        out.append({"id": f"{slope}_{i}", "task": str(slope), "x": x, "y": y})
    return out


def _query_loss(brain, fast, examples):
    from speechbrain.dataio.batch import PaddedBatch

    return held_out_loss(brain, fast, PaddedBatch(examples))


def test_adaptation_runs_its_rule_and_leaves_the_model_alone():
    brain = _brain()
    before = [p.detach().clone() for p in brain.modules.parameters()]
    support, query = _task(3.0, 8, 1), _task(3.0, 20, 2)
    unadapted = _query_loss(brain, Adaptation(steps=0)(brain, support), query)
    for adaptation in (
        Adaptation("own", steps=10),
        Adaptation("sgd", lr=0.2, steps=10),
        Adaptation("adam", lr=0.1, steps=10),
    ):
        fast = adaptation(brain, support)
        assert _query_loss(brain, fast, query) < 0.5 * unadapted, adaptation
    assert all(
        torch.equal(a, b) for a, b in zip(before, brain.modules.parameters())
    )
    path = Adaptation("sgd", lr=0.2, steps=4).trajectory(brain, support)
    assert len(path) == 5
    assert torch.equal(path[0]["model.weight"], before[0])


def test_safe_adaptation_rejects_what_hurts_and_keeps_what_helps():
    brain = _brain()
    support = _task(3.0, 10, 3)
    # A rate that diverges in a few steps: rejected, the unadapted weights.
    bad = Adaptation("sgd", lr=3.0, steps=6, holdout=0.2)
    assert bad.chosen_steps(brain, support) == 0
    fast = bad(brain, support)
    for name, p in brain.modules.named_parameters():
        assert torch.equal(fast[name], p.detach())
    # A good rate: adapted, with a number of steps chosen on the held-out
    # utterances (at most the budget).
    good = Adaptation("sgd", lr=0.2, steps=6, holdout=0.2)
    steps = good.chosen_steps(brain, support)
    assert 1 <= steps <= 6
    query = _task(3.0, 20, 4)
    unadapted = _query_loss(brain, Adaptation(steps=0)(brain, support), query)
    assert _query_loss(brain, good(brain, support), query) < unadapted
    # One utterance: nothing to hold out, nothing risked.
    assert good.chosen_steps(brain, support[:1]) == 0


def test_the_own_adaptation_of_a_brain():
    brain = _brain(inner_lr=0.05)
    own = brain.own_adaptation()
    assert own.describe() == {
        "rule": "own", "lr": None, "steps": 3, "mode": "train", "holdout": 0.0
    }  # fmt: skip
    assert own.inner_loop(brain).update_rule is brain.update_rule


def _lines():
    data = []
    for t, slope in enumerate([1.0, 2.0, -1.5]):
        data += _task(slope, 30, 10 + t, noise=0.05)
    return data


def test_selection_picks_the_best_setting_on_meta_dev(tmp_path):
    brain = _brain()
    protocol = FewShotProtocol(_lines(), "task", [5], 1, 10, seed=1)

    def mse(brain, fast, query):
        loss = held_out_loss(brain, fast, query)
        return loss, loss

    candidates = candidate_adaptations(
        ["own", "sgd"], sgd_lrs=[0.001, 0.3], modes=["eval"]
    )
    cache = tmp_path / "search.json"
    chosen = select_adaptation(
        brain, protocol, candidates, [1, 4], quick_steps=1, score=mse,
        cache_path=str(cache),
    )  # fmt: skip
    scores = {
        (r["candidate"]["rule"], r["candidate"]["lr"], r["steps"]): r["cer"]
        for r in chosen["scores"]
    }
    best = min(scores, key=scores.get)
    tuned = chosen["tuned"].describe()
    assert (tuned["rule"], tuned["lr"], tuned["steps"]) == best
    assert scores[("sgd", 0.3, 4)] < scores[("sgd", 0.001, 4)]
    quick = chosen["quick"].describe()
    assert quick["steps"] == 1
    assert scores[(quick["rule"], quick["lr"], 1)] == min(
        v for (r, lr, s), v in scores.items() if s == 1
    )
    # The search is cached; a different grid searches again.
    again = select_adaptation(
        brain, protocol, candidates, [1, 4], quick_steps=1, score=mse,
        cache_path=str(cache),
    )  # fmt: skip
    assert again["scores"] == chosen["scores"]
    other = select_adaptation(
        brain, protocol, candidates[:1], [2], score=mse, cache_path=str(cache)
    )
    assert {r["steps"] for r in other["scores"]} == {2}


def test_a_plain_batch_trains_as_in_a_plain_brain():
    from speechbrain.dataio.batch import PaddedBatch

    brain = _brain()
    brain.opt_class = lambda p: torch.optim.SGD(p, lr=0.1)
    brain.max_grad_norm = 1e9
    brain.init_optimizers()
    batch = PaddedBatch(_task(2.0, 8, 5))
    model = brain.modules.model
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    w.requires_grad_(), b.requires_grad_()
    loss = torch.nn.functional.mse_loss(batch.x.data @ w.T + b, batch.y.data)
    grad_w, grad_b = torch.autograd.grad(loss, [w, b])
    reported = brain.fit_batch(batch)
    assert float(reported) == pytest.approx(loss.item())
    torch.testing.assert_close(model.weight.detach(), w - 0.1 * grad_w)
    torch.testing.assert_close(model.bias.detach(), b - 0.1 * grad_b)
    assert brain.optimizer_step == 1
