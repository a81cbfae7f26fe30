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


def adapt_module(module, adapted_model):
    """Wraps one module with adapters, started at the identity.

    Arguments
    ---------
    module : torch.nn.Module
        The (pretrained) module.
    adapted_model : callable
        ``model -> AdaptedModel`` (``speechbrain.nnet.adapters``).

    Returns
    -------
    torch.nn.Module
        The wrapped module, backbone frozen.

    Example
    -------
    >>> from functools import partial
    >>> from speechbrain.nnet.adapters import AdaptedModel
    >>> layer = torch.nn.Sequential(torch.nn.Linear(3, 3))
    >>> wrapped = adapt_module(layer, partial(
    ...     AdaptedModel, adapter_class=LHUC, all_linear=True))
    >>> [n for n, p in wrapped.named_parameters() if p.requires_grad]
    ['adapted_model.0.task_lhuc']
    >>> wrapped.adapted_model[0].out_features  # the layer's, kept
    3
    """
    wrapped = adapted_model(model_to_adapt=module)
    identity_init(wrapped)
    if not getattr(wrapped, "replace_layers", ()):
        raise ValueError(
            "adapt_module: no layer was adapted; check "
            "all_linear/all_conv/target_layers"
        )
    for name in wrapped.replace_layers:
        _keep_sizes(wrapped.adapted_model.get_submodule(name))
    return wrapped


SIZES = ("in_features", "out_features", "in_channels", "out_channels")


def _keep_sizes(adapter):
    """Gives an adapter its layer's sizes, which code around the model
    reads (SpeechBrain's beam searchers take the vocabulary from
    ``fc.w.out_features``).
    """
    target = getattr(adapter, "pretrained_module", None)
    for size in SIZES:
        if hasattr(target, size) and not hasattr(adapter, size):
            setattr(adapter, size, getattr(target, size))


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
    ...        if p.requires_grad)  # doctest: +NORMALIZE_WHITESPACE
    ['adapted_model.0.adapter_down_proj.weight',
     'adapted_model.0.adapter_up_proj.weight']
    """
    for name in names:
        if name not in modules:
            raise KeyError(f"insert_adapters: no module {name!r}")
        modules[name] = adapt_module(modules[name], adapted_model)
        n_adapters = len(modules[name].replace_layers)
        logger.info("Inserted %d adapters into %s", n_adapters, name)
    return modules


def _channel_shape(target, n_channels):
    """Broadcast shape of per-output-channel parameters for a layer."""
    if isinstance(target, torch.nn.Linear):
        return (n_channels,)
    if isinstance(target, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        return (n_channels,) + (1,) * (target.weight.dim() - 2)
    raise ValueError(
        f"task parameters support torch Linear and Conv layers, not "
        f"{type(target).__name__}"
    )


def _out_channels(target):
    if isinstance(target, torch.nn.Linear):
        return target.out_features
    return target.out_channels


class ScaleShift(torch.nn.Module):
    """Meta-transfer scaling and shifting (Sun et al., 2019) of a frozen layer.

    ``y = layer(x) * task_scale + task_shift`` per output channel, with the
    scale starting at 1 and the shift at 0 (the layer is unchanged at
    initialisation). Insert it with ``AdaptedModel(..., adapter_class=
    ScaleShift)`` like any of ``speechbrain.nnet.adapters``' adapters.

    Arguments
    ---------
    target_module : torch.nn.Linear or torch.nn.Conv1d/2d/3d
        The pretrained layer (frozen).

    Example
    -------
    >>> layer = torch.nn.Linear(4, 3)
    >>> adapted = ScaleShift(layer)
    >>> x = torch.randn(2, 4)
    >>> torch.equal(adapted(x), layer(x))
    True
    >>> [n for n, p in adapted.named_parameters() if p.requires_grad]
    ['task_scale', 'task_shift']
    """

    def __init__(self, target_module):
        super().__init__()
        self.pretrained_module = target_module
        for p in target_module.parameters():
            p.requires_grad = False
        n = _out_channels(target_module)
        shape = _channel_shape(target_module, n)
        device = target_module.weight.device
        self.task_scale = torch.nn.Parameter(torch.ones(shape, device=device))
        self.task_shift = torch.nn.Parameter(torch.zeros(shape, device=device))

    def forward(self, x):
        """The scaled and shifted output of the frozen layer."""
        return self.pretrained_module(x) * self.task_scale + self.task_shift


class LHUC(torch.nn.Module):
    """Learning Hidden Unit Contributions (Swietojanski et al., 2016).

    ``y = layer(x) * 2 sigmoid(task_lhuc)`` per output unit, with
    ``task_lhuc`` starting at 0 (amplitude 1: the layer is unchanged).

    Arguments
    ---------
    target_module : torch.nn.Linear or torch.nn.Conv1d/2d/3d
        The pretrained layer (frozen).

    Example
    -------
    >>> layer = torch.nn.Conv1d(2, 5, 3)
    >>> adapted = LHUC(layer)
    >>> x = torch.randn(1, 2, 8)
    >>> torch.equal(adapted(x), layer(x)), tuple(adapted.task_lhuc.shape)
    (True, (5, 1))
    """

    def __init__(self, target_module):
        super().__init__()
        self.pretrained_module = target_module
        for p in target_module.parameters():
            p.requires_grad = False
        shape = _channel_shape(target_module, _out_channels(target_module))
        self.task_lhuc = torch.nn.Parameter(
            torch.zeros(shape, device=target_module.weight.device)
        )

    def forward(self, x):
        """The frozen layer's output with learned unit amplitudes."""
        return self.pretrained_module(x) * (2 * torch.sigmoid(self.task_lhuc))
