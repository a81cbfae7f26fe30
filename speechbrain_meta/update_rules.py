"""Update rules for the inner loop.

An update rule is an ``nn.Module`` that maps the fast weights and their
gradients at one inner step to the next fast weights. Its own parameters
(none for plain SGD) are meta-parameters: they are trained by the outer loop
and saved by SpeechBrain's checkpointer like any other module.

Authors
 * speechbrain-meta developers 2026
"""

import math

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.naming import canonical_name

logger = get_logger(__name__)


def descend(fast_weights, grads, rates):
    """``fast - rate * grad`` for every adapted tensor, as two ``_foreach``
    operations (one autograd node each, not two per tensor).

    The result is the same, bit for bit, as the per-tensor expression.

    Arguments
    ---------
    fast_weights : dict
        Parameter name to fast weight.
    grads : dict
        Parameter name to gradient.
    rates : float or list of torch.Tensor
        One rate for all, or one (broadcastable) rate per tensor, in the
        order of ``fast_weights``.

    Returns
    -------
    dict
        Parameter name to the updated fast weight.

    Example
    -------
    >>> fast = {"w": torch.ones(2), "b": torch.zeros(1)}
    >>> grads = {"w": torch.tensor([1.0, -2.0]), "b": torch.ones(1)}
    >>> descend(fast, grads, 0.5)
    {'w': tensor([0.5000, 2.0000]), 'b': tensor([-0.5000])}
    """
    names = list(fast_weights)
    if not names:
        return {}
    steps = torch._foreach_mul([grads[n] for n in names], rates)
    return dict(
        zip(names, torch._foreach_sub([fast_weights[n] for n in names], steps))
    )


class SGD(torch.nn.Module):
    """Plain gradient descent with one fixed learning rate.

    ``fast[name] - lr * grad[name]`` for every adapted parameter.

    Arguments
    ---------
    lr : float
        The inner learning rate.

    Example
    -------
    >>> rule = SGD(lr=0.5)
    >>> fast = {"w": torch.ones(2)}
    >>> grads = {"w": torch.tensor([1.0, -2.0])}
    >>> rule(fast, grads, step=0)["w"]
    tensor([0.5000, 2.0000])
    """

    def __init__(self, lr=0.01):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"The inner learning rate must be > 0, got {lr}")
        self.lr = float(lr)

    def forward(self, fast_weights, grads, step):
        """Computes the next fast weights.

        Arguments
        ---------
        fast_weights : dict
            Parameter name to current fast weight.
        grads : dict
            Parameter name to the gradient of the support loss.
        step : int
            The inner step, counted from 0.

        Returns
        -------
        dict
            Parameter name to the updated fast weight.
        """
        return descend(fast_weights, grads, self.lr)

    def extra_repr(self):
        """Shows the learning rate when the module is printed."""
        return f"lr={self.lr}"


class Adam(torch.nn.Module):
    """Adam (Kingma & Ba, 2015) as an inner-loop rule: fine-tuning as users do.

    The moment estimates live for one adaptation: they restart at step 0.
    Every operation is differentiable, so the rule can also sit inside a
    second-order inner loop.

    Arguments
    ---------
    lr : float
        The learning rate.
    betas : tuple of float
        Decay of the first and second moment estimates.
    eps : float
        Added to the denominator.

    Example
    -------
    >>> rule = Adam(lr=0.1)
    >>> fast = {"w": torch.zeros(2)}
    >>> grads = {"w": torch.tensor([2.0, -0.5])}
    >>> rule(fast, grads, step=0)["w"]  # the first step is lr * sign(grad)
    tensor([-0.1000,  0.1000])
    """

    # Moments carried from one inner step to the next (InnerLoop's
    # recompute_inner_steps cannot replay them).
    has_step_state = True

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"The inner learning rate must be > 0, got {lr}")
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self._moments = {}

    def forward(self, fast_weights, grads, step):
        """Computes the next fast weights (see ``SGD.forward``).

        Arguments
        ---------
        fast_weights : dict
            Parameter name to current fast weight.
        grads : dict
            Parameter name to the gradient of the support loss.
        step : int
            The inner step, counted from 0 (0 restarts the moments).

        Returns
        -------
        dict
            Parameter name to the updated fast weight.
        """
        if step == 0:
            self._moments = {}
        beta1, beta2 = self.betas
        out = {}
        for name, weight in fast_weights.items():
            grad = grads[name]
            mean, square = self._moments.get(name, (0.0, 0.0))
            mean = beta1 * mean + (1 - beta1) * grad
            square = beta2 * square + (1 - beta2) * grad * grad
            self._moments[name] = (mean, square)
            mean_hat = mean / (1 - beta1 ** (step + 1))
            square_hat = square / (1 - beta2 ** (step + 1))
            # eps**2 under the root: finite second derivatives where a
            # gradient is exactly zero (otherwise torch.optim.Adam's step).
            root = torch.sqrt(square_hat + self.eps**2)
            out[name] = weight - self.lr * mean_hat / (root + self.eps)
        return out

    def extra_repr(self):
        """Shows the learning rate when the module is printed."""
        return f"lr={self.lr}"


