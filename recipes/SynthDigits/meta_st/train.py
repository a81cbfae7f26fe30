#!/usr/bin/env python3
"""Meta-learned speech translation on SynthDigits-ST (X -> English).

A new source language from a few (audio, translation) pairs: the speech
translation counterpart of the ASR recipes ``../meta_asr`` (CTC) and
``../meta_seq2seq`` (attention), on the same speech, language roles,
training budget, few-shot protocol and adaptation search (read from
``../meta_asr/hparams/models/common.yaml``, the model from
``hparams/models/st.yaml``).

The Brain is ``speechbrain_meta.translation.ST``, written as upstream's ST
recipes write theirs (SpeechBrain's ``recipes/Fisher-Callhome-Spanish/ST``)
and shared with the CoVoST 2 recipe: an encoder over the speech, an
attentional decoder over the translation's SentencePiece units under
teacher forcing, and a multitask CTC branch on the source transcript
(``ctc_weight`` x CTC + (1 - ``ctc_weight``) x NLL); ``S2SRNNBeamSearcher``
decodes the translation outside training, scored with ``BLEUStats`` (BLEU)
and ``ErrorRateStats`` (the translation's WER and CER; model selection and
the adaptation search use that CER). The meta-learning part is the
package README's change: the meta Brain in front of it, an ``!include:``
fragment per method, episodes in the loaders' options.

Methods: ``joint`` (multilingual ST, the baseline and the warm start),
``lora`` (adapters fine-tuned on the k shots), ``fomaml``, ``maml``,
``reptile``, ``metasgd`` (meta-optimiser), ``lhuc`` (meta-transfer).

To run::

    python train.py hparams/joint.yaml
    python train.py hparams/fomaml.yaml      # trains joint first if needed

Results go to ``results/SynthDigits/st/<method>/<seed>/few_shot/test/``.

Authors
 * speechbrain-meta developers 2026
"""

import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta.asr import add_ctc_pipelines
from speechbrain_meta.brains import meta_brain_class
from speechbrain_meta.corpora.synth_st import prepare_synth_digits_st
from speechbrain_meta.data.tokenizer import corpus_tokenizer, tokenizer_file
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.hub import write_encoder_decoder
from speechbrain_meta.layered_yaml import (
    layered_experiment,
    load_layered_hparams,
)
from speechbrain_meta.recipe import (
    WarmStartST,
    evaluate_and_export,
    joint_overrides,
    load_joint_model,
    recover_selected,
    train_method,
)
from speechbrain_meta.task_params import insert_adapters
from speechbrain_meta.translation import add_translation_pipeline

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the corpus's prepare script, shared by its recipes
from synth_digits_prepare import load_splits, prepare_corpora  # noqa: E402

# The ASR recipes' corpus, budget and protocol, then this recipe's model.
COMMON = [
    os.path.join(HERE, "..", "meta_asr", "hparams", "models", "common.yaml"),
    os.path.join(HERE, "hparams", "models", "st.yaml"),
]


def prepare_data(overrides=None):
    """SynthDigits, then its ST manifests and the translation's units.

    Arguments
    ---------
    overrides : dict or str, optional
        Hyperparameter overrides (the data folders, the corpus).

    Returns
    -------
    dict
        The loaded hparams (of ``joint.yaml``).
    """
    joint = os.path.join(HERE, "hparams", "joint.yaml")
    hparams, _ = load_layered_hparams(joint, COMMON, overrides)
    prepare_translations(hparams)
    return hparams


def prepare_translations(hparams):
    """The corpus, the ST manifests and the SentencePiece model, unless
    done (main process; the others wait).

    Arguments
    ---------
    hparams : dict
        Loaded hparams.

    Returns
    -------
    sentencepiece.SentencePieceProcessor
        The translation's units.
    """
    prepare_corpora(hparams)
    run_on_main(
        prepare_synth_digits_st,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["st_folder"],
            "target_language": hparams["target_language"],
        },
    )
    kwargs = {
        "folder": hparams["tokenizer_folder"],
        "annotation_train": hparams["train_csv"],
        "annotation_read": "translation",
        "vocab_size": hparams["vocab_size"],
        "model_type": hparams["token_type"],
    }
    run_on_main(corpus_tokenizer, kwargs=kwargs)
    return corpus_tokenizer(**kwargs)


