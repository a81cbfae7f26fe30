"""speechbrain-meta: meta-learning for SpeechBrain.

Three families on one engine: meta-initialisation (MAML, first-order MAML,
Reptile, ANIL, multi-step loss), meta-optimisation (Meta-SGD, per-tensor
per-step rates, a learned update network) and meta-transfer (scaling and
shifting, LHUC, LoRA and bottleneck adapters on a frozen model). One
functional inner loop, a CTC and an LSTM with written-out second
derivatives, episodic data loading and the few-shot protocol, as
SpeechBrain Brains.

Layout (each module imports only those above it):

* ``naming``: parameter names and selection patterns;
* ``update_rules``, ``inner``, ``autograd``, ``losses``, ``lstm``,
  ``distributed``: the engine;
* ``algorithms``: one short file per algorithm, on ``MetaAlgorithm``;
* ``data``: tasks, episodes, manifests, the synthetic corpora;
* ``brains``: ``MetaBrain`` and ``MetaTransferBrain``;
* ``evaluation``, ``interpret``, ``task_params``, ``reports``;
* ``crdnn``: SpeechBrain's CRDNN with its RNN given the lengths.

Authors
 * speechbrain-meta developers 2026
"""

import os

from speechbrain_meta.algorithms import (
    ANIL,
    FOMAML,
    MAML,
    FineTune,
    MetaAlgorithm,
    Reptile,
)
from speechbrain_meta.brains import (
    MetaBrain,
    MetaInitBrain,
    MetaOptimizerBrain,
    MetaTransferBrain,
    meta_brain_class,
)
from speechbrain_meta.data import Episode, EpisodeCollate, TaskSampler
from speechbrain_meta.inner import CudnnRNNGuard, InnerLoop, StatisticsGuard
from speechbrain_meta.losses import ctc_loss, ctc_loss_pure
from speechbrain_meta.lstm import lstm_forward, twice_differentiable_lstms
from speechbrain_meta.update_rules import (
    SGD,
    Adam,
    LayerStepLR,
    LearnedUpdate,
    MetaSGD,
)

__version__ = "0.1.0"

HPARAMS_DIR = os.path.join(os.path.dirname(__file__), "hparams")


def hparams_path(name):
    """Path of one of the packaged hyperpyyaml fragments.

    Arguments
    ---------
    name : str
        File name, e.g. ``"maml.yaml"``.

    Returns
    -------
    str
        The absolute path.

    Example
    -------
    >>> os.path.basename(hparams_path("maml.yaml"))
    'maml.yaml'
    """
    path = os.path.join(HPARAMS_DIR, name)
    if not os.path.exists(path):
        available = sorted(os.listdir(HPARAMS_DIR))
        raise FileNotFoundError(f"No fragment {name!r}; available: {available}")
    return path


__all__ = [
    "ANIL",
    "FOMAML",
    "FineTune",
    "MAML",
    "MetaAlgorithm",
    "Reptile",
    "MetaBrain",
    "MetaInitBrain",
    "MetaOptimizerBrain",
    "MetaTransferBrain",
    "meta_brain_class",
    "Episode",
    "EpisodeCollate",
    "TaskSampler",
    "InnerLoop",
    "StatisticsGuard",
    "CudnnRNNGuard",
    "ctc_loss",
    "ctc_loss_pure",
    "lstm_forward",
    "twice_differentiable_lstms",
    "SGD",
    "Adam",
    "MetaSGD",
    "LayerStepLR",
    "LearnedUpdate",
    "HPARAMS_DIR",
    "hparams_path",
]
