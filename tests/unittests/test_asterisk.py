"""The real-speech set: Debian prompt packages read without apt or sox."""

import csv
import io
import os
import tarfile

import numpy as np
import pytest
import soundfile as sf

from speechbrain_meta.corpora import asterisk


def _gsm(seconds, freq):
    t = np.arange(int(8000 * seconds)) / 8000
    tone = 0.4 * np.sin(2 * np.pi * freq * t)
    silence = np.zeros(1600)
    wav = np.concatenate([silence, tone, silence]).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, wav, 8000, format="RAW", subtype="GSM610")
    return out.getvalue()


def _ar_member(name, data):
    header = (
        f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
    ).encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def fake_deb(path, folder, ext=".gsm"):
    """A .deb in Debian's layout holding the ten digit prompts."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for digit in range(10):
            payload = _gsm(0.3 + 0.05 * digit, 300 + 50 * digit)
            info = tarfile.TarInfo(f"./{folder}/{digit}{ext}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        extra = b"not a digit"
        info = tarfile.TarInfo(f"./{folder}/hundred{ext}")
        info.size = len(extra)
        tar.addfile(info, io.BytesIO(extra))
    with open(path, "wb") as fout:
        fout.write(b"!<arch>\n")
        fout.write(_ar_member("debian-binary", b"2.0\n"))
        fout.write(_ar_member("data.tar.xz", data.getvalue()))


def test_digit_prompts_read_from_a_package(tmp_path):
    package = "asterisk-prompt-es-co"
    folder = asterisk.SPEAKERS[package][2]
    deb = tmp_path / f"{package}_1.0_all.deb"
    fake_deb(deb, folder)
    digits = asterisk.digit_recordings(str(deb), folder)
    assert sorted(digits) == list("0123456789")
    for digit, wav in digits.items():
        # 16 kHz; the leading 0.2 s of silence is trimmed (a 30 ms margin
        # kept); GSM rings for a while after the tone stops, which stays.
        speech = (0.3 + 0.05 * int(digit)) * 16000
        assert speech <= len(wav) <= speech + 480 + 320 + 0.2 * 16000
        onset = np.nonzero(np.abs(wav) > 0.1)[0][0]
        assert onset <= 480 + 320
        assert np.abs(wav).max() > 0.2


def test_the_set_is_built_from_fetched_packages(tmp_path, monkeypatch):
    debs = tmp_path / "real" / "debs"
    debs.mkdir(parents=True)
    for package, (_, _, folder) in asterisk.SPEAKERS.items():
        fake_deb(debs / f"{package}_1.0_all.deb", folder)
    # A package already in the folder is not fetched again.
    monkeypatch.setattr(asterisk.shutil, "which", lambda _: None)
    manifest = asterisk.prepare_asterisk_digits(
        str(tmp_path / "real"), utts_per_speaker=6
    )
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18
    assert {r["spk_id"] for r in rows} == {"es_co", "fr_armelle", "it_menardi"}
    row = rows[0]
    path = row["wav"].replace("$data_root", str(tmp_path / "real"))
    info = sf.info(path)
    assert info.samplerate == 16000
    digits = row["wrd"].split()
    assert 3 <= len(digits) <= 5 and all(d in "0123456789" for d in digits)
    assert info.duration == pytest.approx(float(row["duration"]), abs=1e-3)


def test_without_apt_the_set_is_skipped_with_a_message(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(asterisk.shutil, "which", lambda _: None)
    assert asterisk.prepare_asterisk_digits(str(tmp_path)) is None
    assert "apt-get is not available" in caplog.text
    assert "Real-speech set skipped" in caplog.text
    with pytest.raises(ValueError, match="reserved"):
        asterisk.fetch_package("asterisk-core-sounds-en-gsm", str(tmp_path))
    assert not os.listdir(tmp_path / "debs")
