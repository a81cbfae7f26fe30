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

from speechbrain_meta.algorithms.base import MetaAlgorithm


class Reptile(MetaAlgorithm):
    """Reptile: move the initialisation toward the task-adapted weights.

    Arguments
    ---------
    inner_loop : InnerLoop
        The inner-loop settings; the algorithm's copy is first order
        (Reptile never differentiates through the inner loop).
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

    # The surrogate holds phi constant: no gradient reaches a learned update
    # rule. The query set is only reported on.
    rule_gets_gradient = False
    needs_query = False

    def __init__(self, inner_loop, adapt_on_query=False):
        super().__init__(inner_loop, first_order=True)
        self.adapt_on_query = bool(adapt_on_query)

    def outer_loss(self, learner, episode, outer_step):
        """The Reptile surrogate objective for one task.

        ``0.5 * ||theta - stopgrad(phi)||^2``, whose gradient with respect to
        theta is ``theta - phi``.

        Arguments
        ---------
        learner : MetaBrain
            Provides the meta-parameters, the inner loop and the task loss.
        episode : Episode
            Support and query batches of one task.
        outer_step : int
            Outer steps taken so far (unused).

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
                phi = learner.run_inner_loop(phi, batch, self.inner_loop)
        objective = 0.0
        for name, weight in theta.items():
            diff = weight - phi[name].detach()
            # At least float32 (half-precision squares lose the move).
            diff = diff.to(torch.promote_types(diff.dtype, torch.float32))
            objective = objective + 0.5 * (diff**2).sum()
        with torch.no_grad():
            batch = episode.query if episode.query is not None else batches[0]
            reported = learner.task_loss(phi, batch)
        return objective, reported.detach()
