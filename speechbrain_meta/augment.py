"""Waveform augmentation that SpeechBrain's ``speechbrain.augment`` lacks.

``RandomTilt`` changes the spectral tilt of each utterance: the balance
between low and high frequencies that differs from one voice, microphone
or telephone line to another. Synthetic voices are brighter than real
ones: the long-term spectra of the SynthDigits training voices and of the
recorded voices of its real-speech set (``speechbrain_meta.corpora.asterisk``)
differ by 6-10 dB at 1-4 kHz, relative to their 0-4 kHz energy. It goes in
an ``Augmenter``'s list beside SpeechBrain's own augmentations.

``VocalTractPerturb`` warps each utterance's frequency axis by a random
factor (vocal tract length perturbation, Jaitly and Hinton, "Vocal Tract
Length Perturbation (VTLP) improves speech recognition", ICML 2013
workshop): formants move up or down as between a shorter and a longer
vocal tract, while the duration and the pitch harmonics' timing stay. A
synthesiser's few voices share one formant model; people's formants
differ from speaker to speaker.

Authors
 * speechbrain-meta developers 2026
"""

import torch
import torchaudio
from speechbrain.utils.data_utils import batch_pad_right


def _match_rms(signals, references):
    """``signals`` scaled to the RMS of ``references`` (last dimension)."""
    power = references.pow(2).mean(-1, keepdim=True)
    signal_power = signals.pow(2).mean(-1, keepdim=True).clamp(min=1e-20)
    return signals * torch.sqrt(power / signal_power)


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
        return _match_rms(tilted, flat).reshape(waveforms.shape)


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


def vtlp_warp(frequencies, alpha, boundary, nyquist, inverse=False):
    """The VTLP warp of Jaitly and Hinton (2013), or its inverse.

    An input frequency ``f`` goes to ``alpha * f`` up to the knee ``f0 =
    boundary * min(alpha, 1) / alpha``; above it, the rest of the band maps
    linearly onto ``[alpha * f0, nyquist]``, so that the band stays
    ``[0, nyquist]``. The inverse (``inverse=True``) gives, for each output
    frequency, the input frequency that lands on it: the same two lines
    with the knee's ends swapped.

    Arguments
    ---------
    frequencies : torch.Tensor
        Frequencies, in Hz (negative ones are mirrored).
    alpha : float
        The warp factor (> 1 moves formants up).
    boundary : float
        Where the linear part ends for ``alpha <= 1``, in Hz.
    nyquist : float
        Half the sampling rate, in Hz.
    inverse : bool
        The inverse warp.

    Returns
    -------
    torch.Tensor
        The warped (or source) frequencies, in Hz.

    Example
    -------
    >>> f = torch.tensor([0.0, 1000.0, 8000.0])
    >>> vtlp_warp(f, 1.1, 4800.0, 8000.0)
    tensor([   0., 1100., 8000.])
    >>> vtlp_warp(vtlp_warp(f, 1.1, 4800.0, 8000.0), 1.1, 4800.0, 8000.0,
    ...           inverse=True)
    tensor([   0., 1000., 8000.])
    """
    out_knee = boundary * min(alpha, 1.0)
    in_knee = out_knee / alpha
    if inverse:
        in_knee, out_knee = out_knee, in_knee
    magnitude = frequencies.abs()
    warped = torch.where(
        magnitude <= in_knee,
        magnitude * (out_knee / in_knee),
        nyquist
        - (nyquist - magnitude) * (nyquist - out_knee) / (nyquist - in_knee),
    )
    return warped * frequencies.sign()


