"""Bad input in manifests: named, counted skips; nothing else is lost."""

import numpy as np
import pytest
import soundfile as sf

from speechbrain_meta.data.checks import BadInput
from speechbrain_meta.data.manifest import load_manifest


def test_bad_rows_named_and_skipped(tmp_path, caplog):
    sf.write(tmp_path / "good.wav", np.zeros(1600, dtype=np.float32), 16000)
    sf.write(tmp_path / "good2.wav", np.zeros(800, dtype=np.float32), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (tmp_path / "m.csv").write_text(
        "ID,duration,wav,spk_id,wrd\n"
        "a,0.1,$root/good.wav,s1,1 2\n"
        "b,0.1,$root/missing.wav,s1,3\n"
        "c,0.1,$root/corrupt.wav,s1,4\n"
        "d,0.1,$root/good.wav,s1,\n"
        "a,0.1,$root/good2.wav,s1,5\n"
        "e,0.05,$root/good2.wav,s2,6 7\n"
    )
    data, skipped = load_manifest(tmp_path / "m.csv", {"root": str(tmp_path)})
    assert len(data) == 2
    assert [(line, uid) for line, uid, _ in skipped] == [
        (3, "b"),
        (4, "c"),
        (5, "d"),
        (6, "a"),
    ]
    reasons = [why for _, _, why in skipped]
    assert "missing audio file" in reasons[0]
    assert "unreadable audio file" in reasons[1]
    assert reasons[2] == "empty transcript" and reasons[3] == "duplicate ID"
    assert "m.csv:4: skipping c" in caplog.text
    with data.output_keys_as(["id", "wav", "duration"]):
        assert [d["id"] for d in data] == ["a", "e"]
        assert data[1]["duration"] == 0.05


def test_nothing_usable_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("ID,duration,wav,wrd\nx,1.0,/no.wav,1\n")
    with pytest.raises(ValueError, match="no usable row"):
        load_manifest(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("wav,wrd\n/no.wav,1\n")
    with pytest.raises(ValueError, match=r"n.csv: .*no \['ID'\] column"):
        load_manifest(tmp_path / "n.csv")


CHECKS = {
    "audio_checks": {"sample_rate": 16000, "resample": False, "downmix": False},
    "labels": set("0123456789 "),
    "samples_per_frame": 640.0,  # 20 ms hop x time pooling 2
}


def _bad_manifest(tmp_path):
    """One good row, then one row per kind of bad input, with its reason."""
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    sf.write(tmp_path / "good.wav", speech, 16000)
    sf.write(tmp_path / "rate.wav", speech[::2], 8000)
    sf.write(tmp_path / "stereo.wav", np.stack([speech, speech], 1), 16000)
    nan = speech.copy()
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", speech[:1000], 16000)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    data = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    rows = [
        ("ok", "1.0", "good.wav", "1 2 3", None),
        ("missing", "1.0", "none.wav", "1", "missing audio file"),
        ("cut", "1.0", "cut.wav", "1", "truncated audio"),
        ("corrupt", "1.0", "corrupt.wav", "1", "unreadable audio"),
        ("empty", "1.0", "empty.wav", "1", "empty audio"),
        ("rate", "1.0", "rate.wav", "1", "sample rate 8000 Hz"),
        ("stereo", "1.0", "stereo.wav", "1", "2 channels"),
        ("nan", "1.0", "nan.wav", "1", "1 NaN or inf samples"),
        ("short", "1.0", "short.wav", "1 2 3 4 5", "too short"),
        ("text", "1.0", "good.wav", "", "empty transcript"),
        ("chars", "1.0", "good.wav", "1 x 2", "labels: 'x'"),
        ("ok", "1.0", "good.wav", "4", "duplicate ID"),
        ("dur", "abc", "good.wav", "4", "unparsable duration 'abc'"),
    ]
    lines = ["ID,duration,wav,wrd"] + [
        f"{i},{d},$root/{w},{t}" for i, d, w, t, _ in rows
    ]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv", rows


def test_every_bad_input_is_named_and_skipped(tmp_path):
    path, rows = _bad_manifest(tmp_path)
    data, skipped = load_manifest(path, {"root": str(tmp_path)}, **CHECKS)
    assert len(data) == 1
    assert [(line, uid) for line, uid, _ in skipped] == [
        (n + 3, row[0]) for n, row in enumerate(rows[1:])
    ]
    for (_, uid, why), row in zip(skipped, rows[1:]):
        assert row[4] in why, (uid, why)


@pytest.mark.parametrize("n", range(1, 13))
def test_bad_input_error_stops_at_the_bad_row(tmp_path, n):
    path, rows = _bad_manifest(tmp_path)
    # The good row, then only the n-th bad one.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [lines[n + 1]]) + "\n")
    with pytest.raises(BadInput) as err:
        load_manifest(
            path, {"root": str(tmp_path)}, bad_input="error", **CHECKS
        )
    assert str(err.value).startswith(f"{path}:3: {rows[n][0]}: ")
    assert rows[n][4] in str(err.value)


def test_a_manifest_without_audio_or_text_column_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("ID,duration,path,words\nx,1,a.wav,1\n")
    with pytest.raises(BadInput, match=r"no \['wav', 'wrd'\] column"):
        load_manifest(tmp_path / "m.csv")
