"""Reptile (Nichol et al., 2018).

For one task T with support S::

    phi = theta;  k steps of SGD on L_S from phi
    theta <- theta + epsilon * (phi - theta)

Here the move is written as a gradient, ``grad = theta - phi``, so that the
brain's outer optimiser applies it: plain SGD with learning rate epsilon is
exactly the update above, averaged over the tasks of a meta-batch (gradient
accumulation); Adam gives the paper's "Reptile with Adam" variant.

Authors
 * speechbrain-meta developers 2026
"""

import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


class Reptile(torch.nn.Module):
    """Reptile: move the initialisation toward the task-adapted weights.

    Arguments
    ---------
    inner_loop : InnerLoop
        Its ``first_order`` flag is forced to True (Reptile never
        differentiates through the inner loop).
    adapt_on_query : bool
        If True, the inner loop runs on support and query together (all of
        the task's data, as in the paper); the query loss is then reported
        after adaptation on it. Default False: adapt on the support only and
        report the held-out query loss.

    Example
    -------
    >>> from speechbrain_meta.inner import InnerLoop
    >>> Reptile(InnerLoop(inner_steps=3)).inner_loop.first_order
    True
    """

    def __init__(self, inner_loop, adapt_on_query=False):
        super().__init__()
        inner_loop.first_order = True
        self.inner_loop = inner_loop
        self.adapt_on_query = bool(adapt_on_query)

    def outer_loss(self, learner, episode):
        """The Reptile surrogate objective for one task.

        ``0.5 * ||theta - stopgrad(phi)||^2``, whose gradient with respect to
        theta is ``theta - phi``.

        Arguments
        ---------
        learner : MetaBrain
            Provides the meta-parameters, the inner loop and the task loss.
        episode : Episode
            Support and query batches of one task.

        Returns
        -------
        objective : torch.Tensor
            The surrogate to back-propagate.
        reported : torch.Tensor
            The query loss after adaptation (or the last support loss when
            the episode has no query).
        """
        theta = learner.meta_parameters(self.inner_loop)
        batches = [episode.support]
        if self.adapt_on_query and episode.query is not None:
            batches.append(episode.query)
        phi = theta
        for batch in batches:
            if batch is not None:
                phi = learner.adapt(phi, batch, self.inner_loop)
        objective = 0.0
        for name, weight in theta.items():
            diff = weight - phi[name].detach()
            objective = objective + 0.5 * (diff.float() ** 2).sum()
        with torch.no_grad():
            batch = episode.query if episode.query is not None else batches[0]
            reported = learner.task_loss(phi, batch)
        return objective, reported.detach()
