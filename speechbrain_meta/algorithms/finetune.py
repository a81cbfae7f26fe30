"""Fine-tuning: the baselines' adaptation rule, with no meta-learning.

Joint (multitask) training, training from scratch and adapter fine-tuning
adapt to a new task the ordinary way: a few steps of SGD on its support set,
here the same ``InnerLoop`` the meta-learners use, so every method gets the
same adaptation budget. The outer objective, used only if a ``MetaBrain``
is trained with it, is the plain multitask loss of the episode's utterances
at the current weights (no inner loop): joint training on task-homogeneous
batches.

Authors
 * speechbrain-meta developers 2026
"""

import torch

from speechbrain_meta.algorithms.base import MetaAlgorithm


class FineTune(MetaAlgorithm):
    """Plain fine-tuning as the adaptation rule; multitask loss as objective.

    Arguments
    ---------
    inner_loop : InnerLoop
        The fine-tuning rule applied at adaptation time (the algorithm's
        copy is first order).
    task_init : callable, optional
        The task's starting weights from its support (see
        ``MetaAlgorithm``), e.g. a ``PrototypeHead`` for a new label set.

    Example
    -------
    >>> from speechbrain_meta.inner import InnerLoop
    >>> FineTune(InnerLoop(inner_steps=5, inner_lr=0.1)).inner_loop.inner_steps
    5
    """

    # The multitask objective has no inner loop in it.
    rule_gets_gradient = False
    needs_query = False

    def __init__(self, inner_loop, task_init=None):
        super().__init__(inner_loop, task_init=task_init, first_order=True)

    def outer_loss(self, learner, episode, outer_step):
        """The multitask loss of the episode's support and query.

        Arguments
        ---------
        learner : MetaBrain
            Provides the meta-parameters and the task loss.
        episode : Episode
            One task's support and query batches.
        outer_step : int
            Outer steps taken so far (unused).

        Returns
        -------
        tuple of torch.Tensor
            The objective and the reported (detached) loss.
        """
        theta = learner.meta_parameters(self.inner_loop)
        losses = [
            learner.task_loss(theta, batch)
            for batch in (episode.support, episode.query)
            if batch is not None
        ]
        objective = torch.stack(losses).mean()
        return objective, objective.detach()
