"""MetaBrain: SpeechBrain's Brain, trained on task episodes.

One dataloader batch is one task episode (support + query). A meta-batch of
tasks is SpeechBrain's gradient accumulation (``grad_accumulation_factor``).
Everything else a ``Brain`` gives keeps working: the progress bar,
intra-epoch checkpoints, ``--precision``, non-finite loss checks,
``max_grad_norm``, ``optimizer_step`` counting (outer steps only), and the
recipe's ``on_stage_end`` logging.

The recipe keeps the usual contract: ``compute_forward(batch, stage)`` and
``compute_objectives(predictions, batch, stage)`` on a ``PaddedBatch``,
using ``self.modules``. The MetaBrain evaluates them with *fast weights* in
place of the module parameters through ``torch.func.functional_call``, so no
module is copied per task.

This file holds the brain's construction, the three operations every
algorithm is written with (``meta_parameters``, ``run_inner_loop``,
``task_loss``), the outer step with its non-finite handling, the outer
optimisers and checkpoint wiring. Its other concerns, one file each beside
it, are mixed in before ``sb.Brain``:

* ``meta_test.py``: adapting a copy to a task and scoring its query;
* ``episodic_loader.py``: the episodic DataLoader;
* ``ddp_wrapping.py``: DDP without ``SyncBatchNorm``;
* ``support_forward.py``: what surrounds a support forward (statistics
  guard, twice-differentiable CTC and LSTMs, cuDNN guard);
* ``inner_loss_scale.py``: fp16 loss scaling of the inner gradients;
* ``functional_model.py``: the modules as one module for
  ``functional_call``.

Authors
 * speechbrain-meta developers 2026
"""

from collections import OrderedDict

import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger
from speechbrain.utils.optimizers import rm_vector_weight_decay

from speechbrain_meta.brains.ddp_wrapping import DDPWrappingMixin
from speechbrain_meta.brains.episodic_loader import EpisodicLoaderMixin
from speechbrain_meta.brains.functional_model import FunctionalModel
from speechbrain_meta.brains.inner_loss_scale import InnerLossScaleMixin
from speechbrain_meta.brains.meta_test import MetaTestMixin
from speechbrain_meta.brains.support_forward import SupportForwardMixin
from speechbrain_meta.checkpoints import Counters, RandomState
from speechbrain_meta.data.episode import Episode
from speechbrain_meta.distributed import all_reduce_gradients
from speechbrain_meta.inner import (
    NonFiniteInnerLoss,
    all_finite,
)

logger = get_logger(__name__)


