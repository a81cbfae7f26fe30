"""The functional inner loop shared by every meta-learner.

The inner loop adapts a dictionary of *fast weights* to a task's support set
by a few gradient steps. The model is never copied: every forward runs the
model's own modules through ``torch.func.functional_call`` with the fast
weights in place of the selected parameters. Every algorithm of this package
is a small choice made here:

* which parameters adapt (``adapt_params``/``frozen_params``: fnmatch
  patterns over parameter names, as in ``speechbrain.nnet.adapters``),
* how they update (``update_rule``: plain SGD, or a learned rule),
* whether gradients flow through the inner loop (``first_order``),
* how many steps it takes (``inner_steps``),
* whether a second-order graph is kept through the steps or rebuilt one
  step at a time in the backward (``recompute_inner_steps``).

Buffer policy
-------------
Normalisation statistics (BatchNorm running mean/variance and
``num_batches_tracked``, SpeechBrain's ``InputNormalization`` global
statistics) are *not* updated by the inner loop: each support forward runs
inside ``StatisticsGuard``, which snapshots these statistics and restores
them afterwards. BatchNorm in training mode still normalises with the batch
statistics, so the function being differentiated is unchanged. The
statistics are then updated once per task, by the query forward of the outer
step, i.e. with the adapted weights, which is the model that is evaluated at
test time.

Under ``torch.distributed``, SpeechBrain's ``InputNormalization`` combines
its statistics over all processes (three ``all_reduce`` calls) at every
training forward. Inside ``StatisticsGuard`` the combination is local to the
process: the statistics are discarded on exit anyway, and a combined update
would make one process's support forward depend on the other processes'
tasks and stop every process at every inner step. A support forward so
computes what it computes in one process; the query forward's update stays
combined over the processes, as in SpeechBrain.

Authors
 * speechbrain-meta developers 2026
"""

import contextlib
from collections import OrderedDict

import torch
from speechbrain.processing import features as sb_features
from speechbrain.utils.logger import get_logger

from speechbrain_meta.naming import select_parameters
from speechbrain_meta.update_rules import SGD

logger = get_logger(__name__)


class NonFiniteInnerLoss(RuntimeError):
    """Raised when a support loss or gradient in the inner loop is not finite.

    Arguments
    ---------
    step : int
        The inner step at which it happened.
    what : str
        ``"loss"`` or ``"gradient"``.

    Example
    -------
    >>> err = NonFiniteInnerLoss(2, "loss")
    >>> err.step
    2
    """

    def __init__(self, step, what="loss"):
        self.step = step
        self.what = what
        super().__init__(f"non-finite support {what} at inner step {step}")


def _is_statistics_module(module):
    """True for modules that update running statistics in training mode."""
    if isinstance(module, torch.nn.modules.batchnorm._NormBase):
        return module.track_running_stats
    # SpeechBrain's InputNormalization keeps its statistics as attributes.
    return all(hasattr(module, a) for a in ("glob_mean", "glob_std", "count"))


# SpeechBrain's all_reduce of InputNormalization's statistics.
_COMBINE = "combine_gaussian_statistics_distributed"


def _local_statistics(statistics):
    """``combine_gaussian_statistics_distributed`` of one process alone."""
    return statistics


