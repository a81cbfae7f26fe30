"""Adaptation settings, validated and anchored adaptation, their choice."""

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


def test_validated_adaptation_abstains_from_what_hurts_and_keeps_what_helps():
    brain = _brain()
    support = _task(3.0, 10, 3)
    # A rate that diverges in a few steps: every fold says so, abstain.
    bad = Adaptation("sgd", lr=3.0, steps=6, folds=5)
    evidence = bad.validate(brain, support)
    assert evidence["steps"] == 0 and evidence["folds"] == 5
    assert "left unadapted" in evidence["reason"]
    held = evidence["held_out"]
    assert all(held[s] > held[0] for s in held if s > 0)
    fast = bad(brain, support)
    for name, p in brain.modules.named_parameters():
        assert torch.equal(fast[name], p.detach())
    # A good rate: adapted, with the step count the folds chose (at most
    # the budget), better on new utterances of the task.
    good = Adaptation("sgd", lr=0.2, steps=6, folds=5)
    evidence = good.validate(brain, support)
    assert 1 <= evidence["steps"] <= 6
    assert evidence["worse_folds"] <= 2 and evidence["improved_folds"] >= 3
    held = evidence["held_out"]
    assert held[evidence["steps"]] == min(held.values()) < held[0]
    query = _task(3.0, 20, 4)
    unadapted = _query_loss(brain, Adaptation(steps=0)(brain, support), query)
    assert _query_loss(brain, good(brain, support), query) < unadapted
    # One utterance: nothing to validate on, nothing risked, and it says so.
    one = good.validate(brain, support[:1])
    assert one["steps"] == 0 and "at least 2" in one["reason"]
    # Two utterances: two folds of one.
    assert good.validate(brain, support[:2])["folds"] == 2


def test_folds_must_agree():
    brain = _brain()
    # Half the support says the slope is 3, half says -3: adapting on one
    # half makes the other half worse, the folds disagree, abstain.
    support = _task(3.0, 4, 3) + _task(-3.0, 4, 4)
    support = [support[i] for i in (0, 4, 1, 5, 2, 6, 3, 7)]
    evidence = Adaptation("sgd", lr=0.2, steps=6, folds=2).validate(
        brain, support
    )
    assert evidence["steps"] == 0


def test_anchored_adaptation_stays_near_the_start():
    brain = _brain()
    support = _task(3.0, 10, 3)
    start = {n: p.detach() for n, p in brain.modules.named_parameters()}

    def moved(adaptation):
        fast = adaptation(brain, support)
        delta = torch.cat([(fast[n] - start[n]).flatten() for n in start])
        size = torch.cat([start[n].flatten() for n in start])
        return float(delta.norm() / size.norm())

    free = moved(Adaptation("sgd", lr=0.2, steps=10))
    pulled = moved(Adaptation("sgd", lr=0.2, steps=10, l2sp=2.0))
    bounded = moved(Adaptation("sgd", lr=0.2, steps=10, max_update=0.1))
    assert pulled < 0.8 * free
    assert bounded == pytest.approx(0.1, rel=1e-4) and free > 0.1
    # L2-SP is the gradient of loss + l2sp / 2 * ||fast - start||^2: one
    # SGD step from the start equals plain SGD's (the pull is zero there),
    # the second differs by exactly -lr * l2sp * (fast - start).
    plain = Adaptation("sgd", lr=0.2, steps=2).trajectory(brain, support)
    anchored = Adaptation("sgd", lr=0.2, steps=2, l2sp=2.0).trajectory(
        brain, support
    )
    for n in start:
        torch.testing.assert_close(anchored[1][n], plain[1][n])
    grads = {
        n: (anchored[1][n] - anchored[2][n]) / 0.2
        - 2.0 * (anchored[1][n] - start[n])
        for n in start
    }
    for n in start:
        torch.testing.assert_close(
            plain[1][n] - 0.2 * grads[n], plain[2][n], rtol=1e-5, atol=1e-6
        )


