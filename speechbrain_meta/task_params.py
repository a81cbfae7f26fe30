"""Light task parameters inserted into a (pretrained) model.

``insert_adapters`` wraps modules with ``speechbrain.nnet.adapters``'
``AdaptedModel`` (LoRA, bottleneck adapters), which freezes the wrapped
backbone, and starts every inserted adapter at the identity so the model's
output is unchanged until it adapts.

Authors
 * speechbrain-meta developers 2026
"""

import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def identity_init(module):
    """Zeroes the output projection of every adapter in a module.

    SpeechBrain's ``LoRA`` already starts at zero; its
    ``HoulsbyAdapterLinear`` initialises the up-projection randomly, so the
    adapted model would not start from the pretrained one.

    Arguments
    ---------
    module : torch.nn.Module
        A model with adapters inserted.

    Returns
    -------
    int
        The number of adapter output projections zeroed.

    Example
    -------
    >>> from speechbrain.nnet.adapters import HoulsbyAdapterLinear
    >>> layer = HoulsbyAdapterLinear(torch.nn.Linear(4, 4), 2)
    >>> identity_init(layer)
    1
    >>> x = torch.randn(3, 4)
    >>> torch.equal(layer(x), layer.pretrained_linear(x))
    True
    """
    count = 0
    for name, sub in module.named_modules():
        if name.split(".")[-1] == "adapter_up_proj":
            with torch.no_grad():
                for p in sub.parameters():
                    p.zero_()
            count += 1
    return count


def insert_adapters(modules, names, adapted_model):
    """Wraps the named modules with adapters, backbone frozen.

    Arguments
    ---------
    modules : dict or torch.nn.ModuleDict
        The model's modules (modified in place).
    names : list of str
        Keys of the modules to wrap.
    adapted_model : callable
        ``model -> AdaptedModel`` (e.g. ``!name:`` of
        ``speechbrain.nnet.adapters.AdaptedModel`` with its adapter class
        and arguments).

    Returns
    -------
    dict
        The modules, with the named ones wrapped.

    Example
    -------
    >>> from functools import partial
    >>> from speechbrain.nnet.adapters import AdaptedModel, LoRA
    >>> modules = {"enc": torch.nn.Sequential(torch.nn.Linear(4, 4))}
    >>> x = torch.randn(2, 4)
    >>> before = modules["enc"](x)
    >>> modules = insert_adapters(modules, ["enc"], partial(
    ...     AdaptedModel, adapter_class=LoRA, all_linear=True,
    ...     adapter_kwargs={"rank": 2}))
    >>> torch.equal(modules["enc"](x), before)
    True
    >>> sorted(n for n, p in modules["enc"].named_parameters()
    ...        if p.requires_grad)
    ['adapted_model.0.adapter_down_proj.weight', 'adapted_model.0.adapter_up_proj.weight']
    """
    for name in names:
        if name not in modules:
            raise KeyError(f"insert_adapters: no module {name!r}")
        wrapped = adapted_model(model_to_adapt=modules[name])
        n_adapters = identity_init(wrapped)
        if n_adapters == 0:
            raise ValueError(
                f"insert_adapters: no layer of module {name!r} was adapted; "
                "check all_linear/all_conv/target_layers"
            )
        modules[name] = wrapped
        logger.info("Inserted %d adapters into %s", n_adapters, name)
    return modules