class VocalTractPerturb(torch.nn.Module):
    """Warps each utterance's spectrum as a longer or shorter vocal tract.

    With probability ``share``, an utterance gets a factor ``alpha`` drawn
    uniformly in ``[alpha_low, alpha_high]``; its short-time spectrum is
    resampled along frequency (the inverse of ``vtlp_warp``: linear
    interpolation of the magnitude; a phase vocoder turns each output bin
    at its nearest source bin's instantaneous frequency, warped) and turned
    back into a waveform of the same length and RMS. Padding
    stays zero: each utterance is warped over its own length.

    Arguments
    ---------
    alpha_low : float
        The smallest factor.
    alpha_high : float
        The largest factor.
    share : float
        Probability that an utterance is warped; 0 draws no random numbers
        and returns the input.
    sample_rate : int
        The waveforms' sampling rate.
    boundary : float
        The warp's knee for factors up to 1, in Hz (4800 Hz at 16 kHz, as
        in the paper).
    n_fft : int
        STFT size (hop a quarter of it, Hann window).

    Example
    -------
    >>> perturb = VocalTractPerturb(1.1, 1.1, share=1.0)
    >>> t = torch.arange(16000) / 16000
    >>> tone = torch.sin(2 * torch.pi * 1000 * t).unsqueeze(0)
    >>> warped = perturb(tone, torch.tensor([1.0]))
    >>> warped.shape
    torch.Size([1, 16000])
    >>> spectrum = torch.fft.rfft(warped[0]).abs()
    >>> int(spectrum.argmax())  # Hz: 1 s of audio, 1 Hz per bin
    1100
    """

    def __init__(
        self,
        alpha_low=0.9,
        alpha_high=1.1,
        share=1.0,
        sample_rate=16000,
        boundary=4800.0,
        n_fft=512,
    ):
        super().__init__()
        if not 0 < alpha_low <= alpha_high:
            raise ValueError(
                "VocalTractPerturb: need 0 < alpha_low <= alpha_high, got "
                f"{alpha_low}, {alpha_high}"
            )
        if not 0 <= share <= 1:
            raise ValueError(f"VocalTractPerturb: share {share} not in [0, 1]")
        if not 0 < boundary < sample_rate / 2:
            raise ValueError(
                f"VocalTractPerturb: boundary {boundary} Hz not below the "
                f"Nyquist frequency of {sample_rate} Hz"
            )
        self.alpha_low = alpha_low
        self.alpha_high = alpha_high
        self.share = share
        self.sample_rate = sample_rate
        self.boundary = boundary
        self.n_fft = n_fft
        self.hop_length = n_fft // 4

    def warp(self, waveform, alpha):
        """One waveform warped by ``alpha``.

        Arguments
        ---------
        waveform : torch.Tensor
            ``[time]``, without padding.
        alpha : float
            The warp factor.

        Returns
        -------
        torch.Tensor
            ``[time]``, with the input's RMS.
        """
        if waveform.numel() <= self.n_fft:  # too short for one frame
            return waveform
        window = torch.hann_window(
            self.n_fft, device=waveform.device, dtype=waveform.dtype
        )
        stft = torch.stft(
            waveform,
            self.n_fft,
            self.hop_length,
            window=window,
            return_complex=True,
        )
        bins = stft.shape[0]
        nyquist = self.sample_rate / 2
        frequencies = torch.linspace(
            0, nyquist, bins, device=waveform.device, dtype=waveform.dtype
        )
        source = vtlp_warp(
            frequencies, alpha, self.boundary, nyquist, inverse=True
        )
        position = (source / nyquist * (bins - 1)).clamp(0, bins - 1)
        below = position.floor().long().clamp(max=bins - 2)
        fraction = (position - below).unsqueeze(1)
        magnitude = stft.abs()
        warped_magnitude = (
            magnitude[below] * (1 - fraction) + magnitude[below + 1] * fraction
        )
        # Phase vocoder: each output bin turns at its source's
        # instantaneous frequency, warped, so a partial at f comes out as a
        # partial at warp(f) instead of beating between frames.
        nearest = position.round().long()
        phase = stft.angle()
        hertz = self.sample_rate / (2 * torch.pi)
        centre = frequencies / hertz  # bin centres, radians per sample
        advance = phase.diff(dim=1) - centre.unsqueeze(1) * self.hop_length
        advance = torch.remainder(advance + torch.pi, 2 * torch.pi) - torch.pi
        instantaneous = centre.unsqueeze(1) + advance / self.hop_length
        turn = (
            vtlp_warp(
                instantaneous[nearest] * hertz, alpha, self.boundary, nyquist
            )
            / hertz
            * self.hop_length
        )
        start = phase[nearest, :1]
        warped_phase = torch.cat([start, start + turn.cumsum(dim=1)], dim=1)
        warped = torch.polar(warped_magnitude, warped_phase)
        out = torch.istft(
            warped,
            self.n_fft,
            self.hop_length,
            window=window,
            length=waveform.numel(),
        )
        return _match_rms(out, waveform)

    def forward(self, waveforms, lengths):
        """Each waveform warped (or not, ``share``), padding kept.

        Arguments
        ---------
        waveforms : torch.Tensor
            ``[batch, time]``, padded.
        lengths : torch.Tensor
            Relative lengths, ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, time]``.
        """
        if self.share == 0:
            return waveforms
        total = waveforms.shape[1]
        out = waveforms.clone()
        for i, length in enumerate(lengths):
            if torch.rand(()) >= self.share:
                continue
            alpha = float(
                torch.empty(()).uniform_(self.alpha_low, self.alpha_high)
            )
            end = int(torch.round(length * total))
            out[i, :end] = self.warp(waveforms[i, :end], alpha)
        return out
