"""Twice-differentiable CTC.

PyTorch's native ``ctc_loss`` has no double backward (``derivative for
aten::_ctc_loss_backward is not implemented``), so second-order MAML through a
CTC model needs a CTC of its own. This module gives one, equal to native CTC
in float64 to rounding, with its first and second derivatives written out:

* **loss**: the log-space forward (alpha) recursion over the extended label
  states (blank, l1, blank, l2, ..., blank), vectorised over the batch and
  the states, a loop over time only. The loss is ``-log Z``, the
  log-partition function of a linear chain, so
* **gradient**: its gradient with respect to the emissions is minus the
  posterior occupancy of each state at each frame, ``d log Z / d emit``.
  Once the forward is done, the share ``W`` that each of the three moves
  into a state (stay, step, skip) has in its alpha is fixed, and the
  occupancies follow from a *linear* recursion back in time through those
  shares: three multiply-adds per frame, no exp or log, no graph;
* **Hessian-vector product**: the occupancy is itself a gradient, so its
  Jacobian (the Hessian of ``log Z``) is symmetric, and the
  vector-Jacobian product that a second-order meta-gradient asks of it is
  its directional derivative along the incoming vector: the tangents of
  the alphas (the linear recursion forwards) and then of the occupancies
  (the same backward recursion, with the shares' tangents as a source).

Both derivatives are ``torch.autograd.Function`` objects; a third
derivative raises an error (no meta-learner here needs one).
``benchmarks/ctc.py`` times forward+backward against PyTorch's native CTC
and the Hessian-vector product against our own forward+backward, and
checks that the losses and gradients agree.

``ctc_loss`` has the signature of ``speechbrain.nnet.losses.ctc_loss`` and is
a drop-in replacement in a recipe's yaml. It calls the native CTC unless the
inner loop has asked for a second-order graph (see
``differentiable_ctc``), so first-order training keeps the native speed.

Authors
 * speechbrain-meta developers 2026
"""

import contextlib
import contextvars

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.autograd import refuse_third_derivative

logger = get_logger(__name__)

_NEED_DOUBLE_BACKWARD = contextvars.ContextVar(
    "speechbrain_meta_ctc_double_backward", default=False
)
_NEG_INF = float("-inf")


@contextlib.contextmanager
def differentiable_ctc(enabled=True):
    """Within this context, ``ctc_loss`` uses the pure-PyTorch CTC.

    The inner loop enters it whenever it builds a graph that will be
    differentiated twice (second-order meta-gradients).

    Arguments
    ---------
    enabled : bool
        Whether the pure CTC is required inside the context.

    Yields
    ------
    None

    Example
    -------
    >>> with differentiable_ctc():
    ...     needs_double_backward()
    True
    >>> needs_double_backward()
    False
    """
    token = _NEED_DOUBLE_BACKWARD.set(bool(enabled))
    try:
        yield
    finally:
        _NEED_DOUBLE_BACKWARD.reset(token)


def needs_double_backward():
    """Whether the current context asked for a twice-differentiable CTC.

    Returns
    -------
    bool

    Example
    -------
    >>> needs_double_backward()
    False
    """
    return _NEED_DOUBLE_BACKWARD.get()


def _alpha_recursion(emit, skip_bias, start):
    """The forward recursion in log space, ``[T, B, L]`` in and out.

    Returns ``pre``, each state's log-sum over its three moves (stay from
    ``s``, step from ``s - 1``, skip from ``s - 2`` where ``skip_bias``
    allows it) of the previous frame's alphas; ``pre[0]`` is ``start``.
    The alphas are ``pre + emit``.
    """
    T, B, L = emit.shape
    pre = emit.new_empty((T, B, L))
    pre[0] = start
    # Two alternating alpha buffers with two states of minus infinity in
    # front, so that each move is a view made once.
    buffers = [emit.new_full((B, L + 2), _NEG_INF) for _ in range(2)]
    moves = [(b[:, 2:], b[:, 1:-1], b[:, :-2]) for b in buffers]
    torch.add(start, emit[0], out=moves[0][0])
    pre_frames, emit_frames = pre.unbind(0), emit.unbind(0)
    stay_or_step = emit.new_empty((B, L))
    skip = emit.new_empty((B, L))
    for t in range(1, T):
        stay, step, two_back = moves[(t - 1) & 1]
        torch.logaddexp(stay, step, out=stay_or_step)
        torch.add(two_back, skip_bias, out=skip)
        torch.logaddexp(stay_or_step, skip, out=pre_frames[t])
        torch.add(pre_frames[t], emit_frames[t], out=moves[t & 1][0])
    return pre


