"""MetaInitBrain end to end on the tiny tone-task corpus."""

import copy
import os

import pytest
import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import Checkpointer
from tiny_asr import TinyASR, episodes, load_model_hparams

from speechbrain_meta import (
    FOMAML,
    MAML,
    InnerLoop,
    MetaInitBrain,
    Reptile,
    meta_brain_class,
)
from speechbrain_meta.algorithms import ANIL

Brain = meta_brain_class(TinyASR, MetaInitBrain)

ALGORITHMS = {
    "maml": lambda: MAML(InnerLoop(inner_steps=1, inner_lr=0.1)),
    "fomaml": lambda: FOMAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
    "reptile": lambda: Reptile(InnerLoop(inner_steps=2, inner_lr=0.1)),
    "anil": lambda: ANIL(InnerLoop(inner_steps=2, inner_lr=0.1), ["ctc_lin.*"]),
}


def make_brain(
    model="crdnn",
    algorithm="maml",
    lr=1e-3,
    extra=None,
    ckpt=None,
    opt=torch.optim.Adam,
):
    torch.manual_seed(0)
    hparams = load_model_hparams(model)
    hparams.update(extra or {})
    checkpointer = None
    if ckpt is not None:
        recoverables = dict(hparams["modules"])
        checkpointer = Checkpointer(ckpt, recoverables)
    return Brain(
        modules=hparams["modules"],
        opt_class=lambda p: opt(p, lr=lr),
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=checkpointer,
        meta_algorithm=ALGORITHMS[algorithm](),
    )


def snapshot(brain):
    state = {
        k: v.detach().clone() for k, v in brain.modules.state_dict().items()
    }
    norm = brain.modules.normalize
    state["norm.count"] = norm.count
    state["norm.mean"] = norm.glob_mean.clone()
    return state


def same(a, b):
    return a.keys() == b.keys() and all(
        torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a
    )


@pytest.mark.parametrize("model", ["crdnn", "conformer", "transformer"])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_models_meta_train_and_meta_test(tone_data, model, algorithm):
    brain = make_brain(model, algorithm)
    before = snapshot(brain)
    brain.fit(
        range(1),
        tone_data["train"],
        train_loader_kwargs=episodes(per_epoch=2),
    )
    assert brain.optimizer_step == 2
    assert brain.skipped_episodes == 0
    after = snapshot(brain)
    changed = [
        k
        for k in before
        if not torch.equal(
            torch.as_tensor(before[k]), torch.as_tensor(after[k])
        )
    ]
    assert changed, "meta-training did not change the initialisation"
    # Meta-test: decoding (greedy CTC or beam search) fills ErrorRateStats.
    brain.hparams.eval_inner_steps = 2
    loss = brain.evaluate(
        tone_data["test"],
        test_loader_kwargs=episodes(per_epoch=2, fixed_query=True),
    )
    assert torch.isfinite(torch.tensor(loss))
    # The decoded utterances are the query sets of the two test episodes,
    # scored against their own transcripts.
    scores = brain.cer_metric.scores
    assert len(scores) == 2 * 3
    words = dict(
        zip(
            tone_data["test"].data_ids,
            (
                tone_data["test"].data[i]["wrd"]
                for i in tone_data["test"].data_ids
            ),
        )
    )
    for score in scores:
        assert "".join(score["ref_tokens"]) == words[score["key"]]
    errors = sum(s["num_edits"] for s in scores)
    total = sum(s["num_ref_tokens"] for s in scores)
    assert brain.last_cer == pytest.approx(100.0 * errors / total)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile", "anil"])
def test_meta_test_leaves_meta_parameters_untouched(tone_data, algorithm):
    brain = make_brain("crdnn", algorithm)
    brain.fit(
        range(1), tone_data["train"], train_loader_kwargs=episodes(per_epoch=1)
    )
    before = snapshot(brain)
    brain.hparams.eval_inner_steps = 3
    brain.evaluate(
        tone_data["test"],
        test_loader_kwargs=episodes(per_epoch=2, fixed_query=True),
    )
    assert same(before, snapshot(brain))


def test_adaptation_lowers_query_loss_after_meta_training(tone_data):
    brain = make_brain("crdnn", "fomaml", lr=3e-3)
    brain.fit(
        range(4),
        tone_data["train"],
        train_loader_kwargs=episodes(n_support=4, per_epoch=10),
    )
    losses = {}
    for steps in (0, 5):
        brain.hparams.eval_inner_steps = steps
        losses[steps] = brain.evaluate(
            tone_data["dev"],
            test_loader_kwargs=episodes(
                n_support=4, per_epoch=4, fixed_query=True, seed=3
            ),
        )
    assert losses[5] < losses[0], losses


def test_reptile_step_is_interpolation_toward_adapted_weights(tone_data):
    epsilon = 0.5
    brain = make_brain("crdnn", "reptile", lr=epsilon, opt=torch.optim.SGD)
    brain.hparams.max_grad_norm = 1e9
    brain.max_grad_norm = 1e9
    seen = []
    brain.on_fit_batch_start = lambda ep, step: seen.append(copy.deepcopy(ep))
    theta0 = {
        n: p.detach().clone() for n, p in brain.modules.named_parameters()
    }
    brain.fit(
        range(1), tone_data["train"], train_loader_kwargs=episodes(per_epoch=1)
    )
    assert len(seen) == 1
    # phi by hand: 2 SGD steps from theta0 on the support set.
    ref = make_brain("crdnn", "reptile")
    with torch.no_grad():
        for n, p in ref.modules.named_parameters():
            p.copy_(theta0[n])
    phi = {
        n: p.detach().clone().requires_grad_()
        for n, p in ref.modules.named_parameters()
    }
    for _ in range(2):
        loss = ref.task_loss(phi, seen[0].support)
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = {
            n: (w - 0.1 * g).detach().requires_grad_()
            for (n, w), g in zip(phi.items(), grads)
        }
    for n, p in brain.modules.named_parameters():
        expected = theta0[n] + epsilon * (phi[n].detach() - theta0[n])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-4, atol=1e-6)


