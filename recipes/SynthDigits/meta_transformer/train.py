#!/usr/bin/env python3
"""Meta-ASR on SynthDigits with a Conformer/Transformer (joint CTC/attention).

The Brain below is an upstream-style Transformer ASR recipe
(``recipes/LibriSpeech/ASR/transformer/train.py`` of SpeechBrain):
features, normalisation, a convolutional front end, SpeechBrain's
``TransformerASR`` (a Conformer encoder by default, ``--encoder_module=
transformer`` for a Transformer one, and a Transformer decoder under
teacher forcing), the joint loss ``ctc_weight`` x CTC + (1 -
``ctc_weight``) x NLL, Noam warm-up of the joint model's rate, and
``S2STransformerBeamSearcher`` with the CTC head as a scorer at validation
and test. It became a meta-learning recipe by the change the package's
README documents and nothing else: the meta Brain in front of it
(``meta_brain_class``), an ``!include:`` fragment in each method's file,
episodes in the loaders' options.

Its data pipelines (blank, bos, eos and the characters) and its joint
loss are the attention recipe's (``../meta_seq2seq``), imported from it;
the corpus, budget and protocol are the CTC recipe's
(``../meta_asr/hparams/models/common.yaml``), with this recipe's model
(``hparams/models/transformer.yaml``) and the method's file on top.
Methods: ``joint`` (the baseline, and the meta-learners' warm start),
``fomaml``, ``maml`` (second order through the attention layers),
``metasgd``, ``lhuc`` (meta-transfer on the frozen joint model) and
``lora`` (adapters fine-tuned on the k shots).

To run::

    python train.py hparams/joint.yaml
    python train.py hparams/fomaml.yaml      # trains joint first if needed

Results go to ``results/SynthDigits/transformer/<method>/<seed>/few_shot/``.

Authors
 * speechbrain-meta developers 2026
"""

import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.hub import write_char_encoder_decoder
from speechbrain_meta.layered_yaml import layered_experiment
from speechbrain_meta.recipe import (
    evaluate_and_export,
    joint_overrides,
    load_joint_model,
    load_script,
    recover_selected,
    train_method,
)
from speechbrain_meta.task_params import insert_adapters

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
SEQ2SEQ = os.path.join(HERE, "..", "meta_seq2seq")


# The attention recipe's train.py, under a name of its own.
seq2seq = load_script(
    os.path.join(SEQ2SEQ, "train.py"), "synthdigits_meta_seq2seq_train"
)
# The corpus (the prepare script shared by the SynthDigits recipes) and the
# attention recipe's data pipelines.
prepare_corpora = seq2seq.prepare_corpora
few_shot_tasks = seq2seq.few_shot_tasks
dataio_prepare = seq2seq.dataio_prepare

# The CTC recipe's corpus, budget and protocol, then this recipe's model.
COMMON = [
    os.path.join(HERE, "..", "meta_asr", "hparams", "models", "common.yaml"),
    os.path.join(HERE, "hparams", "models", "transformer.yaml"),
]


class ASR(seq2seq.ASR):
    """Joint CTC/attention ASR with ``TransformerASR``, as upstream's
    Transformer recipes write it; the loss, error rates and warm start are
    the attention recipe's.
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
        src = self.modules.encoder(feats)  # the convolutional front end
        enc_out, dec_out = self.modules.transformer(
            src, tokens_bos, wav_lens, pad_idx=self.hparams.pad_index
        )
        p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(enc_out))
        p_seq = self.hparams.log_softmax(self.modules.seq_lin(dec_out))

        hyps = None
        if stage != sb.Stage.TRAIN:
            hyps, _, _, _ = self.hparams.beam_searcher(
                enc_out.detach(), wav_lens
            )
        return p_ctc, p_seq, wav_lens, hyps

    def on_fit_start(self):
        """The Noam schedule (``lr_annealing``, joint training) is
        checkpointed with the model, so a resumed run goes on with it.
        """
        annealing = getattr(self.hparams, "lr_annealing", None)
        if annealing is not None and self.checkpointer is not None:
            recoverables = self.checkpointer.recoverables
            if "lr_annealing" not in recoverables:
                self.checkpointer.add_recoverable("lr_annealing", annealing)
        super().on_fit_start()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """One step of the Noam schedule after each update (joint
        training: the methods' files without ``lr_annealing`` keep their
        rate).
        """
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        annealing = getattr(self.hparams, "lr_annealing", None)
        if annealing is not None and should_step:
            annealing(self.optimizer)


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
        "SynthDigits/meta_transformer",
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
