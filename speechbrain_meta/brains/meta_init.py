"""MetaInitBrain: meta-learn the initialisation (MAML, FOMAML, Reptile, ANIL).

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain.utils.logger import get_logger

from speechbrain_meta.brains.meta_brain import MetaBrain

logger = get_logger(__name__)


class MetaInitBrain(MetaBrain):
    """Meta-learns the starting weights of the recipe's modules.

    The outer optimiser (``opt_class``) updates the modules' parameters, the
    initialisation theta, from the algorithm's outer objective:

    * ``MAML``: the query loss after the inner loop, differentiated through
      it (second order),
    * ``FOMAML``: the same with first-order gradients,
    * ``ANIL``: MAML whose inner loop adapts only the head,
    * ``Reptile``: the gradient ``theta - phi`` toward the adapted weights.

    Select one with a fragment from ``speechbrain_meta/hparams`` (also at the
    repository's ``hparams/``)::

        meta: !include:maml.yaml
        meta_algorithm: !ref <meta[algorithm]>

    Arguments
    ---------
    *args : tuple
        As for ``MetaBrain``.
    **kwargs : dict
        As for ``MetaBrain``.

    Example
    -------
    >>> from speechbrain_meta.algorithms import Reptile
    >>> from speechbrain_meta.inner import InnerLoop
    >>> class Regressor(MetaInitBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.model(batch.x.data)
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return torch.nn.functional.mse_loss(predictions, batch.y.data)
    >>> brain = Regressor(
    ...     modules={"model": torch.nn.Linear(2, 1)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.5),
    ...     meta_algorithm=Reptile(InnerLoop(inner_steps=3, inner_lr=0.1)),
    ...     run_opts={"device": "cpu"},
    ... )
    >>> brain.meta_algorithm.inner_loop.first_order
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
