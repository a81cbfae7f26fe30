"""The SynthDigits attention recipe (``meta_seq2seq``), end to end.

An upstream-style joint CTC/attention recipe (CRDNN, attentional GRU or
LSTM decoder, ``S2SRNNBeamSearcher``) behind the package's meta brains:
each method trains on the quick main job's corpus, the few-shot protocol
decodes with the beam search and the adapted weights.
"""

import os

import pytest
import torch
from attention_recipes import (
    attention_recipe,
    check_hub_folder,
    fomaml_brain,
    hyps_with_fast_bias,
    run_method,
)
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_meta.evaluation import validate_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_seq2seq")


@pytest.fixture(scope="module")
def recipe(quick_benchmark, tmp_path_factory):
    """The recipe's module, its debug flags on the quick job's corpus, the
    output folder and the corpus folder."""
    out = tmp_path_factory.mktemp("seq2seq")
    return attention_recipe(quick_benchmark, RECIPE, out)


def test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe):
    results = run_method(recipe, "fomaml")
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
    run_method(recipe, method, "--run_few_shot=False")
    out = recipe[2]
    if method != "lora":
        log = (out / method / "train_log.txt").read_text()
        assert "epoch: 1" in log and "valid CER" in log
        assert "nan" not in log.lower()


def test_lstm_decoder(recipe):
    """``--dec_rnn_type=lstm``: the attentional decoder's cell is an LSTM
    and the joint model trains."""
    out = recipe[2]
    run_method(
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
    if not (recipe[2] / "fomaml" / "save").exists():
        test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe)
    brain, tokenizer, test, hparams = fomaml_brain(
        recipe, {"ctc_weight_decode": 0.0}
    )
    batch = PaddedBatch([test[i] for i in range(3)])
    bias = brain.modules.seq_lin.w.bias
    eos = torch.zeros_like(bias)
    eos[hparams["eos_index"]] = 8.0
    assert hyps_with_fast_bias(brain, tokenizer, batch, eos) == [[], [], []]
    seven = torch.zeros_like(bias)
    seven[tokenizer.lab2ind["7"]] = 8.0
    seven[hparams["eos_index"]] = -8.0
    sevens = hyps_with_fast_bias(brain, tokenizer, batch, seven)
    assert all(h and set(h) == {"7"} for h in sevens)


def test_the_trained_model_is_written_in_the_hub_format(recipe, tmp_path):
    """FOMAML's meta-learned initialisation as an ``EncoderDecoderASR``
    folder (CRDNN, attentional GRU decoder, CTC scorer, the label encoder
    as a SentencePiece model): SpeechBrain's interface transcribes as the
    recipe's beam search, ``AdaptiveASR`` loads and adapts it."""
    if not (recipe[2] / "fomaml" / "save").exists():
        test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe)
    text = (recipe[2] / "fomaml" / "hub" / "hyperparams.yaml").read_text()
    assert "S2SRNNBeamSearcher" in text and "CTCScorer" in text
    check_hub_folder(recipe, {"beam_size": 2}, tmp_path)