class StatisticsGuard:
    """Snapshots running statistics on entry and restores them on exit.

    Covers BatchNorm-like modules (their running buffers) and SpeechBrain's
    ``InputNormalization`` (``count``, ``glob_mean``, ``glob_std``). Inside,
    ``InputNormalization`` updates its statistics from this process's batch
    alone, without the ``all_reduce`` it does under ``torch.distributed``
    (the update is discarded on exit).

    Arguments
    ---------
    module : torch.nn.Module
        The module tree to protect.
    replay : list of dict, optional
        A snapshot from ``capture()``: the statistics are set to it inside
        the context (to recompute a forward exactly as it first ran).

    Example
    -------
    >>> bn = torch.nn.BatchNorm1d(3)
    >>> with StatisticsGuard(bn):
    ...     _ = bn(torch.randn(8, 3) + 5.0)
    >>> float(bn.running_mean.abs().sum())
    0.0
    >>> int(bn.num_batches_tracked)
    0
    """

    def __init__(self, module, replay=None):
        self.modules = [m for m in module.modules() if _is_statistics_module(m)]
        self.replay = replay
        self._saved = []
        # InputNormalization (not BatchNorm) combines over the processes.
        self._localise = hasattr(sb_features, _COMBINE) and any(
            not isinstance(m, torch.nn.modules.batchnorm._NormBase)
            for m in self.modules
        )
        self._combine = None

    def capture(self):
        """A snapshot of the statistics, for ``StatisticsGuard(replay=...)``.

        Returns
        -------
        list of dict
            One state per statistics module.

        Example
        -------
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> before = StatisticsGuard(bn).capture()
        >>> _ = bn(torch.randn(8, 2) + 3.0)  # updates the running mean
        >>> with StatisticsGuard(bn, replay=before):
        ...     float(bn.running_mean.abs().sum())
        0.0
        >>> bool(bn.running_mean.abs().sum() > 0)  # and back after
        True
        """
        states = []
        for m in self.modules:
            if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                state = {
                    k: b.detach().clone()
                    for k, b in m.named_buffers(recurse=False)
                    if b is not None
                }
            else:
                state = {
                    "count": m.count,
                    "glob_mean": m.glob_mean,
                    "glob_std": m.glob_std,
                }
            states.append(state)
        return states

    def _load(self, states, copy=False):
        with torch.no_grad():
            for m, state in zip(self.modules, states):
                if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                    # Swap the snapshots in rather than copying in place:
                    # the forward may have saved the buffers for backward.
                    for k, v in state.items():
                        m._buffers[k] = v.clone() if copy else v
                else:
                    m.count = state["count"]
                    m.glob_mean = state["glob_mean"]
                    m.glob_std = state["glob_std"]

    def __enter__(self):
        self._saved = self.capture()
        if self.replay is not None:
            self._load(self.replay, copy=True)
        if self._localise:
            self._combine = getattr(sb_features, _COMBINE)
            setattr(sb_features, _COMBINE, _local_statistics)
        return self

    def __exit__(self, *exc):
        if self._combine is not None:
            setattr(sb_features, _COMBINE, self._combine)
            self._combine = None
        self._load(self._saved)
        self._saved = []
        return False


class CudnnRNNGuard:
    """cuDNN off in the forward of the RNNs that need it, and only there.

    cuDNN's RNN kernels have no double backward, and no backward at all
    after a forward in eval mode. Inside this guard, each RNN of ``module``
    (``torch.nn.RNNBase``: SpeechBrain's ``LSTM``/``GRU``/``RNN`` hold
    one) runs its forward with cuDNN off when ``double_backward`` is set or
    the RNN is in eval mode, so that PyTorch's native kernels build a graph
    that can be differentiated; convolutions and normalisations keep cuDNN
    (their double backward exists). Nothing changes on the CPU.

    Arguments
    ---------
    module : torch.nn.Module
        The module tree whose RNNs are guarded.
    double_backward : bool
        Whether the forward's graph will be differentiated twice.

    Example
    -------
    >>> rnn = torch.nn.LSTM(3, 4).eval()
    >>> with CudnnRNNGuard(rnn):
    ...     out, _ = rnn(torch.randn(5, 1, 3, requires_grad=True))
    >>> out.shape
    torch.Size([5, 1, 4])
    >>> torch.backends.cudnn.enabled  # restored after each forward
    True
    """

    def __init__(self, module, double_backward=False):
        self.rnns = [
            m for m in module.modules() if isinstance(m, torch.nn.RNNBase)
        ]
        self.double_backward = double_backward
        self._handles = []
        self._saved = []

    def _before(self, rnn, args):
        self._saved.append(torch.backends.cudnn.enabled)
        if self.double_backward or not rnn.training:
            torch.backends.cudnn.enabled = False

    def _after(self, rnn, args, output):
        torch.backends.cudnn.enabled = self._saved.pop()

    def __enter__(self):
        for rnn in self.rnns:
            self._handles.append(rnn.register_forward_pre_hook(self._before))
            self._handles.append(
                rnn.register_forward_hook(self._after, always_call=True)
            )
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False


