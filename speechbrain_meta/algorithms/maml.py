"""MAML, first-order MAML and ANIL.

MAML (Finn et al., 2017), for one task T with support S and query Q::

    phi_0 = theta
    for i in 1..k:   phi_i = phi_{i-1} - alpha * grad L_S(phi_{i-1})
    outer objective: L_Q(phi_k)          (differentiated through the loop)

First-order MAML drops the second-order terms (the support gradients are
constants), so grad_theta L_Q(phi_k) = grad_phi L_Q(phi_k).
ANIL (Raghu et al., 2020) adapts only the head in the inner loop.

The multi-step loss (MAML++, Antoniou et al. 2019; Singh et al. 2022)
replaces L_Q(phi_k) by sum_i w_i L_Q(phi_i), i = 1..k.

With a ``support_objective``, L_S is that objective instead of the
recipe's loss: with ``EntropyObjective`` the support needs no transcripts
and the initialisation is meta-learned for unsupervised adaptation (the
query loss stays the supervised one).

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.algorithms.base import MetaAlgorithm
from speechbrain_meta.inner import InnerLoop  # noqa: F401 (doctests)


class MAML(MetaAlgorithm):
    """Model-agnostic meta-learning: the query loss after adaptation.

    Arguments
    ---------
    inner_loop : InnerLoop
        Inner steps, rule, order, and which parameters adapt.
    multi_step_weights : list of float, optional
        If given (one weight per inner step), the objective is the weighted
        sum of the query losses after every inner step.
    multi_step_anneal : int
        If > 0, the multi-step weights are annealed linearly over this many
        outer steps towards all weight on the last step (MAML++).
    **inner_changes : dict
        ``MetaAlgorithm``'s ``task_init`` and ``support_objective`` (the
        inner loop's loss, e.g. unsupervised), and settings imposed on the
        inner loop's copy.

    Example
    -------
    >>> maml = MAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    >>> maml.inner_loop.first_order
    False
    """

    def __init__(
        self,
        inner_loop,
        multi_step_weights=None,
        multi_step_anneal=0,
        **inner_changes,
    ):
        super().__init__(inner_loop, **inner_changes)
        self.multi_step_weights = multi_step_weights
        self.multi_step_anneal = int(multi_step_anneal)
        if multi_step_weights is not None:
            if len(multi_step_weights) != self.inner_loop.inner_steps:
                raise ValueError(
                    "multi_step_weights needs one weight per inner step: "
                    f"{len(multi_step_weights)} != "
                    f"{self.inner_loop.inner_steps}"
                )

    def step_weights(self, outer_step):
        """The multi-step loss weights at an outer step.

        Arguments
        ---------
        outer_step : int
            Number of outer steps taken so far.

        Returns
        -------
        list of float
            One weight per inner step (summing to the given weights' sum).

        Example
        -------
        >>> maml = MAML(InnerLoop(inner_steps=2), [0.5, 0.5], 10)
        >>> maml.step_weights(0), maml.step_weights(5), maml.step_weights(10)
        ([0.5, 0.5], [0.25, 0.75], [0.0, 1.0])
        """
        weights = list(self.multi_step_weights)
        if self.multi_step_anneal <= 0:
            return weights
        frac = min(1.0, outer_step / self.multi_step_anneal)
        total = sum(weights)
        final = [0.0] * (len(weights) - 1) + [total]
        return [(1 - frac) * w + frac * f for w, f in zip(weights, final)]

    def outer_loss(self, learner, episode, outer_step):
        """The MAML objective for one task.

        Arguments
        ---------
        learner : MetaBrain
            Provides the meta-parameters, the inner loop and the task loss.
        episode : Episode
            Support and query batches of one task.
        outer_step : int
            Outer steps taken so far (anneals the multi-step weights).

        Returns
        -------
        objective : torch.Tensor
            The query loss to back-propagate.
        reported : torch.Tensor
            The query loss after the last inner step.
        """
        theta = learner.meta_parameters(self.inner_loop)
        # The support loss is handed over only when it is not the recipe's
        # (a learner need not know the argument otherwise).
        support_loss = self.support_loss(learner, theta)
        extra = {} if support_loss is None else {"support_loss": support_loss}
        if self.multi_step_weights is None:
            fast = learner.run_inner_loop(
                theta, episode.support, self.inner_loop, **extra
            )
            query_loss = learner.task_loss(fast, episode.query)
            return query_loss, query_loss
        steps = learner.run_inner_loop(
            theta, episode.support, self.inner_loop, keep_steps=True, **extra
        )
        weights = self.step_weights(outer_step)
        objective = 0.0
        for w, fast in zip(weights, steps[1:]):
            if w == 0.0 and fast is not steps[-1]:
                continue
            query_loss = learner.task_loss(fast, episode.query)
            objective = objective + w * query_loss
        return objective, query_loss


class FOMAML(MAML):
    """First-order MAML: MAML with the inner loop's gradients as constants.

    Arguments
    ---------
    inner_loop : InnerLoop
        The inner-loop settings; the algorithm's copy is first order.
    **kwargs : dict
        As for ``MAML``.

    Example
    -------
    >>> FOMAML(InnerLoop(inner_steps=1)).inner_loop.first_order
    True
    """

    def __init__(self, inner_loop, **kwargs):
        super().__init__(inner_loop, first_order=True, **kwargs)


class ANIL(MAML):
    """Almost no inner loop: MAML whose inner loop adapts only the head.

    Arguments
    ---------
    inner_loop : InnerLoop
        The inner-loop settings; the algorithm's copy adapts
        ``head_params`` only.
    head_params : list of str
        fnmatch patterns of the head's parameters (e.g. ``["ctc_lin.*"]``).
    **kwargs : dict
        As for ``MAML``.

    Example
    -------
    >>> anil = ANIL(InnerLoop(inner_steps=1), head_params=["ctc_lin.*"])
    >>> anil.inner_loop.adapt_params
    ['ctc_lin.*']
    """

    def __init__(self, inner_loop, head_params, **kwargs):
        if isinstance(head_params, str):
            head_params = [head_params]
        super().__init__(inner_loop, adapt_params=list(head_params), **kwargs)