def _move_shares(alpha, pre, skip_bias):
    """``W[m, t - 1, b, s]``: the share of the move from ``s - m`` in a state.

    ``exp(pre[t, b, s])`` sums the three moves into ``s``. The shares of a
    reachable state sum to one; those of an unreachable state (``pre``
    minus infinity) are zero.
    """
    T, B, L = pre.shape
    padded = torch.nn.functional.pad(alpha[:-1], (2, 0), value=_NEG_INF)
    log_total = pre[1:].masked_fill(pre[1:] == _NEG_INF, 0.0)
    shares = pre.new_empty((3, T - 1, B, L))
    for m in range(3):
        torch.sub(padded[:, :, 2 - m : 2 - m + L], log_total, out=shares[m])
    shares[2] += skip_bias
    return shares.exp_()


def _shares_from(shares):
    """The shares indexed by the state moved from: ``[m, t - 1, b, s - m]``."""
    L = shares.shape[-1]
    out = torch.empty_like(shares)
    out[0] = shares[0]
    for m in (1, 2):
        out[m, ..., : L - m] = shares[m, ..., m:]
        out[m, ..., L - m :] = 0.0
    return out


def _linear_recursion(weights, source, backward):
    """The linear recursion through the move shares, forwards or backwards.

    Forwards (``weights`` = the shares ``W``, from ``x[0] = source[0]``):
    ``x[t, s] = sum_m W[m, t-1, s] x[t-1, s-m] + source[t, s]``.
    Backwards (``weights`` = ``_shares_from(W)``, from ``x[T-1] =
    source[T-1]``): ``x[t-1, s] = sum_m W[m, t-1, s+m] x[t, s+m] +
    source[t-1, s]``.
    """
    T, B, L = source.shape
    x = source.new_empty((T, B, L + 2))
    # Two zero states on the side the moves read beyond the lattice.
    own = slice(0, L) if backward else slice(2, L + 2)
    outside = slice(L, L + 2) if backward else slice(0, 2)
    first = T - 1 if backward else 0
    steps = range(T - 1, 0, -1) if backward else range(1, T)
    x[:, :, outside] = 0.0
    x[first, :, own] = source[first]
    out = x[:, :, own].unbind(0)
    read = [
        x[:, :, o : o + L].unbind(0)
        for o in ((0, 1, 2) if backward else (2, 1, 0))
    ]
    w = [weights[m].unbind(0) for m in range(3)]
    src = source.unbind(0)
    for t in steps:
        to, prev = (t - 1, t) if backward else (t, t - 1)
        torch.addcmul(src[to], w[0][t - 1], read[0][prev], out=out[to])
        out[to].addcmul_(w[1][t - 1], read[1][prev])
        out[to].addcmul_(w[2][t - 1], read[2][prev])
    return x[:, :, own]


def _at_ends(shape, ends, values):
    """Zeros of ``shape`` with ``values`` added at the ``ends`` indices."""
    return values.new_zeros(shape).index_put_(ends, values, accumulate=True)


