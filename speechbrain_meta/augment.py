"""Waveform augmentation that SpeechBrain's ``speechbrain.augment`` lacks.

``RandomTilt`` changes the spectral tilt of each utterance: the balance
between low and high frequencies that differs from one voice, microphone
or telephone line to another. Synthetic voices are brighter than real
ones: the long-term spectra of the SynthDigits training voices and of the
recorded voices of its real-speech set (``speechbrain_meta.corpora.asterisk``)
differ by 6-10 dB at 1-4 kHz, relative to their 0-4 kHz energy. It goes in
an ``Augmenter``'s list beside SpeechBrain's own augmentations.

Authors
 * speechbrain-meta developers 2026
"""

import torch
import torchaudio
from speechbrain.utils.data_utils import batch_pad_right


class RandomTilt(torch.nn.Module):
    """Tilts each waveform's spectrum by a random first-order filter.

    A coefficient ``c`` is drawn per utterance, uniformly in
    ``[coefficient_low, coefficient_high]``. ``c > 0``: the one-pole
    low-pass ``y[n] = (1 - c) x[n] + c y[n-1]`` (darker); ``c < 0``:
    pre-emphasis ``y[n] = x[n] + c x[n-1]`` (brighter). At 16 kHz the gain
    at 3 kHz relative to 300 Hz changes by -5.3 dB at ``c = 0.5`` and -13.0
    dB at ``c = 0.8`` (+5.3 and +13.0 dB at -0.5 and -0.8). The output has
    the input's RMS.

    Arguments
    ---------
    coefficient_low : float
        The lowest coefficient, in (-1, 1).
    coefficient_high : float
        The highest coefficient, in (-1, 1).

    Example
    -------
    >>> tilt = RandomTilt(0.5, 0.5)  # always the same low-pass
    >>> waveforms = torch.randn(2, 16000)
    >>> tilted = tilt(waveforms)
    >>> tilted.shape
    torch.Size([2, 16000])
    >>> bool(torch.allclose(tilted.pow(2).mean(1), waveforms.pow(2).mean(1)))
    True
    """

    def __init__(self, coefficient_low=-0.8, coefficient_high=0.8):
        super().__init__()
        if not -1 < coefficient_low <= coefficient_high < 1:
            raise ValueError(
                "RandomTilt: need -1 < coefficient_low <= coefficient_high "
                f"< 1, got {coefficient_low}, {coefficient_high}"
            )
        self.coefficient_low = coefficient_low
        self.coefficient_high = coefficient_high

    def forward(self, waveforms):
        """Tilts each waveform.

        Arguments
        ---------
        waveforms : torch.Tensor
            ``[batch, time]`` or ``[batch, time, channels]``.

        Returns
        -------
        torch.Tensor
            The tilted waveforms, of the same shape.
        """
        if waveforms.dim() == 3:  # each channel of an utterance alike
            return self.forward_batch(waveforms.transpose(1, 2)).transpose(1, 2)
        return self.forward_batch(waveforms.unsqueeze(1)).squeeze(1)

    def forward_batch(self, waveforms):
        """``[batch, channels, time]`` tilted, one coefficient per item."""
        batch, channels, _ = waveforms.shape
        c = torch.empty(batch, device=waveforms.device).uniform_(
            self.coefficient_low, self.coefficient_high
        )
        lowpass = c.clamp(min=0).to(waveforms.dtype)
        emphasis = c.clamp(max=0).to(waveforms.dtype)
        ones = torch.ones_like(lowpass)
        a = torch.stack([ones, -lowpass], dim=1)  # y[n] - c y[n-1]
        b = torch.stack([1 - lowpass, emphasis], dim=1)  # x[n] + c x[n-1]
        a = a.repeat_interleave(channels, dim=0)
        b = b.repeat_interleave(channels, dim=0)
        flat = waveforms.reshape(batch * channels, -1)
        tilted = torchaudio.functional.lfilter(
            flat, a, b, clamp=False, batching=True
        )
        power = flat.pow(2).mean(-1, keepdim=True)
        tilted_power = tilted.pow(2).mean(-1, keepdim=True)
        gain = torch.sqrt(power / tilted_power.clamp(min=1e-20))
        return (tilted * gain).reshape(waveforms.shape)


