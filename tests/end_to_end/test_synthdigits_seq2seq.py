"""The SynthDigits attention recipe (``meta_seq2seq``), end to end.

An upstream-style joint CTC/attention recipe (CRDNN, attentional GRU or
LSTM decoder, ``S2SRNNBeamSearcher``) behind the package's meta brains:
each method trains on the quick main job's corpus, the few-shot protocol
decodes with the beam search and the adapted weights.
"""

import os
import runpy

import pytest
import speechbrain as sb
import torch
from attention_hub import check_hub_folder
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_meta.evaluation import validate_results
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import recover_selected

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_seq2seq")
DEBUG = [
    "--joint_epochs=2",
    "--warm_start_epoch=1",
    "--episodes_per_epoch=4",
    "--valid_dataloader_opts={episodes: {episodes_per_epoch: 2}}",
    "--few_shot={k_shots: [0, 1, 5], episodes_per_task: 1, "
    "query_utterances: 6}",
    "--adaptation_search={rules: [own], modes: [eval], steps: [1], "
    "query_utterances: 4}",
    "--few_shot_voice_tasks=1",
    "--beam_size=2",
    "--noprogressbar",
]


def _hparams(name):
    return os.path.join(RECIPE, "hparams", f"{name}.yaml")


@pytest.fixture(scope="module")
def recipe(quick_benchmark, tmp_path_factory):
    """The recipe's module, its debug flags on the quick job's corpus, the
    output folder and the corpus folder."""
    bench_module, bench, _ = quick_benchmark
    quick = bench_module["QUICK"]
    flags = DEBUG + [
        f"--data_folder={bench / 'data'}",
        f"--corpus={quick['corpus']}",
        f"--real_speech={quick['real_speech']}",
    ]
    out = tmp_path_factory.mktemp("seq2seq")
    module = runpy.run_path(os.path.join(RECIPE, "train.py"))
    return module, flags, out, bench / "data"


def _run(recipe, method, *extra, name=None):
    module, flags, out, _ = recipe
    return module["main"](
        [_hparams(method)]
        + flags
        + [
            f"--joint_folder={out / 'joint'}",
            f"--output_folder={out / (name or method)}",
            *extra,
        ]
    )


def test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe):
    results = _run(recipe, "fomaml")
    out = recipe[2]
    assert {"test", "test_voices"} <= set(results)
    for result in results.values():
        validate_results(result)
        budgets = {(r["budget"], r["k_shot"]) for r in result["results"]}
        assert budgets == {
            (b, k) for b in ("tuned", "default") for k in (0, 1, 5)
        }
    assert "epoch: 2" in (out / "joint" / "train_log.txt").read_text()
    log = (out / "fomaml" / "log.txt").read_text()
    assert "Initialised from the joint model" in log
    text = (out / "fomaml" / "hyperparams.yaml").read_text()
    assert "S2SRNNBeamSearcher" in text and "AttentionalRNNDecoder" in text
    labels = (out / "fomaml" / "save" / "label_encoder.txt").read_text()
    assert "'<bos>' => 1" in labels and "'<eos>' => 2" in labels


@pytest.mark.parametrize("method", ["maml", "metasgd", "lhuc", "lora"])
def test_every_method_trains_through_the_attention_model(recipe, method):
    """Second-order MAML (through the GRU cell and the location-aware
    attention), Meta-SGD, LHUC on the frozen model (decoder included) and
    LoRA: each trains (or, LoRA, adapts) without error; its meta-dev CER
    is finite."""
    _run(recipe, method, "--run_few_shot=False")
    out = recipe[2]
    if method != "lora":
        log = (out / method / "train_log.txt").read_text()
        assert "epoch: 1" in log and "valid CER" in log
        assert "nan" not in log.lower()


def test_lstm_decoder(recipe):
    """``--dec_rnn_type=lstm``: the attentional decoder's cell is an LSTM
    and the joint model trains."""
    out = recipe[2]
    _run(
        recipe,
        "joint",
        "--dec_rnn_type=lstm",
        "--run_few_shot=False",
        name="joint_lstm",
    )
    text = (out / "joint_lstm" / "hyperparams.yaml").read_text()
    assert "rnn_type: lstm" in text
    log = (out / "joint_lstm" / "train_log.txt").read_text()
    assert "epoch: 2" in log and "valid CER" in log


def test_beam_search_decodes_with_the_adapted_weights(recipe):
    """The validation and few-shot scoring path (``call_with`` the fast
    weights, ``compute_forward`` at TEST) runs the beam search on the
    adapted weights: a fast output bias that makes eos near certain gives
    empty hypotheses, one that makes '7' near certain (and eos unlikely)
    gives sevens only; the meta-parameters are unchanged after. The CTC
    scorer is left out here (``ctc_weight_decode: 0``): it would weigh
    the unadapted CTC head against the shifted decoder. (Near certain, not
    certain: SpeechBrain's eos threshold compares log-probabilities, and
    an eos of log-probability exactly 0 fails it.)"""
    module, _, out, data = recipe
    if not (out / "fomaml" / "save").exists():
        test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe)
    overrides = {
        "data_folder": str(data),
        "output_folder": str(out / "fomaml"),
        "joint_folder": str(out / "joint"),
        "ctc_weight_decode": 0.0,
    }
    hparams, _ = load_layered_hparams(
        _hparams("fomaml"), module["COMMON"], overrides
    )
    datasets, tokenizer, _ = module["dataio_prepare"](hparams)
    assert recover_selected(hparams) is not None
    brain = module["make_brain"](hparams, {"device": "cpu"}, tokenizer)
    brain.modules.eval()
    batch = PaddedBatch([datasets["test"][i] for i in range(3)])
    bias_name = "seq_lin.w.bias"
    bias = dict(brain.modules.named_parameters())[bias_name]
    before = bias.detach().clone()

    def hyps(shift):
        fast = {bias_name: bias.detach() + shift}
        with torch.no_grad():
            out = brain.call_with(
                fast, brain.compute_forward, batch, sb.Stage.TEST
            )
        return [tokenizer.decode_ndim(h) for h in out[3]]

    eos = torch.zeros_like(before)
    eos[hparams["eos_index"]] = 8.0
    assert hyps(eos) == [[], [], []]
    seven = torch.zeros_like(before)
    seven[tokenizer.lab2ind["7"]] = 8.0
    seven[hparams["eos_index"]] = -8.0
    sevens = hyps(seven)
    assert all(h and set(h) == {"7"} for h in sevens)
    assert torch.equal(bias.detach(), before)


def test_the_trained_model_is_written_in_the_hub_format(recipe, tmp_path):
    """FOMAML's meta-learned initialisation as an ``EncoderDecoderASR``
    folder (CRDNN, attentional GRU decoder, CTC scorer, the label encoder
    as a SentencePiece model): SpeechBrain's interface transcribes as the
    recipe's beam search, ``AdaptiveASR`` loads and adapts it."""
    module, _, out, data = recipe
    if not (out / "fomaml" / "save").exists():
        test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe)
    hub = out / "fomaml" / "hub"
    text = (hub / "hyperparams.yaml").read_text()
    assert "S2SRNNBeamSearcher" in text and "CTCScorer" in text
    overrides = {
        "data_folder": str(data),
        "output_folder": str(out / "fomaml"),
        "joint_folder": str(out / "joint"),
        "beam_size": 2,
    }
    check_hub_folder(module, _hparams("fomaml"), overrides, hub, tmp_path)
