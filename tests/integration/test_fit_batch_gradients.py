"""The meta-gradient MetaBrain.fit_batch forms, checked where a user gets it.

A tiny CTC recogniser with both normalisations a SpeechBrain model has
(``InputNormalization`` with global statistics, BatchNorm in train mode),
float64, run through ``MetaBrain.fit_batch``: the functional call of the
recipe's ``compute_forward``/``compute_objectives``, the statistics guard,
the switch to the twice-differentiable CTC, and the division by
``grad_accumulation_factor``. The gradient it leaves in ``.grad`` is
compared with central finite differences of the outer objective (MAML, a
learned rule) or with the closed form (FOMAML, Reptile); second-order
MAML also through SpeechBrain's LSTM (on CUDA, where cuDNN's RNNs have no
double backward, the inner loop turns cuDNN off).

``SBM_TEST_DEVICE=cuda`` runs these tests on a GPU.
"""

import copy
import os
from collections import OrderedDict

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.normalization import BatchNorm1d
from speechbrain.nnet.RNN import LSTM
from speechbrain.processing.features import InputNormalization

import speechbrain_meta.lstm
from speechbrain_meta import (
    FOMAML,
    MAML,
    InnerLoop,
    MetaBrain,
    MetaSGD,
    Reptile,
)
from speechbrain_meta.data import Episode
from speechbrain_meta.inner import StatisticsGuard
from speechbrain_meta.losses import ctc_loss

FEATS, HIDDEN, LABELS = 3, 5, 4
ACCUMULATE = 2
DEVICE = os.environ.get("SBM_TEST_DEVICE", "cpu")


class TinyCTC(MetaBrain):
    def compute_forward(self, batch, stage):
        x, lens = batch.x
        x = self.modules.normalize(x.to(self.device), lens.to(self.device))
        if "rnn" in self.modules:
            lengths = lens if self.hparams.rnn_takes_lengths else None
            x, _ = self.modules.rnn(x, lengths=lengths)
        return self.modules.net(x).log_softmax(-1), lens

    def compute_objectives(self, predictions, batch, stage):
        log_probs, lens = predictions
        tokens, token_lens = batch.tokens
        return ctc_loss(log_probs, tokens, lens, token_lens, blank_index=0)


def _model(recurrent=False):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(HIDDEN if recurrent else FEATS, HIDDEN),
        BatchNorm1d(input_size=HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, LABELS),
    )
    modules = {
        "normalize": InputNormalization(norm_type="global").double(),
        "net": net.double(),
    }
    if recurrent:
        modules["rnn"] = LSTM(
            hidden_size=HIDDEN, input_shape=[None, None, FEATS]
        ).double()
    return modules


def _batch(gen, n, offset):
    examples = []
    for i in range(n):
        frames = 9 - (i % 3)
        examples.append(
            {
                "id": f"u{offset + i}",
                "x": torch.randn(
                    frames, FEATS, generator=gen, dtype=torch.float64
                )
                * 2
                + 1,
                "tokens": torch.tensor(
                    [1 + i % 3, 2, 1 + (i + 1) % 3][: 2 + i % 2]
                ),
            }
        )
    return PaddedBatch(examples)


