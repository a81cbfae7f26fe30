"""An LSTM whose first and second derivatives are written out.

Second-order MAML differentiates each inner step's gradient once more. For
``torch.nn.LSTM`` (and SpeechBrain's ``LSTM``, which holds one) PyTorch
then records the differentiable form of the fused LSTM backward, a few
small operations per frame and gate, and walks that graph again in the
outer backward: on the SynthTones CRDNN an inner step's Hessian-vector
product cost 15 support gradients, most of it there; with this module 3.6
(``benchmarks/README.md``).

Here one layer (both directions of a bidirectional one, as one batched
recursion) is a ``torch.autograd.Function`` with

* **forward**: the input projection for all frames in one product, then
  per frame one product with ``W_hh`` and the gate activations;
* **gradient**: back-propagation through time with the gates' local
  derivatives precomputed for all frames, five operations per frame, and
  the weight gradients as one product each over all frames;
* **second derivative**: the gradient is ``J^T g`` for the incoming
  ``g``, so its vector-Jacobian product along ``u`` is ``J u`` (a tangent
  pass of the forward) for ``g``, and, for the inputs and weights, the
  Hessian of ``<g, outputs>`` times ``u`` (symmetric), which is the
  directional derivative of the back-propagation along ``u``: a tangent
  pass of the forward and one of the backward, five operations per frame
  each, no graph recorded. A third derivative raises an error.

Layers, directions and dropout between layers are composed with ordinary
autograd operations. ``twice_differentiable_lstms`` swaps this forward in
for the ``torch.nn.LSTM`` modules of a model; ``MetaBrain`` does so in the
support forwards whose graph is differentiated twice, where native
kernels stay in use for everything else. Packed sequences (SpeechBrain's
RNNs given ``lengths``) are unpacked and run with their lengths: each
reverse direction starts at its utterance's last frame, as the native
kernel does. Projections (``proj_size``) keep the native forward.

Authors
 * speechbrain-meta developers 2026
"""

import contextlib
import types

import torch

from speechbrain_meta.autograd import refuse_third_derivative

# Shapes: D directions run together (a bidirectional layer's two
# recursions as one, the reverse one on the time-reversed input), T frames,
# B utterances, I inputs, H cells. Sequences are [D, T, B, ...] (so that the
# products over all frames are batched matrix products without copies),
# per-frame views [D, B, ...].


def _frames(tensor):
    """Per-frame views of a ``[D, T, ...]`` tensor."""
    return tensor.unbind(1)


def _chunks(tensor, hidden):
    """Per-frame views of the gates of ``[D, T, B, 4H]``: i, f, g, o, (i, f)."""
    H = hidden
    return [_frames(tensor[..., k * H : (k + 1) * H]) for k in range(4)] + [
        _frames(tensor[..., : 2 * H])
    ]


def _project(x, weight):
    """``x[d, t] @ weight[d]^T`` for every frame: ``[D, T, B, rows]``."""
    D, T, B, _ = x.shape
    out = torch.bmm(x.reshape(D, T * B, -1), weight.transpose(1, 2))
    return out.view(D, T, B, -1)


def _sum_outer(a, b):
    """``sum_{t, b} a[d, t, b]^T b[d, t, b]`` per direction: ``[D, n, m]``."""
    D = a.shape[0]
    return torch.bmm(
        a.reshape(D, -1, a.shape[-1]).transpose(1, 2),
        b.reshape(D, -1, b.shape[-1]),
    )


def _before(first, sequence):
    """``sequence`` shifted one frame later, ``first`` (or 0) at frame 0."""
    if first is None:
        first = torch.zeros_like(sequence[:, 0])
    return torch.cat([first.unsqueeze(1), sequence[:, :-1]], 1)


