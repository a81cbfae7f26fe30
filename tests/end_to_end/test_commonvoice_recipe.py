"""The Common Voice meta-ASR recipe on a stand-in corpus.

espeak-ng speakers of five languages written in Common Voice's exact layout
(48 kHz mp3 clips, ``train/dev/test/validated.tsv`` with the newer
``accents`` columns, and a language with the older ``accent`` ones;
``speechbrain_meta.corpora.standins``), with bad rows planted in a tsv: the
prepare script names and skips them, and the language and accent rows of
``tests/recipes/CommonVoice.csv`` run as upstream's recipe tests run them
(debug flags split as a shell would, ``--debug``).
"""

import csv
import os
import subprocess
import sys

import pytest
from recipe_rows import (
    copy_sample,
    few_shot_results,
    recipe_rows,
    run_recipe_row,
)

from speechbrain_meta.corpora.standins import common_voice_standin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "CommonVoice", "meta_asr")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``tests/samples/CommonVoice`` (en, de, fr, es, ro, ca, and Polish
    from a release with the older columns, ``accent``) with 4 bad
    rows in ``de/train.tsv``."""
    work = tmp_path_factory.mktemp("commonvoice")
    corpus = copy_sample("CommonVoice", work)
    tsv = corpus / "de" / "train.tsv"
    with open(tsv) as f:
        header = f.readline().rstrip("\n").split("\t")
        first = dict(zip(header, f.readline().rstrip("\n").split("\t")))
    clips = corpus / "de" / "clips"
    (clips / "empty.mp3").write_bytes(b"")
    bad = [
        dict(first, path="gone.mp3"),  # line 6: missing clip
        dict(first, path="empty.mp3"),  # 7: unreadable
        dict(first, sentence="?!…"),  # 8: empty once normalised
        dict(first, sentence="Der привет."),  # 9: outside the units
    ]
    with open(tsv, "a") as f:
        for row in bad:
            f.write("\t".join(row[c] for c in header) + "\n")
    return work


def test_prepare_names_counts_and_skips_bad_rows(workdir, tmp_path):
    sys.path.insert(0, RECIPE)
    from common_voice_prepare import prepare_common_voice

    corpus = workdir / "tests" / "samples" / "CommonVoice"
    units = "abcdefghijklmnopqrstuvwxyz' àéèêëïîôöüûùçñáíóúąćęłńśźżß"
    summary = prepare_common_voice(
        str(corpus), str(tmp_path), ["en", "de", "fr"], ["es"], ["pl"],
        allowed_characters=units,
    )  # fmt: skip
    de = summary["languages"]["de"]
    assert de["skipped"] == {
        "missing clip": 1,
        "unreadable clip": 1,
        "empty sentence": 1,
        "characters outside the units": 1,
    }
    lines = sorted(sum(de["skipped_lines"].values(), []))
    assert lines == [
        f"{corpus / 'de' / 'train.tsv'}:{n}" for n in (14, 15, 16, 17)
    ]
    assert de["utterances"] == 12  # 2 speakers x 6
    assert summary["languages"]["pl"]["utterances"] == 12  # old columns
    assert summary["languages"]["en"]["accents"]  # read from `accents`
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["lang"] for r in rows} == {"en", "de", "fr"}
    assert all(set(r["wrd"]) <= set(units) for r in rows)
    assert all(r["wav"].endswith(".wav") for r in rows)
    import soundfile as sf

    assert sf.info(rows[0]["wav"]).samplerate == 16000


def _prepare_module():
    sys.path.insert(0, RECIPE)
    import common_voice_prepare

    return common_voice_prepare


def _read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_units_come_from_the_data(workdir, tmp_path):
    """Romanian ă ș ț, Catalan l·l and typographic apostrophes survive."""
    prepare = _prepare_module().prepare_common_voice
    corpus = workdir / "tests" / "samples" / "CommonVoice"
    summary = prepare(str(corpus), str(tmp_path), ["en", "ca"], ["ro"], [])
    units = summary["units"]
    assert {"ă", "ș", "ț", "·", "'"} <= set(units)
    assert not {"ş", "ţ", "‘", "’", "ʼ"} & set(units)  # one form each
    for lang in ("en", "ca", "ro"):
        assert summary["languages"][lang]["skipped"] == {}, lang
    rows = _read_csv(tmp_path / "train.csv") + _read_csv(tmp_path / "dev.csv")
    words = {w for r in rows for w in r["wrd"].split()}
    assert {"o'clock", "l'aigua"} <= words  # ʼ and ’ inside words
    assert not any(w.startswith("'") or w.endswith("'") for w in words)
    assert words & {"col·legi", "il·lusió"}  # not split at the dot
    assert not words & {"col", "legi", "il", "lusió"}
    assert words & {"școală", "țară"} and not words & {"şcoală", "ţară"}


def test_sample_is_seeded_not_the_first_rows(workdir, tmp_path):
    prepare = _prepare_module().prepare_common_voice
    corpus = workdir / "tests" / "samples" / "CommonVoice"

    def sample(folder, **kwargs):
        prepare(str(corpus), str(tmp_path / folder), [], [], ["en"],
                max_utterances_per_language=6, num_workers=1, **kwargs)  # fmt: skip

    sample("a")
    sample("b")
    sample("c", seed=7)
    a, b, c = (_read_csv(tmp_path / x / "test.csv") for x in "abc")
    assert len(a) == 6 and [r["ID"] for r in a] == [r["ID"] for r in b]
    assert {r["ID"] for r in a} != {r["ID"] for r in c}
    # test.tsv lists 3 speakers' 6 rows in turn: its first 6 rows are one
    # speaker's.
    assert len({r["spk_id"] for r in a}) > 1


@pytest.fixture(scope="module")
def accent_corpus(tmp_path_factory):
    """English speakers with the accent fields of real releases.

    Five speakers, one per field of ``CV_ACCENTS["en"]``: two accents in
    one field, a name with commas, no accent. Planted in
    ``validated.tsv``: the US speaker once more with a Scottish accent
    (users change it), and the US speaker reading the Indian speaker's
    first sentence.
    """
    root = tmp_path_factory.mktemp("accents")
    speakers = common_voice_standin(str(root), {"en": {"train": 5}}, seed=3)
    tsv = root / "en" / "validated.tsv"
    lines = tsv.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    us, india = speakers["en"]["train"][0], speakers["en"]["train"][3]
    us_row = next(r for r in rows if r["client_id"] == us)
    india_row = next(r for r in rows if r["client_id"] == india)
    planted = [
        dict(us_row, accents="Scottish English"),
        dict(us_row, sentence=india_row["sentence"]),
    ]
    with open(tsv, "a", encoding="utf-8") as f:
        for row in planted:
            f.write("\t".join(row[c] for c in header) + "\n")
    return root, len(lines) + 1  # the planted rows' first line


def test_accent_fields_roles_and_disjointness(accent_corpus, tmp_path):
    root, planted_line = accent_corpus
    prepare = _prepare_module().prepare_common_voice
    india = "India and South Asia (India, Pakistan, Sri Lanka)"
    accents = {
        "language": "en",
        "train": ["United States English"],
        "dev": ["Scottish English"],
        "test": [india],
    }
    summary = prepare(str(root), str(tmp_path), [], [], [], accents=accents)
    roles = summary["languages"]
    # Whole rows per role: the multi-accent field and the name with
    # commas are matched.
    assert roles["en/train"]["utterances"] == 6  # the planted rows dropped
    assert roles["en/dev"]["utterances"] == 6
    assert roles["en/test"]["utterances"] == 6
    inventory = summary["accent_inventory"]
    assert inventory["accents"]["Midwestern United States English"] == 7
    assert inventory["accents"][india] == 6
    assert inventory["rows_not_assigned"] == {
        "accent of no role": 6,  # England English
        "no accent given": 6,
    }
    tsv = root / "en" / "validated.tsv"
    train_skipped = roles["en/train"]["skipped_lines"]
    assert train_skipped["sentence read in an evaluation role"] == [
        f"{tsv}:{planted_line + 1}"
    ]
    assert roles["en/dev"]["skipped_lines"]["speaker in another role"] == [
        f"{tsv}:{planted_line}"
    ]
    assert summary["roles"]["speakers_in_several_roles"] == 1
    spk = [{r["spk_id"] for r in _read_csv(tmp_path / f"{x}.csv")} for x in
           ("train", "dev", "test")]  # fmt: skip
    assert not (spk[0] & spk[1] or spk[0] & spk[2] or spk[1] & spk[2])


def test_accent_variant_refuses_releases_without_accents(workdir, tmp_path):
    prepare = _prepare_module().prepare_common_voice
    corpus = workdir / "tests" / "samples" / "CommonVoice"
    empty = {"language": "pl", "train": ["X"], "dev": [], "test": []}
    with pytest.raises(ValueError, match="pl/validated.tsv has no accent"):
        prepare(str(corpus), str(tmp_path), [], [], [], accents=empty)
    renamed = {"language": "en", "train": ["US English"], "dev": [],
               "test": []}  # fmt: skip
    with pytest.raises(ValueError, match="no row has the accents"):
        prepare(str(corpus), str(tmp_path), [], [], [], accents=renamed)


def test_mp3_support_is_checked_before_converting(
    workdir, tmp_path, monkeypatch
):
    module = _prepare_module()
    corpus = workdir / "tests" / "samples" / "CommonVoice"
    formats = dict(module.sf.available_formats())
    formats.pop("MP3")
    monkeypatch.setattr(module.sf, "available_formats", lambda: formats)
    with pytest.raises(RuntimeError, match="cannot read mp3"):
        module.prepare_common_voice(str(corpus), str(tmp_path), [], [], ["pl"])
    assert not (tmp_path / "wav").exists() or not any(
        (tmp_path / "wav").rglob("*.wav")
    )


def test_parallel_prepares_share_a_folder_and_resume(workdir, tmp_path):
    """Two processes preparing at once, then a rerun after a lost clip."""
    corpus = workdir / "tests" / "samples" / "CommonVoice"
    code = (
        f"import sys; sys.path.insert(0, {RECIPE!r}); "
        "from common_voice_prepare import prepare_common_voice as p; "
        f"p({str(corpus)!r}, {str(tmp_path)!r}, ['en', 'de'], [], ['pl'], "
        "num_workers=2)"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    runs = [
        subprocess.Popen([sys.executable, "-c", code], env=env)
        for _ in range(2)
    ]
    assert [r.wait(timeout=600) for r in runs] == [0, 0]
    train = _read_csv(tmp_path / "train.csv")
    # en and de, less 3 bad rows of de/train.tsv (the fourth row's
    # Cyrillic is a unit: 5 % of de's characters in this small corpus).
    assert len(train) == 3 * 6 + 2 * 6 + 1
    assert not list(tmp_path.rglob("*.tmp*"))
    wavs = sorted((tmp_path / "wav").rglob("*.wav"))
    before = {w: w.stat().st_mtime_ns for w in wavs}
    (tmp_path / "prepare_summary.json").unlink()
    wavs[0].unlink()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert wavs[0].exists()
    assert all(w.stat().st_mtime_ns == before[w] for w in wavs[1:])


@pytest.mark.parametrize(
    "method, tasks",
    [("fomaml", {"pl"}), ("accent_fomaml", {"Scottish English"})],
)
def test_recipe_row_runs(workdir, method, tasks):
    rows = few_shot_results(
        run_recipe_row(recipe_rows("CommonVoice")[method], workdir)
    )
    assert {r["k_shot"] for r in rows} == {0, 2}
    assert all(set(r["cer_per_task"]) == tasks for r in rows)