class InnerLoop(torch.nn.Module):
    """Adapts fast weights to a support set by a few update-rule steps.

    This is the one inner loop of the package: MAML, first-order MAML,
    Reptile, ANIL, the meta-optimisers, the meta-transfer learners and the
    fine-tuning baselines all run it with different settings. Its settings
    are never changed in place: an algorithm that needs other settings
    works on a ``replace``-d copy.

    Arguments
    ---------
    inner_steps : int
        Number of update steps on the support set.
    update_rule : torch.nn.Module, optional
        Maps ``(fast_weights, grads, step)`` to new fast weights.
        Default: ``SGD(lr=inner_lr)``.
    inner_lr : float
        Learning rate of the default SGD rule (ignored if ``update_rule``
        is given).
    first_order : bool
        If True, the support gradients are treated as constants (no
        second-order terms, no graph kept through the inner loop).
    adapt_params : list of str
        fnmatch patterns of the parameters that adapt.
    frozen_params : list of str
        fnmatch patterns of parameters that never adapt.
    inner_grad_clip : float, optional
        If given, the support gradient is rescaled to at most this global
        norm (a differentiable operation) before each update.
    recompute_inner_steps : bool
        Second order only: keep no graph of the inner steps in the forward
        and recompute each step's graph (with its random numbers and
        normalisation statistics) when the meta-gradient reaches it, one
        step at a time. The same meta-gradient for about one extra support
        forward and backward per step, and the peak memory of one inner
        step's double-backward graph instead of all of them (gradient
        checkpointing over the inner steps). Needs an update rule without
        state across steps (not ``Adam`` or ``LearnedUpdate``).

    Example
    -------
    >>> model = torch.nn.Linear(3, 1)
    >>> x, y = torch.randn(16, 3), torch.randn(16, 1)
    >>> def loss_fn(fast, batch):
    ...     out = torch.func.functional_call(model, fast, (batch[0],))
    ...     return torch.nn.functional.mse_loss(out, batch[1])
    >>> inner = InnerLoop(inner_steps=5, inner_lr=0.1)
    >>> params = inner.select(model.named_parameters())
    >>> fast = inner.run(loss_fn, params, (x, y))
    >>> bool(loss_fn(fast, (x, y)) < loss_fn(params, (x, y)))
    True
    """

    def __init__(
        self,
        inner_steps=1,
        update_rule=None,
        inner_lr=0.01,
        first_order=False,
        adapt_params=("*",),
        frozen_params=(),
        inner_grad_clip=None,
        recompute_inner_steps=False,
    ):
        super().__init__()
        if inner_steps < 0:
            raise ValueError("inner_steps must be >= 0")
        self.inner_steps = int(inner_steps)
        self.update_rule = (
            update_rule if update_rule is not None else SGD(inner_lr)
        )
        self.first_order = bool(first_order)
        if isinstance(adapt_params, str):
            adapt_params = [adapt_params]
        if isinstance(frozen_params, str):
            frozen_params = [frozen_params]
        self.adapt_params = list(adapt_params)
        self.frozen_params = list(frozen_params)
        self.inner_grad_clip = inner_grad_clip
        self.recompute_inner_steps = bool(recompute_inner_steps)

    def settings(self):
        """The constructor arguments that rebuild this loop.

        Returns
        -------
        dict
            ``inner_steps``, ``update_rule`` (the same module, shared),
            ``first_order``, ``adapt_params``, ``frozen_params``,
            ``inner_grad_clip`` and ``recompute_inner_steps``.
        """
        return {
            "inner_steps": self.inner_steps,
            "update_rule": self.update_rule,
            "first_order": self.first_order,
            "adapt_params": list(self.adapt_params),
            "frozen_params": list(self.frozen_params),
            "inner_grad_clip": self.inner_grad_clip,
            "recompute_inner_steps": self.recompute_inner_steps,
        }

    def replace(self, **changes):
        """A new inner loop with some settings changed; this one is untouched.

        The update rule is shared (it is the same learned module) unless
        ``update_rule`` or ``inner_lr`` is among the changes.

        Arguments
        ---------
        **changes : dict
            Constructor arguments to change.

        Returns
        -------
        InnerLoop

        Example
        -------
        >>> inner = InnerLoop(inner_steps=3, inner_lr=0.1)
        >>> fo = inner.replace(first_order=True)
        >>> fo.first_order, inner.first_order
        (True, False)
        >>> fo.update_rule is inner.update_rule
        True
        >>> inner.replace(inner_lr=0.5).update_rule
        SGD(lr=0.5)
        """
        settings = self.settings()
        if "inner_lr" in changes and "update_rule" not in changes:
            settings["update_rule"] = None
        settings.update(changes)
        return InnerLoop(**settings)

    def select(self, named_parameters):
        """The parameters this loop adapts.

        Arguments
        ---------
        named_parameters : iterable of (str, torch.Tensor)
            All candidate parameters.

        Returns
        -------
        OrderedDict
            Name to parameter.
        """
        return select_parameters(
            named_parameters, self.adapt_params, self.frozen_params
        )

    def run(
        self,
        loss_fn,
        params,
        support,
        inner_steps=None,
        first_order=None,
        keep_steps=False,
        forward_context=None,
        loss_scale=1.0,
        extra_inputs=(),
        replay_context=None,
    ):
        """Runs the inner loop.

        Arguments
        ---------
        loss_fn : callable
            ``loss_fn(fast_weights, batch)`` returns the scalar support loss
            of the model evaluated with ``fast_weights``.
        params : dict
            The initial weights (name to tensor), usually the
            meta-parameters themselves, so that the outer gradient reaches
            them.
        support : object
            The support batch, passed to ``loss_fn``.
        inner_steps : int, optional
            Overrides ``self.inner_steps`` (e.g. for test-time adaptation).
        first_order : bool, optional
            Overrides ``self.first_order``.
        keep_steps : bool
            If True, return the list of fast weights after every step
            (``[params, step 1, ..., step k]``) for the multi-step loss.
        forward_context : callable, optional
            ``forward_context(twice_differentiable)`` returns a context
            manager entered around each support forward; its argument tells
            it whether a double backward will follow (a brain uses it to guard
            normalisation statistics and to pick a twice-differentiable
            loss, see ``MetaBrain``).
        loss_scale : float
            The support loss is multiplied by this before differentiation and
            the gradients divided by it (manual fp16 loss scaling).
        extra_inputs : iterable of torch.Tensor
            With ``recompute_inner_steps``: the tensors other than ``params``
            that ``loss_fn`` reads and that need a meta-gradient (the
            meta-parameters that do not adapt, e.g. ANIL's body). The update
            rule's parameters are added here.
        replay_context : callable, optional
            With ``recompute_inner_steps``: called before each step, returns
            a function that returns a context manager in which that step's
            recomputation sees the state the step first saw (a brain
            restores its normalisation statistics).

        Returns
        -------
        dict or list of dict
            The adapted fast weights, or all of them if ``keep_steps``.
        """
        steps = self.inner_steps if inner_steps is None else inner_steps
        first_order = self.first_order if first_order is None else first_order
        create_graph = not first_order and torch.is_grad_enabled()
        recompute = create_graph and self.recompute_inner_steps and steps > 0
        if recompute and getattr(self.update_rule, "has_step_state", False):
            raise ValueError(
                "recompute_inner_steps needs an update rule without state "
                f"across steps; {type(self.update_rule).__name__} keeps some"
            )
        others = []
        if recompute:
            seen = {id(t) for t in params.values()}
            for t in [*extra_inputs, *self.update_rule.parameters()]:
                if t.requires_grad and id(t) not in seen:
                    seen.add(id(t))
                    others.append(t)
        fast = OrderedDict(params)
        history = [fast]
        for step in range(steps):
            # ``keep_graph``: this run's gradient keeps its graph; False in
            # the forward of a recomputed step, whose loss is still the
            # twice-differentiable one (``twice_differentiable``), as in
            # its rerun.
            def run(fast, keep_graph, step=step):
                return self._step(
                    loss_fn,
                    fast,
                    support,
                    step,
                    keep_graph=keep_graph,
                    forward_context=forward_context,
                    loss_scale=loss_scale,
                    twice_differentiable=create_graph,
                )

            if recompute:
                replay = replay_context() if replay_context else None
                fast = _recomputed_step(run, fast, others, replay)
            else:
                fast = run(fast, create_graph)
            history.append(fast)
        return history if keep_steps else fast

    def _step(
        self,
        loss_fn,
        fast,
        support,
        step,
        keep_graph,
        forward_context,
        loss_scale,
        twice_differentiable,
    ):
        """One update: the support loss, its gradient, the update rule.

        ``keep_graph``: the gradient keeps its graph (it will be
        differentiated); ``twice_differentiable``: the forward runs the
        losses and RNNs whose gradients can be differentiated (the
        ``forward_context``'s argument). They differ in the forward of a
        recomputed step: no graph kept, the same losses as in its rerun.
        """
        names = list(fast)
        if forward_context is None:
            ctx = contextlib.nullcontext()
        else:
            ctx = forward_context(twice_differentiable)
        with ctx:
            loss = loss_fn(fast, support)
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteInnerLoss(step, "loss")
        grads = torch.autograd.grad(
            loss * loss_scale,
            [fast[n] for n in names],
            create_graph=keep_graph,
            allow_unused=True,
        )
        grads = {
            n: (
                torch.zeros_like(fast[n])
                if g is None
                else (g / loss_scale if loss_scale != 1.0 else g)
            )
            for n, g in zip(names, grads)
        }
        if not all_finite(grads.values()):
            raise NonFiniteInnerLoss(step, "gradient")
        if self.inner_grad_clip is not None:
            grads = _clip(grads, self.inner_grad_clip)
        return OrderedDict(self.update_rule(fast, grads, step))