def test_the_own_adaptation_of_a_brain():
    brain = _brain(inner_lr=0.05)
    own = brain.own_adaptation()
    assert own.describe() == {
        "rule": "own", "lr": None, "steps": 3, "mode": "train", "l2sp": 0.0,
        "max_update": None, "folds": 0,
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
        brain, protocol, candidates, [1, 4], score=mse, cache_path=str(cache),
        cliff=1e9,
    )  # fmt: skip
    scores = {
        (r["candidate"]["rule"], r["candidate"]["lr"], r["steps"]): r["cer"]
        for r in chosen["scores"]
    }
    assert {s for (_, _, s) in scores} == {1, 4}  # 2 and 8: cliff checks
    best = min(scores, key=scores.get)
    tuned = chosen["tuned"].describe()
    assert (tuned["rule"], tuned["lr"], tuned["steps"]) == best
    assert scores[("sgd", 0.3, 4)] < scores[("sgd", 0.001, 4)]
    assert all(r["ci95"] is not None for r in chosen["scores"])
    # The search is cached; a different grid searches again.
    again = select_adaptation(
        brain, protocol, candidates, [1, 4], score=mse, cache_path=str(cache),
        cliff=1e9,
    )  # fmt: skip
    assert again["scores"] == chosen["scores"]
    other = select_adaptation(
        brain, protocol, candidates[:1], [2], score=mse, cache_path=str(cache)
    )
    assert {r["steps"] for r in other["scores"]} == {2}


def test_selection_of_an_adaptation_used_one_utterance_at_a_time():
    """per_utterance: each query utterance is adapted to alone and scored
    (an episode each), as episodic adaptation without transcripts is
    used; zero steps is a candidate like any other."""
    brain = _brain()
    protocol = FewShotProtocol(_lines(), "task", [5], 1, 10, seed=1)

    def mse(brain, fast, query):
        loss = float(held_out_loss(brain, fast, query))
        return loss, loss

    candidates = candidate_adaptations(["sgd"], sgd_lrs=[0.1])
    chosen = select_adaptation(
        brain, protocol, candidates, [0, 2], score=mse, cliff=1e9,
        per_utterance=True,
    )  # fmt: skip
    rows = {r["steps"]: r for r in chosen["scores"]}
    assert rows[2]["n_episodes"] == 3 * 10  # tasks x query utterances
    expected = []
    for task in protocol.tasks:
        for index in protocol.episode(task, 0, 0)[1]:
            alone = protocol.examples([index])
            path = candidates[0].replace(steps=2).trajectory(brain, alone)
            query = protocol.batch([index], brain.device)
            expected.append(mse(brain, path[2], query)[0])
    assert rows[2]["cer"] == pytest.approx(sum(expected) / len(expected))
    # Fitting an utterance lowers its own error: adapting beats 0 steps.
    assert rows[2]["cer"] < rows[0]["cer"] and chosen["tuned"].steps == 2


def test_selection_refuses_a_cliff_edge(tmp_path):
    import json

    brain = _brain()
    protocol = FewShotProtocol(_lines(), "task", [5], 1, 10, seed=1)
    candidates = candidate_adaptations(["sgd"], sgd_lrs=[0.3, 1.0])
    # Meta-dev CER of each candidate after 1 and 2 steps, as a search
    # would have measured them: 1.0 is the best at 1 step and on a cliff
    # (far worse at 2), 0.3 a little worse at 1 step and stable.
    cer = {(0.3, 1): 0.35, (0.3, 2): 0.34, (1.0, 1): 0.30, (1.0, 2): 0.60}
    cache = tmp_path / "search.json"
    scores = [
        {
            "candidate": c.describe(),
            "steps": steps,
            "cer": cer[(c.lr, steps)],
            "ci95": 0.01,
            "n_episodes": 3,
        }
        for c in candidates
        for steps in (1, 2)
    ]
    key = {
        "candidates": [c.describe() for c in candidates],
        "steps": [1, 2],
        "episodes": protocol.description(),
    }
    cache.write_text(json.dumps({"key": key, "scores": scores}))
    free = select_adaptation(
        brain, protocol, candidates, [1], cache_path=str(cache), cliff=1e9
    )
    assert free["tuned"].lr == 1.0
    safe = select_adaptation(
        brain, protocol, candidates, [1], cache_path=str(cache), cliff=0.02
    )
    assert safe["tuned"].lr == 0.3
    rows = {r["candidate"]["lr"]: r for r in safe["scores"]}
    assert rows[1.0]["cer_later"] == 0.60 and not rows[1.0]["eligible"]
    assert rows[0.3]["eligible"]


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


