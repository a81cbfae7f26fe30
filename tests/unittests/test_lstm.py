"""The twice-differentiable LSTM against torch.nn.LSTM and finite differences.

``SBM_TEST_DEVICE=cuda`` runs these tests on a GPU.
"""

import os

import pytest
import torch

from speechbrain_meta.lstm import lstm_forward, twice_differentiable_lstms

DEVICE = os.environ.get("SBM_TEST_DEVICE", "cpu")
F64 = {"dtype": torch.float64, "device": DEVICE}


def _lstm(layers=2, bidirectional=True, batch_first=False, bias=True):
    torch.manual_seed(0)
    return torch.nn.LSTM(
        3,
        4,
        num_layers=layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        bias=bias,
    ).to(**F64)


@pytest.mark.parametrize(
    "layers,bidirectional,batch_first,bias",
    [(1, False, False, True), (2, True, False, True), (2, True, True, False)],
)
def test_forward_matches_native(layers, bidirectional, batch_first, bias):
    lstm = _lstm(layers, bidirectional, batch_first, bias)
    x = torch.randn(2, 6, 3, **F64)
    if not batch_first:
        x = x.transpose(0, 1)
    d = 2 if bidirectional else 1
    hx = tuple(torch.randn(layers * d, 2, 4, **F64) for _ in "hc")
    for state in (None, hx):
        ours, (h, c) = lstm_forward(lstm, x, state)
        ref, (h_ref, c_ref) = lstm(x, state)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c, c_ref, rtol=1e-12, atol=1e-12)
    # Unbatched input, as torch.nn.LSTM takes it.
    ours, _ = lstm_forward(lstm, x[0] if batch_first else x[:, 0])
    ref, _ = lstm(x[0] if batch_first else x[:, 0])
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def _functional(lstm):
    names = [n for n, _ in lstm.named_parameters()]

    def run(x, h0, c0, *weights):
        out, (h, c) = torch.func.functional_call(
            lstm,
            dict(zip(names, weights)),
            (x, (h0, c0)),
        )
        # Every output, weighted, so every output's gradient is exercised.
        return out.sin().sum() + (h * c).sum() + c.sum()

    return run, [p.detach().clone() for p in lstm.parameters()]


def test_first_and_second_derivatives_match_finite_differences():
    lstm = _lstm()
    run, weights = _functional(lstm)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 3, dtype=torch.float64, generator=gen).to(DEVICE)
    h0, c0 = (torch.randn(4, 2, 4, **F64) for _ in "hc")
    inputs = [t.requires_grad_() for t in (x, h0, c0, *weights)]
    with twice_differentiable_lstms(lstm):
        assert torch.autograd.gradcheck(run, inputs)
        assert torch.autograd.gradgradcheck(run, inputs)


def _has_node(fn, prefix, seen=None):
    """Whether the graph below ``fn`` holds a node named ``prefix...``."""
    seen = set() if seen is None else seen
    if fn is None or fn in seen:
        return False
    seen.add(fn)
    if type(fn).__name__.startswith(prefix):
        return True
    return any(_has_node(f, prefix, seen) for f, _ in fn.next_functions)