def _episode(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Episode(_batch(gen, 4, 0), _batch(gen, 3, 10), task="t")


def _brain(
    algorithm,
    recurrent=False,
    train_mode=True,
    cls=None,
    lengths=False,
    **kwargs,
):
    brain = (cls or TinyCTC)(
        modules=_model(recurrent),
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={
            "grad_accumulation_factor": ACCUMULATE,
            "adapt_in_train_mode": train_mode,
            "rnn_takes_lengths": lengths,  # packed: each utterance's end
        },
        run_opts={"device": DEVICE},
        meta_algorithm=algorithm,
        **kwargs,
    )
    # A model that has seen data: the global statistics are not empty.
    brain.modules.train()
    with torch.no_grad():
        for seed in (5, 6):
            brain.compute_forward(
                _batch(torch.Generator().manual_seed(seed), 4, 0), None
            )
    brain.init_optimizers()
    return brain


def _normalizations(brain):
    """The model's global normalisations (their statistics are attributes,
    which a state dict does not hold)."""
    return [
        m for m in brain.modules.modules() if isinstance(m, InputNormalization)
    ]


def _statistics(brain):
    state = copy.deepcopy(brain.modules.state_dict())
    return state, [
        (norm.count, norm.glob_mean.clone(), norm.glob_std.clone())
        for norm in _normalizations(brain)
    ]


def _restore(brain, saved):
    state, statistics = saved
    brain.modules.load_state_dict(state)
    for norm, (count, mean, std) in zip(_normalizations(brain), statistics):
        norm.count, norm.glob_mean = count, mean.clone()
        norm.glob_std = std.clone()


def _fit_batch_gradient(brain, episode):
    """The gradient fit_batch accumulates (no step: mid meta-batch)."""
    brain.modules.train()
    brain.step = 1  # 1 % ACCUMULATE != 0: accumulate, do not step
    brain.zero_grad(set_to_none=True)
    brain.fit_batch(episode)
    return brain


def _directional_fd(brain, episode, tensors, direction, eps=1e-5):
    """Central difference of the outer objective along a direction, each
    side from the same weights and normalisation statistics."""
    saved = _statistics(brain)
    start = [t.detach().clone() for t in tensors]
    values = []
    for sign in (1, -1):
        _restore(brain, saved)
        with torch.no_grad():
            for t, t0, d in zip(tensors, start, direction):
                t.copy_(t0 + sign * eps * d)
        brain.modules.train(brain.hparams.adapt_in_train_mode)  # as fit_batch
        objective, _ = brain.meta_algorithm.outer_loss(brain, episode, 0)
        values.append(float(objective.detach()))
    _restore(brain, saved)
    with torch.no_grad():
        for t, t0 in zip(tensors, start):
            t.copy_(t0)
    return (values[0] - values[1]) / (2 * eps)


def _check_against_fd(brain, episode, tensors, n_directions=3, eps=1e-5):
    """fit_batch's gradient against central differences along random
    directions. ``eps`` may be several steps, largest first: a model with
    kinks (max pooling, leaky ReLU) may have one within the larger step of
    some point, where its central difference is off by the kink's jump; the
    smaller steps are then tried, and one of them must agree (a wrong
    gradient agrees with none).
    """
    steps = eps if isinstance(eps, (tuple, list)) else (eps,)
    saved = _statistics(brain)
    _fit_batch_gradient(brain, episode)
    grads = [t.grad.detach().clone() for t in tensors]
    assert all(g.abs().sum() > 0 for g in grads)
    _restore(brain, saved)
    gen = torch.Generator().manual_seed(11)
    for _ in range(n_directions):
        direction = [
            torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)
            for t in tensors
        ]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
        # fit_batch divides by the meta-batch size (gradient accumulation).
        numerics = []
        for step in steps:
            numerics.append(
                _directional_fd(brain, episode, tensors, direction, step)
            )
            if ACCUMULATE * analytic == pytest.approx(
                numerics[-1], rel=1e-6, abs=1e-9
            ):
                break
        else:
            pytest.fail(
                f"analytic {ACCUMULATE * analytic!r} against central "
                f"differences {numerics} (steps {steps})"
            )


def _episode_mode(brain):
    """Whether fit_batch runs an episode in training mode."""
    return bool(brain._hparam("adapt_in_train_mode", brain.adapt_in_train_mode))


