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