def dataio_prepare(hparams, tokenizer):
    """Datasets (every row checked up front: ``load_splits``), the audio,
    source-transcript (CTC) and translation pipelines.

    Arguments
    ---------
    hparams : dict
        Loaded hparams.
    tokenizer : sentencepiece.SentencePieceProcessor
        The translation's units.

    Returns
    -------
    tuple
        ``(datasets, tokenizer, skipped)``.
    """
    datasets, skipped = load_splits(hparams)
    source_encoder = add_ctc_pipelines(
        datasets,
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["blank_index"],
    )
    source_encoder.expect_len(hparams["output_neurons"])
    add_translation_pipeline(
        datasets,
        tokenizer,
        hparams["bos_index"],
        hparams["eos_index"],
        output_neurons=hparams["translation_neurons"],
    )
    sb.dataio.dataset.set_output_keys(
        list(datasets.values()),
        ["id", "sig", "wrd", "translation", "spk_id", "lang", "tokens",
         "translation_bos", "translation_eos"],
    )  # fmt: skip
    return datasets, tokenizer, skipped


def make_brain(hparams, run_opts, tokenizer, **overrides):
    """The method's brain: the ST Brain behind the method's meta brain.

    Arguments
    ---------
    hparams : dict
        The run's hparams.
    run_opts : dict
        SpeechBrain run options.
    tokenizer : sentencepiece.SentencePieceProcessor
        The translation's units.
    **overrides : dict
        Hparams this brain sees changed (``train_method`` passes some).

    Returns
    -------
    MetaBrain
    """
    Brain = meta_brain_class(WarmStartST, hparams["meta_brain_class"])
    brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams={**hparams, **overrides},
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        meta_algorithm=hparams["meta_algorithm"],
        rule_opt_class=hparams.get("rule_opt_class"),
        meta_train_init=hparams.get("meta_train_init"),
    )
    brain.tokenizer = tokenizer
    return brain


def run(hparams_file, run_opts, overrides):
    """Trains one method and runs the few-shot protocol.

    Arguments
    ---------
    hparams_file : str
        The method's hparams file.
    run_opts : dict
        SpeechBrain run options.
    overrides : str or dict
        Hyperparameter overrides.

    Returns
    -------
    dict
        Few-shot results per evaluation set.
    """
    init_process_group(run_opts)  # torchrun: join the process group
    hparams = layered_experiment(hparams_file, COMMON, overrides)
    datasets, tokenizer, skipped = dataio_prepare(
        hparams, prepare_translations(hparams)
    )
    joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
    if hparams["init_from_joint"]:
        shared = joint_overrides(
            overrides,
            hparams["joint_folder"],
            os.path.dirname(joint_yaml),
        )
        load_joint_model(hparams, lambda: run(joint_yaml, run_opts, shared))
    if hparams.get("adapters") is not None:
        # Task parameters / adapters go into the loaded model.
        insert_adapters(
            hparams["modules"], hparams["adapted_modules"], hparams["adapters"]
        )
    logger.info(
        "%s: %s training, %d epochs, learning rate %g",
        hparams["method"],
        hparams["training"],
        hparams["number_of_epochs"],
        hparams["lr"],
    )
    train_method(
        lambda **kw: make_brain(hparams, run_opts, tokenizer, **kw),
        hparams,
        run_opts,
        datasets,
    )
    if hparams["training"] != "none":
        recover_selected(hparams)  # the checkpoint selected on meta-dev
    brain = make_brain(hparams, run_opts, tokenizer)
    results = evaluate_and_export(
        hparams,
        brain,
        datasets,
        tokenizer,
        "SynthDigits/meta_st",
        skipped=skipped,
        export=False,
    )
    if hparams.get("adapters") is None:
        # The model as SpeechBrain's EncoderDecoderASR (and AdaptiveASR)
        # load it: a translation is what it transcribes.
        run_on_main(
            write_encoder_decoder,
            args=[
                hparams["output_folder"],
                brain.modules,
                tokenizer_file(
                    hparams["tokenizer_folder"],
                    hparams["vocab_size"],
                    hparams["token_type"],
                ),
                os.path.join(hparams["output_folder"], "hub"),
            ],
        )
    return results


def main(argv):
    """Prepare data, train the method, run the few-shot protocol.

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --overrides...]`` as on the command line.

    Returns
    -------
    dict
        Few-shot results per evaluation set.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    return run(hparams_file, run_opts, overrides)


if __name__ == "__main__":
    main(sys.argv[1:])
