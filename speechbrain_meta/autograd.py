"""What the written-out second derivatives share.

The twice-differentiable CTC (``losses``) and LSTM (``lstm``) compute their
Hessian-vector products by hand, outside autograd, so those products have
no derivative of their own. ``refuse_third_derivative`` passes them on and
makes any attempt to differentiate them again raise, whichever of their
inputs it is taken for, instead of treating them as constants.

Authors
 * speechbrain-meta developers 2026
"""

import torch


class _NoThirdDerivative(torch.autograd.Function):
    """Passes second derivatives on; differentiating them raises."""

    @staticmethod
    def forward(ctx, what, count, *tensors):
        ctx.what = what
        return tuple(t.clone() for t in tensors[:count])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"{ctx.what} is differentiable twice: its Hessian-vector "
            "products have no derivative (a third derivative was asked for)"
        )


def refuse_third_derivative(what, outputs, anchors):
    """``outputs`` unchanged, tied to ``anchors`` so a derivative raises.

    Call it in a ``backward`` that computed ``outputs`` (second
    derivatives) without a graph: if the backward itself is being
    recorded (``create_graph=True``), the outputs get a node whose backward
    raises, connected to ``anchors`` (the inputs the outputs depend on).

    Arguments
    ---------
    what : str
        The function's name, for the error message.
    outputs : list of torch.Tensor or None
        The second derivatives.
    anchors : list of torch.Tensor or None
        The tensors they were computed from.

    Returns
    -------
    list
        ``outputs``, or their copies that refuse a derivative.

    Example
    -------
    >>> x = torch.ones(2, requires_grad=True)
    >>> with torch.enable_grad():
    ...     (y,) = refuse_third_derivative("f", [x.detach() * 2], [x])
    >>> try:
    ...     y.sum().backward()
    ... except RuntimeError as error:
    ...     print(str(error).split(":")[0])
    f is differentiable twice
    """
    if not torch.is_grad_enabled():
        return outputs
    anchors = [a for a in anchors if a is not None and a.requires_grad]
    present = [i for i, t in enumerate(outputs) if t is not None]
    if not anchors or not present:
        return outputs
    tied = _NoThirdDerivative.apply(
        what, len(present), *[outputs[i] for i in present], *anchors
    )
    outputs = list(outputs)
    for i, t in zip(present, tied):
        outputs[i] = t
    return outputs