def _hvps_against_native(lstm, loss_of, gen):
    """A MAML inner step's quantity, through the LSTM's native forward and
    through ``lstm_forward``: the gradient with a graph, then the gradient
    of its inner product with a random vector. ``loss_of(run)`` is the
    loss, ``run(*inputs)`` the LSTM at the weights; compared at 1e-10.
    Returns our gradients (their graphs are checked by the caller).
    """
    names = [n for n, _ in lstm.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in lstm.parameters()]
    vector = [
        torch.randn(w.shape, dtype=w.dtype, generator=gen).to(DEVICE)
        for w in weights
    ]

    def hvp():
        loss = loss_of(
            lambda *inputs: torch.func.functional_call(
                lstm, dict(zip(names, weights)), inputs
            )
        )
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vector))
        return torch.autograd.grad(dot, weights), grads

    native, native_grads = hvp()
    with twice_differentiable_lstms(lstm):
        ours, our_grads = hvp()
    assert all(_has_node(g.grad_fn, "_LSTMLayerGradient") for g in our_grads)
    for a, b in zip(our_grads, native_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(ours, native):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert max(float(h.abs().max()) for h in ours) > 1e-2
    return our_grads


def test_hessian_vector_products_equal_autograd_through_native():
    # Batch first, 2 layers, a padded batch.
    lstm = _lstm(batch_first=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 7, 3, dtype=torch.float64, generator=gen).to(DEVICE)
    our_grads = _hvps_against_native(
        lstm, lambda run: (run(x)[0].tanh() ** 2).sum(), gen
    )
    assert not any(_has_node(g.grad_fn, "MkldnnRnn") for g in our_grads)


def test_a_third_derivative_is_refused():
    lstm = _lstm(layers=1, bidirectional=False)
    x = torch.randn(4, 2, 3, **F64)
    w = lstm.weight_hh_l0
    with twice_differentiable_lstms(lstm):
        out, _ = lstm(x)
    (g,) = torch.autograd.grad(out.sum(), w, create_graph=True)
    (h,) = torch.autograd.grad((g * g).sum(), w, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable twice"):
        torch.autograd.grad(h.sum(), w)


def _packed(x, lengths, batch_first=False):
    return torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=batch_first, enforce_sorted=False
    )


def _unpacked(packed, batch_first=False):
    return torch.nn.utils.rnn.pad_packed_sequence(
        packed, batch_first=batch_first
    )[0]


@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_give_the_packed_results(batch_first):
    # Unsorted lengths, one utterance as long as the batch, hx given: the
    # outputs, the final states (at each utterance's end, in batch order)
    # and, through a packed input, the same PackedSequence.
    lstm = _lstm(batch_first=batch_first)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(7, 3, 3, dtype=torch.float64, generator=gen).to(DEVICE)
    lengths = torch.tensor([4, 7, 2])
    hx = tuple(torch.randn(4, 3, 4, **F64) for _ in "hc")
    if batch_first:
        x = x.transpose(0, 1)
    for state in (None, hx):
        ref, (h_ref, c_ref) = lstm(_packed(x, lengths, batch_first), state)
        ref = _unpacked(ref, batch_first)
        ours, (h, c) = lstm_forward(lstm, x, state, lengths)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c, c_ref, rtol=1e-12, atol=1e-12)
        with twice_differentiable_lstms(lstm):
            out, (h, c) = lstm(_packed(x, lengths, batch_first), state)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        out = _unpacked(out, batch_first)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c, c_ref, rtol=1e-12, atol=1e-12)
    # What padding does without lengths: the reverse direction differs.
    padded, _ = lstm_forward(lstm, x)
    assert not torch.allclose(padded, ref)


def test_derivatives_with_lengths_match_finite_differences():
    lstm = _lstm()
    names = [n for n, _ in lstm.named_parameters()]
    weights = [p.detach().clone() for p in lstm.parameters()]
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, 3, dtype=torch.float64, generator=gen).to(DEVICE)
    h0, c0 = (torch.randn(4, 3, 4, **F64) for _ in "hc")
    lengths = torch.tensor([3, 5, 1])

    def packed_run(x, h0, c0, *weights):
        out, (h, c) = torch.func.functional_call(
            lstm, dict(zip(names, weights)), (_packed(x, lengths), (h0, c0))
        )
        return _unpacked(out).sin().sum() + (h * c).sum() + c.sum()

    inputs = [t.requires_grad_() for t in (x, h0, c0, *weights)]
    with twice_differentiable_lstms(lstm):
        assert torch.autograd.gradcheck(packed_run, inputs)
        assert torch.autograd.gradgradcheck(packed_run, inputs)


def test_hessian_vector_products_with_lengths_equal_native_packed():
    lstm = _lstm(batch_first=True)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 7, 3, dtype=torch.float64, generator=gen).to(DEVICE)
    lengths = torch.tensor([5, 7, 3])

    def loss_of(run):
        out, (h, c) = run(_packed(x, lengths, True))
        return (_unpacked(out, True).tanh() ** 2).sum() + (h * c).sum()

    _hvps_against_native(lstm, loss_of, gen)


def test_projections_keep_the_native_forward():
    x = torch.randn(5, 2, 3, **F64)
    projected = torch.nn.LSTM(3, 4, proj_size=2).to(**F64)
    with twice_differentiable_lstms(torch.nn.ModuleList([projected])):
        assert "forward" not in vars(projected)
        with pytest.raises(ValueError, match="proj_size"):
            lstm_forward(projected, x)


def test_dropout_between_layers_in_training_only():
    lstm = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.5).to(**F64)
    x = torch.randn(6, 2, 3, **F64)
    lstm.eval()
    torch.testing.assert_close(lstm_forward(lstm, x)[0], lstm(x)[0])
    lstm.train()
    torch.manual_seed(0)
    first = lstm_forward(lstm, x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(first, lstm_forward(lstm, x)[0])