class _CTCNegLogLikelihood(torch.autograd.Function):
    """Per-utterance CTC negative log-likelihood, ``[B]``.

    ``ends`` (frames, utterances, states; each ``[B, 2]``) name each
    utterance's two final states at its last frame, and ``end_bias`` (0 or
    minus infinity) says which of them exist.
    """

    @staticmethod
    def forward(
        ctx, log_probs, states, skip_bias, valid, start, end_bias, *ends
    ):
        index = states.unsqueeze(0).expand(log_probs.shape[0], -1, -1)
        emit = log_probs.gather(2, index).masked_fill_(~valid, _NEG_INF)
        pre = _alpha_recursion(emit, skip_bias, start)
        end_alpha = pre[ends] + emit[ends] + end_bias
        log_z = torch.logsumexp(end_alpha, dim=1)
        # The end states' occupancies, where the backward recursion starts
        # (none for an impossible alignment).
        end_share = torch.exp(end_alpha - log_z[:, None])
        end_share.masked_fill_(~torch.isfinite(log_z)[:, None], 0.0)
        ctx.save_for_backward(
            log_probs, emit, pre, states, skip_bias, valid, end_share, *ends
        )
        return -log_z

    @staticmethod
    def backward(ctx, grad_nll):
        grad = _CTCGradient.apply(grad_nll, *ctx.saved_tensors)
        return (grad,) + (None,) * (5 + 3)


class _CTCGradient(torch.autograd.Function):
    """``-grad_nll * occupancy`` as ``[T, B, C]``; its backward is the HVP."""

    @staticmethod
    def forward(
        ctx, grad_nll, log_probs, emit, pre, states, skip_bias, valid, *ends
    ):
        end_share, ends = ends[0], ends[1:]
        shares = _move_shares(pre + emit, pre, skip_bias)
        occupancy = _linear_recursion(
            _shares_from(shares),
            _at_ends(pre.shape, ends, end_share),
            backward=True,
        )
        index = states.unsqueeze(0).expand(pre.shape[0], -1, -1)
        grad = torch.zeros_like(log_probs).scatter_add_(2, index, occupancy)
        ctx.save_for_backward(
            grad_nll, log_probs, shares, occupancy, states, valid, end_share
        )
        ctx.ends = ends
        return grad.mul_(-grad_nll[None, :, None])

    @staticmethod
    def backward(ctx, vector):
        grad_nll, log_probs, shares, occupancy, states, valid, end_share = (
            ctx.saved_tensors
        )
        with torch.no_grad():
            grad_grad_nll, hvp = _hessian_vector_product(
                vector,
                grad_nll,
                shares,
                occupancy,
                states,
                valid,
                end_share,
                ctx.ends,
            )
        grad_grad_nll, hvp = refuse_third_derivative(
            "ctc_loss_pure", [grad_grad_nll, hvp], [vector, grad_nll, log_probs]
        )
        return (grad_grad_nll, hvp) + (None,) * (5 + 4)


def _hessian_vector_product(
    vector, grad_nll, shares, occupancy, states, valid, end_share, ends
):
    """The second derivatives of ``-grad_nll * log Z`` along ``vector``.

    Returns the derivative with respect to ``grad_nll`` (``[B]``) and the
    Hessian-vector product with respect to the log-probabilities
    (``[T, B, C]``).
    """
    T, B, L = occupancy.shape
    index = states.unsqueeze(0).expand(T, -1, -1)
    tangent_emit = vector.gather(2, index).masked_fill_(~valid, 0.0)
    grad_grad_nll = -(occupancy * tangent_emit).sum((0, 2))
    # Tangents along the vector: the alphas, log Z, the end occupancies,
    tangent_alpha = _linear_recursion(shares, tangent_emit, backward=False)
    tangent_end = tangent_alpha[ends]
    tangent_log_z = (end_share * tangent_end).sum(1, keepdim=True)
    source = _at_ends(
        occupancy.shape, ends, end_share * (tangent_end - tangent_log_z)
    )
    # and the shares, W' = W (alpha'[t - 1, s - m] - pre'[t, s]), each
    # times the occupancy that the move carries back to s - m.
    tangent_pre = (tangent_alpha - tangent_emit)[1:]
    padded = torch.nn.functional.pad(tangent_alpha[:-1], (2, 0))
    for m in range(3):
        carried = padded[:, :, 2 - m : 2 - m + L] - tangent_pre
        carried.mul_(shares[m]).mul_(occupancy[1:])
        source[:-1, :, : L - m] += carried[..., m:]
    # The shares by the state moved from are rebuilt, not kept from the
    # gradient's forward: one copy less in memory per inner step.
    tangent_occupancy = _linear_recursion(
        _shares_from(shares), source, backward=True
    )
    hvp = torch.zeros_like(vector).scatter_add_(2, index, tangent_occupancy)
    return grad_grad_nll, hvp.mul_(-grad_nll[None, :, None])


