"""Parameter names: canonical forms and selection by pattern.

Everything keyed by parameter name (learned rates, task states, the inner
loop's choice of what adapts) goes through these two functions. This module
imports nothing else of the package, so any module can use it.

Authors
 * speechbrain-meta developers 2026
"""

import fnmatch
from collections import OrderedDict


def canonical_name(name):
    """A parameter name without the segments wrappers add.

    SpeechBrain wraps each of a brain's modules in DistributedDataParallel
    under DDP (``key.module.rest``) and ``torch.compile`` adds
    ``_orig_mod``; state keyed by parameter name (learned rates, task
    states) uses the canonical name so it is the same with or without them.

    Arguments
    ---------
    name : str
        A name from ``modules.named_parameters()``.

    Returns
    -------
    str

    Example
    -------
    >>> canonical_name("encoder.module.lin.w.weight")
    'encoder.lin.w.weight'
    >>> canonical_name("encoder._orig_mod.lin.weight")
    'encoder.lin.weight'
    >>> canonical_name("encoder.lin.weight")
    'encoder.lin.weight'
    """
    parts = [p for p in name.split(".") if p != "_orig_mod"]
    if len(parts) > 2 and parts[1] == "module":
        del parts[1]
    return ".".join(parts)


def matches(name, patterns):
    """Whether a name matches any of some fnmatch patterns.

    Arguments
    ---------
    name : str
        A parameter name.
    patterns : str or list of str
        fnmatch patterns.

    Returns
    -------
    bool

    Example
    -------
    >>> matches("enc.lin.task_scale", ["*task_*", "*adapter_*"])
    True
    >>> matches("enc.lin.weight", "*task_*")
    False
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def select_parameters(named_parameters, adapt_params=("*",), frozen_params=()):
    """Selects the parameters that adapt, by fnmatch patterns on their names.

    Arguments
    ---------
    named_parameters : iterable of (str, torch.Tensor)
        Typically ``modules.named_parameters()``.
    adapt_params : list of str
        A parameter adapts if its name matches any of these patterns.
    frozen_params : list of str
        ... and none of these.

    Returns
    -------
    OrderedDict
        Name to parameter, in the order given, for the trainable parameters
        (``requires_grad``) that were selected.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.ModuleDict(
    ...     {"enc": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 3)}
    ... )
    >>> list(select_parameters(model.named_parameters(), ["head.*"]))
    ['head.weight', 'head.bias']
    >>> list(select_parameters(model.named_parameters(), ["*"], ["*.bias"]))
    ['enc.weight', 'head.weight']
    """
    return OrderedDict(
        (name, param)
        for name, param in named_parameters
        if param.requires_grad
        and matches(name, adapt_params)
        and not matches(name, frozen_params)
    )
