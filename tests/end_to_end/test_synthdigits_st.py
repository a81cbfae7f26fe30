"""The SynthDigits speech-translation recipe (``meta_st``), end to end.

An upstream-style ST recipe (CRDNN encoder, attentional GRU decoder over
SentencePiece units of the English translation, multitask CTC on the
source transcript, ``S2SRNNBeamSearcher``) behind the package's meta
brains, on the quick main job's speech: each method trains, the few-shot
protocol decodes the translation with the adapted weights and scores it
with BLEU.
"""

import csv
import os
import runpy

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_meta.evaluation import validate_results
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import recover_selected

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_st")
DEBUG = [
    "--joint_epochs=2",
    "--warm_start_epoch=1",
    "--episodes_per_epoch=4",
    "--valid_dataloader_opts={episodes: {episodes_per_epoch: 2}}",
    "--few_shot={k_shots: [0, 1, 5], episodes_per_task: 1, "
    "query_utterances: 6}",
    "--adaptation_search={rules: [own], modes: [eval], steps: [1], "
    "query_utterances: 4}",
    "--beam_size=2",
    "--noprogressbar",
]


def _hparams(name):
    return os.path.join(RECIPE, "hparams", f"{name}.yaml")


@pytest.fixture(scope="module")
def recipe(quick_benchmark, tmp_path_factory):
    """The recipe's module, its debug flags on the quick job's speech (the
    ST manifests and units in this test's folder), the output folder."""
    bench_module, bench, _ = quick_benchmark
    quick = bench_module["QUICK"]
    out = tmp_path_factory.mktemp("st")
    flags = DEBUG + [
        f"--data_folder={bench / 'data'}",
        f"--st_folder={out / 'st_en'}",
        f"--corpus={quick['corpus']}",
    ]
    module = runpy.run_path(os.path.join(RECIPE, "train.py"))
    return module, flags, out, bench / "data"


def _run(recipe, method, *extra):
    module, flags, out, _ = recipe
    return module["main"](
        [_hparams(method)]
        + flags
        + [
            f"--joint_folder={out / 'joint'}",
            f"--output_folder={out / method}",
            *extra,
        ]
    )


def test_st_corpus_translates_every_source_language_but_english(recipe):
    """The ST manifests: SynthDigits' rows less the English ones, each with
    its English digit words; the meta-test languages unchanged."""
    _, _, out, data = recipe
    module = recipe[0]
    hparams, _ = load_layered_hparams(
        _hparams("joint"),
        module["COMMON"],
        {"data_folder": str(data), "st_folder": str(out / "st_en")},
    )
    module["prepare_translations"](hparams)
    with open(data / "train.csv", newline="") as fin:
        source = list(csv.DictReader(fin))
    with open(out / "st_en" / "train.csv", newline="") as fin:
        rows = list(csv.DictReader(fin))
    assert len(rows) == sum(r["lang"] != "en" for r in source) > 0
    words = "zero one two three four five six seven eight nine".split()
    for row in rows:
        assert row["lang"] != "en"
        digits = row["wrd"].split()
        assert row["translation"].split() == [words[int(d)] for d in digits]
    with open(out / "st_en" / "test.csv", newline="") as fin:
        test_langs = {r["lang"] for r in csv.DictReader(fin)}
    assert test_langs == {"cmn", "ja", "hu", "el"}


def test_fomaml_trains_from_the_joint_model_and_is_scored_by_bleu(recipe):
    results = _run(recipe, "fomaml")
    out = recipe[2]
    assert set(results) == {"test"}  # unseen source languages
    result = results["test"]
    validate_results(result)
    rows = result["results"]
    assert {(r["budget"], r["k_shot"]) for r in rows} == {
        (b, k) for b in ("tuned", "default") for k in (0, 1, 5)
    }
    for row in rows:
        assert 0.0 <= row["bleu_mean"] <= 1.0
        assert len(row["episode_bleus"]) == row["n_episodes"]
    table = out / "fomaml" / "few_shot" / "test" / "few_shot_results.md"
    assert "BLEU % k=0" in table.read_text()
    assert (out / "fomaml" / "few_shot" / "test" / "few_shot_bleu.png").stat()
    log = (out / "joint" / "train_log.txt").read_text()
    assert "epoch: 2" in log and "valid BLEU" in log
    assert (
        "Initialised from the joint model"
        in (out / "fomaml" / "log.txt").read_text()
    )


@pytest.mark.parametrize("method", ["reptile", "metasgd", "lhuc", "lora"])
def test_every_method_trains_through_the_st_model(recipe, method):
    """Reptile, Meta-SGD (meta-optimiser), LHUC (meta-transfer, decoder
    included) and LoRA train (or, LoRA, adapt) through the ST model; the
    meta-dev scores are finite."""
    _run(recipe, method, "--run_few_shot=False")
    out = recipe[2]
    if method != "lora":
        log = (out / method / "train_log.txt").read_text()
        assert "epoch: 1" in log and "valid BLEU" in log
        assert "nan" not in log.lower()


