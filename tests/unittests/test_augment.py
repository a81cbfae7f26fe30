"""RandomTilt: the tilt it applies is the filter's closed form, the RMS is
kept, and it runs inside SpeechBrain's Augmenter."""

import math

import pytest
import torch
from speechbrain.augment.augmenter import Augmenter

from speechbrain_meta.augment import RandomTilt

RATE = 16000


def _gain_db(c, freq):
    """|H(f)| in dB of the first-order filter of coefficient c."""
    w = 2 * math.pi * freq / RATE
    z = complex(math.cos(w), -math.sin(w))  # e^{-jw}
    if c >= 0:
        h = (1 - c) / abs(1 - c * z)
    else:
        h = abs(1 + c * z)
    return 20 * math.log10(h)


def _band_db(x, y, freq, width=40.0):
    """Measured gain of y over x around freq (power spectra)."""
    X = torch.fft.rfft(x).abs().pow(2)
    Y = torch.fft.rfft(y).abs().pow(2)
    f = torch.fft.rfftfreq(x.numel(), 1 / RATE)
    band = (f > freq - width) & (f < freq + width)
    return 10 * math.log10((Y[band].mean() / X[band].mean()).item())


@pytest.mark.parametrize("c", [0.5, 0.8, -0.5, -0.8])
def test_the_tilt_is_the_filters_closed_form(c):
    torch.manual_seed(0)
    x = torch.randn(1, 10 * RATE, dtype=torch.float64)
    y = RandomTilt(c, c)(x)
    measured = _band_db(x[0], y[0], 3000) - _band_db(x[0], y[0], 300)
    expected = _gain_db(c, 3000) - _gain_db(c, 300)
    assert abs(measured - expected) < 0.3
    # darker for c > 0, brighter for c < 0, by several dB
    assert (expected < -5) if c > 0 else (expected > 5)
    torch.testing.assert_close(y.pow(2).mean(), x.pow(2).mean())


def test_zero_is_the_identity_and_each_utterance_gets_its_own_tilt():
    x = torch.randn(4, RATE)
    torch.testing.assert_close(RandomTilt(0.0, 0.0)(x), x)
    torch.manual_seed(1)
    y = RandomTilt()(x[:1].repeat(4, 1))  # one signal, 4 times
    assert not torch.allclose(y[0], y[1])


def test_channels_and_the_augmenter():
    x = torch.randn(3, RATE, 2)
    y = RandomTilt()(x)
    assert y.shape == x.shape
    augment = Augmenter(
        concat_original=False,
        min_augmentations=1,
        max_augmentations=1,
        augment_prob=1.0,
        augmentations=[RandomTilt(0.8, 0.8)],
    )
    wavs = torch.randn(2, RATE)
    out, lengths = augment(wavs, torch.ones(2))
    assert out.shape == wavs.shape and torch.all(lengths == 1)
    assert not torch.allclose(out, wavs)


@pytest.mark.parametrize("low, high", [(-1.0, 0.5), (0.5, 0.2), (0.0, 1.0)])
def test_coefficients_outside_the_stable_range_are_refused(low, high):
    with pytest.raises(ValueError, match="RandomTilt"):
        RandomTilt(low, high)
