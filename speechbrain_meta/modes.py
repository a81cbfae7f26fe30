"""A module tree in training or eval mode for a while, each module's own
mode restored after.

``nn.Module.train(mode)`` sets every submodule; a model whose parts are in
different modes (a frozen backbone kept in eval mode under a training
head, BatchNorm held in eval mode by a recipe) would come back changed.
Used wherever the package evaluates or adapts a copy of a model's weights
in a mode other than the one it found.

Authors
 * speechbrain-meta developers 2026
"""

import contextlib


@contextlib.contextmanager
def modules_in_mode(modules, training):
    """``modules`` in training (True) or eval (False) mode meanwhile.

    Arguments
    ---------
    modules : torch.nn.Module
        The module tree.
    training : bool
        The mode to set.

    Yields
    ------
    None

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    >>> net[1].eval()  # a part in its own mode
    Dropout(p=0.5, inplace=False)
    >>> with modules_in_mode(net, True):
    ...     net[1].training
    True
    >>> net.training, net[1].training
    (True, False)
    """
    modes = {m: m.training for m in modules.modules()}
    modules.train(bool(training))
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode
