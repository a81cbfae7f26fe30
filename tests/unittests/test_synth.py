"""SynthDigits corpus: determinism, disjoint splits, skipped voices."""

import csv
import hashlib
import json
import os

import pytest

from speechbrain_meta.corpora.synth import Espeak, prepare_synth_digits

SMALL = dict(
    train_languages=["en", "de", "fr"],
    dev_languages=["es"],
    test_languages=["cmn", "ja"],
    train_variants=["m1", "f2"],
    heldout_variants=["m7"],
    speakers_per_language=2,
    utts_per_speaker=3,
    heldout_utts_per_speaker=2,
)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _tree_digest(folder):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if name == "corpus.json":
                continue
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    prepare_synth_digits(tmp_path / "a", seed=3, **SMALL)
    prepare_synth_digits(tmp_path / "b", seed=3, **SMALL)
    prepare_synth_digits(tmp_path / "c", seed=4, **SMALL)
    a, b, c = (_tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c


def test_splits_are_disjoint_and_complete(tmp_path):
    paths = prepare_synth_digits(tmp_path, seed=1, **SMALL)
    rows = {split: _rows(p) for split, p in paths.items()}
    langs = {split: {r["lang"] for r in rs} for split, rs in rows.items()}
    assert langs["train"] == {"en", "de", "fr"}
    assert langs["dev"] == {"es"} and langs["test"] == {"cmn", "ja"}
    assert not langs["train"] & langs["dev"]
    assert not langs["train"] & langs["test"]
    assert not langs["dev"] & langs["test"]
    # Held-out voices: training languages, variants never used in training.
    assert langs["test_voices"] == langs["train"]
    train_variants = {r["spk_id"].split("_")[1] for r in rows["train"]}
    voice_variants = {r["spk_id"].split("_")[1] for r in rows["test_voices"]}
    assert train_variants == {"m1", "f2"} and voice_variants == {"m7"}
    assert len(rows["train"]) == 3 * 2 * 3
    for r in rows["train"]:
        assert set(r["wrd"]) <= set("0123456789 ")
        assert 3 <= len(r["wrd"].split()) <= 6
        assert float(r["duration"]) > 0.3
    summary = json.loads((tmp_path / "corpus.json").read_text())
    assert summary["utterances"]["test"] == 12 and summary["skipped"] == []


def test_overlapping_splits_refused(tmp_path):
    with pytest.raises(ValueError, match="disjoint"):
        prepare_synth_digits(
            tmp_path, ["en", "de"], ["de"], ["ja"], ["m1"], ["m2"]
        )
    with pytest.raises(ValueError, match="held-out"):
        prepare_synth_digits(tmp_path, ["en"], ["de"], ["ja"], ["m1"], ["m1"])


def test_unknown_voice_skipped_and_recorded(tmp_path, caplog):
    paths = prepare_synth_digits(
        tmp_path,
        ["en", "xx-nolang"],
        ["de"],
        ["ja"],
        ["m1"],
        ["m2"],
        speakers_per_language=1,
        utts_per_speaker=2,
        heldout_utts_per_speaker=1,
    )
    langs = {r["lang"] for r in _rows(paths["train"])}
    assert langs == {"en"}
    summary = json.loads((tmp_path / "corpus.json").read_text())
    skipped = {s["spk_id"] for s in summary["skipped"]}
    assert "xx-nolang_m1_0" in skipped
    assert "xx-nolang" not in summary["made"]["train"]
    assert "skipping xx-nolang" in caplog.text


def test_rerun_skips_and_config_change_rebuilds(tmp_path):
    prepare_synth_digits(tmp_path, seed=1, **SMALL)
    stamp = os.path.getmtime(tmp_path / "train.csv")
    prepare_synth_digits(tmp_path, seed=1, **SMALL)
    assert os.path.getmtime(tmp_path / "train.csv") == stamp
    prepare_synth_digits(tmp_path, seed=1, **{**SMALL, "utts_per_speaker": 1})
    assert len(_rows(tmp_path / "train.csv")) == 3 * 2 * 1


def test_phonemes_in_the_voice_language():
    tts = Espeak.get()
    assert tts.phonemes("4", "fr") != tts.phonemes("4", "de")
    assert tts.phonemes("1 2", "en").count(" ") >= 1


def test_synth_digits_st_names_a_broken_row_and_reuses_its_work(tmp_path):
    """SynthDigits-ST: a transcript that is not digits stops the
    preparation with its file and line; a rerun with the same sources
    leaves the manifests as they are, a changed source remakes them."""
    import os

    from speechbrain_meta.corpora.synth_st import prepare_synth_digits_st

    src, dst = tmp_path / "src", tmp_path / "st"
    src.mkdir()
    header = "ID,duration,wav,spk_id,lang,wrd\n"
    good = "a,1.0,$data_root/a.wav,s,de,4 1 7\nb,1.0,$data_root/b.wav,s,en,2\n"
    (src / "train.csv").write_text(header + good)
    counts = prepare_synth_digits_st(str(src), str(dst), splits=("train",))
    assert counts == {"train": {"written": 1, "target_language": 1}}
    made = os.path.getmtime(dst / "train.csv")
    prepare_synth_digits_st(str(src), str(dst), splits=("train",))
    assert os.path.getmtime(dst / "train.csv") == made
    (src / "train.csv").write_text(
        header + good + "c,1.0,$data_root/c.wav,s,fr,4 x 1\n"
    )
    os.utime(src / "train.csv", (made + 10, made + 10))
    with pytest.raises(ValueError, match=r"train\.csv:4: not a digit: 'x'"):
        prepare_synth_digits_st(str(src), str(dst), splits=("train",))