def all_finite(tensors):
    """Whether every element of every tensor is finite.

    One ``_foreach_norm`` (L1; of half precision tensors in float32, which
    their finite values cannot overflow) per dtype group and one device
    sync for all the tensors, instead of five operations per tensor: a NaN
    or an infinity makes its tensor's norm NaN or infinite. (A float32 L1
    norm beyond 3.4e38, of finite values, also counts as not finite.)

    Arguments
    ---------
    tensors : iterable of torch.Tensor
        The tensors (empty ones are finite).

    Returns
    -------
    bool

    Example
    -------
    >>> all_finite([torch.ones(2), torch.tensor([1.0, float("nan")])])
    False
    >>> all_finite([torch.ones(2, dtype=torch.bfloat16)])
    True
    """
    half, other = [], []
    for t in tensors:
        if t.numel() > 0:
            low = t.dtype in (torch.float16, torch.bfloat16)
            (half if low else other).append(t.detach())
    finite = [
        torch.isfinite(torch.stack(torch._foreach_norm(group, 1, **kw))).all()
        for group, kw in ((half, {"dtype": torch.float32}), (other, {}))
        if group
    ]
    return bool(torch.stack(finite).all()) if finite else True


def _recomputed_step(run, fast, others, replay):
    """``run(fast, keep_graph)`` whose graph is rebuilt in the backward."""
    names = list(fast)
    outputs = _RecomputedStep.apply(
        run, names, others, replay, *[fast[n] for n in names], *others
    )
    return OrderedDict(zip(names, outputs))


