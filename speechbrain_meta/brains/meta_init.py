"""MetaInitBrain and MetaOptimizerBrain: the two families' names for MetaBrain.

``MetaBrain`` serves meta-initialisation and meta-optimisation alike; these
names say which one a recipe means, and keep yaml files that name them
working (``meta_brain_class: !name:speechbrain_meta.MetaInitBrain``).

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.brains.meta_brain import MetaBrain


class MetaInitBrain(MetaBrain):
    """Meta-learns the starting weights of the recipe's modules.

    Exactly ``MetaBrain``. The outer optimiser (``opt_class``) updates the
    initialisation theta from the algorithm's outer objective: MAML (the
    query loss after the inner loop, differentiated through it), FOMAML
    (first-order gradients), ANIL (only the head adapts), Reptile (the
    gradient ``theta - phi`` toward the adapted weights).

    Arguments
    ---------
    *args : tuple
        As for ``MetaBrain``.
    **kwargs : dict
        As for ``MetaBrain``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_meta.algorithms import Reptile
    >>> from speechbrain_meta.inner import InnerLoop
    >>> brain = MetaInitBrain(
    ...     modules={"model": torch.nn.Linear(2, 1)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.5),
    ...     meta_algorithm=Reptile(InnerLoop(inner_steps=3, inner_lr=0.1)),
    ...     run_opts={"device": "cpu"},
    ... )
    >>> brain.inner_loop.first_order
    True
    """


class MetaOptimizerBrain(MetaBrain):
    """Meta-learns the inner loop's update rule (Meta-SGD, LayerStepLR...).

    ``MetaBrain``, which already trains any update rule that has
    parameters, plus one check: the rule must have some (plain SGD would
    make this a ``MetaInitBrain``, which is almost always a mistake in the
    yaml).

    Arguments
    ---------
    *args : tuple
        As for ``MetaBrain`` (``rule_opt_class``, ``meta_train_init``).
    **kwargs : dict
        As for ``MetaBrain``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_meta.algorithms import MAML
    >>> from speechbrain_meta.inner import InnerLoop
    >>> from speechbrain_meta.update_rules import MetaSGD
    >>> class Regressor(MetaOptimizerBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.model(batch.x.data)
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return torch.nn.functional.mse_loss(predictions, batch.y.data)
    >>> brain = Regressor(
    ...     modules={"model": torch.nn.Linear(2, 1)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    ...     rule_opt_class=lambda p: torch.optim.Adam(p, lr=0.01),
    ...     meta_algorithm=MAML(InnerLoop(1, update_rule=MetaSGD(0.1))),
    ...     run_opts={"device": "cpu"},
    ... )
    >>> data = [{"x": torch.randn(2), "y": torch.randn(1), "task": t % 3}
    ...         for t in range(30)]
    >>> brain.fit(range(1), data, progressbar=False, train_loader_kwargs={
    ...     "episodes": {"group_by": "task", "n_support": 3, "n_query": 3,
    ...                  "episodes_per_epoch": 2}})
    >>> sorted(brain.optimizers_dict)
    ['model', 'update_rule']
    >>> rates = brain.update_rule.learning_rates("model.weight")
    >>> bool((rates != 0.1).any())
    True
    """

    def _check_update_rule(self):
        if not self.learns_update_rule():
            raise ValueError(
                f"The update rule {self.update_rule!r} has nothing to learn; "
                "use MetaInitBrain, or a MetaSGD / LayerStepLR / "
                "LearnedUpdate rule."
            )
        super()._check_update_rule()
