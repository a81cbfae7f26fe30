"""Meta-learning algorithms: each one short file, read as its paper.

Every algorithm subclasses ``MetaAlgorithm`` (``base.py``: the interface,
what a learner provides, what an algorithm declares). Adding one means a
short file here and an hparams fragment in ``speechbrain_meta/hparams``.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.algorithms.base import MetaAlgorithm
from speechbrain_meta.algorithms.finetune import FineTune
from speechbrain_meta.algorithms.maml import ANIL, FOMAML, MAML
from speechbrain_meta.algorithms.protonet import (
    ProtoNet,
    PrototypeHead,
    prototype_head,
)
from speechbrain_meta.algorithms.reptile import Reptile

__all__ = [
    "ANIL",
    "FOMAML",
    "FineTune",
    "MAML",
    "MetaAlgorithm",
    "PrototypeHead",
    "ProtoNet",
    "Reptile",
    "prototype_head",
]
