"""RandomTilt: the tilt it applies is the filter's closed form, the RMS is
kept, and it runs inside SpeechBrain's Augmenter. EdgeSilence: where and
when it adds silence. VocalTractPerturb: every partial moves where the
warp says, lengths and padding stay."""

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


def test_edge_silence_pads_each_utterance_at_its_noise_floor():
    from speechbrain_meta.augment import EdgeSilence

    torch.manual_seed(0)
    speech = torch.zeros(2, RATE)
    speech[0] = torch.randn(RATE) * 0.01  # the noise floor everywhere
    speech[0, 4000:12000] += torch.randn(8000) * 0.3  # speech in the middle
    speech[1, :8000] = torch.randn(8000) * 0.02  # half as long, padded
    silence = EdgeSilence(0.25, 0.25, share=1.0, sample_rate=RATE)
    padded, lengths = silence(speech, torch.tensor([1.0, 0.5]))
    edge = RATE // 4
    assert padded.shape == (2, RATE + 2 * edge)
    torch.testing.assert_close(lengths, torch.tensor([1.0, 16000 / 24000]))
    # The utterances are unchanged between their silences, and the
    # padding after the shorter one stays zeros.
    torch.testing.assert_close(padded[0, edge : edge + RATE], speech[0])
    torch.testing.assert_close(padded[1, edge : edge + 8000], speech[1, :8000])
    assert bool((padded[1, 16000:] == 0).all())
    # The silence is at each utterance's own floor, far below its speech.
    for row, floor in ((0, 0.01), (1, 0.02)):
        rms = float(padded[row, :edge].pow(2).mean().sqrt())
        assert 0.5 * floor < rms < 1.2 * floor


def test_edge_silence_waits_for_its_epoch_and_share_zero_is_off():
    from speechbrain.utils.epoch_loop import EpochCounter

    from speechbrain_meta.augment import EdgeSilence

    x = torch.randn(3, RATE)
    lengths = torch.ones(3)
    counter = EpochCounter(10)
    silence = EdgeSilence(
        0.1, 0.1, share=1.0, epoch_counter=counter, start_epoch=3
    )
    for epoch in counter:
        out, _ = silence(x, lengths)
        assert out.shape[1] == (RATE if epoch < 3 else RATE + 3200)
    state = torch.get_rng_state()
    out, out_lengths = EdgeSilence(0.1, 0.5, share=0.0)(x, lengths)
    assert out is x and out_lengths is lengths
    # Off, it draws no random numbers: runs without it stay as they were.
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="share"):
        EdgeSilence(share=1.5)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_every_partial_by_its_warp(alpha):
    """Below the knee a partial at f comes out at alpha * f; above it the
    warp maps the rest of the band onto [alpha f0, Nyquist] linearly."""
    from speechbrain_meta.augment import VocalTractPerturb, vtlp_warp

    # The source of each warped frequency is the one warped there; the
    # band's ends stay put; below the knee the warp is alpha * f.
    grid = torch.linspace(0, RATE / 2, 801, dtype=torch.float64)
    warped = vtlp_warp(grid, alpha, 4800.0, RATE / 2)
    back = vtlp_warp(warped, alpha, 4800.0, RATE / 2, inverse=True)
    torch.testing.assert_close(back, grid)
    assert float(warped[0]) == 0 and float(warped[-1]) == RATE / 2
    assert abs(float(warped[50]) - alpha * float(grid[50])) < 1e-9
    assert bool((warped.diff() > 0).all())

    t = torch.arange(RATE) / RATE
    perturb = VocalTractPerturb(alpha, alpha, share=1.0, sample_rate=RATE)
    for freq in (300.0, 1000.0, 2500.0, 6500.0):
        tone = torch.sin(2 * math.pi * freq * t).unsqueeze(0)
        warped = perturb(tone, torch.ones(1))[0]
        peak = float(torch.fft.rfft(warped).abs().argmax())  # 1 Hz per bin
        expected = float(vtlp_warp(torch.tensor(freq), alpha, 4800.0, RATE / 2))
        assert abs(peak - expected) <= 2, (freq, peak, expected)
        # A steady tone stays steady (no beating between STFT frames) and
        # keeps its RMS.
        frames = warped[2000:14000].reshape(-1, 400).pow(2).mean(1).sqrt()
        assert float(frames.std() / frames.mean()) < 0.05
        torch.testing.assert_close(
            warped.pow(2).mean(), tone.pow(2).mean(), rtol=1e-4, atol=0
        )


def test_vtlp_keeps_lengths_padding_and_identity():
    from speechbrain_meta.augment import VocalTractPerturb

    torch.manual_seed(0)
    x = torch.randn(2, RATE)
    x[1, RATE // 2 :] = 0.0  # padding: the second is half as long
    lengths = torch.tensor([1.0, 0.5])
    out = VocalTractPerturb(0.9, 1.1, share=1.0)(x, lengths)
    assert out.shape == x.shape
    assert bool((out[1, RATE // 2 :] == 0).all())
    assert not torch.allclose(out[0], x[0], atol=1e-2)
    # alpha = 1 gives the input back (phase vocoder resynthesis).
    same = VocalTractPerturb(1.0, 1.0, share=1.0)(x, lengths)
    torch.testing.assert_close(same, x, atol=2e-2, rtol=0)
    # Off, it returns its input and draws no random numbers.
    state = torch.get_rng_state()
    assert VocalTractPerturb(share=0.0)(x, lengths) is x
    assert torch.equal(torch.get_rng_state(), state)
    # It runs in SpeechBrain's Augmenter like SpeechBrain's own.
    augmenter = Augmenter(
        augmentations=[VocalTractPerturb(0.9, 1.1)],
        min_augmentations=1,
        max_augmentations=1,
    )
    augmented, augmented_lengths = augmenter(x, lengths)
    assert augmented.shape == x.shape
    torch.testing.assert_close(augmented_lengths, lengths)
    for low, high, share in ((0.0, 1.1, 1.0), (1.1, 0.9, 1.0), (1, 1, 2)):
        with pytest.raises(ValueError, match="VocalTractPerturb"):
            VocalTractPerturb(low, high, share=share)
