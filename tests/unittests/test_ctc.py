"""The pure CTC against torch's native CTC.

``SBM_TEST_DEVICE=cuda`` runs these tests on a GPU.
"""

import os

import pytest
import torch

from speechbrain_meta.losses import (
    ctc_loss,
    ctc_loss_pure,
    differentiable_ctc,
)

DEVICE = os.environ.get("SBM_TEST_DEVICE", "cpu")


def _case(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    T, B, C, S = 25, 5, 6, 5
    logits = torch.randn(T, B, C, dtype=dtype, generator=gen)
    targets = torch.randint(1, C, (B, S), generator=gen)
    targets[0, :4] = torch.tensor([2, 2, 3, 3])  # repeated labels
    targets[1, :3] = torch.tensor([4, 4, 4])
    input_lengths = torch.tensor([25, 20, 3, 18, 25])  # item 2 impossible
    target_lengths = torch.tensor([5, 3, 4, 0, 2])  # item 3 empty target
    return tuple(
        t.to(DEVICE) for t in (logits, targets, input_lengths, target_lengths)
    )


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("blank", [0, 5])
def test_values_and_gradients_match_native(reduction, blank):
    logits, targets, il, tl = _case()
    targets = torch.where(targets == blank, (blank + 1) % 6, targets)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = ctc_loss_pure(
        x1.log_softmax(-1), targets, il, tl, blank, reduction, True
    )
    ref = torch.nn.functional.ctc_loss(
        x2.log_softmax(-1), targets, il, tl, blank, reduction, True
    )
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    (g1,) = torch.autograd.grad(ours.sum(), x1)
    (g2,) = torch.autograd.grad(ref.sum(), x2)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-9)
    # The impossible item has zero loss and zero gradient.
    assert torch.all(g1[:, 2] == 0)


def test_infinite_without_zero_infinity():
    logits, targets, il, tl = _case()
    lp = logits.log_softmax(-1)
    ours = ctc_loss_pure(lp, targets, il, tl, reduction="none")
    ref = torch.nn.functional.ctc_loss(lp, targets, il, tl, reduction="none")
    assert torch.isinf(ours[2]) and torch.isinf(ref[2])
    torch.testing.assert_close(ours[[0, 1, 3, 4]], ref[[0, 1, 3, 4]])


def test_float32_and_padding_beyond_lengths_ignored():
    logits, targets, il, tl = _case(torch.float32)
    lp = logits.log_softmax(-1)
    base = ctc_loss_pure(lp, targets, il, tl, reduction="none")
    # Changing frames beyond each input length must not change anything.
    lp2 = lp.clone()
    lp2[20:, 1] = lp2[20:, 1].flip(-1)
    again = ctc_loss_pure(lp2, targets, il, tl, reduction="none")
    assert base[1] == again[1]
    ref = torch.nn.functional.ctc_loss(lp, targets, il, tl, reduction="none")
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(base[keep], ref[keep], rtol=1e-5, atol=1e-4)


