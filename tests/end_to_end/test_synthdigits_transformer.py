"""The SynthDigits Conformer/Transformer recipe (``meta_transformer``), end
to end.

An upstream-style joint CTC/attention Transformer recipe (convolutional
front end, SpeechBrain's ``TransformerASR`` with a Conformer or
Transformer encoder, Noam warm-up, ``S2STransformerBeamSearcher`` with the
CTC head as a scorer) behind the package's meta brains: each method trains
on the quick main job's corpus, the few-shot protocol decodes with the
beam search and the adapted weights.
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
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_transformer")
# A small model: the tests check the pipeline, not the accuracy.
SMALL = {
    "d_model": 32,
    "d_ffn": 64,
    "num_encoder_layers": 2,
    "num_decoder_layers": 1,
}


@pytest.fixture(scope="module")
def recipe(quick_benchmark, tmp_path_factory):
    """The recipe's module, its debug flags (a small model) on the quick
    job's corpus, the output folder and the corpus folder."""
    out = tmp_path_factory.mktemp("transformer")
    flags = [f"--{key}={value}" for key, value in SMALL.items()]
    return attention_recipe(quick_benchmark, RECIPE, out, flags)


def test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe):
    """The joint model trains with its Noam schedule (checkpointed), FOMAML
    starts from it, and both few-shot budgets are scored at every k."""
    results = run_method(recipe, "fomaml")
    out = recipe[2]
    assert {"test", "test_voices"} <= set(results)
    for result in results.values():
        validate_results(result)
        budgets = {(r["budget"], r["k_shot"]) for r in result["results"]}
        assert budgets == {
            (b, k) for b in ("tuned", "default") for k in (0, 1, 5)
        }
    joint = out / "joint"
    log = (joint / "train_log.txt").read_text()
    assert "epoch: 2" in log
    noam = list((joint / "save").glob("CKPT*/lr_annealing.ckpt"))
    assert noam, "the Noam schedule is not in the joint model's checkpoints"
    assert (
        "Initialised from the joint model"
        in (out / "fomaml" / "log.txt").read_text()
    )
    text = (out / "fomaml" / "hyperparams.yaml").read_text()
    assert "S2STransformerBeamSearcher" in text and "TransformerASR" in text
    assert "encoder_module: conformer" in text


@pytest.mark.parametrize("method", ["maml", "metasgd", "lhuc", "lora"])
def test_every_method_trains_through_the_conformer(recipe, method):
    """Second-order MAML (through self-attention, convolution and
    cross-attention), Meta-SGD, LHUC on the frozen model and LoRA: each
    trains (or, LoRA, adapts) without error; its meta-dev CER is finite."""
    run_method(recipe, method, "--run_few_shot=False")
    out = recipe[2]
    if method != "lora":
        log = (out / method / "train_log.txt").read_text()
        assert "epoch: 1" in log and "valid CER" in log
        assert "nan" not in log.lower()


def test_transformer_encoder(recipe):
    """``--encoder_module=transformer``: a Transformer encoder in place of
    the Conformer, and the joint model trains."""
    out = recipe[2]
    run_method(
        recipe,
        "joint",
        "--encoder_module=transformer",
        "--run_few_shot=False",
        name="joint_transformer",
    )
    text = (out / "joint_transformer" / "hyperparams.yaml").read_text()
    assert "encoder_module: transformer" in text
    log = (out / "joint_transformer" / "train_log.txt").read_text()
    assert "epoch: 2" in log and "valid CER" in log


def test_beam_search_decodes_with_the_adapted_weights(recipe):
    """The scoring path (``call_with`` the fast weights, ``compute_forward``
    at TEST) runs ``S2STransformerBeamSearcher`` on the adapted weights: a
    fast output bias that makes '7' near certain (eos unlikely) gives
    sevens only, one that makes eos near certain gives empty hypotheses;
    the meta-parameters are unchanged after. The CTC scorer is left out
    (``ctc_weight_decode: 0``): it would weigh the unadapted CTC head
    against the shifted decoder."""
    if not (recipe[2] / "fomaml" / "save").exists():
        test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe)
    brain, tokenizer, test, hparams = fomaml_brain(
        recipe, {"ctc_weight_decode": 0.0, **SMALL}
    )
    batch = PaddedBatch([test[i] for i in range(3)])
    bias = brain.modules.seq_lin.w.bias
    seven = torch.zeros_like(bias)
    seven[tokenizer.lab2ind["7"]] = 30.0
    seven[hparams["eos_index"]] = -30.0
    sevens = hyps_with_fast_bias(brain, tokenizer, batch, seven)
    assert all(h and set(h) == {"7"} for h in sevens)
    eos = torch.zeros_like(bias)
    eos[hparams["eos_index"]] = 30.0
    assert hyps_with_fast_bias(brain, tokenizer, batch, eos) == [[], [], []]


def test_the_trained_model_is_written_in_the_hub_format(recipe, tmp_path):
    """FOMAML's meta-learned initialisation as an ``EncoderDecoderASR``
    folder laid out as upstream's Conformer models (the front end and the
    Conformer in the encoder, ``S2STransformerBeamSearcher`` with the CTC
    scorer, the label encoder as a SentencePiece model): SpeechBrain's
    interface transcribes as the recipe's beam search, ``AdaptiveASR``
    loads and adapts it; LHUC's run (task parameters) writes none."""
    out = recipe[2]
    if not (out / "fomaml" / "save").exists():
        test_fomaml_trains_from_the_joint_model_and_is_evaluated(recipe)
    text = (out / "fomaml" / "hub" / "hyperparams.yaml").read_text()
    assert "S2STransformerBeamSearcher" in text and "EncoderWrapper" in text
    assert "CTCScorer" in text
    check_hub_folder(recipe, {"beam_size": 2, **SMALL}, tmp_path)
    if (out / "lhuc").exists():
        assert not (out / "lhuc" / "hub").exists()
