#!/usr/bin/env python3
"""Meta-learned speech translation on SynthDigits-ST (X -> English).

A new source language from a few (audio, translation) pairs: the speech
translation counterpart of the ASR recipes ``../meta_asr`` (CTC) and
``../meta_seq2seq`` (attention), on the same speech, language roles,
training budget, few-shot protocol and adaptation search (read from
``../meta_asr/hparams/models/common.yaml``, the model from
``hparams/models/st.yaml``).

The Brain below is written as upstream's ST recipes write theirs
(SpeechBrain's ``recipes/Fisher-Callhome-Spanish/ST``): an encoder over
the speech, an attentional decoder over the translation's SentencePiece
units under teacher forcing, and a multitask CTC branch on the source
transcript (``ctc_weight`` x CTC + (1 - ``ctc_weight``) x NLL);
``S2SRNNBeamSearcher`` decodes the translation outside training, scored
with ``BLEUStats`` (BLEU), and ``ErrorRateStats`` (the translation's WER
and CER; model selection and the adaptation search use that CER). It
became a meta-learning recipe by the change the package's README
documents: the meta Brain in front of it, an ``!include:`` fragment per
method, episodes in the loaders' options.

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

import functools
import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import run_on_main

from speechbrain_meta.asr import ErrorRateBrain, add_ctc_pipelines
from speechbrain_meta.data.synth_st import prepare_synth_digits_st
from speechbrain_meta.data.tokenizer import corpus_tokenizer
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.layered_yaml import (
    layered_experiment,
    load_layered_hparams,
)
from speechbrain_meta.recipe import (
    WarmStart,
    joint_overrides,
    make_meta_brain,
    run_method,
)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the corpus's prepare script, shared by its recipes
from synth_digits_prepare import load_splits, prepare_corpora  # noqa: E402

# The ASR recipes' corpus, budget and protocol, then this recipe's model.
COMMON = [
    os.path.join(HERE, "..", "meta_asr", "hparams", "models", "common.yaml"),
    os.path.join(HERE, "hparams", "models", "st.yaml"),
]


class ST(WarmStart, ErrorRateBrain):
    """Attention speech translation with a CTC branch on the source.

    ``ErrorRateBrain`` gives the trackers (BLEU, the translation's WER and
    CER), the validation checkpoints on that CER and ``augmenting``;
    ``WarmStart`` marks the joint model's checkpoint the meta-learners
    start from. ``self.tokenizer`` is the translation's SentencePiece.
    """

    def compute_forward(self, batch, stage):
        """Forward computations from the waveform batches to the output
        probabilities; the beam search's translations outside training.
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        translation_bos, _ = batch.translation_bos
        if self.augmenting and stage == sb.Stage.TRAIN:
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
            translation_bos = self.hparams.wav_augment.replicate_labels(
                translation_bos
            )

        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        x = self.modules.encoder(feats)
        p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(x))
        e_in = self.modules.emb(translation_bos)
        h, _ = self.modules.decoder(e_in, x, wav_lens)
        p_seq = self.hparams.log_softmax(self.modules.seq_lin(h))

        hyps = None
        if stage != sb.Stage.TRAIN:
            hyps, _, _, _ = self.hparams.beam_searcher(x.detach(), wav_lens)
        return p_ctc, p_seq, wav_lens, hyps

    def frame_log_probs(self, predictions):
        """The CTC head's frame posteriors over the source's characters
        (KL-regularised adaptation compares them with the unadapted
        model's).

        Arguments
        ---------
        predictions : tuple
            From ``compute_forward``.

        Returns
        -------
        tuple
            ``(log_probs, wav_lens)``.
        """
        p_ctc, _, wav_lens, _ = predictions
        return p_ctc, wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """The multitask loss; BLEU, WER and CER outside training."""
        p_ctc, p_seq, wav_lens, hyps = predictions
        translation_eos, translation_eos_lens = batch.translation_eos
        tokens, tokens_lens = batch.tokens  # the source transcript's
        if self.augmenting and stage == sb.Stage.TRAIN:
            replicate = self.hparams.wav_augment.replicate_labels
            translation_eos = replicate(translation_eos)
            translation_eos_lens = replicate(translation_eos_lens)
            tokens = replicate(tokens)
            tokens_lens = replicate(tokens_lens)

        loss_ctc = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        loss_seq = self.hparams.seq_cost(
            p_seq, translation_eos, length=translation_eos_lens
        )
        weight = self.hparams.ctc_weight
        loss = weight * loss_ctc + (1 - weight) * loss_seq

        if stage != sb.Stage.TRAIN:
            translations = [self.tokenizer.decode_ids(h) for h in hyps]
            self.track_error_rates(batch, translations, batch.translation)
        return loss


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
    if tokenizer.vocab_size() != hparams["translation_neurons"]:
        raise ValueError(
            f"the translation's SentencePiece model has "
            f"{tokenizer.vocab_size()} units, translation_neurons: "
            f"{hparams['translation_neurons']}"
        )

    @sb.utils.data_pipeline.takes("translation")
    @sb.utils.data_pipeline.provides(
        "translation_bos", "translation_eos", "translation_tokens"
    )
    def translation_pipeline(translation):
        units = tokenizer.encode_as_ids(translation)
        yield torch.LongTensor([hparams["bos_index"]] + units)
        yield torch.LongTensor(units + [hparams["eos_index"]])
        yield torch.LongTensor(units)

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, translation_pipeline)
    sb.dataio.dataset.set_output_keys(
        all_sets,
        ["id", "sig", "wrd", "translation", "spk_id", "lang", "tokens",
         "translation_bos", "translation_eos"],
    )  # fmt: skip
    return datasets, tokenizer, skipped


# The method's brain: the recipe's ST Brain behind its meta brain.
make_brain = functools.partial(make_meta_brain, ST)


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
    data = dataio_prepare(hparams, prepare_translations(hparams))
    joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
    shared = joint_overrides(
        overrides, hparams["joint_folder"], os.path.dirname(joint_yaml)
    )
    return run_method(
        hparams,
        run_opts,
        make_brain,
        data,
        train_joint=lambda: run(joint_yaml, run_opts, shared),
        recipe="SynthDigits/meta_st",
        export=False,
    )


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