def _lstm_forward(x, h0, c0, w_ih, w_hh, b):
    """The forward recursion: outputs, gates, cells, tanh of the cells.

    ``x`` is ``[D, T, B, I]``; ``gates`` holds the activated gates
    ``[D, T, B, 4H]`` (input, forget, cell, output, PyTorch's order) and
    ``c`` the cells ``[D, T + 1, B, H]`` (``c[:, 0]`` is ``c0``).
    """
    D, T, B, _ = x.shape
    H = w_hh.shape[2]
    gates = _project(x, w_ih).add_(b[:, None, None, :])
    y = x.new_empty((D, T, B, H))
    c = x.new_empty((D, T + 1, B, H))
    c[:, 0] = c0
    tanh_c = x.new_empty((D, T, B, H))
    w_hh_t = w_hh.transpose(1, 2)
    pre = _frames(gates)
    i, f, g, o, i_f = _chunks(gates, H)
    cells, outs, tanhs = _frames(c), _frames(y), _frames(tanh_c)
    h = h0
    for t in range(T):
        pre[t].baddbmm_(h, w_hh_t)
        i_f[t].sigmoid_()
        g[t].tanh_()
        o[t].sigmoid_()
        torch.mul(f[t], cells[t], out=cells[t + 1])
        cells[t + 1].addcmul_(i[t], g[t])
        torch.tanh(cells[t + 1], out=tanhs[t])
        torch.mul(o[t], tanhs[t], out=outs[t])
        h = outs[t]
    return y, gates, c, tanh_c


def _local_derivatives(gates, c, tanh_c):
    """The gates' derivatives ``D``, ``G = D * partner`` and ``K``.

    ``D`` is each activated gate's derivative by its pre-activation;
    the partner of a gate is what it multiplies (``g``, ``c[t-1]``, ``i``,
    ``tanh(c[t])``), so that ``G * [dc, dc, dc, dh]`` are the gradients
    of the pre-activations; ``K = o (1 - tanh(c)^2)`` is ``dc[t]/dh[t]``.
    """
    H = tanh_c.shape[-1]
    D = gates * (1.0 - gates)
    g = gates[..., 2 * H : 3 * H]
    torch.addcmul(
        torch.ones_like(g), g, g, value=-1.0, out=D[..., 2 * H : 3 * H]
    )
    partner = torch.cat([g, c[:, :-1], gates[..., :H], tanh_c], dim=-1)
    o = gates[..., 3 * H :]
    return D, D * partner, o * (1.0 - tanh_c * tanh_c)


def _backprop(dy, dc_last, G, K, f, w_hh, source_c=None, source_a=None):
    """Back-propagation through time, or its tangent (with the sources).

    ``dh[t] = dy[t] + da[t+1] W_hh``, ``dc[t] = dh[t] K[t] + dc[t+1] f[t+1]
    (+ source_c[t])`` (``dc_last`` after the last frame) and
    ``da[t] = G[t] * [dc, dc, dc, dh] (+ source_a[t])``.
    """
    D, T, B, H = K.shape
    da = G.new_empty((D, T, B, 4 * H))
    dh = G.new_empty((D, T, B, H))
    dc = G.new_empty((D, T, B, H))
    da4, G4 = da.view(D, T, B, 4, H), G.view(D, T, B, 4, H)
    da_c, da_o = _frames(da4[..., :3, :]), _frames(da4[..., 3, :])
    G_c, G_o = _frames(G4[..., :3, :]), _frames(G4[..., 3, :])
    if source_a is not None:
        sa4 = source_a.view(D, T, B, 4, H)
        sa_c, sa_o = _frames(sa4[..., :3, :]), _frames(sa4[..., 3, :])
    if source_c is not None:
        source_c = _frames(source_c)
    frames_a, frames_h, frames_c = _frames(da), _frames(dh), _frames(dc)
    dy, K, f = _frames(dy), _frames(K), _frames(f)
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            frames_h[t].copy_(dy[t])
        else:
            torch.baddbmm(dy[t], frames_a[t + 1], w_hh, out=frames_h[t])
        if source_c is None:
            torch.mul(frames_h[t], K[t], out=frames_c[t])
        else:
            torch.addcmul(source_c[t], frames_h[t], K[t], out=frames_c[t])
        if t < T - 1:
            frames_c[t].addcmul_(frames_c[t + 1], f[t + 1])
        elif dc_last is not None:
            frames_c[t].add_(dc_last)
        dc_each_gate = frames_c[t].unsqueeze(-2)
        if source_a is None:
            torch.mul(G_c[t], dc_each_gate, out=da_c[t])
            torch.mul(G_o[t], frames_h[t], out=da_o[t])
        else:
            torch.addcmul(sa_c[t], G_c[t], dc_each_gate, out=da_c[t])
            torch.addcmul(sa_o[t], G_o[t], frames_h[t], out=da_o[t])
    return da, dh, dc