def _check_first_order(brain, episode, tensors, eps=1e-5):
    """A first-order meta-gradient is the gradient of

        F(theta) = L_query(start(theta) + delta)

    where start(theta) is the algorithm's task start (theta itself, or
    theta with a head made of its support prototypes for Proto-MAML) and
    delta, the inner loop's whole update computed at the current theta, is
    held constant: the support gradients are constants, the start is not.
    Checked against central differences of F, and shown to differ from the
    second-order gradient (so a second-order run would fail here).
    """
    algorithm = brain.meta_algorithm
    saved = _statistics(brain)
    brain.modules.train()
    brain.step = 1  # accumulate, no optimiser step
    brain.zero_grad(set_to_none=True)
    brain.fit_batch(episode)
    grads = [t.grad.detach().clone() for t in tensors]
    _restore(brain, saved)
    brain.modules.train(_episode_mode(brain))  # the mode fit_batch adapts in
    theta = brain.meta_parameters(algorithm.inner_loop)
    start = algorithm.start_weights(brain, theta, episode.support)
    fast = brain.run_inner_loop(
        theta,
        episode.support,
        algorithm.inner_loop,
        support_loss=algorithm.support_loss(brain, theta),
    )
    delta = {k: (fast[k] - start[k]).detach() for k in fast}
    assert any(d.abs().sum() > 0 for d in delta.values())

    origin = [t.detach().clone() for t in tensors]

    def held_objective(shift):
        _restore(brain, saved)  # the statistics, then the shifted weights
        brain.modules.train(_episode_mode(brain))
        with torch.no_grad():
            for t, t0, d in zip(tensors, origin, shift):
                t.copy_(t0 + d)
            theta = brain.meta_parameters(algorithm.inner_loop)
            start = algorithm.start_weights(brain, theta, episode.support)
            held = {k: v + delta[k] if k in delta else v
                    for k, v in start.items()}  # fmt: skip
            return float(brain.task_loss(held, episode.query))

    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        direction = [
            torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in tensors
        ]
        plus = held_objective([eps * d for d in direction])
        minus = held_objective([-eps * d for d in direction])
        _restore(brain, saved)
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
        assert ACCUMULATE * analytic == pytest.approx(
            numeric, rel=1e-6, abs=1e-9
        )
        second_order = _directional_fd(brain, episode, tensors, direction)
        assert abs(second_order - numeric) > 1e-3 * abs(second_order)
    _restore(brain, saved)


def test_second_order_maml_gradient_through_fit_batch():
    brain = _brain(MAML(InnerLoop(inner_steps=2, inner_lr=0.3)))
    params = [p for p in brain.modules.parameters()]
    _check_against_fd(brain, _episode(), params)


