"""Update rules for the inner loop.

An update rule is an ``nn.Module`` that maps the fast weights and their
gradients at one inner step to the next fast weights. Its own parameters
(none for plain SGD) are meta-parameters: they are trained by the outer loop
and saved by SpeechBrain's checkpointer like any other module.

Authors
 * speechbrain-meta developers 2026
"""

import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


class SGD(torch.nn.Module):
    """Plain gradient descent with one fixed learning rate.

    ``fast[name] - lr * grad[name]`` for every adapted parameter.

    Arguments
    ---------
    lr : float
        The inner learning rate.

    Example
    -------
    >>> rule = SGD(lr=0.5)
    >>> fast = {"w": torch.ones(2)}
    >>> grads = {"w": torch.tensor([1.0, -2.0])}
    >>> rule(fast, grads, step=0)["w"]
    tensor([0.5000, 2.0000])
    """

    def __init__(self, lr=0.01):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"The inner learning rate must be > 0, got {lr}")
        self.lr = float(lr)

    def forward(self, fast_weights, grads, step):
        """Computes the next fast weights.

        Arguments
        ---------
        fast_weights : dict
            Parameter name to current fast weight.
        grads : dict
            Parameter name to the gradient of the support loss.
        step : int
            The inner step, counted from 0.

        Returns
        -------
        dict
            Parameter name to the updated fast weight.
        """
        return {
            name: weight - self.lr * grads[name]
            for name, weight in fast_weights.items()
        }

    def extra_repr(self):
        """Shows the learning rate when the module is printed."""
        return f"lr={self.lr}"
