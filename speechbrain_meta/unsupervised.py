"""What a model can learn from a new speaker's audio alone.

Test-time adaptation without transcripts (SUTA, Lin et al., Interspeech
2022): the adapted weights descend an objective of the model's own CTC
frame posteriors on the untranscribed support,

    L = (1 - mcc) * H + mcc * C,

* ``H``, **entropy minimisation**: the mean over the frames of the entropy
  of the posteriors at a temperature ``T`` (``softmax(log p / T)``): the
  model is made surer of what it already mostly believes;
* ``C``, **minimum class confusion** (Jin et al., ECCV 2020): the
  off-diagonal mass of the class-correlation matrix of the frame
  posteriors, each class's column normalised: frames are pushed to commit
  to one class instead of spreading over two.

Guard: CTC posteriors are dominated by blank, and entropy minimisation
alone drives a model to predict blank everywhere (zero entropy, empty
transcripts). Frames where the *unadapted* model gives blank more than
``blank_threshold`` are left out of both terms (the mask is fixed by the
unadapted weights, so adaptation cannot move frames out of it); the
``Adaptation``'s ``kl`` term and ``max_update`` bound (see
``speechbrain_meta.adaptation``) further hold the adapted model near the
unadapted one.

For attention (encoder-decoder) models, the objective applies to the CTC
branch's frame posteriors only (``frame_log_probs``): the decoder's
token posteriors depend on the tokens decoded so far, and minimising their
entropy on the model's own hypotheses reinforces its errors (exposure to
its own beam), so a brain without CTC frame posteriors is refused.

An ``EntropyObjective`` serves both at test time (``Adaptation(
unsupervised=...)``) and in meta-training, where it is the inner loop's
support loss and the query loss stays supervised (``MAML(...,
support_objective=EntropyObjective())``): the meta-learned
initialisation is then one that unsupervised adaptation improves.

Authors
 * speechbrain-meta developers 2026
"""

import speechbrain as sb
import torch

# The weights entropy minimisation adapts when a model's own are all of
# them: the normalisation layers' (BatchNorm, LayerNorm...).
NORMALISATION_PARAMS = ["*norm*"]


def unsupervised_params(own):
    """The weights an adaptation without transcripts changes by default.

    A method's own adaptable weights when they are task parameters (LHUC,
    LoRA, adapters...); its normalisation layers' when its own are the
    whole model (``["*"]``), where entropy minimisation is known to be
    stable (SUTA adapts LayerNorm's).

    Arguments
    ---------
    own : list of str
        The method's adaptable weights (name patterns).

    Returns
    -------
    list of str

    Example
    -------
    >>> unsupervised_params(["*"]), unsupervised_params(["*lhuc*"])
    (['*norm*'], ['*lhuc*'])
    """
    own = list(own)
    return list(NORMALISATION_PARAMS) if own == ["*"] else own


def valid_frames(lens, frames):
    """``[batch, frames]`` mask of the frames inside each utterance.

    Arguments
    ---------
    lens : torch.Tensor
        Relative lengths ``[batch]``.
    frames : int
        Padded number of frames.

    Returns
    -------
    torch.Tensor
        Boolean mask.

    Example
    -------
    >>> valid_frames(torch.tensor([1.0, 0.5]), 4).int().tolist()
    [[1, 1, 1, 1], [1, 1, 0, 0]]
    """
    positions = torch.arange(frames, device=lens.device)[None, :]
    return positions < (lens[:, None] * frames).round()


def frame_entropy(log_probs, mask, temperature=1.0):
    """Mean entropy of the frame posteriors at a temperature.

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[batch, frames, classes]`` log-posteriors.
    mask : torch.Tensor
        ``[batch, frames]``: the frames counted.
    temperature : float
        ``softmax(log_probs / temperature)`` is scored.

    Returns
    -------
    torch.Tensor
        The scalar mean over the counted frames (0 if none).

    Example
    -------
    >>> sure = torch.log(torch.tensor([[[1.0, 0.0], [0.5, 0.5]]]) + 1e-12)
    >>> mask = torch.tensor([[True, False]])
    >>> round(float(frame_entropy(sure, mask)), 4)
    0.0
    >>> round(float(frame_entropy(sure, ~mask)), 4)  # log 2
    0.6931
    """
    log_q = torch.log_softmax(log_probs / temperature, dim=-1)
    entropy = -(log_q.exp() * log_q).sum(-1)
    weight = mask.to(entropy.dtype)
    return (entropy * weight).sum() / weight.sum().clamp(min=1)


