"""How a trained model adapts to a new task at test time.

An ``Adaptation`` is the recipe a method follows when it meets k utterances
of a new speaker, accent or language: which update rule (the method's own,
learned or plain, or SGD or Adam at a given rate), how many steps, whether
normalisation and dropout run in training mode, how strongly the adapted
weights are held near the unadapted ones, and whether the adaptation is
*validated* before it is used. The few-shot protocol scores methods with
them, the selection chooses them on meta-dev tasks, and an exported model
carries the one it was evaluated with.

Conservative adaptation
-----------------------
``l2sp`` adds ``l2sp / 2 * ||fast - start||^2`` to the support loss
(L2-SP, Li et al. 2018) and ``max_update`` bounds the relative norm of the
change of the adapted weights (``update_rules.Anchored``): a few
utterances cannot move the model far from what it knew, in weight space.
``kl`` does it in output space (KL-divergence regularised adaptation, Yu
et al., ICASSP 2013): the support loss becomes ``(1 - kl) * loss + kl *
KL(p_start || p_fast)``, the mean over the support's frames of the
divergence of the adapted frame posteriors from the unadapted model's
(the recipe's brain says where its posteriors are: ``frame_log_probs``,
as ``speechbrain_meta.asr.CTCASR`` does).

Validated (safe) adaptation
---------------------------
With ``folds`` >= 2, the number of steps is chosen by cross-validation
over the support: it is split into ``min(folds, k)`` parts; for each part
the model adapts on the others and the part's loss (``criterion:
loss``) or the recipe's error rate (``criterion: error``) is measured
after every ``check_every`` steps. The step count with the lowest mean
over the folds is kept if it lowers the unadapted model's mean by more
than ``tolerance`` (relative) *and* makes no more than ``1 - agree`` of
the folds worse; otherwise the adaptation abstains and the unadapted
weights are returned. The kept number of steps then runs on the whole
support: the procedure that ships (rule, rate, steps) is the one every
fold validated.
With fewer than two utterances nothing can be validated, and a validated
adaptation abstains. ``validate`` returns the evidence, so the caller can
say why it adapted or abstained.

Without transcripts
-------------------
With ``unsupervised`` (an ``EntropyObjective`` of
``speechbrain_meta.unsupervised``, or its ``describe()`` dictionary) the
support loss is the entropy and class confusion of the model's own CTC
frame posteriors: the support needs audio only. What is left to guard it
is the same objective on held-out audio: validation (``folds``) then
scores each held-out fold with it (``criterion: objective``, the only
criterion that needs no transcript), and ``max_update``/``kl`` bound how
far the model moves. ``adapt_params`` (name patterns) says which weights
adapt when they are not the method's own (entropy minimisation is stable
on normalisation weights, not on a whole model).

Authors
 * speechbrain-meta developers 2026
"""

import math

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_meta.modes import modules_in_mode
from speechbrain_meta.unsupervised import EntropyObjective
from speechbrain_meta.update_rules import SGD, Adam, Anchored

RULES = ("own", "sgd", "adam")