def test_normalisation_statistics_update_once_per_task(tone_data):
    brain = make_brain("crdnn", "maml", extra={})
    brain.meta_algorithm = MAML(InnerLoop(inner_steps=3, inner_lr=0.1))
    bn = [
        m
        for m in brain.modules.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert bn
    brain.fit(
        range(1), tone_data["train"], train_loader_kwargs=episodes(per_epoch=3)
    )
    # 3 tasks x 3 inner steps, but one (query) update per task.
    assert all(int(m.num_batches_tracked) == 3 for m in bn)


def test_non_finite_episode_is_skipped_and_counted(tone_data):
    brain = make_brain("crdnn", "maml")
    calls = {"n": 0}
    original = brain.compute_forward

    def poisoned(batch, stage):
        calls["n"] += 1
        out = original(batch, stage)
        if calls["n"] == 1:  # the first support forward of the first task
            out["p_ctc"] = out["p_ctc"] * float("nan")
        return out

    brain.compute_forward = poisoned
    before = snapshot(brain)
    brain.fit(
        range(1), tone_data["train"], train_loader_kwargs=episodes(per_epoch=1)
    )
    assert brain.skipped_episodes == 1
    assert brain.nonfinite_count == 1
    assert same(before, snapshot(brain))  # nothing was stepped
    brain.fit(
        range(2, 3),
        tone_data["train"],
        train_loader_kwargs=episodes(per_epoch=2),
    )
    assert brain.skipped_episodes == 1 and brain.optimizer_step == 2


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_non_finite_meta_gradient_skips_the_step(tone_data, algorithm):
    # A finite query loss whose gradient is NaN (0 * d sqrt(0)): the outer
    # step must be skipped and counted, and the weights stay finite.
    brain = make_brain("crdnn", algorithm)
    current = {"episodes": 0}
    original = brain.compute_objectives

    def poisoned(predictions, batch, stage):
        loss = original(predictions, batch, stage)
        if current.get("poison") and list(batch.id) == current["query"]:
            loss = loss + 0.0 * torch.sqrt(loss - loss)
        return loss

    def start(episode, should_step):
        current["query"] = list(episode.query.id)
        current["episodes"] += 1
        current["poison"] = current["episodes"] == 1  # the first one only

    def weights():  # (normalisation statistics move in the forward)
        return {
            n: p.detach().clone() for n, p in brain.modules.named_parameters()
        }

    brain.compute_objectives = poisoned
    brain.on_fit_batch_start = start
    before = weights()
    brain.fit(
        range(1), tone_data["train"], train_loader_kwargs=episodes(per_epoch=1)
    )
    assert brain.skipped_steps == 1 and brain.optimizer_step == 0
    assert brain.nonfinite_count == 1 and brain.skipped_episodes == 0
    assert same(before, weights())  # nothing was stepped
    assert all(p.grad is None for p in brain.modules.parameters())
    brain.fit(
        range(2, 3),
        tone_data["train"],
        train_loader_kwargs=episodes(per_epoch=2),
    )
    assert brain.optimizer_step == 2 and brain.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in brain.modules.parameters())
    assert not same(before, weights())


def _train(tone_data, folder, stop_after=None, interval=2):
    brain = make_brain(
        "crdnn",
        "fomaml",
        ckpt=os.path.join(folder, "save"),
        extra={"ckpt_interval_steps": interval, "grad_accumulation_factor": 2},
    )
    epochs = sb.utils.epoch_loop.EpochCounter(2)
    brain.checkpointer.add_recoverable("counter", epochs)
    seen = []

    def record(episode, should_step):
        seen.append(list(episode.support.id) + list(episode.query.id))
        if stop_after is not None and len(seen) > stop_after:
            raise KeyboardInterrupt

    brain.on_fit_batch_start = record
    try:
        brain.fit(
            epochs,
            tone_data["train"],
            train_loader_kwargs=episodes(per_epoch=6),
        )
    except KeyboardInterrupt:
        pass
    return brain, seen


def test_checkpoint_resume_continues_exactly(tone_data, tmp_path):
    full, full_seen = _train(tone_data, str(tmp_path / "full"))
    # Stop in the middle of epoch 2 (after 6 + 4 episodes; the intra-epoch
    # checkpoint was written after episode 4 of that epoch), then resume.
    _, first_seen = _train(tone_data, str(tmp_path / "cut"), stop_after=10)
    resumed, resumed_seen = _train(tone_data, str(tmp_path / "cut"))
    assert first_seen[:10] == full_seen[:10]
    assert resumed_seen == full_seen[10:]  # sampler position continues
    assert resumed.optimizer_step == full.optimizer_step == 6
    for (n, a), (_, b) in zip(
        full.modules.named_parameters(), resumed.modules.named_parameters()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)
    sa = full.optimizer.state_dict()["state"]
    sb_ = resumed.optimizer.state_dict()["state"]
    for k in sa:
        torch.testing.assert_close(
            sa[k]["exp_avg"], sb_[k]["exp_avg"], rtol=0, atol=0
        )