class MetaBrain(
    MetaTestMixin,
    EpisodicLoaderMixin,
    DDPWrappingMixin,
    SupportForwardMixin,
    InnerLossScaleMixin,
    sb.Brain,
):
    """A Brain whose training batches are task episodes.

    Subclass it instead of ``sb.Brain``, or mix it in front of an existing
    recipe's Brain with ``meta_brain_class``. The meta-learning algorithm
    comes from the ``meta_algorithm`` argument or hparam (see
    ``speechbrain_meta.algorithms`` and the ``hparams/`` fragments); its
    inner loop's update rule may be plain SGD or a learned rule
    (``speechbrain_meta.update_rules``). One brain serves every family:

    * meta-initialisation (MAML, FOMAML, Reptile, ANIL): the outer
      optimiser (``opt_class``) updates the modules' parameters;
    * meta-optimisation (Meta-SGD, LayerStepLR, LearnedUpdate): whenever the
      update rule has parameters, it gets its own outer optimiser
      (``rule_opt_class``), with or without the initialisation
      (``meta_train_init``); an algorithm whose outer gradient never
      reaches the rule (Reptile) is refused;
    * meta-transfer: ``MetaTransferBrain`` adds a frozen backbone and
      per-task state files.

    Arguments
    ---------
    modules : dict of str:torch.nn.Module
        As for ``sb.Brain``.
    opt_class : callable
        The outer optimiser of the initialisation (as ``sb.Brain``'s
        ``opt_class``).
    hparams : dict
        As for ``sb.Brain``. Read here when the argument of the same name
        is not given: ``meta_algorithm``, ``rule_opt_class``,
        ``meta_train_init``; and ``eval_inner_steps`` (inner steps at
        meta-test time, default: the algorithm's), ``adapt_in_train_mode``
        (default True: dropout on and batch statistics while adapting at
        meta-test, as in the inner loop).
    run_opts : dict
        As for ``sb.Brain``; ``device`` is honoured.
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        As for ``sb.Brain``. The algorithm (e.g. a learned update rule) is
        added to it as ``meta_algorithm``, the rule's optimiser as
        ``rule_optimizer``.
    meta_algorithm : MetaAlgorithm, optional
        The algorithm (``speechbrain_meta.algorithms``).
    rule_opt_class : callable, optional
        Builds the update rule's outer optimiser from its parameters
        (default: ``opt_class``). Only used when the rule has parameters.
    meta_train_init : bool, optional
        Meta-train the initialisation (default True). False learns the
        update rule alone on the modules' current (e.g. pretrained) weights.

    Example
    -------
    >>> from speechbrain_meta.algorithms import MAML
    >>> from speechbrain_meta.inner import InnerLoop
    >>> class Regressor(MetaBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.model(batch.x.data)
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return torch.nn.functional.mse_loss(predictions, batch.y.data)
    >>> brain = Regressor(
    ...     modules={"model": torch.nn.Linear(2, 1)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    ...     meta_algorithm=MAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
    ...     run_opts={"device": "cpu"},
    ... )
    >>> data = [{"x": torch.randn(2), "y": torch.randn(1), "task": t % 3}
    ...         for t in range(30)]
    >>> loader_kwargs = {"episodes": {"group_by": "task", "n_support": 3,
    ...                  "n_query": 3, "episodes_per_epoch": 4}}
    >>> brain.fit(range(1), data, train_loader_kwargs=loader_kwargs,
    ...           progressbar=False)
    >>> brain.optimizer_step
    4
    """

    # Adapt at meta-test with dropout on and batch statistics, as the inner
    # loop does in training (the ``adapt_in_train_mode`` hparam overrides).
    adapt_in_train_mode = True

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
        meta_algorithm=None,
        rule_opt_class=None,
        meta_train_init=None,
    ):
        super().__init__(
            modules=modules,
            opt_class=opt_class,
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        if meta_algorithm is None:
            meta_algorithm = self._hparam("meta_algorithm", None)
        if meta_algorithm is None:
            raise ValueError(
                "A MetaBrain needs a meta-learning algorithm: pass "
                "meta_algorithm=... or set `meta_algorithm` in the hparams "
                "(e.g. `!include:` a fragment of speechbrain_meta/hparams)."
            )
        self.meta_algorithm = meta_algorithm
        if rule_opt_class is None:
            rule_opt_class = self._hparam("rule_opt_class", self.opt_class)
        self.rule_opt_class = rule_opt_class
        if meta_train_init is None:
            meta_train_init = self._hparam("meta_train_init", True)
        self.meta_train_init = bool(meta_train_init)
        self._prepare_modules()
        # A learned update rule creates its state (rates per parameter...)
        # from the parameters it will adapt, before it is checkpointed.
        if hasattr(self.update_rule, "setup"):
            self.update_rule.setup(self.meta_parameters(self.inner_loop))
        self._check_update_rule()
        self.meta_algorithm.to(self.device)
        # A learned update rule is meta-state: checkpoint it (plain SGD has
        # no state and is left out).
        if self.checkpointer is not None and self.meta_algorithm.state_dict():
            self.checkpointer.add_recoverable(
                "meta_algorithm", self.meta_algorithm
            )
        self.skipped_episodes = 0
        self.skipped_steps = 0
        self.diverged_adaptations = 0
        self.nonfinite_count = 0  # Brain resets it each epoch, in fit()
        # fp16: the inner gradients' own loss scale (see _inner_loss_scale).
        self.inner_loss_scale = None
        self._inner_scale_streak = 0
        if self.checkpointer is not None:
            # An exact resume: the random generators (dropout) and the
            # counters continue where the checkpoint was taken (optional:
            # checkpoints written before they were saved still load).
            self.random_state = RandomState(defer=True)
            self.checkpointer.add_recoverable(
                "random_state", self.random_state, optional_load=True
            )
            self.checkpointer.add_recoverable(
                "meta_counters",
                Counters(
                    self,
                    [
                        "skipped_episodes",
                        "skipped_steps",
                        "diverged_adaptations",
                        "inner_loss_scale",
                    ],
                ),
                optional_load=True,
            )
        self._functional = None
        self._functional_key = None

    @property
    def inner_loop(self):
        """The algorithm's inner loop (its settings, its update rule)."""
        return self.meta_algorithm.inner_loop

    @property
    def update_rule(self):
        """The inner loop's update rule (plain SGD or a learned rule)."""
        return self.meta_algorithm.inner_loop.update_rule

    def learns_update_rule(self):
        """Whether the update rule has parameters that the brain trains.

        Returns
        -------
        bool
        """
        return any(True for _ in self.update_rule.parameters())

    # ------------------------------------------------------------------
    # The three operations every algorithm is written with.
    # ------------------------------------------------------------------
    def meta_parameters(self, inner_loop):
        """The weights the inner loop starts from.

        With ``meta_train_init`` False they are detached leaf copies: the
        outer gradient reaches the update rule only, the modules stay fixed.

        Arguments
        ---------
        inner_loop : InnerLoop
            Selects the parameters by its name patterns.

        Returns
        -------
        OrderedDict
            Name (as in ``self.modules.named_parameters()``) to parameter.
        """
        selected = inner_loop.select(self.modules.named_parameters())
        if not selected:
            names = [n for n, _ in self.modules.named_parameters()][:10]
            raise ValueError(
                f"The inner loop's patterns {inner_loop.adapt_params} "
                f"(minus {inner_loop.frozen_params}) select no trainable "
                f"parameter. Some parameter names: {names}"
            )
        if self.meta_train_init:
            return selected
        return OrderedDict(
            (n, p.detach().requires_grad_(True)) for n, p in selected.items()
        )

    def task_loss(self, fast_weights, batch, stage=sb.Stage.TRAIN):
        """The recipe's loss on a batch, with the fast weights in place.

        Arguments
        ---------
        fast_weights : dict
            Parameter name to tensor; parameters not in it keep their value.
        batch : PaddedBatch
            One batch, passed to ``compute_forward``/``compute_objectives``.
        stage : sb.Stage
            The stage passed to the recipe's methods.

        Returns
        -------
        torch.Tensor
            The value of ``compute_objectives``.
        """
        return self.call_with(fast_weights, self._objective, batch, stage)

    def call_with(self, fast_weights, function, *args):
        """Runs a function of the brain's modules with fast weights in place.

        Arguments
        ---------
        fast_weights : dict
            Parameter name to tensor; parameters not in it keep their value.
        function : callable
            Uses ``self.modules`` (e.g. ``compute_forward``).
        *args : tuple
            Its arguments.

        Returns
        -------
        object
            What the function returns.
        """
        model = self._functional_model()
        try:
            return torch.func.functional_call(
                model, dict(fast_weights), (function, *args), strict=False
            )
        finally:
            if fast_weights:
                model.release_fast_weights()

    def _objective(self, batch, stage):
        return self.forward_and_objective(batch, stage)[1]

    def forward_and_objective(self, batch, stage):
        """The recipe's ``compute_forward`` and ``compute_objectives``.

        Arguments
        ---------
        batch : PaddedBatch
            One batch.
        stage : sb.Stage
            The stage.

        Returns
        -------
        tuple
            ``(predictions, objective)``.
        """
        predictions = self.compute_forward(batch, stage)
        return predictions, self.compute_objectives(predictions, batch, stage)

    def run_inner_loop(
        self,
        params,
        support,
        inner_loop,
        keep_steps=False,
        inner_steps=None,
        first_order=None,
        support_loss=None,
    ):
        """Runs the one inner loop on a support batch.

        Arguments
        ---------
        params : dict
            Initial weights (usually ``meta_parameters``); the algorithm's
            ``task_init``, if any, makes the task's start from them.
        support : PaddedBatch
            The support batch.
        inner_loop : InnerLoop
            The inner loop to run.
        keep_steps : bool
            Return the fast weights after every step.
        inner_steps : int, optional
            Override the loop's number of steps.
        first_order : bool, optional
            Override the loop's order.
        support_loss : callable, optional
            ``support_loss(fast_weights, batch)``, the loss the inner loop
            descends (default: ``task_loss`` at ``Stage.TRAIN``), e.g. a
            regularised one (``Adaptation(kl=...)``).

        Returns
        -------
        dict or list of dict
            The adapted fast weights (see ``InnerLoop.run``).
        """
        if support is None:
            return [params] if keep_steps else params
        if support_loss is None:

            def support_loss(fast, batch):
                return self.task_loss(fast, batch, sb.Stage.TRAIN)

        params = self.meta_algorithm.start_weights(self, params, support)
        while True:
            scale = self._inner_loss_scale()
            try:
                fast = inner_loop.run(
                    support_loss,
                    params,
                    support,
                    inner_steps=inner_steps,
                    first_order=first_order,
                    keep_steps=keep_steps,
                    forward_context=self.support_forward_context,
                    loss_scale=scale,
                    extra_inputs=self.modules.parameters(),
                    replay_context=self._statistics_replay,
                )
            except NonFiniteInnerLoss as err:
                if err.what != "gradient" or scale <= 1.0:
                    raise
                # An overflow of the scaled fp16 gradients, not a
                # divergence: back off and run the task again.
                self._inner_scale_backoff(scale, err)
                continue
            self._inner_scale_growth(scale)
            return fast

    # ------------------------------------------------------------------
    # The outer step (Brain overrides).
    # ------------------------------------------------------------------
    def fit_batch(self, batch):
        """One task episode: inner loop, outer objective, outer step.

        The episode runs in the normalisation mode the model adapts in at
        test time (``adapt_in_train_mode``): meta-training prepares the
        initialisation for the adaptation it will get. A plain batch (not
        an ``Episode``) is trained on as ``sb.Brain`` would (multitask
        training of a baseline validated on episodes, for instance).

        Arguments
        ---------
        batch : Episode or PaddedBatch
            Support and query batches of one task.

        Returns
        -------
        torch.Tensor
            The detached reported loss (the query loss after adaptation).
        """
        if self.checkpointer is not None:
            self.random_state.apply_pending()  # after an intra-epoch resume
        if not isinstance(batch, Episode):
            return super().fit_batch(batch)
        episode = self._check_episode(batch)
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(episode, should_step)
        self.modules.train(
            bool(self._hparam("adapt_in_train_mode", self.adapt_in_train_mode))
        )

        reported = torch.tensor(float("nan"))
        # Gradients are synchronised by hand in optimizers_step: most of
        # them are written outside the DDP wrappers' forward.
        with self.no_sync(True):
            try:
                # (An RNN in eval mode is differentiated without cuDNN.)
                with self.training_ctx, self._cudnn_rnn_guard():
                    objective, reported = self.meta_algorithm.outer_loss(
                        self, episode, self.optimizer_step
                    )
            except NonFiniteInnerLoss as err:
                self._skip_episode(episode, str(err))
            else:
                scaled = self.scaler.scale(
                    objective / self.grad_accumulation_factor
                )
                if torch.isfinite(scaled.detach()):
                    scaled.backward()
                else:
                    self._skip_episode(episode, "non-finite outer objective")

        if should_step:
            self.optimizers_step()

        self.on_fit_batch_end(episode, None, reported, should_step)
        return reported.detach().float().cpu()

    def optimizers_step(self):
        """All-reduces the meta-gradients under DDP, then Brain's step.

        A meta-batch whose every episode was skipped has no gradient: no
        step is taken and ``optimizer_step`` does not count it.
        """
        parameters = self._optimized_parameters()
        all_reduce_gradients(parameters)
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            logger.warning("No gradient in this meta-batch: outer step skipped")
            return
        # A finite query loss can still have a non-finite meta-gradient (a
        # second-order term overflowing). Without a loss scaler (which skips
        # such steps itself) the whole step is skipped, on every rank alike
        # (the check follows the all-reduce), and counted under Brain's
        # non-finite patience: one bad step must not turn the weights NaN.
        if not self.scaler.is_enabled() and not all_finite(grads):
            self.skipped_steps += 1
            for p in parameters:
                p.grad = None
            logger.warning(
                "Non-finite meta-gradient: outer step skipped (%d so far)",
                self.skipped_steps,
            )
            self.check_loss_isfinite(torch.tensor(float("nan")))
            return
        super().optimizers_step()

    def init_optimizers(self):
        """The outer optimisers: the initialisation's, the update rule's.

        ``model`` (``opt_class``, checkpointed as ``optimizer``) over the
        trainable parameters unless ``meta_train_init`` is False;
        ``update_rule`` (``rule_opt_class``, checkpointed as
        ``rule_optimizer``) when the rule has parameters. Both are in
        ``optimizers_dict``, so Brain's step, clipping and zeroing cover
        them.
        """
        self.optimizers_dict = {}
        if self.meta_train_init and self.opt_class is not None:
            if self.remove_vector_weight_decay:
                params = rm_vector_weight_decay(self.modules)
            else:
                params = [
                    p for p in self.modules.parameters() if p.requires_grad
                ]
            self.optimizer = self.opt_class(params)
            self.optimizers_dict["model"] = self.optimizer
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("optimizer", self.optimizer)
        if self.learns_update_rule():
            if self.rule_opt_class is None:
                raise ValueError(
                    f"The update rule {type(self.update_rule).__name__} has "
                    "parameters: give the brain a rule_opt_class (or "
                    "opt_class) to train it."
                )
            self.rule_optimizer = self.rule_opt_class(
                self.update_rule.parameters()
            )
            self.optimizers_dict["update_rule"] = self.rule_optimizer
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable(
                    "rule_optimizer", self.rule_optimizer
                )

    def on_fit_start(self):
        """Brain's start of fit, refusing what functional_call cannot run."""
        if self.jit:
            raise ValueError(
                "MetaBrain evaluates modules with torch.func.functional_call, "
                "which cannot run TorchScript (--jit) modules."
            )
        super().on_fit_start()
        self._functional = None

    # ------------------------------------------------------------------
    # Helpers.
    # ------------------------------------------------------------------
    def _hparam(self, name, default):
        """An hparam if the brain has hparams and it is set, else default."""
        return getattr(getattr(self, "hparams", None), name, default)

    def _prepare_modules(self):
        """Called once the modules are in place, before anything reads them.

        A subclass that changes which parameters are trainable (e.g.
        ``MetaTransferBrain`` freezing the backbone) does it here.
        """

    def _check_update_rule(self):
        """Refuses a learned rule the outer gradient cannot train.

        (A brain with no optimiser for the rule only adapts with it, at
        evaluation or inference: nothing to refuse.)
        """
        if not self.learns_update_rule() or self.rule_opt_class is None:
            return
        if not self.meta_algorithm.rule_gets_gradient:
            raise ValueError(
                f"{type(self.meta_algorithm).__name__}'s outer gradient does "
                f"not reach the update rule {type(self.update_rule).__name__}"
                ": it would never learn. Use MAML or FOMAML to meta-learn it."
            )

    def _functional_model(self):
        key = tuple((k, id(m)) for k, m in self.modules.items())
        if self._functional is None or self._functional_key != key:
            self._functional = FunctionalModel(self)
            self._functional_key = key
        return self._functional

    def _check_episode(self, batch):
        if batch.query is None and self.meta_algorithm.needs_query:
            raise ValueError(
                f"{batch}: {type(self.meta_algorithm).__name__} needs a query "
                "set in every training episode (n_query > 0)"
            )
        return batch.to(self.device)

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        """Brain's decision, at meta-batch boundaries only.

        Mid meta-batch, gradients of the batch's first tasks are held in
        ``.grad`` and in no checkpoint: a checkpoint there would not resume
        exactly. ``ckpt_interval_steps`` still counts episodes.
        """
        decision = super()._should_save_intra_epoch_ckpt(
            last_ckpt_time, steps_since_ckpt
        )
        return decision and self.step % self.grad_accumulation_factor == 0

    def _skip_episode(self, episode, why):
        """Counts a skipped episode under Brain's non-finite patience."""
        self.skipped_episodes += 1
        logger.warning(
            "Skipping episode of task %r (%s); utterances: %s",
            episode.task,
            why,
            ", ".join(map(str, episode.ids[:12])),
        )
        self.check_loss_isfinite(torch.tensor(float("nan")))

    def _optimized_parameters(self):
        """Every tensor the active outer optimisers update."""
        if self.optimizers_dict is not None:
            optimizers = self.freeze_optimizers(self.optimizers_dict).values()
        elif self.opt_class is not None:
            optimizers = [self.optimizer]
        else:
            optimizers = []
        return [
            p
            for opt in optimizers
            for group in opt.param_groups
            for p in group["params"]
            if p.requires_grad
        ]