class Adaptation:
    """Test-time adaptation settings, applied to any ``MetaBrain``.

    Arguments
    ---------
    rule : str
        ``own``: the method's inner-loop rule (a learned rule, or SGD at
        its inner rate); ``sgd`` or ``adam`` at ``lr``.
    lr : float, optional
        The rate of ``sgd`` / ``adam`` (ignored by ``own``).
    steps : int
        Adaptation steps (with ``folds``: the most that can be kept).
    train_mode : bool
        Normalisation (batch statistics) and dropout in training mode while
        adapting; False keeps the modules in inference mode.
    l2sp : float
        Pull towards the unadapted weights (see the module docstring).
    kl : float
        Weight in [0, 1) of the divergence from the unadapted model's frame
        posteriors (see the module docstring).
    max_update : float, optional
        Bound on the relative norm of the weights' change.
    folds : int
        Cross-validation folds that choose the steps or abstain (0: adapt
        unvalidated; see the module docstring).
    check_every : int
        With ``folds``: the held-out loss is measured every so many steps.
    tolerance : float
        With ``folds``: the mean relative held-out loss gain an adaptation
        must show to be kept.
    agree : float
        With ``folds``: the kept step count may make the held-out
        criterion worse on at most ``1 - agree`` of the folds.
    criterion : str, optional
        With ``folds``: what is measured on the held-out fold: ``loss``
        (the recipe's training loss), ``error`` (the recipe's error
        rate: its decoding and ``cer_metric`` at ``Stage.TEST``, see
        ``recipe_error_rates``) or ``objective`` (the ``unsupervised``
        objective; needs no transcript). Default: ``objective`` with
        ``unsupervised``, else ``loss``.
    unsupervised : EntropyObjective or dict, optional
        Adapt without transcripts on this objective (see the module
        docstring); None: the recipe's supervised loss.
    adapt_params : list of str, optional
        Name patterns of the weights that adapt (default: the method's
        own, its inner loop's).

    Example
    -------
    >>> Adaptation("adam", lr=1e-3, steps=20).describe()
    {'rule': 'adam', 'lr': 0.001, 'steps': 20, 'mode': 'eval', 'l2sp': 0.0, \
'max_update': None, 'folds': 0}
    """

    def __init__(
        self,
        rule="own",
        lr=None,
        steps=5,
        train_mode=False,
        l2sp=0.0,
        max_update=None,
        folds=0,
        check_every=1,
        tolerance=0.01,
        agree=0.5,
        kl=0.0,
        criterion=None,
        unsupervised=None,
        adapt_params=None,
    ):
        if isinstance(unsupervised, dict):
            unsupervised = EntropyObjective.from_dict(unsupervised)
        if criterion is None:
            criterion = "loss" if unsupervised is None else "objective"
        if unsupervised is not None and criterion != "objective":
            raise ValueError(
                "an unsupervised adaptation has no transcripts to validate "
                f"with: criterion must be 'objective', got {criterion!r}"
            )
        if unsupervised is None and criterion == "objective":
            raise ValueError("criterion 'objective' needs unsupervised=")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if rule != "own" and (lr is None or lr <= 0):
            raise ValueError(f"rule {rule!r} needs a positive lr, got {lr}")
        if folds < 0 or folds == 1:
            raise ValueError(f"folds must be 0 (off) or >= 2, got {folds}")
        if l2sp < 0:
            raise ValueError(f"l2sp must be >= 0, got {l2sp}")
        if not 0.0 <= kl < 1.0:
            raise ValueError(f"kl must be in [0, 1), got {kl}")
        if criterion not in ("loss", "error", "objective"):
            raise ValueError(
                "criterion must be 'loss', 'error' or 'objective', got "
                f"{criterion!r}"
            )
        if max_update is not None and max_update <= 0:
            raise ValueError(f"max_update must be > 0, got {max_update}")
        self.rule = rule
        self.lr = None if rule == "own" else float(lr)
        self.steps = int(steps)
        self.train_mode = bool(train_mode)
        self.l2sp = float(l2sp)
        self.max_update = None if max_update is None else float(max_update)
        self.folds = int(folds)
        self.check_every = max(int(check_every), 1)
        self.tolerance = float(tolerance)
        self.agree = float(agree)
        self.kl = float(kl)
        self.criterion = criterion
        self.unsupervised = unsupervised
        self.adapt_params = None if adapt_params is None else list(adapt_params)

    @classmethod
    def from_dict(cls, settings):
        """The adaptation a ``describe()`` dictionary stands for.

        Arguments
        ---------
        settings : dict
            ``rule``, ``lr``, ``steps``, ``mode`` (``train``/``eval``) and
            optionally ``l2sp``, ``kl``, ``max_update``, ``folds``,
            ``criterion``, ``check_every``, ``tolerance``, ``agree``.

        Returns
        -------
        Adaptation

        Example
        -------
        >>> a = Adaptation("sgd", lr=0.1, steps=10, train_mode=True, folds=3)
        >>> Adaptation.from_dict(a.describe()).describe() == a.describe()
        True
        """
        settings = dict(settings)
        mode = settings.pop("mode", "eval")
        return cls(train_mode=(mode == "train"), **settings)

    def describe(self):
        """The settings, as written in results and exported models.

        Returns
        -------
        dict
        """
        out = {
            "rule": self.rule,
            "lr": self.lr,
            "steps": self.steps,
            "mode": "train" if self.train_mode else "eval",
            "l2sp": self.l2sp,
            "max_update": self.max_update,
            "folds": self.folds,
        }
        if self.kl:
            out["kl"] = self.kl
        if self.unsupervised is not None:
            out["unsupervised"] = self.unsupervised.describe()
        elif self.folds and self.criterion != "loss":
            out["criterion"] = self.criterion
        if self.adapt_params is not None:
            out["adapt_params"] = list(self.adapt_params)
        return out

    def replace(self, **changes):
        """A copy with some settings changed.

        Arguments
        ---------
        **changes : dict
            Constructor arguments.

        Returns
        -------
        Adaptation

        Example
        -------
        >>> Adaptation("sgd", lr=0.1).replace(steps=3).steps
        3
        """
        settings = {
            "rule": self.rule,
            "lr": self.lr,
            "steps": self.steps,
            "train_mode": self.train_mode,
            "l2sp": self.l2sp,
            "max_update": self.max_update,
            "folds": self.folds,
            "check_every": self.check_every,
            "tolerance": self.tolerance,
            "agree": self.agree,
            "kl": self.kl,
            "criterion": self.criterion,
            "unsupervised": self.unsupervised,
            "adapt_params": self.adapt_params,
        }
        settings.update(changes)
        return Adaptation(**settings)

    def __repr__(self):
        items = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"Adaptation({items})"

    def inner_loop(self, brain):
        """The inner loop that carries out this adaptation on a brain.

        Arguments
        ---------
        brain : MetaBrain
            Its inner loop gives what adapts; its rule is used by ``own``.

        Returns
        -------
        InnerLoop
        """
        if self.rule == "own":
            rule = brain.update_rule
        elif self.rule == "sgd":
            rule = SGD(self.lr)
        else:
            rule = Adam(self.lr)
        if self.l2sp > 0 or self.max_update is not None:
            rule = Anchored(rule, self.l2sp, self.max_update)
        changes = {}
        if self.adapt_params is not None:
            changes["adapt_params"] = list(self.adapt_params)
        return brain.inner_loop.replace(
            update_rule=rule,
            inner_steps=self.steps,
            first_order=True,
            **changes,
        )

    def trajectory(self, brain, support, progress=None):
        """The fast weights after every step, unadapted ones first.

        Arguments
        ---------
        brain : MetaBrain
            The model.
        support : list of dict or None
            The support utterances (dataset examples: what the recipe's
            ``compute_forward``/``compute_objectives`` read).
        progress : callable, optional
            Called with the number of steps done after each step.

        Returns
        -------
        list of dict
            ``steps + 1`` dicts of detached weights (one if no support).
        """
        inner_loop = self.inner_loop(brain)
        if progress is not None:
            inner_loop = inner_loop.replace(
                update_rule=_Reporting(inner_loop.update_rule, progress)
            )
        return brain.adapted_weights(
            _batch(support, brain.device),
            inner_steps=self.steps,
            inner_loop=inner_loop,
            train_mode=self.train_mode,
            keep_steps=True,
            support_loss=self.support_loss(brain),
        )

    def support_loss(self, brain):
        """``start -> loss_fn``: the loss this adaptation descends.

        Arguments
        ---------
        brain : MetaBrain
            The model.

        Returns
        -------
        callable or None
            None: the recipe's own loss; else the unsupervised objective,
            and the ``kl`` term (see the module docstring).
        """
        if self.kl:
            return self._kl_loss(brain)
        if self.unsupervised is not None:
            return self.unsupervised(brain)
        return None

    def _kl_loss(self, brain):
        """``start -> loss_fn``: the support loss held near the frame
        posteriors of the unadapted weights ``start`` (``kl``).
        """
        if not hasattr(brain, "frame_log_probs"):
            raise NotImplementedError(
                f"{type(brain).__name__} does not say where its frame "
                "posteriors are: define frame_log_probs(predictions) to "
                "adapt with kl > 0"
            )
        weight = self.kl
        unsupervised = (
            None if self.unsupervised is None else self.unsupervised(brain)
        )

        def make(start):
            reference = {}
            objective = None if unsupervised is None else unsupervised(start)

            def loss_fn(fast, batch):
                if objective is None:
                    stage = sb.Stage.TRAIN
                    predictions, loss = brain.call_with(
                        fast, brain.forward_and_objective, batch, stage
                    )
                else:  # no transcript (and no augmentation, as the mask)
                    stage = sb.Stage.VALID
                    loss = objective(fast, batch)
                    predictions = brain.call_with(
                        fast, brain.compute_forward, batch, stage
                    )
                log_p, lens = brain.frame_log_probs(predictions)
                if id(batch) not in reference:
                    with torch.no_grad():
                        unadapted = brain.call_with(
                            start, brain.compute_forward, batch, stage
                        )
                        reference[id(batch)] = brain.frame_log_probs(unadapted)[
                            0
                        ].detach()
                return (1 - weight) * loss + weight * frame_kl(
                    reference[id(batch)], log_p, lens
                )

            return loss_fn

        return make

    def __call__(self, brain, support):
        """Adapts a copy of the brain's weights to a support set.

        Arguments
        ---------
        brain : MetaBrain
            The model (never changed).
        support : list of dict or None
            The support utterances (see ``trajectory``).

        Returns
        -------
        dict
            The adapted (detached) weights.
        """
        steps = self.steps
        if self.folds:
            steps = self.validate(brain, support)["steps"]
        return self.replace(folds=0, steps=steps).trajectory(brain, support)[-1]

    def validate(self, brain, support):
        """Cross-validates the step count on the support (``folds``).

        Arguments
        ---------
        brain : MetaBrain
            The model.
        support : list of dict
            The whole support set.

        Returns
        -------
        dict
            ``steps`` (0: abstain), ``folds`` used, ``criterion``,
            ``held_out`` (step count to the mean held-out loss or error
            rate over the folds, 0: unadapted), ``improved_folds`` and
            ``worse_folds`` at the best step count, and ``reason``: why it
            adapted or abstained, in words.
        """
        k = len(support or [])
        n_folds = min(max(self.folds, 2), k)
        report = {
            "folds": 0,
            "criterion": self.criterion,
            "held_out": {},
            "improved_folds": 0,
            "worse_folds": 0,
        }
        if k < 2:
            reason = (
                f"{k} utterance(s): at least 2 are needed to validate an "
                "adaptation; the model is left unadapted"
            )
            return {**report, "steps": 0, "reason": reason}
        measure = {
            "loss": held_out_loss,
            "error": held_out_error,
            "objective": self._held_out_objective,
        }[self.criterion]
        what = {
            "loss": "loss",
            "error": "error rate",
            "objective": "unsupervised objective",
        }[self.criterion]
        parts = [list(range(f, k, n_folds)) for f in range(n_folds)]
        plain = self.replace(folds=0)
        checked = sorted(set(range(0, self.steps + 1, self.check_every)))
        scores = {s: [] for s in checked}
        for held in parts:
            rest = [support[i] for i in range(k) if i not in held]
            path = plain.trajectory(brain, rest)
            batch = _batch([support[i] for i in held], brain.device)
            for s in checked:
                scores[s].append(measure(brain, path[s], batch, path[0]))
        mean = {s: sum(v) / len(v) for s, v in scores.items()}
        report.update(folds=n_folds, held_out=mean)
        steps = [s for s in checked if s > 0]
        if not steps:
            return {**report, "steps": 0, "reason": "no step to validate"}
        best = min(steps, key=lambda s: (mean[s], s))
        improved = sum(a < b for a, b in zip(scores[best], scores[0]))
        worse = sum(a > b for a, b in zip(scores[best], scores[0]))
        report.update(improved_folds=improved, worse_folds=worse)
        gain = (mean[0] - mean[best]) / mean[0] if mean[0] > 0 else 0.0
        if gain <= self.tolerance:
            reason = (
                f"no step count lowered the held-out {what} by more than "
                f"{100 * self.tolerance:g} % ({n_folds} folds; best "
                f"{100 * -gain:+.1f} % at {best} steps); the model is left "
                "unadapted"
            )
            return {**report, "steps": 0, "reason": reason}
        if worse > (1.0 - self.agree) * n_folds:
            reason = (
                f"{best} steps made the held-out {what} worse on {worse} of "
                f"{n_folds} folds; the model is left unadapted"
            )
            return {**report, "steps": 0, "reason": reason}
        reason = (
            f"{best} steps kept: held-out {what} {100 * -gain:+.1f} % on "
            f"average, lower on {improved} of {n_folds} folds, higher on "
            f"{worse}"
        )
        return {**report, "steps": best, "reason": reason}

    def _held_out_objective(self, brain, fast_weights, batch, unadapted):
        """The unsupervised objective on a held-out fold (no transcript)."""
        loss_fn = self.unsupervised(brain)(unadapted)
        with modules_in_mode(brain.modules, False), torch.no_grad():
            value = float(loss_fn(fast_weights, batch))
        return value if math.isfinite(value) else float("inf")

    def chosen_steps(self, brain, support):
        """The number of steps a validated adaptation keeps (0: abstain).

        Arguments
        ---------
        brain : MetaBrain
            The model.
        support : list of dict
            The whole support set.

        Returns
        -------
        int
        """
        return self.validate(brain, support)["steps"]


