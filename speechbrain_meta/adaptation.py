"""How a trained model adapts to a new task at test time.

An ``Adaptation`` is the recipe a method follows when it meets k utterances
of a new speaker, accent or language: which update rule (the method's own,
learned or plain, or SGD or Adam at a given rate), how many steps, whether
normalisation and dropout run in training mode, and whether the adaptation
is *safe*. The few-shot protocol scores methods with them, the selection
chooses them on meta-dev tasks, and an exported model carries the one it
was evaluated with.

Safe adaptation
---------------
With ``holdout`` > 0, a share of the support (at least one utterance) is
held out; the model adapts on the rest, and the held-out loss is measured
after every ``check_every`` steps. The number of steps with the lowest
held-out loss is kept, and if no step count beats the unadapted model by
more than ``tolerance`` (relative), the unadapted weights are returned.
The model then adapts on the whole support for the chosen number of
steps. With fewer than two utterances nothing can be held out: a safe
adaptation then returns the unadapted weights.

Authors
 * speechbrain-meta developers 2026
"""

import math

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_meta.update_rules import SGD, Adam

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
        Adaptation steps.
    train_mode : bool
        Normalisation (batch statistics) and dropout in training mode while
        adapting; False keeps the modules in inference mode.
    holdout : float
        Share of the support held out to choose the number of steps or
        reject the adaptation (0: off; see the module docstring).
    check_every : int
        With ``holdout``: the held-out loss is measured every so many steps.
    tolerance : float
        With ``holdout``: the relative held-out loss gain an adaptation must
        show to be kept.

    Example
    -------
    >>> Adaptation("adam", lr=1e-3, steps=20).describe()
    {'rule': 'adam', 'lr': 0.001, 'steps': 20, 'mode': 'eval', 'holdout': 0.0}
    """

    def __init__(
        self,
        rule="own",
        lr=None,
        steps=5,
        train_mode=False,
        holdout=0.0,
        check_every=1,
        tolerance=0.01,
    ):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if rule != "own" and (lr is None or lr <= 0):
            raise ValueError(f"rule {rule!r} needs a positive lr, got {lr}")
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {holdout}")
        self.rule = rule
        self.lr = None if rule == "own" else float(lr)
        self.steps = int(steps)
        self.train_mode = bool(train_mode)
        self.holdout = float(holdout)
        self.check_every = max(int(check_every), 1)
        self.tolerance = float(tolerance)

    @classmethod
    def from_dict(cls, settings):
        """The adaptation a ``describe()`` dictionary stands for.

        Arguments
        ---------
        settings : dict
            ``rule``, ``lr``, ``steps``, ``mode`` (``train``/``eval``) and
            optionally ``holdout``, ``check_every``, ``tolerance``.

        Returns
        -------
        Adaptation

        Example
        -------
        >>> a = Adaptation("sgd", lr=0.1, steps=10, train_mode=True)
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
        return {
            "rule": self.rule,
            "lr": self.lr,
            "steps": self.steps,
            "mode": "train" if self.train_mode else "eval",
            "holdout": self.holdout,
        }

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
            "holdout": self.holdout,
            "check_every": self.check_every,
            "tolerance": self.tolerance,
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
        return brain.inner_loop.replace(
            update_rule=rule, inner_steps=self.steps, first_order=True
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
        return brain.adapt_to_task(
            _batch(support, brain.device),
            inner_steps=self.steps,
            inner_loop=inner_loop,
            train_mode=self.train_mode,
            keep_steps=True,
        )

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
        if self.holdout <= 0.0:
            return self.trajectory(brain, support)[-1]
        return self._safe(brain, support)

    def chosen_steps(self, brain, support):
        """The number of steps a safe adaptation keeps (0: reject).

        Arguments
        ---------
        brain : MetaBrain
            The model.
        support : list of dict
            The whole support set; its last utterances are held out.

        Returns
        -------
        int
        """
        if not support or len(support) < 2:
            return 0
        n_held = max(1, int(math.ceil(self.holdout * len(support))))
        n_held = min(n_held, len(support) - 1)
        path = self.replace(holdout=0.0).trajectory(brain, support[:-n_held])
        held = _batch(support[-n_held:], brain.device)
        losses = {}
        for step in range(0, len(path), self.check_every):
            losses[step] = held_out_loss(brain, path[step], held)
        best = min(losses, key=lambda s: (losses[s], s))
        if losses[best] > (1.0 - self.tolerance) * losses[0]:
            return 0
        return best

    def _safe(self, brain, support):
        steps = self.chosen_steps(brain, support)
        return self.replace(holdout=0.0, steps=steps).trajectory(
            brain, support
        )[-1]


def held_out_loss(brain, fast_weights, batch):
    """The recipe's training loss on a batch, in inference mode, no grad.

    Arguments
    ---------
    brain : MetaBrain
        The model.
    fast_weights : dict
        Weights to put in place.
    batch : PaddedBatch
        The utterances.

    Returns
    -------
    float
    """
    modes = {m: m.training for m in brain.modules.modules()}
    brain.modules.eval()
    try:
        with torch.no_grad():
            loss = brain.task_loss(fast_weights, batch, sb.Stage.TRAIN)
    finally:
        for m, mode in modes.items():
            m.training = mode
    loss = float(loss)
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