def test_translation_is_decoded_with_the_adapted_weights(recipe):
    """The few-shot scoring path decodes the translation with the fast
    weights: a fast output bias that makes the unit of "seven" near
    certain (and eos unlikely) translates every utterance into sevens,
    which ``recipe_error_rates`` scores (BLEU, WER) against the
    references; the meta-parameters are unchanged after."""
    from speechbrain_meta.adaptation import recipe_error_rates

    module, _, out, data = recipe
    if not (out / "fomaml" / "save").exists():
        _run(recipe, "fomaml", "--run_few_shot=False")
    overrides = {
        "data_folder": str(data),
        "st_folder": str(out / "st_en"),
        "output_folder": str(out / "fomaml"),
        "joint_folder": str(out / "joint"),
    }
    hparams, _ = load_layered_hparams(
        _hparams("fomaml"), module["COMMON"], overrides
    )
    tokenizer = module["prepare_translations"](hparams)
    datasets, tokenizer, _ = module["dataio_prepare"](hparams, tokenizer)
    assert recover_selected(hparams) is not None
    brain = module["make_brain"](hparams, {"device": "cpu"}, tokenizer)
    brain.modules.eval()
    batch = PaddedBatch([datasets["test"][i] for i in range(4)])
    bias_name = "seq_lin.w.bias"
    bias = dict(brain.modules.named_parameters())[bias_name]
    before = bias.detach().clone()
    seven = torch.zeros_like(before)
    seven[tokenizer.piece_to_id("▁seven")] = 8.0
    seven[hparams["eos_index"]] = -8.0
    fast = {bias_name: bias.detach() + seven}
    with torch.no_grad():
        hyps = brain.call_with(
            fast, brain.compute_forward, batch, sb.Stage.TEST
        )[3]
    texts = [tokenizer.decode_ids(h) for h in hyps]
    assert all(t and set(t.split()) == {"seven"} for t in texts)
    cer, wer, bleu = recipe_error_rates(brain, fast, batch)
    refs = [r.split() for r in batch.translation]
    assert bleu < 0.5 and wer > 0.5  # sevens against the references
    assert any("seven" not in r for r in refs)
    assert torch.equal(bias.detach(), before)


def test_the_trained_model_translates_as_a_speechbrain_hub_model(
    recipe, tmp_path
):
    """The run's ``hub/`` folder: SpeechBrain's own ``EncoderDecoderASR``
    loads it and translates as the recipe's beam search does;
    ``AdaptiveASR`` loads it, adapts it to a new source language from k
    (audio, translation) pairs on a copy (the support's loss falls, the
    base model is unchanged) and translates with the adapted weights."""
    from speechbrain.inference.ASR import EncoderDecoderASR

    from speechbrain_meta.inference import AdaptiveASR

    module, _, out, data = recipe
    if not (out / "fomaml" / "hub" / "hyperparams.yaml").exists():
        _run(recipe, "fomaml")
    hub = out / "fomaml" / "hub"
    hparams, _ = load_layered_hparams(
        _hparams("fomaml"),
        module["COMMON"],
        {"data_folder": str(data), "st_folder": str(out / "st_en")},
    )
    tokenizer = module["prepare_translations"](hparams)
    datasets, _, _ = module["dataio_prepare"](hparams, tokenizer)
    test = datasets["test"]
    test.set_output_keys(["id", "sig", "translation", "lang"])
    language = test[0]["lang"]
    utts = [u for u in test if u["lang"] == language][:8]
    batch = PaddedBatch(utts[:4])
    wavs, lens = batch.sig
    reference = EncoderDecoderASR.from_hparams(
        source=str(hub), savedir=str(tmp_path / "reference")
    )
    expected = reference.transcribe_batch(wavs, lens)[0]
    asr = AdaptiveASR.from_hparams(
        source=str(hub), savedir=str(tmp_path / "ours"),
        run_opts={"device": "cpu"},
    )  # fmt: skip
    assert asr.transcribe_batch(wavs, lens)[0] == expected
    before = {k: v.clone() for k, v in asr.mods.state_dict().items()}
    support = utts[:5]
    state = asr.adapt(
        [u["sig"] for u in support],
        [u["translation"] for u in support],
        safe=False,
    )
    fitted = [asr.utterance(u["sig"], u["translation"]) for u in support]
    assert asr.loss(fitted, state) < asr.loss(fitted)
    after = asr.mods.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    translations = asr.transcribe_batch(wavs, lens, state)[0]
    assert len(translations) == 4


def test_command_line_adapts_and_translates(recipe, tmp_path):
    """``speechbrain-meta-adapt`` on the hub folder with k (audio,
    translation) pairs of a new source language writes a task state;
    ``speechbrain-meta-transcribe`` with it prints one translation per
    file."""
    import subprocess
    import sys

    import soundfile as sf

    module, _, out, data = recipe
    if not (out / "fomaml" / "hub" / "hyperparams.yaml").exists():
        _run(recipe, "fomaml")
    with open(out / "st_en" / "test.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["lang"] == "hu"][:7]
    support = tmp_path / "support"
    support.mkdir()
    for row in rows[:5]:
        wav = row["wav"].replace("$data_root", str(data))
        audio, rate = sf.read(wav)
        sf.write(support / f"{row['ID']}.wav", audio, rate)
        (support / f"{row['ID']}.txt").write_text(row["translation"])
    state = tmp_path / "hu.pt"
    env = {**os.environ, "PYTHONPATH": ROOT}
    cli = [sys.executable, "-m", "speechbrain_meta.cli"]
    hub = str(out / "fomaml" / "hub")
    adapt = subprocess.run(
        cli + ["adapt", "--model", hub, "--support", str(support)]
        + ["--out", str(state), "--rule", "adam", "--lr", "0.001"]
        + ["--steps", "3", "--no-safe"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert adapt.returncode == 0, adapt.stderr[-3000:]
    assert "EncoderDecoderASR" in adapt.stdout and state.exists()
    files = [r["wav"].replace("$data_root", str(data)) for r in rows[5:]]
    translate = subprocess.run(
        cli + ["transcribe", "--model", hub, "--task-state", str(state)]
        + files,
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert translate.returncode == 0, translate.stderr[-3000:]
    lines = translate.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == files
