"""Twice-differentiable CTC.

PyTorch's native ``ctc_loss`` has no double backward (``derivative for
aten::_ctc_loss_backward is not implemented``), so second-order MAML through a
CTC model needs a CTC written in plain differentiable PyTorch operations. This
module gives one: the log-space forward (alpha) recursion, vectorised over the
batch and the extended label states, with a Python loop over time only.

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

logger = get_logger(__name__)

_NEED_DOUBLE_BACKWARD = contextvars.ContextVar(
    "speechbrain_meta_ctc_double_backward", default=False
)
# Log-emission of the extended states past an utterance's last blank:
# finite (a sentinel would overflow as it adds up along the states) and far
# below any real path.
_INVALID_STATE = -1e5


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


def ctc_loss_pure(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
):
    """CTC negative log-likelihood in differentiable PyTorch operations.

    Same arguments and results as ``torch.nn.functional.ctc_loss`` for
    padded (2-D) targets, and differentiable any number of times.

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
        Replace the infinite loss of an impossible alignment (and its
        gradient) by zero.

    Returns
    -------
    torch.Tensor
        The loss, reduced as requested.

    Example
    -------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> lp = torch.randn(12, 2, 5).log_softmax(-1)
    >>> tgt = torch.tensor([[1, 2, 2], [3, 4, 0]])
    >>> il, tl = torch.tensor([12, 9]), torch.tensor([3, 2])
    >>> ours = ctc_loss_pure(lp, tgt, il, tl)
    >>> ref = torch.nn.functional.ctc_loss(lp, tgt, il, tl)
    >>> bool(torch.allclose(ours, ref, atol=1e-5))
    True
    """
    if log_probs.dim() != 3:
        raise ValueError("log_probs must be [time, batch, classes]")
    if targets.dim() != 2:
        raise ValueError("targets must be padded, [batch, max_label_len]")
    T, B, _ = log_probs.shape
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
    # A finite "minus infinity" keeps every gradient finite (no inf - inf).
    neg = torch.finfo(dtype).min / 8

    # Extended label sequence: blank, l1, blank, l2, ..., blank.
    ext = torch.full((B, L), blank, dtype=torch.long, device=device)
    if S > 0:
        ext[:, 1::2] = targets
    # Transition s-2 -> s is allowed onto a label that differs from the
    # label two states back.
    can_skip = torch.zeros(B, L, dtype=torch.bool, device=device)
    if L > 2:
        can_skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    state_valid = torch.arange(L, device=device)[None, :] < (
        2 * target_lengths[:, None] + 1
    )

    # Emissions of the extended states at every frame, [T, B, L]. States
    # past an utterance's last blank get a finite penalty instead: the
    # recursion only moves forward through the states, so they never reach
    # a valid one, and no per-frame mask is needed.
    emit = log_probs.gather(2, ext.unsqueeze(0).expand(T, B, L))
    emit = emit.masked_fill(~state_valid, _INVALID_STATE)
    # One tensor per frame: indexing ``emit[t]`` in the loop would make the
    # backward zero-fill and accumulate a whole [T, B, L] gradient per frame
    # (quadratic in T); ``unbind`` makes one node that stacks them once.
    emit = emit.unbind(0)
    # Transitions s -> s (stay), s-1 -> s (step) and s-2 -> s (skip) read
    # one padded copy of the previous frame; a forbidden skip adds ``neg``.
    pad = torch.full((B, 2), neg, dtype=dtype, device=device)
    no_skip = torch.zeros(B, L, dtype=dtype, device=device)
    no_skip.masked_fill_(~can_skip, neg)

    start = torch.full((B, L), neg, dtype=dtype, device=device)
    start[:, 0] = 0.0
    if L > 1:
        start[:, 1] = torch.where(
            target_lengths > 0, torch.zeros_like(start[:, 1]), start[:, 1]
        )
    alpha = start + emit[0]
    alphas = [alpha]
    for t in range(1, T):
        padded = torch.cat([pad, alpha], dim=1)
        moves = [alpha, padded[:, 1:-1]]
        if L > 2:
            moves.append(padded[:, :-2] + no_skip)
        alpha = torch.logsumexp(torch.stack(moves), dim=0) + emit[t]
        alphas.append(alpha)
    # Each utterance ends at its own last frame.
    last_frame = (input_lengths - 1).clamp(min=0)
    alpha = torch.stack(alphas)[last_frame, torch.arange(B, device=device)]

    last = 2 * target_lengths  # index of the final blank
    end_blank = alpha.gather(1, last[:, None]).squeeze(1)
    end_label = alpha.gather(1, (last - 1).clamp(min=0)[:, None]).squeeze(1)
    end_label = torch.where(target_lengths > 0, end_label, neg)
    log_lik = torch.logsumexp(torch.stack([end_blank, end_label]), dim=0)
    loss = -log_lik

    # Impossible alignments (too few frames) end near the sentinel.
    infeasible = (log_lik < neg / 2) | (input_lengths <= 0)
    if zero_infinity:
        loss = torch.where(infeasible, torch.zeros_like(loss), loss)
    else:
        loss = torch.where(
            infeasible, torch.full_like(loss, float("inf")), loss
        )

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
