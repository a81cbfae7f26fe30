"""The brain's modules as one module, for ``torch.func.functional_call``
with fast weights in place of the parameters (no module is copied per
task).

Authors
 * speechbrain-meta developers 2026
"""

import torch


class FunctionalModel(torch.nn.Module):
    """A brain's modules as one module whose forward runs a given function.

    Its children are the brain's modules under their own keys, so parameter
    names are those of ``brain.modules.named_parameters()``; under
    ``functional_call`` the function sees the fast weights in their place.

    Arguments
    ---------
    brain : sb.Brain
        The brain whose modules it holds (not copied).

    Example
    -------
    >>> import speechbrain as sb
    >>> linear = torch.nn.Linear(2, 1)
    >>> brain = sb.Brain(modules={"model": linear}, run_opts={"device": "cpu"})
    >>> model = FunctionalModel(brain)
    >>> zero = {"model.weight": torch.zeros(1, 2), "model.bias": torch.ones(1)}
    >>> x = torch.randn(3, 2)
    >>> torch.func.functional_call(model, zero, (linear, x)).flatten()
    tensor([1., 1., 1.])
    """

    def __init__(self, brain):
        super().__init__()
        for key, module in brain.modules.items():
            self.add_module(key, module)
        self.rnns = [
            m for m in self.modules() if isinstance(m, torch.nn.RNNBase)
        ]

    def forward(self, function, *args):
        """Runs ``function(*args)``."""
        return function(*args)

    def release_fast_weights(self):
        """Points the RNNs' weight lists back at their parameters.

        ``functional_call`` puts the original parameters back, but
        ``nn.RNNBase._flat_weights`` keeps the last fast weights, and with
        them the autograd graph of the task's inner loop, until the next
        call: memory held between outer steps for nothing.
        """
        for rnn in self.rnns:
            rnn._init_flat_weights()