def ctc_loss_pure(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
):
    """CTC negative log-likelihood, differentiable twice.

    Same arguments and results as ``torch.nn.functional.ctc_loss`` for
    padded (2-D) targets, with a gradient and a second derivative (the
    Hessian-vector products of second-order meta-learning) written out in
    tensor operations (see the module docstring), on any device.

    Arguments
    ---------
    log_probs : torch.Tensor
        Log-probabilities, shape ``[time, batch, classes]``.
    targets : torch.Tensor
        Padded label indices without blanks, shape ``[batch, max_label_len]``.
    input_lengths : torch.Tensor
        Number of valid frames per utterance, shape ``[batch]``.
    target_lengths : torch.Tensor
        Number of labels per utterance, shape ``[batch]``.
    blank : int
        Index of the blank symbol.
    reduction : str
        ``"none"``, ``"sum"`` or ``"mean"`` (each loss divided by its target
        length, then averaged over the batch, as in PyTorch).
    zero_infinity : bool
        Replace the infinite loss of an impossible alignment by zero (its
        gradient is zero either way).

    Returns
    -------
    torch.Tensor
        The loss, reduced as requested.

    Example
    -------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> logits = torch.randn(12, 2, 5, requires_grad=True)
    >>> tgt = torch.tensor([[1, 2, 2], [3, 4, 0]])
    >>> il, tl = torch.tensor([12, 9]), torch.tensor([3, 2])
    >>> ours = ctc_loss_pure(logits.log_softmax(-1), tgt, il, tl)
    >>> ref = torch.nn.functional.ctc_loss(logits.log_softmax(-1), tgt, il, tl)
    >>> bool(torch.allclose(ours, ref, atol=1e-5))
    True
    >>> (g,) = torch.autograd.grad(ours, logits, create_graph=True)
    >>> (hvp,) = torch.autograd.grad((g * g.detach()).sum(), logits)
    >>> hvp.shape
    torch.Size([12, 2, 5])
    """
    if log_probs.dim() != 3:
        raise ValueError("log_probs must be [time, batch, classes]")
    if targets.dim() != 2:
        raise ValueError("targets must be padded, [batch, max_label_len]")
    B = log_probs.shape[1]
    device = log_probs.device
    # Half precision underflows in the recursion: compute in float32 at least.
    if log_probs.dtype in (torch.float16, torch.bfloat16):
        log_probs = log_probs.float()
    dtype = log_probs.dtype
    input_lengths = torch.as_tensor(input_lengths, device=device).long()
    target_lengths = torch.as_tensor(target_lengths, device=device).long()
    targets = targets.to(device).long()
    S = targets.shape[1]
    L = 2 * S + 1

    # Extended label sequence: blank, l1, blank, l2, ..., blank.
    states = torch.full((B, L), blank, dtype=torch.long, device=device)
    if S > 0:
        states[:, 1::2] = targets
    # The move s-2 -> s is allowed onto a label that differs from the label
    # two states back.
    can_skip = torch.zeros(B, L, dtype=torch.bool, device=device)
    if L > 2:
        can_skip[:, 2:] = (states[:, 2:] != blank) & (
            states[:, 2:] != states[:, :-2]
        )
    skip_bias = torch.zeros(B, L, dtype=dtype, device=device)
    skip_bias.masked_fill_(~can_skip, _NEG_INF)
    # States past an utterance's final blank emit nothing.
    valid = torch.arange(L, device=device)[None, :] < (
        2 * target_lengths[:, None] + 1
    )
    start = torch.full((B, L), _NEG_INF, dtype=dtype, device=device)
    start[:, 0] = 0.0
    if L > 1:
        start[:, 1] = torch.where(target_lengths > 0, 0.0, _NEG_INF)
    # Each utterance ends at its last frame, in its final blank or its
    # final label; an empty target has no final label, no frames no path.
    last_blank = 2 * target_lengths
    end_states = torch.stack([last_blank, (last_blank - 1).clamp(min=0)], 1)
    end_frames = (input_lengths - 1).clamp(min=0)[:, None].expand(-1, 2)
    batch = torch.arange(B, device=device)[:, None].expand(-1, 2)
    end_bias = torch.zeros(B, 2, dtype=dtype, device=device)
    end_bias[:, 1].masked_fill_(target_lengths == 0, _NEG_INF)
    end_bias.masked_fill_((input_lengths <= 0)[:, None], _NEG_INF)
    loss = _CTCNegLogLikelihood.apply(
        log_probs,
        states,
        skip_bias,
        valid,
        start,
        end_bias,
        end_frames,
        batch,
        end_states,
    )
    if zero_infinity:
        loss = torch.where(torch.isinf(loss), torch.zeros_like(loss), loss)

    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return (loss / target_lengths.clamp(min=1).to(loss.dtype)).mean()
    raise ValueError(f"Unknown reduction: {reduction}")