def _tangent_forward(tangent_pre, dh0, dc0, G, K, f, w_hh):
    """The forward's tangent: pre-activations, cells, outputs.

    ``tangent_pre`` holds every term of the pre-activations' tangent but
    the recurrent one (``dh[t-1] W_hh^T``), which is added here, in place.
    """
    D, T, B, H = K.shape
    dc = K.new_empty((D, T, B, H))
    dh = K.new_empty((D, T, B, H))
    product = K.new_empty((D, B, 4, H))
    frames_a, frames_c, frames_h = (
        _frames(tangent_pre),
        _frames(dc),
        _frames(dh),
    )
    G4, K, f = _frames(G.view(D, T, B, 4, H)), _frames(K), _frames(f)
    w_hh_t = w_hh.transpose(1, 2)
    h_prev, c_prev = dh0, dc0
    for t in range(T):
        if h_prev is not None:
            frames_a[t].baddbmm_(h_prev, w_hh_t)
        torch.mul(G4[t], frames_a[t].view(D, B, 4, H), out=product)
        torch.sum(product[..., :3, :], -2, out=frames_c[t])
        if c_prev is not None:
            frames_c[t].addcmul_(f[t], c_prev)
        torch.addcmul(product[..., 3, :], K[t], frames_c[t], out=frames_h[t])
        h_prev, c_prev = frames_h[t], frames_c[t]
    return tangent_pre, dc, dh


def _at_last(sequence, last):
    """``sequence[d, last[b], b]`` of a ``[D, T, B, H]`` tensor: ``[D, B, H]``.

    ``last`` (``[B]``) is each utterance's last frame (``None``: ``T - 1``).
    """
    if last is None:
        return sequence[:, -1]
    D, _, B, H = sequence.shape
    index = last.to(sequence.device).view(1, 1, B, 1).expand(D, 1, B, H)
    return sequence.gather(1, index).squeeze(1)


def _put_at_last(values, last, frames):
    """A ``[D, frames, B, H]`` tensor of zeros with ``values`` at ``last``."""
    D, B, H = values.shape
    index = last.to(values.device).view(1, 1, B, 1).expand(D, 1, B, H)
    out = values.new_zeros((D, frames, B, H))
    return out.scatter_(1, index, values.unsqueeze(1))


