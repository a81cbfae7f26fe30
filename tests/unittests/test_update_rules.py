"""Learned update rules: gradients against finite differences, closed forms."""

import math

import pytest
import torch
from test_meta_gradients import _as_leaves, _regression_problem

from speechbrain_meta.inner import InnerLoop
from speechbrain_meta.update_rules import (
    SGD,
    LayerStepLR,
    LearnedUpdate,
    MetaSGD,
    descend,
    preprocess,
)


def _rule_meta_grad_check(rule, first_order, steps=2, eps=1e-6):
    """d L_Q(adapt(theta)) / d rule params: autograd vs central differences."""
    model, support, query, loss_fn = _regression_problem(seed=1)
    params = _as_leaves(dict(model.named_parameters()))
    rule = rule.double()
    rule.setup(params) if hasattr(rule, "setup") else None
    inner = InnerLoop(steps, update_rule=rule, first_order=first_order)

    def objective():
        p = _as_leaves(params)
        with torch.enable_grad():
            return loss_fn(inner.run(loss_fn, p, support), query)

    rule_params = [p for p in rule.parameters()]
    analytic = torch.autograd.grad(objective(), rule_params)
    for p, g in zip(rule_params, analytic):
        flat = p.data.view(-1)
        for i in range(flat.numel()):  # every element of every tensor
            old = flat[i].item()
            flat[i] = old + eps
            plus = objective().item()
            flat[i] = old - eps
            minus = objective().item()
            flat[i] = old
            numeric = (plus - minus) / (2 * eps)
            assert g.view(-1)[i].item() == pytest.approx(
                numeric, rel=1e-5, abs=1e-9
            )
    return analytic


@pytest.mark.parametrize("first_order", [False, True])
def test_metasgd_rate_gradient_matches_finite_differences(first_order):
    # First order treats the support gradients as constants: that is the
    # exact derivative for one inner step (the gradient at theta does not
    # depend on the rates), so the check is exact there.
    steps = 1 if first_order else 3
    grads = _rule_meta_grad_check(MetaSGD(init_lr=0.3), first_order, steps)
    assert any(g.abs().sum() > 1e-6 for g in grads)


@pytest.mark.parametrize("parametrization", ["log", "softplus"])
def test_layer_step_lr_gradient_matches_finite_differences(parametrization):
    rule = LayerStepLR(0.3, inner_steps=2, parametrization=parametrization)
    grads = _rule_meta_grad_check(rule, first_order=False)
    # Each step's rate gets its own, different gradient.
    assert not torch.allclose(grads[0][0], grads[0][1])


def test_learned_update_gradient_matches_finite_differences():
    torch.manual_seed(0)
    rule = LearnedUpdate(
        base_lr=0.3, hidden_size=4, inner_steps=2, max_update=0.05
    )
    # Away from the zero start, so every weight of the net gets a gradient.
    torch.nn.init.normal_(rule.net[2].weight, std=0.5)
    _rule_meta_grad_check(rule, first_order=False)


def _sgd_trajectory(lr, steps=3):
    lr = float(lr.detach()) if torch.is_tensor(lr) else float(lr)
    model, support, query, loss_fn = _regression_problem(seed=2)
    params = _as_leaves(dict(model.named_parameters()))
    inner = InnerLoop(steps, update_rule=SGD(lr))
    return inner.run(loss_fn, params, support, keep_steps=True), (
        model,
        support,
        loss_fn,
        params,
    )


