"""MetaTransferBrain: meta-trained light task parameters, frozen backbone.

A pretrained SpeechBrain ASR model gets task parameters inserted by name
pattern (``ScaleShift``, ``LHUC`` from ``speechbrain_meta.task_params``, or
``LoRA`` / ``HoulsbyAdapterLinear`` from ``speechbrain.nnet.adapters``,
through ``AdaptedModel``). This brain freezes everything else and
meta-trains the task parameters' initialisation over tasks with MAML or
first-order MAML, and optionally their inner rates with a learned update
rule (``MetaSGD``, ``LayerStepLR``...). Only the task parameters adapt,
in the inner loop and at test time; the backbone takes no part in the
autograd graph, so no second-order graph is kept for it.

Per task, only the adapted task parameters need to be stored:
``save_task_state`` / ``load_task_state``.

Authors
 * speechbrain-meta developers 2026
"""

import os
from collections import OrderedDict

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.brains.meta_brain import MetaBrain
from speechbrain_meta.naming import canonical_name, matches

logger = get_logger(__name__)

TASK_PARAMS = ["*task_*", "*adapter_*"]


def freeze_backbone(modules, task_params=TASK_PARAMS):
    """Leaves only the parameters matching ``task_params`` trainable.

    Arguments
    ---------
    modules : torch.nn.Module or dict
        The model.
    task_params : list of str
        fnmatch patterns of the task parameters' names.

    Returns
    -------
    tuple of int
        ``(task parameter count, total parameter count)``.

    Example
    -------
    >>> from speechbrain_meta.task_params import ScaleShift
    >>> model = torch.nn.Sequential(ScaleShift(torch.nn.Linear(3, 2)))
    >>> freeze_backbone(model)
    (4, 12)
    """
    if isinstance(modules, dict):
        modules = torch.nn.ModuleDict(modules)
    n_task = n_total = 0
    for name, param in modules.named_parameters():
        is_task = matches(name, task_params)
        param.requires_grad_(is_task)
        n_total += param.numel()
        n_task += param.numel() if is_task else 0
    if n_task == 0:
        raise ValueError(
            f"No parameter matches the task patterns {list(task_params)}: "
            "insert task parameters first (speechbrain_meta.task_params, "
            "speechbrain.nnet.adapters.AdaptedModel)."
        )
    return n_task, n_total


class MetaTransferBrain(MetaBrain):
    """Meta-learns task parameters of a frozen pretrained model.

    Arguments
    ---------
    *args : tuple
        As for ``MetaBrain``; the modules are the pretrained model's, task
        parameters already inserted.
    task_params : list of str, optional
        fnmatch patterns of the task parameters (else the ``task_params``
        hparam, else ``["*task_*", "*adapter_*"]``). Everything else is
        frozen.
    **kwargs : dict
        As for ``MetaBrain`` (``rule_opt_class`` for learned rates).

    Example
    -------
    >>> from speechbrain_meta.algorithms import MAML
    >>> from speechbrain_meta.inner import InnerLoop
    >>> from speechbrain_meta.task_params import LHUC
    >>> class Regressor(MetaTransferBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.model(batch.x.data)
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return torch.nn.functional.mse_loss(predictions, batch.y.data)
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
    ...                             LHUC(torch.nn.Linear(8, 1)))
    >>> brain = Regressor(
    ...     modules={"model": model},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    ...     meta_algorithm=MAML(InnerLoop(1, inner_lr=0.5,
    ...                                   adapt_params=["*task_*"])),
    ...     run_opts={"device": "cpu"},
    ... )
    >>> brain.trainable_fraction()
    0.029411764705882353
    """

    # The backbone is frozen: its normalisation statistics and dropout stay
    # in inference mode while the task parameters adapt and meta-train
    # (batch statistics would normalise per-channel scales away); MetaBrain
    # runs episodes in this mode.
    adapt_in_train_mode = False

    def __init__(self, *args, task_params=None, **kwargs):
        self.task_params = task_params  # else the hparam: _prepare_modules
        super().__init__(*args, **kwargs)
        logger.info(
            "MetaTransferBrain: %d task parameters of %d (%.2f%%); backbone "
            "frozen",
            self.n_task_params,
            self.n_params,
            100.0 * self.trainable_fraction(),
        )

    def _prepare_modules(self):
        """Freezes everything but the task parameters."""
        if self.task_params is None:
            self.task_params = self._hparam("task_params", TASK_PARAMS)
        self.task_params = list(self.task_params)
        self.n_task_params, self.n_params = freeze_backbone(
            self.modules, self.task_params
        )

    def trainable_fraction(self):
        """Task parameters as a fraction of all the model's parameters.

        Returns
        -------
        float
        """
        return self.n_task_params / self.n_params

    def task_state(self, fast_weights=None):
        """The task parameters (adapted ones if given), name to tensor.

        Arguments
        ---------
        fast_weights : dict, optional
            Adapted weights from ``adapted_weights``; default: the current
            (meta-learned initial) task parameters.

        Returns
        -------
        OrderedDict
        """
        names = self.meta_parameters(self.inner_loop)
        source = fast_weights if fast_weights is not None else names
        # Canonical names: the same file with or without DDP wrappers.
        return OrderedDict(
            (canonical_name(n), source[n].detach().cpu().clone()) for n in names
        )

    def save_task_state(self, path, fast_weights=None):
        """Writes only the task parameters of one task.

        Arguments
        ---------
        path : str
            The file to write.
        fast_weights : dict, optional
            The task's adapted weights (``adapted_weights``'s result).

        Returns
        -------
        int
            The file size in bytes.
        """
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        path = os.fspath(path)
        tmp = path + ".tmp"
        torch.save(self.task_state(fast_weights), tmp)
        os.replace(tmp, path)  # never a half-written task state
        return os.path.getsize(path)

    def load_task_state(self, path):
        """Reads a task state and puts it into the model's task parameters.

        Arguments
        ---------
        path : str
            A file written by ``save_task_state``.

        Returns
        -------
        OrderedDict
            The loaded task parameters.
        """
        state = torch.load(path, map_location=self.device)
        params = OrderedDict(
            (canonical_name(n), p)
            for n, p in self.meta_parameters(self.inner_loop).items()
        )
        unknown = set(state) - set(params)
        missing = set(params) - set(state)
        if unknown or missing:
            raise KeyError(
                f"{path}: task state does not fit this model (unknown "
                f"{sorted(unknown)[:5]}, missing {sorted(missing)[:5]})"
            )
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)
        return state

    def model_state_bytes(self):
        """Size of the full model's parameters as saved by torch, in bytes.

        Returns
        -------
        int
        """
        return sum(
            p.numel() * p.element_size() for p in self.modules.parameters()
        )