class _LSTMLayer(torch.autograd.Function):
    """One layer: ``(x, h0, c0, W_ih, W_hh, b) -> (y, c_last)``, [D, T, B, ...].

    ``c_last`` is the cell after each utterance's ``last`` frame (all
    frames when ``last`` is ``None``); the frames after it are padding,
    which nothing before them depends on.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, last):
        y, gates, c, tanh_c = _lstm_forward(x, h0, c0, w_ih, w_hh, b)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b, y, gates, c, tanh_c)
        ctx.local = None
        ctx.last = last
        return y, _at_last(c[:, 1:], last).clone()

    @staticmethod
    def backward(ctx, dy, dc_last):
        saved = ctx.saved_tensors
        gates, c, tanh_c = saved[7:]
        # A second-order step back-propagates through the same forward twice
        # (the inner gradient, then the outer backward): its local
        # derivatives are computed once.
        if ctx.local is None:
            ctx.local = _local_derivatives(gates, c, tanh_c)
        # x, h0, c0, W_ih, W_hh, b, y, gates; tanh(c); D, G, K
        grads = _LSTMLayerGradient.apply(
            dy, dc_last, *saved[:8], tanh_c, *ctx.local, ctx.last
        )
        return (*grads, None)


class _LSTMLayerGradient(torch.autograd.Function):
    """The gradient of ``_LSTMLayer``; its backward is the HVP."""

    @staticmethod
    def forward(
        ctx, dy, dc_last, x, h0, c0, w_ih, w_hh, b, y, gates, tanh_c, D, G,
        K, last,
    ):  # fmt: skip
        H = w_hh.shape[2]
        f = gates[..., H : 2 * H]
        if last is None or dc_last is None:
            da, dh, dc = _backprop(dy, dc_last, G, K, f, w_hh)
        else:  # the final cell's gradient enters at each utterance's end
            at_last = _put_at_last(dc_last, last, K.shape[1])
            da, dh, dc = _backprop(dy, None, G, K, f, w_hh, source_c=at_last)
        ctx.last = last
        h_prev = _before(h0, y)
        ctx.save_for_backward(
            x, h0, c0, w_ih, w_hh, b, h_prev, gates, tanh_c, D, G, K, da, dh,
            dc, dy,
        )  # fmt: skip
        ctx.set_materialize_grads(False)
        return (
            _project(da, w_ih.transpose(1, 2)),
            torch.bmm(da[:, 0], w_hh),
            dc[:, 0] * f[:, 0],
            _sum_outer(da, x),
            _sum_outer(da, h_prev),
            da.sum((1, 2)),
        )

    @staticmethod
    def backward(ctx, *direction):
        saved = ctx.saved_tensors
        with torch.no_grad():
            grads = _lstm_hessian_vector_product(direction, saved, ctx.last)
        inputs = saved[:6]  # x, h0, c0, W_ih, W_hh, b
        grads = refuse_third_derivative(
            "the twice-differentiable LSTM",
            list(grads),
            [*direction, *inputs, saved[-1]],  # and dy
        )
        return (*grads, None, None, None, None, None, None, None)


def _lstm_hessian_vector_product(direction, saved, last=None):
    """The backward of ``_LSTMLayerGradient`` along ``direction``.

    ``direction`` holds the vectors for ``(dx, dh0, dc0, dW_ih, dW_hh,
    db)`` (``None`` for zero), ``saved`` what ``_LSTMLayerGradient``
    saved, ``last`` each utterance's last frame (``None``: all frames).
    Returns the gradients for ``(dy, dc_last, x, h0, c0, W_ih,
    W_hh, b)``: the forward's tangent along the direction (``J u``) for the
    first two, the back-propagation's tangent (Hessian times ``u``) for the
    rest.
    """
    x, w_ih, w_hh = saved[0], saved[3], saved[4]
    h_prev, gates, tanh_c, D, G, K, da, dh, dc, _ = saved[6:]
    u_x, u_h0, u_c0, u_w_ih, u_w_hh, u_b = direction
    H = tanh_c.shape[-1]
    # The forward's tangent: the pre-activations (all but the recurrent
    # term here), then the cells and outputs frame by frame.
    tangent_pre = torch.zeros_like(gates)
    if u_x is not None:
        tangent_pre += _project(u_x, w_ih)
    if u_w_ih is not None:
        tangent_pre += _project(x, u_w_ih)
    if u_w_hh is not None:
        tangent_pre += _project(h_prev, u_w_hh)
    if u_b is not None:
        tangent_pre += u_b[:, None, None, :]
    f = gates[..., H : 2 * H]
    tangent_pre, tangent_c, tangent_h = _tangent_forward(
        tangent_pre, u_h0, u_c0, G, K, f, w_hh
    )
    # The tangents of the gates, of tanh(c), of K and of the partners.
    tangent_gates = D * tangent_pre
    g, o = gates[..., 2 * H : 3 * H], gates[..., 3 * H :]
    ti, tf, tg, to = (tangent_gates[..., k * H : (k + 1) * H] for k in range(4))
    tangent_tanh = (1.0 - tanh_c * tanh_c) * tangent_c
    tangent_K = to * (1.0 - tanh_c * tanh_c) - 2.0 * o * tanh_c * tangent_tanh
    tangent_partner = torch.cat(
        [tg, _before(u_c0, tangent_c), ti, tangent_tanh], dim=-1
    )
    # The back-propagation's tangent, with the sources of the terms that
    # need no recursion. G = D * partner, and D' = curvature * D * a'
    # (curvature 1 - 2 s for a sigmoid gate s, -2 g for tanh), so
    # G' [dc, dc, dc, dh] = curvature * a' * da + D [dc, dc, dc, dh] partner'.
    source_h = torch.zeros_like(dh)
    if u_w_hh is not None:
        source_h[:, :-1] = _project(da, u_w_hh.transpose(1, 2))[:, 1:]
    source_c = dh * tangent_K
    source_c[:, :-1].addcmul_(dc[:, 1:], tf[:, 1:])
    source_a = 1.0 - 2.0 * gates
    torch.mul(g, -2.0, out=source_a[..., 2 * H : 3 * H])
    source_a.mul_(tangent_pre).mul_(da)
    source_a.addcmul_(D * torch.cat([dc, dc, dc, dh], dim=-1), tangent_partner)
    tangent_da, _, tangent_dc = _backprop(
        source_h, None, G, K, f, w_hh, source_c, source_a
    )
    # The tangents of the gradients the layer returned.
    grad_x = _project(tangent_da, w_ih.transpose(1, 2))
    grad_w_ih = _sum_outer(tangent_da, x)
    grad_w_hh = _sum_outer(tangent_da, h_prev) + _sum_outer(
        da, _before(u_h0, tangent_h)
    )
    grad_h0 = torch.bmm(tangent_da[:, 0], w_hh)
    if u_w_ih is not None:
        grad_x += _project(da, u_w_ih.transpose(1, 2))
    if u_x is not None:
        grad_w_ih += _sum_outer(da, u_x)
    if u_w_hh is not None:
        grad_h0 += torch.bmm(da[:, 0], u_w_hh)
    grad_c0 = tangent_dc[:, 0] * f[:, 0] + dc[:, 0] * tf[:, 0]
    return (
        tangent_h,
        _at_last(tangent_c, last),
        grad_x,
        grad_h0,
        grad_c0,
        grad_w_ih,
        grad_w_hh,
        tangent_da.sum((1, 2)),
    )


def _reversal(lengths, frames):
    """Frame indices ``[T, B]`` that reverse each utterance within its length.

    Frame ``t < length`` goes to ``length - 1 - t``; padding stays where it
    is, after the utterance, so the reverse direction starts at the
    utterance's last frame. The permutation is its own inverse.
    """
    t = torch.arange(frames, device=lengths.device).unsqueeze(1)
    return torch.where(t < lengths, lengths - 1 - t, t)


def _time_gather(sequence, index):
    """``sequence[index[t, b], b]`` for a ``[T, B, F]`` sequence."""
    return sequence.gather(0, index.unsqueeze(-1).expand_as(sequence))


def lstm_forward(lstm, input, hx=None, lengths=None):
    """``torch.nn.LSTM``'s forward, differentiable twice at low cost.

    The same results as ``lstm(input, hx)`` for a padded input, from the
    module's current parameters (so also inside
    ``torch.func.functional_call``), with the derivatives of the module
    docstring. With ``lengths``, the same as on the packed input: the
    padding changes nothing (the reverse direction starts at each
    utterance's last frame, the final states are those at its end, the
    outputs at padded frames are zeros). Dropout between layers (in
    training mode) draws its own masks.

    Arguments
    ---------
    lstm : torch.nn.LSTM
        The module (``proj_size`` 0).
    input : torch.Tensor
        ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``) or ``[T, I]``.
    hx : tuple of torch.Tensor, optional
        ``(h0, c0)``, each ``[layers * directions, B, H]``.
    lengths : torch.Tensor, optional
        Each utterance's number of frames (``[B]``, integers); the frames
        after it are padding.

    Returns
    -------
    output : torch.Tensor
        The last layer's outputs, ``[T, B, directions * H]``.
    (h_n, c_n) : tuple of torch.Tensor
        The final states, ``[layers * directions, B, H]`` each.

    Example
    -------
    >>> lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    >>> x = torch.randn(6, 2, 3)
    >>> ours, (h, c) = lstm_forward(lstm, x)
    >>> native, (h_ref, c_ref) = lstm(x)
    >>> bool(torch.allclose(ours, native, atol=1e-6))
    True
    >>> bool(torch.allclose(c, c_ref, atol=1e-6))
    True
    >>> lengths = torch.tensor([6, 4])  # the second utterance is padded
    >>> ours, (h, c) = lstm_forward(lstm, x, lengths=lengths)
    >>> packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
    >>> native, (h_ref, c_ref) = lstm(packed)
    >>> native, _ = torch.nn.utils.rnn.pad_packed_sequence(native)
    >>> bool(torch.allclose(ours, native, atol=1e-6))
    True
    >>> bool(torch.allclose(c, c_ref, atol=1e-6))
    True
    """
    if lstm.proj_size > 0:
        raise ValueError("lstm_forward: proj_size > 0 is not supported")
    unbatched = input.dim() == 2
    if unbatched:
        input = input.unsqueeze(1)
        if hx is not None:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
    elif lstm.batch_first:
        input = input.transpose(0, 1)
    directions = 2 if lstm.bidirectional else 1
    B, H = input.shape[1], lstm.hidden_size
    dtype = lstm.weight_ih_l0.dtype
    input = input.to(dtype)
    if hx is None:
        zeros = input.new_zeros((lstm.num_layers * directions, B, H))
        hx = (zeros, zeros)
    h_n, c_n = [], []
    layer_input = input
    last = None

    def flip(sequence):  # time-reversed, for the reverse direction
        return sequence.flip(0)

    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=input.device).long()
        last = lengths - 1
        reverse = _reversal(lengths, input.shape[0])

        def flip(sequence):  # each utterance reversed within its length
            return _time_gather(sequence, reverse)

    for layer in range(lstm.num_layers):
        weights = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih = getattr(lstm, "weight_ih" + suffix)
            w_hh = getattr(lstm, "weight_hh" + suffix)
            if lstm.bias:
                b = getattr(lstm, "bias_ih" + suffix) + getattr(
                    lstm, "bias_hh" + suffix
                )
            else:
                b = w_hh.new_zeros(4 * H)
            weights.append((w_ih, w_hh, b))
        w_ih, w_hh, b = (torch.stack(w) for w in zip(*weights))
        states = slice(layer * directions, (layer + 1) * directions)
        x = [layer_input] + [flip(layer_input)] * (directions - 1)
        with torch.autocast(input.device.type, enabled=False):
            y, c_last = _LSTMLayer.apply(
                torch.stack(x),
                hx[0][states].to(dtype),
                hx[1][states].to(dtype),
                w_ih,
                w_hh,
                b,
                last,
            )
        h_n.append(_at_last(y, last))
        c_n.append(c_last)
        if directions == 2:
            layer_input = torch.cat([y[0], flip(y[1])], -1)
        else:
            layer_input = y[0]
        if lstm.dropout > 0 and lstm.training and layer < lstm.num_layers - 1:
            layer_input = torch.nn.functional.dropout(
                layer_input, lstm.dropout, training=True
            )
    output, h_n, c_n = layer_input, torch.cat(h_n), torch.cat(c_n)
    if lengths is not None:  # zeros after the end, as unpacking gives
        frames = torch.arange(output.shape[0], device=output.device)
        output = output * (frames.unsqueeze(1) < lengths).unsqueeze(-1)
    if unbatched:
        return output.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
    if lstm.batch_first:
        output = output.transpose(0, 1)
    return output, (h_n, c_n)


def _packed_forward(lstm, packed, hx=None):
    """``lstm_forward`` on a packed sequence: unpacked, run, packed again.

    Unpacking restores the batch order, in which ``hx`` and the final
    states are given, as ``torch.nn.LSTM`` does for packed input.
    """
    rnn = torch.nn.utils.rnn
    first = lstm.batch_first
    padded, lengths = rnn.pad_packed_sequence(packed, batch_first=first)
    output, states = lstm_forward(lstm, padded, hx, lengths)
    output = rnn.pack_padded_sequence(
        output, lengths, batch_first=first, enforce_sorted=False
    )
    return output, states


def _forward_of(lstm):
    """``lstm``'s forward through ``lstm_forward`` where it applies."""

    def forward(self, input, hx=None):
        if isinstance(input, torch.nn.utils.rnn.PackedSequence):
            return _packed_forward(self, input, hx)
        return lstm_forward(self, input, hx)

    return types.MethodType(forward, lstm)


