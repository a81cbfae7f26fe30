"""Meta-gradients of every path against finite differences or closed forms."""

from collections import OrderedDict

import pytest
import torch
from torch.func import functional_call

from speechbrain_meta.algorithms import ANIL, MAML
from speechbrain_meta.inner import InnerLoop, NonFiniteInnerLoss
from speechbrain_meta.losses import ctc_loss, differentiable_ctc

torch.set_default_dtype(torch.float32)


def _regression_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    ).double()
    support = (
        torch.randn(6, 3, dtype=torch.float64, generator=gen),
        torch.randn(6, 2, dtype=torch.float64, generator=gen),
    )
    query = (
        torch.randn(5, 3, dtype=torch.float64, generator=gen),
        torch.randn(5, 2, dtype=torch.float64, generator=gen),
    )

    def loss_fn(fast, batch):
        out = functional_call(model, fast, (batch[0],))
        return torch.nn.functional.mse_loss(out, batch[1])

    return model, support, query, loss_fn


def _flat(params):
    return torch.cat([p.reshape(-1) for p in params.values()])


def _unflat(vector, like):
    out, i = OrderedDict(), 0
    for name, p in like.items():
        out[name] = vector[i : i + p.numel()].view_as(p).clone()
        i += p.numel()
    return out


def _finite_difference_grad(objective, params, eps=1e-6):
    theta = _flat(params).detach()
    grad = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = eps
        plus = objective(_unflat(theta + e, params)).item()
        minus = objective(_unflat(theta - e, params)).item()
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def _as_leaves(params):
    return OrderedDict(
        (n, p.detach().clone().requires_grad_(True)) for n, p in params.items()
    )


def test_maml_second_order_matches_finite_differences():
    model, support, query, loss_fn = _regression_problem()
    inner = InnerLoop(inner_steps=3, inner_lr=0.4)
    params = _as_leaves(dict(model.named_parameters()))

    def meta_objective(p):
        with torch.enable_grad():
            p = _as_leaves(p)
            return loss_fn(inner.run(loss_fn, p, support), query)

    analytic = torch.autograd.grad(
        loss_fn(inner.run(loss_fn, params, support), query),
        list(params.values()),
    )
    numeric = _finite_difference_grad(meta_objective, params)
    torch.testing.assert_close(
        torch.cat([g.reshape(-1) for g in analytic]),
        numeric,
        rtol=1e-5,
        atol=1e-8,
    )