def frame_kl(log_p, log_q, lens):
    """Mean over the valid frames of ``KL(p || q)`` (log-probabilities).

    Arguments
    ---------
    log_p : torch.Tensor
        Reference log-posteriors ``[batch, frames, classes]``.
    log_q : torch.Tensor
        Log-posteriors of the model being adapted, same shape.
    lens : torch.Tensor
        Relative lengths of the utterances ``[batch]``.

    Returns
    -------
    torch.Tensor
        The scalar divergence.

    Example
    -------
    >>> p = torch.log_softmax(torch.randn(2, 5, 3), -1)
    >>> float(frame_kl(p, p, torch.ones(2)))
    0.0
    >>> q = torch.log_softmax(torch.randn(2, 5, 3), -1)
    >>> bool(frame_kl(p, q, torch.ones(2)) > 0)
    True
    """
    frames = log_p.shape[1]
    valid = (
        torch.arange(frames, device=log_p.device)[None, :]
        < (lens[:, None] * frames).round()
    )
    per_frame = (log_p.exp() * (log_p - log_q)).sum(-1)
    return (per_frame * valid).sum() / valid.sum().clamp(min=1)


def recipe_error_rates(brain, fast_weights, query):
    """CER and WER from the recipe's own decoding and metrics.

    Runs the recipe's ``on_stage_start(TEST)`` (which must create
    ``brain.cer_metric`` or ``brain.wer_metric``, as SpeechBrain's ASR
    recipes do), then its ``compute_forward``/``compute_objectives`` at
    ``Stage.TEST`` on the query with the fast weights in place, and reads
    the trackers (a rate the recipe does not track is NaN). A translation
    recipe that also makes a ``brain.bleu_metric`` (SpeechBrain's
    ``BLEUStats``, as its ST recipes do) gets its BLEU as a third score.

    Arguments
    ---------
    brain : MetaBrain
        The method's brain (a recipe Brain behind a meta brain).
    fast_weights : dict
        Adapted weights (``adapted_weights``).
    query : PaddedBatch
        The query utterances.

    Returns
    -------
    tuple of float
        ``(cer, wer)`` as fractions; ``(cer, wer, bleu)`` for a
        translation (BLEU / 100).
    """
    brain.on_stage_start(sb.Stage.TEST, None)
    with torch.no_grad(), brain.evaluation_ctx:
        brain.task_loss(fast_weights, query, sb.Stage.TEST)
    rates = [
        getattr(brain, name, None) for name in ("cer_metric", "wer_metric")
    ]
    if rates == [None, None]:
        raise AttributeError(
            f"{type(brain).__name__}.on_stage_start(Stage.TEST) made "
            "neither a cer_metric nor a wer_metric (ErrorRateStats); the "
            "default scorer reads them (or pass score= to the protocol)"
        )
    scores = tuple(
        float("nan") if r is None else float(r.summarize("error_rate")) / 100
        for r in rates
    )
    bleu = getattr(brain, "bleu_metric", None)
    if bleu is not None:  # a translation: its BLEU too (BLEUStats)
        scores += (float(bleu.summarize("BLEU")) / 100,)
    return scores