@contextlib.contextmanager
def twice_differentiable_lstms(module, enabled=True):
    """Within this context, the LSTMs of ``module`` run ``lstm_forward``.

    Every ``torch.nn.LSTM`` of the module tree (SpeechBrain's ``LSTM``
    holds one) without projections; packed sequences are run padded, with
    their lengths. Enter it around forwards whose graph is differentiated
    twice (``MetaBrain.support_forward_context`` does so for second-order
    inner steps).

    Arguments
    ---------
    module : torch.nn.Module
        The model.
    enabled : bool
        Whether to swap the forwards in (False: a no-op).

    Yields
    ------
    None

    Example
    -------
    >>> model = torch.nn.Sequential()
    >>> model.rnn = torch.nn.LSTM(3, 4)
    >>> x = torch.randn(5, 2, 3, requires_grad=True)
    >>> with twice_differentiable_lstms(model):
    ...     swapped = "forward" in vars(model.rnn)
    ...     out, _ = model.rnn(x)
    >>> swapped, "forward" in vars(model.rnn)  # restored on exit
    (True, False)
    >>> bool(torch.allclose(out, model.rnn(x)[0], atol=1e-6))
    True
    """
    lstms = []
    if enabled:
        lstms = [
            m
            for m in module.modules()
            if isinstance(m, torch.nn.LSTM)
            and m.proj_size == 0
            and "forward" not in vars(m)
        ]
    for lstm in lstms:
        lstm.forward = _forward_of(lstm)
    try:
        yield
    finally:
        for lstm in lstms:
            del lstm.forward