class _RecomputedStep(torch.autograd.Function):
    """One inner step, checkpointed.

    The forward keeps no graph; the backward reruns the step with
    ``create_graph`` (same random numbers, statistics and autocast) and
    differentiates it, so the meta-gradient is the one through the kept
    graph.
    """

    @staticmethod
    def forward(ctx, run, names, others, replay, *tensors):
        ctx.run, ctx.names, ctx.others, ctx.replay = run, names, others, replay
        ctx.devices = sorted(
            {t.device.index for t in tensors if t.device.type == "cuda"}
        )
        ctx.cpu_rng = torch.get_rng_state()
        ctx.cuda_rng = [torch.cuda.get_rng_state(d) for d in ctx.devices]
        # Mixed precision as in this forward (the backward runs outside it).
        ctx.autocast = [
            (kind, torch.get_autocast_dtype(kind))
            for kind in ("cpu", "cuda")
            if torch.is_autocast_enabled(kind)
        ]
        fast_in = tensors[: len(names)]
        ctx.save_for_backward(*fast_in)
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in fast_in]
            out = run(OrderedDict(zip(names, leaves)), keep_graph=False)
        return tuple(out[n].detach() for n in names)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_outputs):
        leaves = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.random.fork_rng(devices=ctx.devices):
            torch.set_rng_state(ctx.cpu_rng)
            for device, state in zip(ctx.devices, ctx.cuda_rng):
                torch.cuda.set_rng_state(state, device)
            with contextlib.ExitStack() as stack:
                if ctx.replay:
                    stack.enter_context(ctx.replay())
                for kind, dtype in ctx.autocast:
                    stack.enter_context(torch.autocast(kind, dtype=dtype))
                stack.enter_context(torch.enable_grad())
                out = ctx.run(
                    OrderedDict(zip(ctx.names, leaves)), keep_graph=True
                )
        inputs = leaves + list(ctx.others)
        grads = torch.autograd.grad(
            [out[n] for n in ctx.names],
            inputs,
            grad_outputs,
            allow_unused=True,
        )
        return (None, None, None, None, *grads)


def _clip(grads, max_norm):
    """Rescales a dict of gradients to a global norm of at most max_norm."""
    # The norm in at least float32 (half-precision squares overflow).
    total = torch.sqrt(
        sum(
            (g.to(torch.promote_types(g.dtype, torch.float32)) ** 2).sum()
            for g in grads.values()
        )
    )
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return {n: g * factor.to(g.dtype) for n, g in grads.items()}
