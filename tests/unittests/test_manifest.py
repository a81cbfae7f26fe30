"""Bad input in manifests: named, counted skips; nothing else is lost."""

import numpy as np
import pytest
import soundfile as sf

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
    with pytest.raises(ValueError, match="no ID column"):
        load_manifest(tmp_path / "n.csv")