def test_fomaml_gradient_is_query_gradient_at_adapted_weights():
    model, support, query, loss_fn = _regression_problem(1)
    inner = InnerLoop(inner_steps=3, inner_lr=0.4, first_order=True)
    params = _as_leaves(dict(model.named_parameters()))
    fast = inner.run(loss_fn, params, support)
    fo_grad = torch.autograd.grad(loss_fn(fast, query), list(params.values()))
    # Closed form: grad_phi L_Q(phi) at phi = the adapted weights.
    phi = _as_leaves(fast)
    expected = torch.autograd.grad(loss_fn(phi, query), list(phi.values()))
    for a, b in zip(fo_grad, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # ... which is not the second-order gradient (the test can fail).
    so_inner = InnerLoop(inner_steps=3, inner_lr=0.4)
    so_grad = torch.autograd.grad(
        loss_fn(so_inner.run(loss_fn, params, support), query),
        list(params.values()),
    )
    diff = max((a - b).abs().max().item() for a, b in zip(fo_grad, so_grad))
    assert diff > 1e-4


class _FunctionalLearner:
    """The three learner operations, for a plain functional model."""

    def __init__(self, model, loss_fn):
        self.model, self.loss_fn = model, loss_fn

    def meta_parameters(self, inner_loop):
        return inner_loop.select(self.model.named_parameters())

    def run_inner_loop(self, params, support, inner_loop, keep_steps=False):
        return inner_loop.run(
            self.loss_fn, params, support, keep_steps=keep_steps
        )

    def task_loss(self, fast, batch):
        return self.loss_fn(fast, batch)


class _Episode:
    def __init__(self, support, query):
        self.support, self.query = support, query


def _algorithm_grad_vs_fd(algorithm, model, support, query, loss_fn):
    learner = _FunctionalLearner(model, loss_fn)
    episode = _Episode(support, query)
    objective, _ = algorithm.outer_loss(learner, episode, 0)
    params = OrderedDict(model.named_parameters())
    analytic = torch.autograd.grad(objective, list(params.values()))

    def meta_objective(p):
        with torch.no_grad():
            for name, value in p.items():
                params[name].copy_(value)
        return algorithm.outer_loss(learner, episode, 0)[0]

    theta = OrderedDict((n, p.detach().clone()) for n, p in params.items())
    numeric = _finite_difference_grad(meta_objective, theta)
    meta_objective(theta)  # restore
    return torch.cat([g.reshape(-1) for g in analytic]), numeric


def test_multi_step_loss_matches_finite_differences():
    model, support, query, loss_fn = _regression_problem(2)
    algo = MAML(InnerLoop(inner_steps=3, inner_lr=0.3), [0.2, 0.3, 0.5])
    analytic, numeric = _algorithm_grad_vs_fd(
        algo, model, support, query, loss_fn
    )
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_anil_adapts_head_only_and_its_meta_gradient_is_exact():
    model, support, query, loss_fn = _regression_problem(3)
    algo = ANIL(InnerLoop(inner_steps=2, inner_lr=0.5), head_params=["2.*"])
    learner = _FunctionalLearner(model, loss_fn)
    theta = learner.meta_parameters(algo.inner_loop)
    assert list(theta) == ["2.weight", "2.bias"]
    fast = learner.run_inner_loop(theta, support, algo.inner_loop)
    assert set(fast) == {"2.weight", "2.bias"}
    # Closed form: SGD on the head, the body's weights as they are.
    head = _as_leaves(theta)
    for _ in range(2):
        grads = torch.autograd.grad(loss_fn(head, support), list(head.values()))
        head = _as_leaves(
            {n: w - 0.5 * g for (n, w), g in zip(head.items(), grads)}
        )
    for name in head:
        torch.testing.assert_close(fast[name], head[name], rtol=1e-12, atol=0)
    # The body still gets the (second-order) meta-gradient, exactly.
    analytic, numeric = _algorithm_grad_vs_fd(
        algo, model, support, query, loss_fn
    )
    assert analytic[: model[0].weight.numel()].abs().max() > 0
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_non_finite_support_loss_is_reported():
    model, support, query, loss_fn = _regression_problem()
    bad = (support[0].clone(), support[1].clone())
    bad[0][0, 0] = float("nan")
    inner = InnerLoop(inner_steps=2, inner_lr=0.1)
    with pytest.raises(NonFiniteInnerLoss) as err:
        inner.run(loss_fn, dict(model.named_parameters()), bad)
    assert err.value.step == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_non_finite_gradient_is_told_from_large_half_gradients(dtype):
    """Large but finite half precision gradients (their sum overflows the
    dtype) pass; one NaN or infinity among them is reported."""
    weight = torch.zeros(64, dtype=dtype, requires_grad=True)

    def loss_fn(fast, grad):  # a finite loss whose gradient is ``grad``
        out = fast["w"] * 1.0
        out.register_hook(lambda _: grad)
        return out.sum()

    inner = InnerLoop(inner_steps=1, inner_lr=1e-6, first_order=True)
    big = torch.full((64,), 60000.0, dtype=dtype)
    fast = inner.run(loss_fn, {"w": weight}, big)
    assert torch.isfinite(fast["w"]).all()
    for bad in (float("nan"), float("inf")):
        grad = big.clone()
        grad[17] = bad
        with pytest.raises(NonFiniteInnerLoss) as err:
            inner.run(loss_fn, {"w": weight}, grad)
        assert err.value.what == "gradient"


def _directional_check(model, loss_fn, support, query, inner, eps=1e-5):
    """<grad F, v> against (F(theta + eps v) - F(theta - eps v)) / 2 eps.

    The support forwards use the twice-differentiable CTC (a brain asks for
    it through the same ``forward_context``).
    """
    params = OrderedDict(model.named_parameters())
    fast = inner.run(
        loss_fn, params, support, forward_context=differentiable_ctc
    )
    objective = loss_fn(fast, query)
    grads = torch.autograd.grad(objective, list(params.values()))
    gen = torch.Generator().manual_seed(7)
    direction = OrderedDict(
        (n, torch.randn(p.shape, dtype=p.dtype, generator=gen))
        for n, p in params.items()
    )
    analytic = sum((g * direction[n]).sum() for g, n in zip(grads, params))

    def at(sign):
        shifted = OrderedDict(
            (n, (p + sign * eps * direction[n]).detach().requires_grad_())
            for n, p in params.items()
        )
        return loss_fn(
            inner.run(
                loss_fn, shifted, support, forward_context=differentiable_ctc
            ),
            query,
        ).item()

    numeric = (at(1) - at(-1)) / (2 * eps)
    return analytic.item(), numeric


class _TinyLSTMCTC(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.out = torch.nn.Linear(10, 4)

    def forward(self, x):
        return self.out(self.rnn(x)[0]).log_softmax(-1)


def _ctc_batch(gen, batch=3, frames=12, feats=4):
    x = torch.randn(batch, frames, feats, dtype=torch.float64, generator=gen)
    tokens = torch.tensor([[1, 2, 3], [2, 2, 0], [3, 1, 0]])[:batch]
    rel_tok = torch.tensor([1.0, 2 / 3, 2 / 3])[:batch]
    rel_in = torch.tensor([1.0, 0.75, 1.0])[:batch]
    return x, tokens, rel_in, rel_tok


def test_second_order_through_lstm_with_pure_ctc():
    torch.manual_seed(0)
    model = _TinyLSTMCTC().double()
    gen = torch.Generator().manual_seed(0)
    support, query = _ctc_batch(gen), _ctc_batch(gen)

    def loss_fn(fast, batch):
        x, tokens, rel_in, rel_tok = batch
        lp = functional_call(model, fast, (x,))
        return ctc_loss(lp, tokens, rel_in, rel_tok, blank_index=0)

    inner = InnerLoop(inner_steps=2, inner_lr=0.1)
    analytic, numeric = _directional_check(
        model, loss_fn, support, query, inner
    )
    assert analytic == pytest.approx(numeric, rel=1e-5)


@pytest.mark.parametrize(
    "attention, dtype, rel",
    [
        # RelPosMHAXL computes its softmax in float32 whatever the input:
        # float32 end to end, with a finite-difference tolerance to match.
        ("RelPosMHAXL", torch.float32, 2e-2),
        ("regularMHA", torch.float64, 1e-5),
    ],
)
def test_second_order_through_conformer_with_pure_ctc(attention, dtype, rel):
    from speechbrain.lobes.models.transformer.TransformerASR import (
        TransformerASR,
    )

    torch.manual_seed(0)
    torch.set_default_dtype(dtype)  # positional tables too
    try:
        _conformer_check(TransformerASR, attention, dtype, rel)
    finally:
        torch.set_default_dtype(torch.float32)


def _conformer_check(TransformerASR, attention, dtype, rel):
    encoder = TransformerASR(
        tgt_vocab=4,
        input_size=4,
        d_model=8,
        nhead=2,
        num_encoder_layers=1,
        num_decoder_layers=0,
        d_ffn=16,
        dropout=0.0,
        encoder_module="conformer",
        attention_type=attention,
        activation=torch.nn.GELU,
        normalize_before=True,
        kernel_size=3,
        causal=False,
    )
    model = torch.nn.ModuleDict(
        {"enc": encoder, "ctc": torch.nn.Linear(8, 4)}
    ).to(dtype)

    class Forward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.ctc = model["enc"], model["ctc"]

        def forward(self, x, rel_in):
            h = self.enc.encode(x, rel_in)
            return self.ctc(h).log_softmax(-1)

    fwd = Forward()
    gen = torch.Generator().manual_seed(1)
    support, query = _ctc_batch(gen), _ctc_batch(gen)
    support, query = [
        (b[0].to(dtype),) + tuple(b[1:]) for b in (support, query)
    ]

    def loss_fn(fast, batch):
        x, tokens, rel_in, rel_tok = batch
        lp = functional_call(fwd, fast, (x, rel_in))
        return ctc_loss(lp, tokens, rel_in, rel_tok, blank_index=0)

    inner = InnerLoop(inner_steps=1, inner_lr=0.1)
    eps = 1e-5 if dtype == torch.float64 else 1e-2
    analytic, numeric = _directional_check(
        fwd, loss_fn, support, query, inner, eps=eps
    )
    assert analytic == pytest.approx(numeric, rel=rel)


def test_inner_gradient_clipping_bounds_the_step_and_is_differentiated():
    model, support, query, loss_fn = _regression_problem(4)
    params = _as_leaves(dict(model.named_parameters()))
    clip = 0.05
    inner = InnerLoop(inner_steps=1, inner_lr=1.0, inner_grad_clip=clip)
    fast = inner.run(loss_fn, params, support)
    step = torch.cat([(params[n] - fast[n]).reshape(-1) for n in params])
    raw = torch.autograd.grad(loss_fn(params, support), list(params.values()))
    assert float(torch.cat([g.reshape(-1) for g in raw]).norm()) > 2 * clip
    assert float(step.detach().norm()) == pytest.approx(clip, rel=1e-4)
    # The second-order meta-gradient goes through the clipping too.
    inner = InnerLoop(inner_steps=2, inner_lr=0.5, inner_grad_clip=clip)

    def meta_objective(p):
        with torch.enable_grad():
            return loss_fn(inner.run(loss_fn, _as_leaves(p), support), query)

    analytic = torch.autograd.grad(
        loss_fn(inner.run(loss_fn, params, support), query),
        list(params.values()),
    )
    numeric = _finite_difference_grad(meta_objective, params)
    torch.testing.assert_close(
        torch.cat([g.reshape(-1) for g in analytic]),
        numeric,
        rtol=1e-5,
        atol=1e-8,
    )


def test_manual_loss_scaling_changes_nothing_but_the_scale():
    model, support, query, loss_fn = _regression_problem(5)
    params = _as_leaves(dict(model.named_parameters()))
    inner = InnerLoop(inner_steps=2, inner_lr=0.3)
    plain = inner.run(loss_fn, params, support)
    scaled = inner.run(loss_fn, params, support, loss_scale=2.0**10)
    for name in plain:
        torch.testing.assert_close(
            plain[name], scaled[name], rtol=1e-12, atol=0
        )
    g_plain = torch.autograd.grad(loss_fn(plain, query), list(params.values()))
    g_scaled = torch.autograd.grad(
        loss_fn(scaled, query), list(params.values())
    )
    for a, b in zip(g_plain, g_scaled):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
    # A scale that overflows the gradient is reported, not applied.
    with pytest.raises(NonFiniteInnerLoss):
        inner.run(loss_fn, params, support, loss_scale=float("inf"))


def test_recomputed_inner_steps_replay_the_random_numbers():
    """A support forward with dropout: the recomputed step must draw the
    same mask, or the meta-gradient is the one of another function."""
    model, support, query, _ = _regression_problem(3)
    dropped = torch.nn.Sequential(model[0], torch.nn.Dropout(0.5), *model[1:])

    def loss_fn(fast, batch):
        out = functional_call(dropped, fast, (batch[0],))
        return torch.nn.functional.mse_loss(out, batch[1])

    grads = []
    for recompute in (False, True):
        inner = InnerLoop(
            inner_steps=3, inner_lr=0.4, recompute_inner_steps=recompute
        )
        params = _as_leaves(dict(dropped.named_parameters()))
        torch.manual_seed(7)
        fast = inner.run(loss_fn, params, support)
        objective = loss_fn(fast, query)
        torch.manual_seed(8)  # the backward must not depend on this state
        grads.append(torch.autograd.grad(objective, list(params.values())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # The two runs drew masks from the same seed, the inner steps differ.
    assert any(float(g.abs().max()) > 0 for g in grads[1])


def test_recomputed_inner_steps_refuse_a_rule_with_moments():
    from speechbrain_meta.update_rules import Adam

    model, support, _, loss_fn = _regression_problem()
    inner = InnerLoop(
        inner_steps=2, update_rule=Adam(lr=0.1), recompute_inner_steps=True
    )
    params = _as_leaves(dict(model.named_parameters()))
    with pytest.raises(ValueError, match="without state across steps"):
        inner.run(loss_fn, params, support)
    # First order keeps no graph: nothing to recompute, nothing refused.
    inner.run(loss_fn, params, support, first_order=True)


def test_recomputed_inner_steps_replay_mixed_precision():
    """Under ``torch.autocast`` (``--precision=bf16``) the recomputed step
    runs in bf16 too, as the step it stands for."""
    model, support, query, _ = _regression_problem(4)
    model = model.float()
    support = tuple(t.float() for t in support)
    query = tuple(t.float() for t in query)

    def loss_fn(fast, batch):
        out = functional_call(model, fast, (batch[0],))
        return torch.nn.functional.mse_loss(out.float(), batch[1])

    grads = []
    for recompute in (False, True):
        inner = InnerLoop(
            inner_steps=2, inner_lr=0.4, recompute_inner_steps=recompute
        )
        params = _as_leaves(dict(model.named_parameters()))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            objective = loss_fn(inner.run(loss_fn, params, support), query)
        grads.append(torch.autograd.grad(objective, list(params.values())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