class Frames(MetaInitBrain):
    """Frame classifier: x [batch, frames, 2] -> 3 classes per frame."""

    def compute_forward(self, batch, stage):
        x, lens = batch.x
        return self.modules.model(x).log_softmax(-1), lens

    def compute_objectives(self, predictions, batch, stage):
        log_p, _ = predictions
        y = batch.y.data
        return torch.nn.functional.nll_loss(log_p.reshape(-1, 3), y.reshape(-1))

    def frame_log_probs(self, predictions):
        return predictions


def _frames_brain():
    torch.manual_seed(0)
    return Frames(
        modules={"model": torch.nn.Linear(2, 3)},
        meta_algorithm=FineTune(InnerLoop(3, inner_lr=0.5)),
        run_opts={"device": "cpu"},
    )


def _frames_task(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(4, 2, generator=gen)
        out.append({"id": str(i), "x": x, "y": (x[:, 0] > 0).long() * 2})
    return out


def test_kl_adaptation_stays_near_the_unadapted_posteriors():
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_meta.adaptation import frame_kl

    brain = _frames_brain()
    support = _frames_task()
    batch = PaddedBatch(support)
    start = {n: p.detach() for n, p in brain.modules.named_parameters()}

    def divergence(fast):
        with torch.no_grad():
            p0 = brain.call_with(start, brain.compute_forward, batch, None)
            p1 = brain.call_with(fast, brain.compute_forward, batch, None)
        return float(frame_kl(p0[0], p1[0], p0[1]))

    plain = Adaptation("sgd", lr=0.5, steps=10).trajectory(brain, support)
    held = Adaptation("sgd", lr=0.5, steps=10, kl=0.9).trajectory(
        brain, support
    )
    assert divergence(held[-1]) < 0.5 * divergence(plain[-1])
    # At the start the divergence and its gradient are zero: the first
    # step is plain SGD's on (1 - kl) times the loss.
    for n in start:
        torch.testing.assert_close(
            held[1][n] - start[n], 0.1 * (plain[1][n] - start[n])
        )
    assert Adaptation("sgd", lr=0.5, kl=0.9).describe()["kl"] == 0.9
    # A brain that does not say where its posteriors are is refused.
    with pytest.raises(NotImplementedError, match="frame_log_probs"):
        Adaptation("sgd", lr=0.1, steps=1, kl=0.5)(_brain(), _task(1.0, 4, 0))


class FramesWithErrors(Frames):
    """Frames that also decode (argmax per frame) into ErrorRateStats."""

    def on_stage_start(self, stage, epoch=None):
        from speechbrain.utils.metric_stats import ErrorRateStats

        self.cer_metric, self.wer_metric = ErrorRateStats(), ErrorRateStats()

    def compute_objectives(self, predictions, batch, stage):
        import speechbrain as sb

        if stage == sb.Stage.TEST:
            hyps = predictions[0].argmax(-1).tolist()
            refs = batch.y.data.tolist()
            self.cer_metric.append(batch.id, hyps, refs)
            self.wer_metric.append(batch.id, hyps, refs)
        return super().compute_objectives(predictions, batch, stage)


def test_validation_on_the_recipes_error_rate():
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_meta.adaptation import held_out_error

    torch.manual_seed(0)
    brain = FramesWithErrors(
        modules={"model": torch.nn.Linear(2, 3)},
        meta_algorithm=FineTune(InnerLoop(3, inner_lr=0.5)),
        run_opts={"device": "cpu"},
    )
    support = _frames_task(10, seed=1)
    start = {n: p.detach() for n, p in brain.modules.named_parameters()}
    unadapted = held_out_error(brain, start, PaddedBatch(support))
    assert unadapted > 0.2  # the untrained classifier errs
    good = Adaptation("sgd", lr=1.0, steps=8, folds=5, criterion="error")
    evidence = good.validate(brain, support)
    assert evidence["criterion"] == "error" and evidence["steps"] > 0
    held = evidence["held_out"]
    assert held[evidence["steps"]] < held[0]
    assert 0.0 <= min(held.values()) and max(held.values()) <= 1.0
    query = PaddedBatch(_frames_task(20, seed=2))
    assert held_out_error(brain, good(brain, support), query) < unadapted
    assert good.describe()["criterion"] == "error"
    # A rate too small to change a decision: no gain shown, abstain.
    still = Adaptation("sgd", lr=1e-9, steps=2, folds=5, criterion="error")
    evidence = still.validate(brain, support)
    assert evidence["steps"] == 0 and "left unadapted" in evidence["reason"]
