"""The interface every meta-learning algorithm implements.

An algorithm turns one task episode into an outer objective. It is built on
a *copy* of the inner-loop settings it is given (``InnerLoop.replace``), so
that FOMAML forcing first order, or ANIL restricting what adapts, never
changes an inner loop someone else holds. It declares what it needs from
the brain:

* ``rule_gets_gradient``: whether its outer objective depends on the update
  rule (False for Reptile and fine-tuning: a learned rule would never
  learn, so the brain refuses the combination);
* ``needs_query``: whether a training episode must have a query set.

A ``task_init`` (e.g. ``PrototypeHead``) makes the weights a task starts
from depend on its support set: ``learner.run_inner_loop`` applies it before the
first inner step, in training and at test time alike.

``outer_loss(learner, episode, outer_step)`` gets a *learner* (a
``MetaBrain``) that provides three operations:

* ``learner.meta_parameters(inner_loop)``: the selected meta-parameters,
* ``learner.run_inner_loop(params, support, inner_loop, keep_steps=False,
  support_loss=None)``: the one inner loop (``support_loss``: the
  algorithm's ``support_loss``, when a ``support_objective`` replaces the
  recipe's loss on the support, e.g. without transcripts),
* ``learner.task_loss(fast_weights, batch)``: the loss of the model
  evaluated with the fast weights,

and returns ``(objective, reported_loss)``: the objective is
back-propagated into the meta-parameters by the brain, the reported loss
is logged. ``outer_step`` counts the outer steps taken so far (for
schedules such as MAML++'s multi-step loss annealing).

Authors
 * speechbrain-meta developers 2026
"""

import torch


class MetaAlgorithm(torch.nn.Module):
    """Base class of the meta-learning algorithms.

    Arguments
    ---------
    inner_loop : InnerLoop
        The inner-loop settings; the algorithm keeps a copy.
    task_init : callable, optional
        ``task_init(learner, params, support) -> params``: the weights a
        task starts from, given its support set (e.g. ``PrototypeHead``);
        None: the meta-parameters themselves.
    support_objective : callable, optional
        ``support_objective(learner)(start) -> loss_fn(fast, batch)``: the
        loss the inner loop descends on the support (e.g.
        ``speechbrain_meta.unsupervised.EntropyObjective``: no
        transcripts); None: the recipe's own loss.
    **inner_changes : dict
        Settings the algorithm imposes on its copy (e.g.
        ``first_order=True``).

    Example
    -------
    >>> from speechbrain_meta.inner import InnerLoop
    >>> class Nothing(MetaAlgorithm):
    ...     def outer_loss(self, learner, episode, outer_step):
    ...         return None, None
    >>> given = InnerLoop(inner_steps=2)
    >>> algo = Nothing(given, first_order=True)
    >>> algo.inner_loop.first_order, given.first_order
    (True, False)
    """

    #: The outer objective depends on the inner loop's update rule.
    rule_gets_gradient = True
    #: A training episode needs a query set.
    needs_query = True

    def __init__(
        self,
        inner_loop,
        task_init=None,
        support_objective=None,
        **inner_changes,
    ):
        super().__init__()
        self.inner_loop = inner_loop.replace(**inner_changes)
        self.task_init = task_init
        self.support_objective = support_objective

    def support_loss(self, learner, start):
        """The inner loop's support loss for a task (None: the recipe's).

        Arguments
        ---------
        learner : MetaBrain
            The brain.
        start : dict
            The weights the task starts from (the objective's reference).

        Returns
        -------
        callable or None
            ``loss_fn(fast_weights, batch)``.
        """
        if self.support_objective is None:
            return None
        return self.support_objective(learner)(start)

    def start_weights(self, learner, params, support):
        """The weights the inner loop starts from on a task.

        Arguments
        ---------
        learner : MetaBrain
            The brain (its modules compute what ``task_init`` needs).
        params : dict
            The meta-parameters (or their copies).
        support : PaddedBatch
            The task's support batch.

        Returns
        -------
        dict
            ``params``, or what ``task_init`` makes of them.
        """
        if self.task_init is None:
            return params
        return self.task_init(learner, params, support)

    def outer_loss(self, learner, episode, outer_step):
        """The outer objective of one task episode.

        Arguments
        ---------
        learner : MetaBrain
            Provides ``meta_parameters``, ``run_inner_loop`` and ``task_loss``.
        episode : Episode
            One task's support and query batches.
        outer_step : int
            Outer steps taken so far.

        Returns
        -------
        tuple of torch.Tensor
            The objective to back-propagate and the (detached) loss to
            report.
        """
        raise NotImplementedError
