#!/usr/bin/env python3
"""Meta-ASR on SynthDigits with an attention model (joint CTC/attention).

The Brain below is an upstream-style seq2seq ASR recipe
(``recipes/LibriSpeech/ASR/seq2seq/train.py`` of SpeechBrain): features,
normalisation, CRDNN encoder, an ``AttentionalRNNDecoder`` under teacher
forcing, the joint loss ``ctc_weight`` x CTC + (1 - ``ctc_weight``) x NLL,
and ``S2SRNNBeamSearcher`` (with the CTC head as a scorer) at validation
and test. It became a meta-learning recipe by the change the package's
README documents and nothing else: the meta Brain in front of it
(``meta_brain_class``), an ``!include:`` fragment in each method's file,
episodes in the loaders' options.

The corpus, language roles, training budget, few-shot protocol and
adaptation search are those of the CTC recipe (``../meta_asr``): its
``hparams/models/common.yaml``, with this recipe's model
(``hparams/models/seq2seq.yaml``) and the method's file on top. Methods:
``joint`` (the baseline, and the meta-learners' warm start), ``fomaml``,
``maml`` (second order through the decoder's recurrent cells and the
location-aware attention), ``metasgd``, ``lhuc`` (meta-transfer on the
frozen joint model) and ``lora`` (adapters fine-tuned on the k shots).
The GRU decoder is the default; ``--dec_rnn_type=lstm`` gives the LSTM.

To run::

    python train.py hparams/joint.yaml
    python train.py hparams/fomaml.yaml      # trains joint first if needed

Results go to ``results/SynthDigits/seq2seq/<method>/<seed>/few_shot/``.

Authors
 * speechbrain-meta developers 2026
"""

import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import ErrorRateBrain
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.hub import write_char_encoder_decoder
from speechbrain_meta.layered_yaml import layered_experiment
from speechbrain_meta.recipe import (
    WarmStart,
    evaluate_and_export,
    joint_overrides,
    load_joint_model,
    recover_selected,
    train_method,
)
from speechbrain_meta.task_params import insert_adapters

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the corpus's prepare script, shared by its recipes
from synth_digits_prepare import (  # noqa: E402
    few_shot_tasks,
    load_splits,
    prepare_corpora,
)

# The CTC recipe's corpus, budget and protocol, then this recipe's model.
COMMON = [
    os.path.join(HERE, "..", "meta_asr", "hparams", "models", "common.yaml"),
    os.path.join(HERE, "hparams", "models", "seq2seq.yaml"),
]


class ASR(WarmStart, ErrorRateBrain):
    """Joint CTC/attention ASR, as upstream's seq2seq recipes write it.

    ``ErrorRateBrain`` gives the CER/WER trackers, the validation
    checkpoints on CER and ``augmenting`` (plain training batches only);
    ``WarmStart`` marks the joint model's checkpoint the meta-learners
    start from.
    """

    def compute_forward(self, batch, stage):
        """Forward computations from the waveform batches to the output
        probabilities; the beam search's hypotheses outside training.
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        if self.augmenting and stage == sb.Stage.TRAIN:
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
            tokens_bos = self.hparams.wav_augment.replicate_labels(tokens_bos)

        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        x = self.modules.encoder(feats)
        e_in = self.modules.emb(tokens_bos)
        h, _ = self.modules.decoder(e_in, x, wav_lens)
        p_seq = self.hparams.log_softmax(self.modules.seq_lin(h))
        p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(x))

        hyps = None
        if stage != sb.Stage.TRAIN:
            hyps, _, _, _ = self.hparams.beam_searcher(x.detach(), wav_lens)
        return p_ctc, p_seq, wav_lens, hyps

    def frame_log_probs(self, predictions):
        """The CTC head's frame posteriors (KL-regularised adaptation,
        ``Adaptation(kl=...)``, compares them with the unadapted model's).

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
        """The joint CTC/attention loss; CER and WER outside training."""
        p_ctc, p_seq, wav_lens, hyps = predictions
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        tokens, tokens_lens = batch.tokens
        if self.augmenting and stage == sb.Stage.TRAIN:
            replicate = self.hparams.wav_augment.replicate_labels
            tokens_eos = replicate(tokens_eos)
            tokens_eos_lens = replicate(tokens_eos_lens)
            tokens = replicate(tokens)
            tokens_lens = replicate(tokens_lens)

        loss_ctc = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        loss_seq = self.hparams.seq_cost(
            p_seq, tokens_eos, length=tokens_eos_lens
        )
        weight = self.hparams.ctc_weight
        loss = weight * loss_ctc + (1 - weight) * loss_seq

        if stage != sb.Stage.TRAIN:
            self.track_error_rates(
                batch, [self.tokenizer.decode_ndim(h) for h in hyps]
            )
        return loss


def dataio_prepare(hparams, real_csv=None):
    """Datasets (every row checked up front: ``load_splits``), the audio
    and character pipelines (``tokens``, ``tokens_bos``, ``tokens_eos``)
    and the label encoder (blank, bos, eos, then the training set's
    characters).
    """
    datasets, skipped = load_splits(hparams, real_csv)
    label_encoder = sb.dataio.encoder.CTCTextEncoder()

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides(
        "tokens_list", "tokens_bos", "tokens_eos", "tokens"
    )
    def text_pipeline(wrd):
        tokens_list = label_encoder.encode_sequence(list(wrd))
        yield tokens_list
        yield torch.LongTensor(label_encoder.prepend_bos_index(tokens_list))
        yield torch.LongTensor(label_encoder.append_eos_index(tokens_list))
        yield torch.LongTensor(tokens_list)

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    characters = {
        c for row in datasets["train"].data.values() for c in row["wrd"]
    }
    label_encoder.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_iterables=[sorted(characters)],
        sequence_input=False,
        special_labels={
            "blank_label": hparams["blank_index"],
            "bos_label": hparams["bos_index"],
            "eos_label": hparams["eos_index"],
        },
    )
    if len(label_encoder) != hparams["output_neurons"]:
        raise ValueError(
            f"{len(label_encoder)} labels (blank, bos, eos and the training "
            f"set's characters) but output_neurons: "
            f"{hparams['output_neurons']}"
        )
    sb.dataio.dataset.set_output_keys(
        all_sets,
        ["id", "sig", "wrd", "spk_id", "lang", "tokens", "tokens_bos",
         "tokens_eos"],
    )  # fmt: skip
    datasets.setdefault("real", None)
    return datasets, label_encoder, skipped


def make_brain(hparams, run_opts, tokenizer, **overrides):
    """The method's brain: the recipe's ASR behind its meta brain."""
    Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
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
    real_csv = prepare_corpora(hparams)
    datasets, tokenizer, skipped = dataio_prepare(hparams, real_csv)

    if hparams["init_from_joint"]:
        joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
        shared = joint_overrides(
            overrides, hparams["joint_folder"], os.path.dirname(joint_yaml)
        )
        load_joint_model(hparams, lambda: run(joint_yaml, run_opts, shared))
    if hparams.get("adapters") is not None:
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
        "SynthDigits/meta_seq2seq",
        few_shot_tasks(hparams, datasets),
        skipped,
        export=False,
    )
    if hparams.get("adapters") is None:
        # The model in SpeechBrain's hub format: EncoderDecoderASR and
        # AdaptiveASR load <output_folder>/hub as it is.
        run_on_main(
            write_char_encoder_decoder,
            args=[
                hparams["output_folder"],
                brain.modules,
                tokenizer,
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