def test_descend_is_the_per_tensor_update_bit_for_bit():
    """The foreach update equals ``fast - rate * grad`` tensor by tensor,
    value and gradients (to the rates, weights and gradients), exactly."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2, 4, 3), ()]

    def leaves():
        return [
            torch.randn(s, generator=gen).requires_grad_(True) for s in shapes
        ]

    fast, grads = leaves(), leaves()
    rates = [r.abs() for r in leaves()[:2]] + [
        torch.rand((), generator=gen).requires_grad_(True) for _ in range(2)
    ]
    names = ["a", "b", "c", "d"]
    for rate in (0.37, rates):
        per_rate = rate if isinstance(rate, list) else [rate] * 4
        want = [w - r * g for w, r, g in zip(fast, per_rate, grads)]
        got = list(
            descend(
                dict(zip(names, fast)), dict(zip(names, grads)), rate
            ).values()
        )
        inputs = fast + grads + (rates if isinstance(rate, list) else [])
        weights = [torch.randn(s, generator=gen) for s in shapes]
        d_want = torch.autograd.grad(
            sum((x * c).sum() for x, c in zip(want, weights)), inputs
        )
        d_got = torch.autograd.grad(
            sum((x * c).sum() for x, c in zip(got, weights)), inputs
        )
        for a, b in zip(want + list(d_want), got + list(d_got)):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    "make, raw_of",
    [
        (lambda: MetaSGD(0.2), lambda raw, step: raw),
        (
            lambda: MetaSGD(
                0.2, min_lr=0.15, max_lr=0.3, parametrization="softplus"
            ),
            lambda raw, step: raw,
        ),
        (
            lambda: LayerStepLR(0.2, inner_steps=2),
            lambda raw, step: raw[min(step, 1)],
        ),
        (
            lambda: LayerStepLR(0.2, inner_steps=3, min_lr=0.1, max_lr=0.25),
            lambda raw, step: raw[min(step, 2)],
        ),
    ],
    ids=["metasgd", "metasgd-softplus-clamped", "lsl", "lsl-clamped"],
)
def test_learned_rates_update_is_the_per_tensor_formula(make, raw_of):
    """The foreach rates and update equal ``w - clamp(f(raw)) * g`` written
    tensor by tensor, value and gradients (rates, weights), bit for bit."""
    gen = torch.Generator().manual_seed(3)
    shapes = {"a": (4, 3), "b": (3,), "c": ()}
    rule = make()
    rule.setup({n: torch.zeros(s) for n, s in shapes.items()})
    with torch.no_grad():  # spread the rates over the clamping range
        for raw in rule.parameters():
            raw.add_(0.5 * torch.randn(raw.shape, generator=gen))
    fast = {
        n: torch.randn(s, generator=gen).requires_grad_(True)
        for n, s in shapes.items()
    }
    grads = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    inputs = list(fast.values()) + list(rule.parameters())
    for step in range(3):
        want = {}
        for n, w in fast.items():
            raw = raw_of(rule.raw_lr[n], step)
            if rule.parametrization == "log":
                lr = torch.exp(raw)
            else:
                lr = torch.nn.functional.softplus(raw)
            lr = torch.clamp(lr, min=rule.min_lr, max=rule.max_lr)
            want[n] = w - lr * grads[n]
        got = rule(fast, grads, step)
        for n in shapes:
            assert torch.equal(want[n], got[n])
        d_want = torch.autograd.grad(
            sum((v * v).sum() for v in want.values()), inputs
        )
        d_got = torch.autograd.grad(
            sum((v * v).sum() for v in got.values()), inputs
        )
        for a, b in zip(d_want, d_got):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    "rule",
    [
        MetaSGD(init_lr=0.2),
        MetaSGD(init_lr=0.2, parametrization="softplus"),
        LayerStepLR(init_lr=0.2, inner_steps=3),
        LearnedUpdate(base_lr=0.2, inner_steps=3),
    ],
    ids=["metasgd", "metasgd-softplus", "layer_step_lr", "learned_update"],
)
def test_rules_start_as_plain_sgd(rule):
    rule = rule.double()
    # The rule's own initial rate (0.2 up to its float32 storage).
    lr = rule.base_lr() if isinstance(rule, LearnedUpdate) else 0.2
    expected, (model, support, loss_fn, params) = _sgd_trajectory(lr)
    if hasattr(rule, "setup"):
        rule.setup(params)
    inner = InnerLoop(3, update_rule=rule)
    got = inner.run(loss_fn, params, support, keep_steps=True)
    for a, b in zip(expected, got):
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-12, atol=1e-12)


def test_layer_step_lr_applies_its_step_rate_and_reuses_the_last():
    rule = LayerStepLR(init_lr=0.1, inner_steps=2)
    rule.setup({"w": torch.zeros(2)})
    with torch.no_grad():
        rule.raw_lr["w"].copy_(torch.log(torch.tensor([0.5, 0.25])))
    fast = {"w": torch.tensor([1.0, 1.0])}
    grad = {"w": torch.tensor([1.0, 2.0])}
    for step, lr in ((0, 0.5), (1, 0.25), (4, 0.25)):
        out = rule(fast, grad, step)["w"]
        torch.testing.assert_close(out, fast["w"] - lr * grad["w"])


def test_metasgd_clamps_and_needs_setup():
    rule = MetaSGD(init_lr=0.5, max_lr=0.1)
    with pytest.raises(KeyError, match="setup"):
        rule.learning_rates("w")
    rule.setup({"w": torch.zeros(3)})
    assert torch.equal(rule.learning_rates("w"), torch.full((3,), 0.1))


def test_learned_update_is_bounded():
    rule = LearnedUpdate(base_lr=1e-6, max_update=0.01)
    torch.nn.init.normal_(rule.net[2].weight, std=100.0)
    fast = {"w": torch.zeros(50)}
    grads = {"w": torch.randn(50) * 1e3}
    step = rule(fast, grads, 0)["w"] - fast["w"] + 1e-6 * grads["w"]
    assert float(step.detach().abs().max()) <= 0.01 + 1e-6


def test_preprocess_matches_the_paper():
    x = torch.tensor([2.0, -3.0, 1e-6, 0.0])
    out = preprocess(x, p=10.0)
    assert out[0].tolist() == pytest.approx([math.log(2) / 10, 1.0])
    assert out[1].tolist() == pytest.approx([math.log(3) / 10, -1.0])
    assert out[2].tolist() == pytest.approx([-1.0, math.exp(10) * 1e-6])
    assert out[3].tolist() == [-1.0, 0.0]


def test_adam_rule_follows_torch_adam_and_restarts_per_adaptation():
    from speechbrain_meta.update_rules import Adam

    model, support, query, loss_fn = _regression_problem(seed=3)
    params = _as_leaves(dict(model.named_parameters()))
    inner = InnerLoop(4, update_rule=Adam(lr=0.05))
    got = inner.run(loss_fn, params, support, first_order=True)
    # The same steps with torch.optim.Adam on a copy.
    ref = _as_leaves(params)
    opt = torch.optim.Adam(list(ref.values()), lr=0.05)
    for _ in range(4):
        opt.zero_grad()
        loss_fn(ref, support).backward()
        opt.step()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-9, atol=1e-12)
    # A second adaptation starts from fresh moments: the same result.
    again = inner.run(loss_fn, params, support, first_order=True)
    for name in got:
        assert torch.equal(again[name], got[name])


@pytest.mark.parametrize(
    "make",
    [
        lambda: MetaSGD(init_lr=0.1),
        lambda: LayerStepLR(init_lr=0.1, inner_steps=2),
    ],
)
def test_learned_rates_load_before_setup(make):
    trained = make()
    trained.setup({"enc.w": torch.zeros(2, 3), "enc.b": torch.zeros(2)})
    with torch.no_grad():
        for raw in trained.raw_lr.values():
            raw.add_(torch.randn(raw.shape))
    fresh = make()
    fresh.load_state_dict(trained.state_dict())
    for name in ("enc.w", "enc.b"):
        assert torch.equal(
            fresh.learning_rates(name, 1), trained.learning_rates(name, 1)
        )
    # setup afterwards keeps the loaded rates.
    fresh.setup({"enc.w": torch.zeros(2, 3), "enc.b": torch.zeros(2)})
    assert torch.equal(
        fresh.learning_rates("enc.w"), trained.learning_rates("enc.w")
    )