def _key(name):
    """A parameter's canonical name as a ParameterDict key (no dots)."""
    return canonical_name(name).replace(".", "__")


class _Rate(torch.nn.Module):
    """Positive learning rates from unconstrained raw values.

    ``log``: ``lr = exp(raw)``; ``softplus``: ``lr = softplus(raw)``; the
    result is clamped to ``[min_lr, max_lr]``.
    """

    def __init__(self, init_lr, min_lr=0.0, max_lr=None, parametrization="log"):
        super().__init__()
        if init_lr <= 0:
            raise ValueError(f"init_lr must be > 0, got {init_lr}")
        if parametrization not in ("log", "softplus"):
            raise ValueError(
                f"parametrization must be 'log' or 'softplus', got "
                f"{parametrization!r}"
            )
        self.init_lr = float(init_lr)
        self.min_lr = float(min_lr)
        self.max_lr = None if max_lr is None else float(max_lr)
        self.parametrization = parametrization
        self.raw_lr = torch.nn.ParameterDict()

    def raw_init(self):
        """The raw value whose rate is ``init_lr``."""
        if self.parametrization == "log":
            return math.log(self.init_lr)
        # softplus^-1(y) = log(exp(y) - 1)
        return math.log(math.expm1(self.init_lr))

    def rates(self, raws):
        """The positive, clamped rate of each raw tensor (``_foreach``).

        Both parametrisations are positive: a clamp at ``min_lr <= 0``
        with no ``max_lr`` would change nothing, and is left out.

        Arguments
        ---------
        raws : list of torch.Tensor
            Raw (unconstrained) rates.

        Returns
        -------
        list of torch.Tensor
            The rates, one per raw tensor.
        """
        if self.parametrization == "log":
            lrs = torch._foreach_exp(raws)
        else:
            lrs = [torch.nn.functional.softplus(raw) for raw in raws]
        if self.min_lr > 0:
            lrs = torch._foreach_clamp_min(lrs, self.min_lr)
        if self.max_lr is not None:
            lrs = torch._foreach_clamp_max(lrs, self.max_lr)
        return list(lrs)

    def step_raws(self, names, step):
        """The raw rates of the named tensors at one inner step.

        Arguments
        ---------
        names : list of str
            Adapted parameter names.
        step : int
            The inner step.

        Returns
        -------
        list of torch.Tensor
        """
        raise NotImplementedError

    def learning_rates(self, name, step=0):
        """The rates applied to one parameter at an inner step.

        Arguments
        ---------
        name : str
            The parameter name.
        step : int
            The inner step.

        Returns
        -------
        torch.Tensor
            The rates, shaped as ``step_raws`` gives them.
        """
        return self.rates(self.step_raws([name], step))[0]

    def _shape(self, param):
        """Shape of the raw rates of one adapted parameter."""
        raise NotImplementedError

    def setup(self, named_parameters):
        """Creates the rates of the adapted parameters (idempotent).

        Arguments
        ---------
        named_parameters : dict
            Name to parameter (the inner loop's selection).
        """
        for name, param in named_parameters.items():
            if _key(name) not in self.raw_lr:
                self.raw_lr[_key(name)] = torch.nn.Parameter(
                    torch.full(
                        self._shape(param),
                        self.raw_init(),
                        dtype=param.dtype,
                        device=param.device,
                    )
                )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Creates the rates a saved state has before loading it.

        (A rule loaded before ``setup``, by a ``Pretrainer`` for instance,
        gets its rates from the file.)
        """
        head = prefix + "raw_lr."
        for key, value in state_dict.items():
            name = key[len(head) :]
            if key.startswith(head) and name not in self.raw_lr:
                self.raw_lr[name] = torch.nn.Parameter(torch.empty_like(value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _raw(self, name):
        if _key(name) not in self.raw_lr:
            raise KeyError(
                f"{type(self).__name__} has no rate for {name!r}: call "
                "setup() with the adapted parameters first"
            )
        return self.raw_lr[_key(name)]

    def forward(self, fast_weights, grads, step):
        """The next fast weights (see ``SGD.forward``)."""
        rates = self.rates(self.step_raws(list(fast_weights), step))
        return descend(fast_weights, grads, rates)


class MetaSGD(_Rate):
    """Meta-SGD (Li et al., 2017): one learned rate per parameter element.

    ``fast - lr * grad`` with ``lr`` a tensor shaped like the parameter,
    meta-learned with (or without) the initialisation. The rates are
    created by ``setup`` from the adapted parameters (the brain calls it).

    Arguments
    ---------
    init_lr : float
        Initial rate of every element.
    min_lr, max_lr : float
        Clamping range of the rates.
    parametrization : str
        ``log`` (rate = exp(raw)) or ``softplus``.

    Example
    -------
    >>> rule = MetaSGD(init_lr=0.5)
    >>> rule.setup({"w": torch.zeros(2)})
    >>> fast = {"w": torch.tensor([1.0, 2.0])}
    >>> grads = {"w": torch.tensor([1.0, 0.0])}
    >>> rule(fast, grads, step=0)["w"].detach()
    tensor([0.5000, 2.0000])
    """

    def __init__(
        self, init_lr=0.01, min_lr=0.0, max_lr=None, parametrization="log"
    ):
        super().__init__(init_lr, min_lr, max_lr, parametrization)

    def _shape(self, param):
        return param.shape

    def step_raws(self, names, step):
        """The raw rates of the named tensors (the same at every step).

        Arguments
        ---------
        names : list of str
            Adapted parameter names.
        step : int
            The inner step (unused).

        Returns
        -------
        list of torch.Tensor
        """
        return [self._raw(name) for name in names]


class LayerStepLR(_Rate):
    """One learned rate per adapted tensor per inner step (MAML++ LSLR).

    MAML++ calls it per layer; here a "layer" is each adapted parameter
    tensor (a weight and its bias have their own rates).

    Arguments
    ---------
    init_lr : float
        Initial rate.
    inner_steps : int
        Number of steps with their own rate; later steps (test-time
        adaptation may run longer) reuse the last one.
    min_lr, max_lr : float
        Clamping range.
    parametrization : str
        ``log`` or ``softplus``.

    Example
    -------
    >>> rule = LayerStepLR(init_lr=0.1, inner_steps=2)
    >>> rule.setup({"w": torch.zeros(3)})
    >>> [round(float(rule.learning_rates("w", s)), 4) for s in range(3)]
    [0.1, 0.1, 0.1]
    """

    def __init__(
        self,
        init_lr=0.01,
        inner_steps=1,
        min_lr=0.0,
        max_lr=None,
        parametrization="log",
    ):
        super().__init__(init_lr, min_lr, max_lr, parametrization)
        if inner_steps < 1:
            raise ValueError("LayerStepLR needs inner_steps >= 1")
        self.inner_steps = int(inner_steps)

    def _shape(self, param):
        return (self.inner_steps,)

    def step_raws(self, names, step):
        """The raw rates of the named tensors at one inner step.

        One stack and one column for all the tensors, not one indexing
        per tensor.

        Arguments
        ---------
        names : list of str
            Adapted parameter names.
        step : int
            The inner step; later steps reuse the last rate.

        Returns
        -------
        list of torch.Tensor
            Scalars.
        """
        raws = torch.stack([self._raw(name) for name in names])
        return list(raws[:, min(step, self.inner_steps - 1)].unbind(0))


def preprocess(x, p=10.0):
    """Andrychowicz et al.'s gradient preprocessing, coordinate-wise.

    ``(log|x| / p, sign x)`` if ``|x| >= exp(-p)``, else ``(-1, exp(p) x)``:
    magnitudes over many orders become inputs of order one.

    Arguments
    ---------
    x : torch.Tensor
        Any shape.
    p : float
        The preprocessing constant.

    Returns
    -------
    torch.Tensor
        Shape ``x.shape + (2,)``.

    Example
    -------
    >>> preprocess(torch.tensor([1.0, -1e-5]), p=10.0)
    tensor([[ 0.0000,  1.0000],
            [-1.0000, -0.2203]])
    """
    big = x.abs() >= math.exp(-p)
    safe = torch.where(big, x.abs(), torch.ones_like(x))
    first = torch.where(big, torch.log(safe) / p, -torch.ones_like(x))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([first, second], dim=-1)


class LearnedUpdate(torch.nn.Module):
    """A coordinate-wise learned optimiser (after Andrychowicz et al., 2016).

    Every coordinate of every adapted tensor gets the same small MLP, fed
    with the preprocessed gradient, the parameter value, the inner step and
    running statistics of this adaptation (gradient momentum and RMS, reset
    at step 0). The update is::

        fast - base_lr * grad - max_update * tanh(net(features))

    The net's output layer starts at zero, so the rule starts as plain SGD
    with rate ``base_lr`` (itself learned, in log space), and its learned
    correction is bounded by ``max_update`` per coordinate and step.

    Arguments
    ---------
    base_lr : float
        Initial rate of the SGD part.
    hidden_size : int
        Width of the MLP.
    inner_steps : int
        Normalises the step feature (``step / inner_steps``).
    max_update : float
        Bound of the learned correction.
    preprocess_p : float
        Gradient preprocessing constant.
    beta1, beta2 : float
        Decay of the running gradient mean and squared mean.

    Example
    -------
    >>> rule = LearnedUpdate(base_lr=0.5)
    >>> fast = {"w": torch.tensor([1.0, 2.0])}
    >>> grads = {"w": torch.tensor([1.0, 0.0])}
    >>> rule(fast, grads, step=0)["w"].detach()
    tensor([0.5000, 2.0000])
    """

    n_features = 7

    # Moments carried from one inner step to the next (InnerLoop's
    # recompute_inner_steps cannot replay them).
    has_step_state = True

    def __init__(
        self,
        base_lr=0.01,
        hidden_size=16,
        inner_steps=1,
        max_update=0.01,
        preprocess_p=10.0,
        beta1=0.9,
        beta2=0.99,
    ):
        super().__init__()
        if base_lr <= 0 or max_update < 0:
            raise ValueError("base_lr must be > 0 and max_update >= 0")
        self.log_base_lr = torch.nn.Parameter(torch.tensor(math.log(base_lr)))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(self.n_features, hidden_size),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden_size, 1),
        )
        torch.nn.init.zeros_(self.net[2].weight)
        torch.nn.init.zeros_(self.net[2].bias)
        self.inner_steps = max(int(inner_steps), 1)
        self.max_update = float(max_update)
        self.preprocess_p = float(preprocess_p)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self._mean = {}
        self._square = {}

    def features(self, name, weight, grad, step):
        """The per-coordinate inputs of the network, ``[numel, 7]``.

        Arguments
        ---------
        name : str
            The parameter name (keys the running statistics).
        weight, grad : torch.Tensor
            The fast weight and its support gradient.
        step : int
            The inner step.

        Returns
        -------
        torch.Tensor
        """
        if step == 0 or name not in self._mean:
            self._mean[name] = torch.zeros_like(grad)
            self._square[name] = torch.zeros_like(grad)
        mean = self.beta1 * self._mean[name] + (1 - self.beta1) * grad
        square = self.beta2 * self._square[name] + (1 - self.beta2) * grad**2
        self._mean[name], self._square[name] = mean, square
        p = self.preprocess_p
        flat = [
            preprocess(grad.reshape(-1), p),
            preprocess(mean.reshape(-1), p),
            preprocess(torch.sqrt(square.reshape(-1) + 1e-16), p)[:, :1],
            weight.reshape(-1, 1),
            torch.full_like(weight.reshape(-1, 1), step / self.inner_steps),
        ]
        return torch.cat(flat, dim=-1)

    def base_lr(self):
        """The learned rate of the SGD part."""
        return torch.exp(self.log_base_lr)

    def forward(self, fast_weights, grads, step):
        """The next fast weights (see ``SGD.forward``)."""
        out = {}
        for name, weight in fast_weights.items():
            grad = grads[name]
            feats = self.features(name, weight, grad, step).to(weight.dtype)
            correction = torch.tanh(self.net(feats)).reshape(weight.shape)
            out[name] = (
                weight
                - self.base_lr().to(weight.dtype) * grad
                - self.max_update * correction
            )
        return out


class Anchored(torch.nn.Module):
    """Any update rule, held near the weights the adaptation started from.

    Conservative adaptation for small support sets, in two forms that can
    be combined:

    * **L2-SP** (Li et al., ICML 2018): the rule sees the gradient of
      ``loss + l2sp / 2 * ||fast - start||^2``, a pull towards the
      unadapted weights ``start`` (the weights of step 0) instead of
      towards zero;
    * **a bound on the update**: after each step, the change of all the
      adapted tensors together is scaled down, if needed, so that
      ``||fast - start|| <= max_update * ||start||`` (a relative trust
      region, the same for any model size).

    Arguments
    ---------
    rule : torch.nn.Module
        The update rule held (``SGD``, ``Adam``, a learned rule...).
    l2sp : float
        Weight of the pull towards the start (0: none).
    max_update : float, optional
        Largest relative norm of the change (None: unbounded).

    Example
    -------
    >>> rule = Anchored(SGD(lr=1.0), l2sp=0.5)
    >>> fast = {"w": torch.ones(2)}
    >>> out = rule(fast, {"w": torch.ones(2)}, step=0)  # at the start
    >>> out["w"]
    tensor([0., 0.])
    >>> rule(out, {"w": torch.zeros(2)}, step=1)["w"]  # pulled back
    tensor([0.5000, 0.5000])
    >>> bounded = Anchored(SGD(lr=1.0), max_update=0.1)
    >>> w = bounded({"w": torch.ones(4)}, {"w": torch.ones(4)}, step=0)["w"]
    >>> round(float((w - 1).norm() / torch.ones(4).norm()), 4)
    0.1
    """

    has_step_state = True  # the start weights, taken at step 0

    def __init__(self, rule, l2sp=0.0, max_update=None):
        super().__init__()
        if l2sp < 0:
            raise ValueError(f"l2sp must be >= 0, got {l2sp}")
        if max_update is not None and max_update <= 0:
            raise ValueError(f"max_update must be > 0, got {max_update}")
        self.rule = rule
        self.l2sp = float(l2sp)
        self.max_update = None if max_update is None else float(max_update)
        self._start = {}

    def forward(self, fast_weights, grads, step):
        """The held rule's step, pulled towards and bounded around the start.

        Arguments
        ---------
        fast_weights : dict
            Parameter name to current fast weight.
        grads : dict
            Parameter name to the gradient of the support loss.
        step : int
            The inner step, counted from 0 (0 takes the start weights).

        Returns
        -------
        dict
            Parameter name to the updated fast weight.
        """
        if step == 0:
            self._start = {n: w.detach() for n, w in fast_weights.items()}
        start = self._start
        if self.l2sp > 0:
            grads = {
                n: g + self.l2sp * (fast_weights[n] - start[n])
                for n, g in grads.items()
            }
        out = self.rule(fast_weights, grads, step)
        if self.max_update is None or not out:
            return out
        names = list(out)
        deltas = [out[n] - start[n] for n in names]
        change = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(d) for d in deltas])
        )
        size = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(start[n]) for n in names])
        )
        scale = torch.clamp(self.max_update * size / (change + 1e-12), max=1.0)
        return {n: start[n] + d * scale for n, d in zip(names, deltas)}

    def extra_repr(self):
        """Shows the anchoring when the module is printed."""
        return f"l2sp={self.l2sp}, max_update={self.max_update}"