def class_confusion(log_probs, mask, temperature=1.0):
    """Minimum class confusion: the class-correlation mass off the diagonal.

    With ``P`` the ``[frames, classes]`` posteriors at the temperature of
    the counted frames, each frame weighted by ``1 + exp(-H)`` (surer
    frames count more, as Jin et al.), the correlation ``C = P^T W P`` has
    each row normalised to sum to one; the loss is the mean over classes of
    its off-diagonal mass (0 when no frame hesitates between classes).

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[batch, frames, classes]`` log-posteriors.
    mask : torch.Tensor
        ``[batch, frames]``: the frames counted.
    temperature : float
        As ``frame_entropy``.

    Returns
    -------
    torch.Tensor
        The scalar confusion in [0, 1).

    Example
    -------
    >>> certain = torch.log(torch.eye(3)[None] + 1e-9)
    >>> round(float(class_confusion(certain, torch.ones(1, 3, dtype=bool))), 4)
    0.0
    >>> flat = torch.log(torch.full((1, 3, 3), 1 / 3))
    >>> round(float(class_confusion(flat, torch.ones(1, 3, dtype=bool))), 4)
    0.6667
    """
    classes = log_probs.shape[-1]
    log_q = torch.log_softmax(log_probs / temperature, dim=-1)
    q = log_q.exp()[mask]  # [frames, classes]
    if q.shape[0] == 0:
        return log_probs.new_zeros(())
    entropy = -(q * log_q[mask]).sum(-1)
    weight = 1 + torch.exp(-entropy)
    weight = (q.shape[0] * weight / weight.sum()).unsqueeze(1)
    correlation = q.transpose(0, 1).mm(q * weight)
    correlation = correlation / correlation.sum(1, keepdim=True).clamp(
        min=torch.finfo(q.dtype).tiny
    )
    return (correlation.sum() - correlation.trace()) / classes


