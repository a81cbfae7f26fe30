"""MetaOptimizerBrain: meta-learn the inner loop's update rule.

The update rule (``speechbrain_meta.update_rules``: ``MetaSGD``,
``LayerStepLR``, ``LearnedUpdate``) is a module inside the algorithm's
inner loop. This brain gives it its own outer optimiser and learning rate,
trains it with the initialisation (Meta-SGD, MAML++) or alone on a fixed
pretrained initialisation, and checkpoints both: the rule's state through
the ``meta_algorithm`` recoverable, its optimiser as ``rule_optimizer``.
Wherever this brain adapts (meta-test, the few-shot protocol, inference),
the learned rule is the one applied.

Authors
 * speechbrain-meta developers 2026
"""

from collections import OrderedDict

from speechbrain.utils.logger import get_logger

from speechbrain_meta.algorithms.reptile import Reptile
from speechbrain_meta.brains.meta_init import MetaInitBrain

logger = get_logger(__name__)


class MetaOptimizerBrain(MetaInitBrain):
    """Meta-learns the update rule, with or without the initialisation.

    Arguments
    ---------
    *args : tuple
        As for ``MetaBrain``.
    rule_opt_class : callable, optional
        Builds the update rule's outer optimiser from its parameters (else
        the ``rule_opt_class`` hparam; else ``opt_class``).
    meta_train_init : bool, optional
        Also meta-train the initialisation with ``opt_class`` (else the
        ``meta_train_init`` hparam, default True). False learns the rule
        alone on the modules' current (e.g. pretrained) weights.
    **kwargs : dict
        As for ``MetaBrain``.

    Example
    -------
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

    requires_learned_rule = True

    def __init__(
        self, *args, rule_opt_class=None, meta_train_init=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        hparams = getattr(self, "hparams", None)
        hparams = vars(hparams) if hparams is not None else {}
        self.rule_opt_class = (
            rule_opt_class
            if rule_opt_class is not None
            else hparams.get("rule_opt_class", self.opt_class)
        )
        self.meta_train_init = bool(
            meta_train_init
            if meta_train_init is not None
            else hparams.get("meta_train_init", True)
        )
        if isinstance(self.meta_algorithm, Reptile):
            raise ValueError(
                "Reptile's outer gradient does not depend on the update "
                "rule: use MAML or FOMAML to meta-learn it."
            )
        if self.requires_learned_rule and not list(
            self.update_rule.parameters()
        ):
            raise ValueError(
                f"The update rule {self.update_rule!r} has nothing to learn; "
                "use MetaInitBrain, or a MetaSGD / LayerStepLR / "
                "LearnedUpdate rule."
            )
        if self.rule_opt_class is None and list(self.update_rule.parameters()):
            raise ValueError(f"{type(self).__name__} needs a rule_opt_class")

    @property
    def update_rule(self):
        """The learned update rule of the inner loop."""
        return self.meta_algorithm.inner_loop.update_rule

    def meta_parameters(self, inner_loop):
        """The weights the inner loop starts from.

        With ``meta_train_init`` False they are detached leaf copies: the
        outer gradient reaches the rule only, the modules stay fixed.

        Arguments
        ---------
        inner_loop : InnerLoop
            Selects the parameters.

        Returns
        -------
        OrderedDict
        """
        selected = super().meta_parameters(inner_loop)
        if getattr(self, "meta_train_init", True):
            return selected
        return OrderedDict(
            (n, p.detach().requires_grad_(True)) for n, p in selected.items()
        )

    def init_optimizers(self):
        """One optimiser for the rule, one for the initialisation.

        Both are in ``optimizers_dict`` (so Brain's step, clipping and
        zeroing cover them) and registered with the checkpointer.
        """
        self.optimizers_dict = {}
        if self.meta_train_init and self.opt_class is not None:
            self.optimizer = self.opt_class(
                [p for p in self.modules.parameters() if p.requires_grad]
            )
            self.optimizers_dict["model"] = self.optimizer
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("optimizer", self.optimizer)
        if not list(self.update_rule.parameters()):
            return
        self.rule_optimizer = self.rule_opt_class(self.update_rule.parameters())
        self.optimizers_dict["update_rule"] = self.rule_optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable(
                "rule_optimizer", self.rule_optimizer
            )