class EdgeSilence(torch.nn.Module):
    """Puts silence before and after each utterance, as a recording has.

    A synthesiser's speech starts and stops within milliseconds of the
    sound; a recorded utterance has a fraction of a second of its room's
    noise at each edge. A recogniser that never heard such silence in
    training writes words into it (README of recipes/SynthDigits/meta_asr,
    "Silence and speaking rate"). Each utterance, with probability
    ``share``, gets a silence drawn uniformly in ``[low, high]`` seconds
    before it and another, drawn again, after it. The silence is white
    noise at the utterance's own noise floor: the RMS of its quietest
    frames (the ``floor_quantile`` quantile of its 20 ms frames' RMS).

    It may start at a given epoch (``start_epoch`` with the recipe's
    ``epoch_counter``, which its checkpoints record): a CTC model that
    meets long silences from its first update stays longer on the plateau
    where it writes only blanks, one that meets them after it has left
    the plateau learns them.

    Arguments
    ---------
    low : float
        Shortest silence at an edge, in seconds.
    high : float
        Longest silence at an edge, in seconds.
    share : float
        Probability that an utterance gets edge silence.
    sample_rate : int
        The waveforms' sampling rate.
    floor_quantile : float
        Which quantile of the frame RMS is the noise floor.
    epoch_counter : speechbrain.utils.epoch_loop.EpochCounter, optional
        The training's epoch counter; with ``start_epoch``, nothing is
        added before that epoch.
    start_epoch : int
        First epoch (1-based, ``epoch_counter.current``) with silence.

    Example
    -------
    >>> silence = EdgeSilence(0.5, 0.5, share=1.0, sample_rate=16000)
    >>> waveforms = torch.randn(2, 16000) * 0.1
    >>> waveforms[1, 8000:] = 0.0  # padding: the second is 0.5 s long
    >>> padded, lengths = silence(waveforms, torch.tensor([1.0, 0.5]))
    >>> padded.shape, lengths.tolist()
    (torch.Size([2, 32000]), [1.0, 0.75])
    >>> bool(torch.equal(padded[0, 8000:24000], waveforms[0]))
    True
    """

    def __init__(
        self,
        low=0.0,
        high=0.6,
        share=0.5,
        sample_rate=16000,
        floor_quantile=0.05,
        epoch_counter=None,
        start_epoch=1,
    ):
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(
                f"EdgeSilence: need 0 <= low <= high, got {low}, {high}"
            )
        if not 0 <= share <= 1:
            raise ValueError(f"EdgeSilence: share {share} not in [0, 1]")
        self.low = low
        self.high = high
        self.share = share
        self.sample_rate = sample_rate
        self.floor_quantile = floor_quantile
        self.epoch_counter = epoch_counter
        self.start_epoch = start_epoch

    def active(self):
        """Whether this epoch gets silence (always without a counter)."""
        if self.epoch_counter is None:
            return True
        return self.epoch_counter.current >= self.start_epoch

    def noise_floor(self, waveform):
        """The RMS of a waveform's quietest 20 ms frames.

        Arguments
        ---------
        waveform : torch.Tensor
            ``[time]``, without padding.

        Returns
        -------
        torch.Tensor
            A scalar.
        """
        frame = max(1, self.sample_rate // 50)
        usable = waveform[: len(waveform) // frame * frame]
        if usable.numel() == 0:
            return waveform.pow(2).mean().sqrt()
        rms = usable.reshape(-1, frame).pow(2).mean(1).sqrt()
        return torch.quantile(rms, self.floor_quantile)

    def forward(self, waveforms, lengths):
        """Each waveform with its edge silences.

        Arguments
        ---------
        waveforms : torch.Tensor
            ``[batch, time]``, padded.
        lengths : torch.Tensor
            Relative lengths, ``[batch]``.

        Returns
        -------
        waveforms : torch.Tensor
            ``[batch, new_time]``, padded with zeros.
        lengths : torch.Tensor
            The new relative lengths.
        """
        if not self.active() or self.share == 0:
            return waveforms, lengths
        total = waveforms.shape[1]
        pieces = []
        for waveform, length in zip(waveforms, lengths):
            speech = waveform[: int(torch.round(length * total))]
            if torch.rand(()) < self.share:
                edges = torch.empty(2).uniform_(self.low, self.high)
                lead, trail = (edges * self.sample_rate).long().tolist()
                floor = self.noise_floor(speech)
                noise = torch.randn(
                    lead + trail, device=speech.device, dtype=speech.dtype
                )
                noise = noise * floor
                speech = torch.cat([noise[:lead], speech, noise[lead:]])
            pieces.append(speech)
        padded, new_lengths = batch_pad_right(pieces)
        return padded, new_lengths.to(lengths)