@pytest.mark.parametrize(
    "train_mode,lengths", [(True, False), (False, False), (True, True)]
)
def test_second_order_maml_gradient_through_an_lstm(
    train_mode, lengths, monkeypatch
):
    """Through an LSTM, in train and in eval mode, on the padded batch or
    given the lengths (SpeechBrain packs the sequence): the support
    forwards take the LSTM with written-out second derivatives (on CUDA
    the other forwards' eval-mode backward needs cuDNN off)."""
    calls = []
    forward = speechbrain_meta.lstm.lstm_forward

    def counted(*args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return forward(*args, **kwargs)

    monkeypatch.setattr(speechbrain_meta.lstm, "lstm_forward", counted)
    brain = _brain(
        MAML(InnerLoop(inner_steps=2, inner_lr=0.3)),
        recurrent=True,
        train_mode=train_mode,
        lengths=lengths,
    )
    params = [p for p in brain.modules.parameters()]
    assert any("rnn" in n for n, _ in brain.modules.named_parameters())
    # The LSTM's third derivatives are larger: the central difference's
    # O(eps^2) error is 4e-7 relative at eps=1e-5, 3e-9 at 1e-6.
    _check_against_fd(brain, _episode(), params, eps=1e-6)
    assert calls, "the second-order support forwards took the native LSTM"


def test_first_order_inner_steps_keep_the_native_lstm(monkeypatch):
    calls = []
    monkeypatch.setattr(
        speechbrain_meta.lstm, "lstm_forward", lambda *a: calls.append(a)
    )
    brain = _brain(FOMAML(InnerLoop(inner_steps=2, inner_lr=0.3)), True)
    _fit_batch_gradient(brain, _episode())
    assert calls == []


def test_learned_rule_gradients_through_fit_batch():
    """Meta-SGD, second order: to the rates and to the initialisation."""
    brain = _brain(
        MAML(InnerLoop(inner_steps=2, update_rule=MetaSGD(init_lr=0.2))),
        rule_opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    )
    assert "update_rule" in brain.optimizers_dict
    with torch.no_grad():  # rates that differ per element
        for raw in brain.update_rule.raw_lr.values():
            raw.add_(0.3 * torch.randn(raw.shape, dtype=raw.dtype).to(raw))
    rates = list(brain.update_rule.parameters())
    _check_against_fd(brain, _episode(1), rates)
    _check_against_fd(brain, _episode(1), list(brain.modules.parameters()))


def test_first_order_maml_gradient_is_the_query_gradient_after_sgd():
    lr, steps = 0.3, 2
    brain = _brain(FOMAML(InnerLoop(inner_steps=steps, inner_lr=lr)))
    episode = _episode(2)
    saved = _statistics(brain)
    _fit_batch_gradient(brain, episode)
    got = OrderedDict(
        (n, p.grad.clone()) for n, p in brain.modules.named_parameters()
    )
    # By hand: SGD steps on the support (statistics left as they were),
    # then the query gradient at the adapted weights.
    _restore(brain, saved)
    brain.modules.train()
    phi = OrderedDict(
        (n, p.detach().clone().requires_grad_(True))
        for n, p in brain.modules.named_parameters()
    )
    for _ in range(steps):
        with StatisticsGuard(brain.modules):
            loss = brain.task_loss(phi, episode.support)
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = OrderedDict(
            (n, (w - lr * g).detach().requires_grad_(True))
            for (n, w), g in zip(phi.items(), grads)
        )
    expected = torch.autograd.grad(
        brain.task_loss(phi, episode.query), list(phi.values())
    )
    for (name, g), e in zip(got.items(), expected):
        torch.testing.assert_close(
            ACCUMULATE * g, e, rtol=1e-10, atol=1e-12, msg=name
        )
    # ... which is not the second-order gradient.
    _restore(brain, saved)
    second = _brain(MAML(InnerLoop(inner_steps=steps, inner_lr=lr)))
    _restore(second, saved)
    _fit_batch_gradient(second, episode)
    differences = [
        float((a.grad - b).abs().max())
        for a, b in zip(second.modules.parameters(), got.values())
    ]
    assert max(differences) > 1e-6


def test_statistics_are_updated_once_by_the_query():
    brain = _brain(MAML(InnerLoop(inner_steps=3, inner_lr=0.1)))
    before = brain.modules.normalize.count  # frames seen
    bn = brain.modules.net[1].norm
    tracked = int(bn.num_batches_tracked)
    episode = _episode()
    _fit_batch_gradient(brain, episode)
    # 3 support forwards and 1 query forward: only the query counts.
    query_frames = int(
        (episode.query.x.lengths * episode.query.x.data.shape[1]).round().sum()
    )
    assert brain.modules.normalize.count == before + query_frames
    assert int(bn.num_batches_tracked) == tracked + 1


@pytest.mark.parametrize("adapt_on_query", [False, True])
def test_reptile_over_a_meta_batch_of_tasks(adapt_on_query):
    """theta <- theta + eps * mean over tasks of (phi_t - theta)."""
    eps, lr, steps, tasks = 0.5, 0.2, 2, 3
    torch.manual_seed(0)
    brain = TinyCTC(
        modules=_model(),
        opt_class=lambda p: torch.optim.SGD(p, lr=eps),
        hparams={"grad_accumulation_factor": tasks},
        run_opts={"device": "cpu"},
        meta_algorithm=Reptile(
            InnerLoop(inner_steps=steps, inner_lr=lr),
            adapt_on_query=adapt_on_query,
        ),
    )
    brain.init_optimizers()
    brain.modules.train()
    theta = OrderedDict(
        (n, p.detach().clone()) for n, p in brain.modules.named_parameters()
    )
    episodes = [_episode(10 + t) for t in range(tasks)]
    saved = _statistics(brain)
    # phi_t by hand: SGD on the support (then the query, if asked), from
    # the statistics the query forwards of the earlier tasks left.
    moves = []
    for episode in episodes:
        phi = OrderedDict(
            (n, w.clone().requires_grad_(True)) for n, w in theta.items()
        )
        batches = [episode.support] + (
            [episode.query] if adapt_on_query else []
        )
        for batch in batches:
            for _ in range(steps):
                with StatisticsGuard(brain.modules):
                    loss = brain.task_loss(phi, batch)
                grads = torch.autograd.grad(loss, list(phi.values()))
                phi = OrderedDict(
                    (n, (w - lr * g).detach().requires_grad_(True))
                    for (n, w), g in zip(phi.items(), grads)
                )
        moves.append({n: phi[n].detach() - theta[n] for n in theta})
        with torch.no_grad():  # the reported query loss updates statistics
            brain.task_loss(phi, episode.query)
    _restore(brain, saved)
    for step, episode in enumerate(episodes, start=1):
        brain.step = step
        brain.fit_batch(episode)
    assert brain.optimizer_step == 1
    for name, p in brain.modules.named_parameters():
        mean_move = sum(m[name] for m in moves) / tasks
        torch.testing.assert_close(
            p.detach(), theta[name] + eps * mean_move, rtol=1e-10, atol=1e-12
        )


def test_a_meta_batch_of_skipped_episodes_takes_no_step():
    brain = _brain(MAML(InnerLoop(inner_steps=1, inner_lr=0.1)))
    before = [p.detach().clone() for p in brain.modules.parameters()]
    bad = _episode()
    bad.support.x.data[0, 0, 0] = float("nan")
    brain.nonfinite_count = 0  # as fit() sets it
    brain.step = 2  # last episode of the meta-batch: the step is attempted
    brain.fit_batch(bad)
    assert brain.skipped_episodes == 1 and brain.optimizer_step == 0
    assert all(
        torch.equal(a, b) for a, b in zip(before, brain.modules.parameters())
    )
    brain.step = 2
    brain.fit_batch(_episode(3))
    assert brain.optimizer_step == 1


def test_a_non_finite_query_objective_skips_the_episode():
    brain = _brain(MAML(InnerLoop(inner_steps=1, inner_lr=0.1)))
    before = [p.detach().clone() for p in brain.modules.parameters()]
    bad = _episode()
    bad.query.x.data[1, 0, 0] = float("inf")  # the support is fine
    brain.nonfinite_count = 0
    brain.step = 2
    brain.fit_batch(bad)
    assert brain.skipped_episodes == 1 and brain.optimizer_step == 0
    assert all(
        torch.equal(a, b) for a, b in zip(before, brain.modules.parameters())
    )
    assert all(
        p.grad is None or not p.grad.any() for p in brain.modules.parameters()
    )


def test_too_many_non_finite_episodes_stop_the_run():
    brain = _brain(FOMAML(InnerLoop(inner_steps=1, inner_lr=0.1)))
    brain.nonfinite_count = 0
    brain.nonfinite_patience = 2
    bad = _episode()
    bad.query.x.data[0, 0, 0] = float("nan")
    for step in (1, 2):  # within the patience: skipped, counted
        brain.step = step
        brain.fit_batch(bad)
    assert brain.skipped_episodes == 2
    brain.step = 3
    with pytest.raises(ValueError, match="patience"):
        brain.fit_batch(bad)


@pytest.mark.parametrize(
    "case", ["maml_lstm", "head_only", "metasgd", "multi_step"]
)
def test_recomputed_inner_steps_give_the_same_meta_gradient(case):
    """``recompute_inner_steps`` (gradient checkpointing over the inner
    steps): the same meta-gradient as the kept graph, to the meta-parameters
    that adapt, to those that do not (head only: the body's gradient goes
    through the inner loop) and to a learned rule's rates, and it matches
    finite differences."""
    inner = {"inner_steps": 3, "inner_lr": 0.3}
    kwargs, algorithm = {}, MAML
    recurrent = case == "maml_lstm"
    if case == "head_only":
        inner["adapt_params"] = ["net.3.*"]
    if case == "metasgd":
        inner = {"inner_steps": 2, "update_rule": MetaSGD(init_lr=0.2)}
        kwargs["rule_opt_class"] = lambda p: torch.optim.SGD(p, lr=0.1)
    if case == "multi_step":

        def algorithm(loop):
            return MAML(loop, multi_step_weights=[0.2, 0.3, 0.5])

    def build(recompute):
        loop = InnerLoop(**inner, recompute_inner_steps=recompute)
        return _brain(algorithm(loop), recurrent=recurrent, **kwargs)

    kept, recomputed = build(False), build(True)
    saved = _statistics(kept)
    _restore(recomputed, saved)
    if case == "metasgd":
        recomputed.update_rule.load_state_dict(kept.update_rule.state_dict())
    tensors = {}
    for brain in (kept, recomputed):
        _fit_batch_gradient(brain, _episode(4))
        params = list(brain.modules.parameters())
        if case == "metasgd":
            params += list(brain.update_rule.parameters())
        tensors[brain] = params
        grads = [p.grad.detach().clone() for p in params]
        if brain is kept:
            expected = grads
    assert all(g.abs().sum() > 0 for g in grads)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    # The statistics the query forward updates, updated once.
    for a, b in zip(
        kept.modules.state_dict().values(),
        recomputed.modules.state_dict().values(),
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _restore(recomputed, saved)
    _check_against_fd(
        recomputed, _episode(4), tensors[recomputed], n_directions=2, eps=1e-6
    )


class TinyCTCFrames(TinyCTC):
    """TinyCTC with its frame posteriors named (as ``CTCASR``)."""

    def frame_log_probs(self, predictions):
        return predictions


def _untranscribed_episode(seed=0):
    """The support without transcripts: a supervised inner loop would
    fail on it (no ``tokens``)."""
    gen = torch.Generator().manual_seed(seed)
    support = _batch(gen, 4, 0)
    support = PaddedBatch(
        [{"id": i, "x": x} for i, x in zip(support.id, _unpadded(support.x))]
    )
    return Episode(support, _batch(gen, 3, 10), task="t")


def _unpadded(padded):
    data, lens = padded
    frames = (lens * data.shape[1]).round().long()
    return [d[:n] for d, n in zip(data, frames)]


def _entropy_objective():
    from speechbrain_meta.unsupervised import EntropyObjective

    # A threshold no frame of this model reaches: the mask is the padding.
    return EntropyObjective(temperature=1.5, mcc=0.5, blank_threshold=0.999)


@pytest.mark.parametrize("recurrent", [False, True])
def test_unsupervised_maml_gradient_through_fit_batch(recurrent):
    """Second order through an inner loop on untranscribed support audio
    (entropy and class confusion of the frame posteriors) to a supervised
    query loss: fit_batch against finite differences, with and without an
    LSTM."""
    algorithm = MAML(
        InnerLoop(inner_steps=2, inner_lr=0.5),
        support_objective=_entropy_objective(),
    )
    brain = _brain(algorithm, recurrent, cls=TinyCTCFrames)
    params = [p for p in brain.modules.parameters()]
    _check_against_fd(brain, _untranscribed_episode(), params)


def test_unsupervised_fomaml_gradient_through_fit_batch():
    algorithm = FOMAML(
        InnerLoop(inner_steps=2, inner_lr=0.5),
        support_objective=_entropy_objective(),
    )
    brain = _brain(algorithm, False, cls=TinyCTCFrames)
    params = [p for p in brain.modules.parameters()]
    _check_first_order(brain, _untranscribed_episode(), params)