def test_second_derivatives_match_finite_differences():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 2, 4, dtype=torch.float64, generator=gen).to(DEVICE)
    targets = torch.tensor([[1, 2, 2], [3, 1, 0]], device=DEVICE)
    il, tl = (torch.tensor(v, device=DEVICE) for v in ([7, 6], [3, 2]))

    def f(x):
        return ctc_loss_pure(x.log_softmax(-1), targets, il, tl)

    assert torch.autograd.gradgradcheck(f, (x.requires_grad_(),))
    # The Hessian-vector product is finite.
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    v = torch.randn_like(x)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    assert torch.isfinite(hv).all()
    eps = 1e-5
    (g_plus,) = torch.autograd.grad(f(x + eps * v), x)
    (g_minus,) = torch.autograd.grad(f(x - eps * v), x)
    torch.testing.assert_close(
        hv, (g_plus - g_minus) / (2 * eps), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("blank", [0, 5])
def test_gradgradcheck_with_every_lattice_case(blank):
    # Repeated labels (no skip), an empty target, an impossible alignment,
    # padding frames, a blank that is not 0; on the log-probabilities
    # directly (all second derivatives, the incoming gradient's included).
    logits, targets, il, tl = _case()
    targets = torch.where(targets == blank, (blank + 1) % 6, targets)
    weights = torch.tensor(
        [0.5, -1.0, 2.0, 1.5, 0.25], dtype=torch.float64, device=DEVICE
    )

    def f(lp):
        loss = ctc_loss_pure(lp, targets, il, tl, blank, "none", True)
        return (weights * loss).sum()

    lp = logits.log_softmax(-1).requires_grad_()
    assert torch.autograd.gradcheck(f, (lp,))
    assert torch.autograd.gradgradcheck(f, (lp,))


def _native_grad(x, targets, il, tl, blank=0):
    x = x.detach().requires_grad_()
    loss = torch.nn.functional.ctc_loss(
        x.log_softmax(-1), targets, il, tl, blank, "sum", True
    )
    return torch.autograd.grad(loss, x)[0]


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_hessian_vector_product_matches_native_gradient_differences(scale):
    # An independent reference: central differences of native CTC's
    # gradient along the vector; ``scale`` makes the outputs confident.
    logits, targets, il, tl = _case()
    logits = scale * logits
    x = logits.clone().requires_grad_()
    loss = ctc_loss_pure(x.log_softmax(-1), targets, il, tl, 0, "sum", True)
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    torch.testing.assert_close(
        g, _native_grad(logits, targets, il, tl), rtol=1e-7, atol=1e-9
    )
    v = torch.randn(
        logits.shape,
        dtype=logits.dtype,
        generator=torch.Generator().manual_seed(3),
    ).to(DEVICE)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    eps = 1e-6
    fd = (
        _native_grad(logits + eps * v, targets, il, tl)
        - _native_grad(logits - eps * v, targets, il, tl)
    ) / (2 * eps)
    assert float(fd.abs().max()) > 1e-2  # the check is not vacuous
    torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-6)
    assert torch.all(hv[:, 2] == 0)  # the impossible item


def test_a_third_derivative_is_refused():
    logits, targets, il, tl = _case()
    x = logits.clone().requires_grad_()
    loss = ctc_loss_pure(x.log_softmax(-1), targets, il, tl, 0, "sum", True)
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (hv,) = torch.autograd.grad((g * g).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable twice"):
        torch.autograd.grad(hv.sum(), x)


def test_peaked_outputs_match_native():
    # A confident model: neighbouring states' log-alphas differ by hundreds
    # of nats (exp underflows; the sentinels must stay harmless).
    logits, targets, il, tl = _case()
    x1 = (60 * logits).requires_grad_()
    x2 = (60 * logits).requires_grad_()
    ours = ctc_loss_pure(x1.log_softmax(-1), targets, il, tl, 0, "none", True)
    ref = torch.nn.functional.ctc_loss(
        x2.log_softmax(-1), targets, il, tl, 0, "none", True
    )
    assert float(ref.detach().max()) > 500
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-9)
    (g1,) = torch.autograd.grad(ours.sum(), x1, create_graph=True)
    (g2,) = torch.autograd.grad(ref.sum(), x2)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-9)
    (hv,) = torch.autograd.grad((g1 * logits).sum(), x1)
    assert torch.isfinite(hv).all()


def test_native_ctc_has_no_double_backward_but_wrapper_does():
    logits, targets, il, tl = _case(torch.float32)
    blp = logits.transpose(0, 1).log_softmax(-1)  # [B, T, C]
    rel_in = il.float() / blp.shape[1]
    rel_tgt = tl.float() / targets.shape[1]
    w = torch.ones(1, device=DEVICE, requires_grad=True)

    def first_grad():
        loss = ctc_loss(blp * w, targets, rel_in, rel_tgt, 0)
        return torch.autograd.grad(loss, w, create_graph=True)[0]

    with pytest.raises(
        RuntimeError, match="derivative for aten::_ctc_loss_backward"
    ):
        torch.autograd.grad(first_grad().sum(), w)
    with differentiable_ctc():
        g = first_grad()
    (h,) = torch.autograd.grad(g.sum(), w)
    assert torch.isfinite(h).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "batch", "batchmean"])
def test_wrapper_matches_speechbrain(reduction):
    import speechbrain as sb

    logits, targets, il, tl = _case(torch.float32)
    blp = logits.transpose(0, 1).log_softmax(-1)
    rel_in = il.float() / blp.shape[1]
    rel_tgt = tl.float() / targets.shape[1]
    ref = sb.nnet.losses.ctc_loss(blp, targets, rel_in, rel_tgt, 0, reduction)
    with differentiable_ctc():
        ours = ctc_loss(blp, targets, rel_in, rel_tgt, 0, reduction)
    keep = torch.isfinite(ref)
    torch.testing.assert_close(ours[keep], ref[keep], rtol=1e-5, atol=1e-4)