class EntropyObjective:
    """The unsupervised support loss (see the module docstring).

    Arguments
    ---------
    temperature : float
        Of the posteriors scored (SUTA: 2.5).
    mcc : float
        Weight in [0, 1] of the class confusion; ``1 - mcc`` is the
        entropy's (SUTA: 0.7).
    blank_threshold : float or None
        Frames where the unadapted model gives blank more than this are
        left out (None: every frame counts).
    blank_index : int, optional
        The CTC blank's class (default: the brain's ``blank_index``
        hparam, else 0).

    Example
    -------
    >>> EntropyObjective().describe()
    {'objective': 'entropy', 'temperature': 2.5, 'mcc': 0.7, \
'blank_threshold': 0.99}
    """

    def __init__(
        self, temperature=2.5, mcc=0.7, blank_threshold=0.99, blank_index=None
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= mcc <= 1.0:
            raise ValueError(f"mcc must be in [0, 1], got {mcc}")
        if blank_threshold is not None and not 0 < blank_threshold <= 1:
            raise ValueError(
                f"blank_threshold must be in (0, 1], got {blank_threshold}"
            )
        self.temperature = float(temperature)
        self.mcc = float(mcc)
        self.blank_threshold = (
            None if blank_threshold is None else float(blank_threshold)
        )
        self.blank_index = blank_index

    def describe(self):
        """The settings, as written in results and exported models.

        Returns
        -------
        dict
        """
        return {
            "objective": "entropy",
            "temperature": self.temperature,
            "mcc": self.mcc,
            "blank_threshold": self.blank_threshold,
        }

    @classmethod
    def from_dict(cls, settings):
        """The objective a ``describe()`` dictionary stands for.

        Arguments
        ---------
        settings : dict
            ``describe()``'s keys (``objective`` must be ``entropy``).

        Returns
        -------
        EntropyObjective

        Example
        -------
        >>> o = EntropyObjective(temperature=1.0)
        >>> EntropyObjective.from_dict(o.describe()).temperature
        1.0
        """
        settings = dict(settings)
        kind = settings.pop("objective", "entropy")
        if kind != "entropy":
            raise ValueError(f"unknown unsupervised objective {kind!r}")
        return cls(**settings)

    def __repr__(self):
        items = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"EntropyObjective({items})"

    def loss(self, log_probs, mask):
        """``(1 - mcc) * entropy + mcc * confusion`` over the masked frames.

        Arguments
        ---------
        log_probs : torch.Tensor
            ``[batch, frames, classes]``.
        mask : torch.Tensor
            ``[batch, frames]``.

        Returns
        -------
        torch.Tensor

        Example
        -------
        >>> log_p = torch.log_softmax(torch.randn(2, 6, 4), -1)
        >>> mask = torch.ones(2, 6, dtype=torch.bool)
        >>> bool(EntropyObjective().loss(log_p, mask) > 0)
        True
        """
        out = 0.0
        if self.mcc < 1.0:
            out = (1 - self.mcc) * frame_entropy(
                log_probs, mask, self.temperature
            )
        if self.mcc > 0.0:
            out = out + self.mcc * class_confusion(
                log_probs, mask, self.temperature
            )
        return out

    def frame_mask(self, log_probs, lens, blank_index=None):
        """The frames scored: inside the utterance, not surely blank.

        Arguments
        ---------
        log_probs : torch.Tensor
            The *unadapted* model's ``[batch, frames, classes]``.
        lens : torch.Tensor
            Relative lengths.
        blank_index : int, optional
            The blank's class (default: the objective's, else 0).

        Returns
        -------
        torch.Tensor
            ``[batch, frames]`` boolean mask.

        Example
        -------
        >>> log_p = torch.log(torch.tensor([[[0.999, 0.001], [0.4, 0.6]]]))
        >>> EntropyObjective().frame_mask(log_p, torch.ones(1)).tolist()
        [[False, True]]
        """
        mask = valid_frames(lens, log_probs.shape[1])
        if blank_index is None:
            blank_index = self.blank_index or 0
        if self.blank_threshold is not None:
            blank = log_probs[..., blank_index].exp()
            mask = mask & (blank <= self.blank_threshold)
        return mask

    def __call__(self, brain):
        """The support-loss maker an inner loop takes (``make(start)``).

        Arguments
        ---------
        brain : MetaBrain
            A brain with ``frame_log_probs(predictions)`` (CTC frame
            posteriors).

        Returns
        -------
        callable
            ``make(start) -> loss_fn(fast_weights, batch)``; the frame
            mask of each batch is computed once from ``start``.
        """
        if not hasattr(brain, "frame_log_probs"):
            raise NotImplementedError(
                f"{type(brain).__name__} has no CTC frame posteriors "
                "(frame_log_probs): unsupervised adaptation applies to a "
                "CTC branch only"
            )

        blank = self.blank_index
        if blank is None:
            blank = getattr(brain.hparams, "blank_index", 0)

        def make(start):
            masks = {}

            def loss_fn(fast, batch):
                log_p, lens = self.posteriors(brain, fast, batch)
                if id(batch) not in masks:
                    with torch.no_grad():
                        reference, _ = self.posteriors(brain, start, batch)
                        masks[id(batch)] = self.frame_mask(
                            reference, lens, blank
                        )
                return self.loss(log_p, masks[id(batch)])

            return loss_fn

        return make

    @staticmethod
    def posteriors(brain, weights, batch):
        """The CTC frame log-posteriors with some weights in place.

        Arguments
        ---------
        brain : MetaBrain
            The model.
        weights : dict
            Name to tensor.
        batch : PaddedBatch
            Needs only the audio (its augmentation is not applied).

        Returns
        -------
        tuple
            ``(log_probs, lens)``.
        """
        # Stage.VALID: no augmentation, so that the frames are those of
        # the mask (a speed change would move them).
        predictions = brain.call_with(
            weights, brain.compute_forward, batch, sb.Stage.VALID
        )
        return brain.frame_log_probs(predictions)