def held_out_error(brain, fast_weights, batch, unadapted=None):
    """The recipe's character error rate on a batch, in inference mode.

    Arguments
    ---------
    brain : MetaBrain
        The model (its recipe decodes and fills ``cer_metric`` at
        ``Stage.TEST``, see ``recipe_error_rates``).
    fast_weights : dict
        Weights to put in place.
    batch : PaddedBatch
        The utterances.
    unadapted : dict, optional
        The unadapted weights (unused: a validation criterion's signature).

    Returns
    -------
    float
    """
    with modules_in_mode(brain.modules, False):
        return recipe_error_rates(brain, fast_weights, batch)[0]


def held_out_loss(brain, fast_weights, batch, unadapted=None):
    """The recipe's training loss on a batch, in inference mode, no grad.

    Arguments
    ---------
    brain : MetaBrain
        The model.
    fast_weights : dict
        Weights to put in place.
    batch : PaddedBatch
        The utterances.
    unadapted : dict, optional
        The unadapted weights (unused: a validation criterion's signature).

    Returns
    -------
    float
    """
    with modules_in_mode(brain.modules, False), torch.no_grad():
        loss = float(brain.task_loss(fast_weights, batch, sb.Stage.TRAIN))
    return loss if math.isfinite(loss) else float("inf")


def _batch(examples, device):
    """A PaddedBatch of examples on a device (None for no examples)."""
    if not examples:
        return None
    return PaddedBatch(list(examples)).to(device)


class _Reporting(torch.nn.Module):
    """An update rule that reports every step it takes."""

    def __init__(self, rule, progress):
        super().__init__()
        self.rule = rule
        self.progress = progress

    def forward(self, fast_weights, grads, step):
        """The wrapped rule's step, then a report."""
        out = self.rule(fast_weights, grads, step)
        self.progress(step + 1)
        return out