def ctc_loss(
    log_probs, targets, input_lens, target_lens, blank_index, reduction="mean"
):
    """CTC loss with the signature of ``speechbrain.nnet.losses.ctc_loss``.

    Uses PyTorch's native CTC, unless called inside ``differentiable_ctc()``
    (the inner loop of a second-order meta-learner), where it uses
    ``ctc_loss_pure`` so that the loss can be differentiated twice.
    Impossible alignments give zero loss (``zero_infinity=True``), as in
    SpeechBrain.

    Arguments
    ---------
    log_probs : torch.Tensor
        Predicted tensor, of shape [batch, time, chars].
    targets : torch.Tensor
        Target tensor, without any blanks, of shape [batch, target_len].
    input_lens : torch.Tensor
        Relative length of each utterance.
    target_lens : torch.Tensor
        Relative length of each target sequence.
    blank_index : int
        The location of the blank symbol among the character indexes.
    reduction : str
        'mean', 'sum', 'batch', 'batchmean' or 'none', as in SpeechBrain.

    Returns
    -------
    torch.Tensor
        The CTC loss.

    Example
    -------
    >>> lp = torch.randn(2, 10, 4).log_softmax(-1)
    >>> tgt = torch.tensor([[1, 2], [3, 0]])
    >>> rel_in, rel_tgt = torch.tensor([1.0, 0.8]), torch.tensor([1.0, 0.5])
    >>> native = ctc_loss(lp, tgt, rel_in, rel_tgt, 0)
    >>> with differentiable_ctc():
    ...     pure = ctc_loss(lp, tgt, rel_in, rel_tgt, 0)
    >>> bool(torch.allclose(native, pure, atol=1e-5))
    True
    """
    abs_in = (input_lens * log_probs.shape[1]).round().int()
    abs_tgt = (target_lens * targets.shape[1]).round().int()
    log_probs_tbc = log_probs.transpose(0, 1)
    if reduction == "batchmean":
        torch_reduction = "sum"
    elif reduction == "batch":
        torch_reduction = "none"
    else:
        torch_reduction = reduction
    if needs_double_backward() and torch.is_grad_enabled():
        loss = ctc_loss_pure(
            log_probs_tbc,
            targets,
            abs_in,
            abs_tgt,
            blank=blank_index,
            reduction=torch_reduction,
            zero_infinity=True,
        )
    else:
        if log_probs_tbc.dtype in (torch.float16, torch.bfloat16):
            log_probs_tbc = log_probs_tbc.float()
        loss = torch.nn.functional.ctc_loss(
            log_probs_tbc,
            targets,
            abs_in,
            abs_tgt,
            blank_index,
            zero_infinity=True,
            reduction=torch_reduction,
        )
    if reduction == "batchmean":
        return loss / targets.shape[0]
    if reduction == "batch":
        n = loss.size(0)
        return loss.view(n, -1).sum(1) / abs_tgt.view(n, -1).sum(1)
    return loss
