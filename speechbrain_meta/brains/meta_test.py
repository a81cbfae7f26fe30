"""Meta-test: adapting a copy of the meta-parameters to a task, and
scoring its query (``MetaBrain``'s validation and test stages).

Authors
 * speechbrain-meta developers 2026
"""

from collections import OrderedDict

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.adaptation import Adaptation
from speechbrain_meta.data.episode import Episode
from speechbrain_meta.inner import NonFiniteInnerLoss
from speechbrain_meta.modes import modules_in_mode

logger = get_logger(__name__)


class MetaTestMixin:
    """How a ``MetaBrain`` adapts at meta-test and scores an episode.

    Validation and test episodes are adapted from detached copies of the
    meta-parameters (``adapted_weights``), with the model's own adaptation
    unless told otherwise (``own_adaptation``); the meta-parameters never
    change. Mixed into ``MetaBrain`` before ``sb.Brain``.

    Example
    -------
    >>> from speechbrain_meta import MAML, InnerLoop, MetaBrain
    >>> maml = MAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    >>> brain = MetaBrain(modules={"model": torch.nn.Linear(2, 1)},
    ...     meta_algorithm=maml, run_opts={"device": "cpu"})
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> support = PaddedBatch(
    ...     [{"x": torch.ones(2), "y": torch.ones(1)}])
    >>> brain.compute_forward = lambda b, s: brain.modules.model(b.x.data)
    >>> brain.compute_objectives = lambda p, b, s: ((p - b.y.data) ** 2).mean()
    >>> fast = brain.adapted_weights(support, inner_steps=3)
    >>> bool((fast["model.weight"] != brain.modules.model.weight).any())
    True
    >>> brain.own_adaptation().describe()["steps"]
    2
    """

    def own_adaptation(self):
        """How this model adapts when nothing else is said.

        Its inner loop's rule, ``eval_inner_steps`` steps (else the inner
        loop's) and the ``adapt_in_train_mode`` normalisation mode.

        Returns
        -------
        Adaptation
        """
        steps = self._hparam("eval_inner_steps", None)
        return Adaptation(
            "own",
            steps=self.inner_loop.inner_steps if steps is None else steps,
            train_mode=self._hparam(
                "adapt_in_train_mode", self.adapt_in_train_mode
            ),
        )

    def evaluate_batch(self, batch, stage):
        """Meta-test on one episode: adapt a copy, then score the query.

        The meta-parameters are never modified: the inner loop starts from
        detached copies. The query is evaluated with the adapted weights by
        the recipe's ``compute_objectives`` for ``stage``, which is where a
        recipe decodes and fills its ``ErrorRateStats``.

        Arguments
        ---------
        batch : Episode or PaddedBatch
            An episode (a plain batch is evaluated without adaptation).
        stage : sb.Stage
            Stage.VALID or Stage.TEST.

        Returns
        -------
        torch.Tensor
            The detached query loss.
        """
        if not isinstance(batch, Episode):
            return super().evaluate_batch(batch, stage)
        try:
            fast = self.adapted_weights(batch.support)
        except NonFiniteInnerLoss as err:
            # Validation must not kill a long run: score this episode with
            # the unadapted weights, say so, and count it.
            self.diverged_adaptations += 1
            logger.warning(
                "%s: adaptation to task %r diverged (%s); its query is scored "
                "without adaptation (%d so far)",
                stage.name,
                batch.task,
                err,
                self.diverged_adaptations,
            )
            fast = self.adapted_weights(None)
        with torch.no_grad(), self.evaluation_ctx:
            loss = self.task_loss(fast, batch.query, stage)
        return loss.detach().float().cpu()

    def adapted_weights(
        self,
        support,
        inner_steps=None,
        inner_loop=None,
        train_mode=None,
        keep_steps=False,
        support_loss=None,
    ):
        """Adapts a copy of the meta-parameters to a support set.

        The meta-parameters are never modified. (``Adaptation`` in
        ``speechbrain_meta.adaptation`` bundles these settings, with safe
        adaptation.)

        Arguments
        ---------
        support : PaddedBatch or None
            The task's K utterances (None or K = 0: no adaptation).
        inner_steps : int, optional
            Adaptation steps (default: ``eval_inner_steps`` hparam, else the
            inner loop's steps).
        inner_loop : InnerLoop, optional
            The adaptation's settings (default: the algorithm's inner loop,
            with its learned rule if it has one); e.g. a fine-tuning rule
            chosen on meta-dev.
        train_mode : bool, optional
            Normalisation and dropout in training mode while adapting
            (default: the ``adapt_in_train_mode`` hparam, else the class
            default).
        keep_steps : bool
            Return the weights after every step, the unadapted ones first.
        support_loss : callable, optional
            Made by ``support_loss(start)`` from the unadapted weights, it
            is the loss the inner loop descends (see ``run_inner_loop``).

        Returns
        -------
        dict or list of dict
            Detached adapted weights, name to tensor (a list of them with
            ``keep_steps``).
        """
        if inner_loop is None:
            inner_loop = self.inner_loop
        if inner_steps is None:
            inner_steps = self._hparam("eval_inner_steps", None)
        if train_mode is None:
            train_mode = self._hparam(
                "adapt_in_train_mode", self.adapt_in_train_mode
            )
        theta = self.meta_parameters(inner_loop)
        start = OrderedDict(
            (n, p.detach().clone().requires_grad_(True))
            for n, p in theta.items()
        )
        if support is None:
            path = [start]
        else:
            mode = modules_in_mode(self.modules, train_mode)
            with mode, torch.enable_grad(), self.training_ctx:
                path = self.run_inner_loop(
                    start,
                    support,
                    inner_loop,
                    inner_steps=inner_steps,
                    first_order=True,
                    keep_steps=True,
                    support_loss=(
                        None if support_loss is None else support_loss(start)
                    ),
                )
        path = [
            OrderedDict((n, w.detach()) for n, w in fast.items())
            for fast in path
        ]
        return path if keep_steps else path[-1]
