"""The speech-translation model the ST recipes of this repository put meta
brains on.

Nothing in it is meta-specific: ``ST`` is an ordinary SpeechBrain Brain,
written as upstream's ST recipes write theirs
(``recipes/Fisher-Callhome-Spanish/ST`` of SpeechBrain): features,
normalisation, an encoder over the speech, an attentional decoder over the
translation's SentencePiece units under teacher forcing and a multitask
CTC branch on the source transcript (``ctc_weight`` x CTC + (1 -
``ctc_weight``) x NLL); outside training a beam search decodes the
translation, scored by ``BLEUStats`` (a ``bleu_computer`` hparam) and
``ErrorRateStats`` (the translation's WER and CER: model selection and the
adaptation search use that CER). ``add_translation_pipeline`` gives the
datasets the decoder's inputs and targets. A recipe subclasses ``ST``
(``speechbrain_meta.recipe.WarmStartST``) and puts a meta brain in front
with ``meta_brain_class``.

Hparams read: ``compute_features``, ``log_softmax``, ``ctc_cost``,
``seq_cost``, ``ctc_weight``, ``beam_searcher``, ``cer_computer``,
``wer_computer``, ``bleu_computer``, optionally ``wav_augment`` (plain
training batches only); modules: ``normalize``, ``encoder``, ``ctc_lin``,
``emb``, ``decoder``, ``seq_lin``. Batches: ``sig``, ``tokens`` (the
source transcript's CTC labels), ``translation_bos``, ``translation_eos``
and ``translation``.

Authors
 * speechbrain-meta developers 2026
"""

import speechbrain as sb
import torch

from speechbrain_meta.asr import ErrorRateBrain

__all__ = ["ST", "add_translation_pipeline"]


class ST(ErrorRateBrain):
    """Attention speech translation with a CTC branch on the source.

    ``ErrorRateBrain`` gives the trackers (BLEU, the translation's WER and
    CER), the validation checkpoints on that CER and ``augmenting``.
    ``self.tokenizer`` is the translation's SentencePiece model.

    Example
    -------
    >>> issubclass(ST, ErrorRateBrain)
    True
    """

    def compute_forward(self, batch, stage):
        """Forward computations from the waveform batches to the output
        probabilities; the beam search's translations outside training.

        Arguments
        ---------
        batch : PaddedBatch
            The batch.
        stage : sb.Stage
            The stage.

        Returns
        -------
        tuple
            ``(p_ctc, p_seq, wav_lens, hyps)``; ``hyps`` is None in
            training.
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        translation_bos, _ = batch.translation_bos
        if self.augmenting and stage == sb.Stage.TRAIN:
            wavs, wav_lens = self.augment(wavs, wav_lens)
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
        """The multitask loss; BLEU, WER and CER outside training.

        Arguments
        ---------
        predictions : tuple
            From ``compute_forward``.
        batch : PaddedBatch
            The batch.
        stage : sb.Stage
            The stage.

        Returns
        -------
        torch.Tensor
            The loss.
        """
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


def add_translation_pipeline(
    datasets, tokenizer, bos_index, eos_index, output_neurons=None
):
    """The decoder's inputs and targets from each row's ``translation``.

    Arguments
    ---------
    datasets : dict of str:DynamicItemDataset
        The splits; each row has ``translation``.
    tokenizer : sentencepiece.SentencePieceProcessor
        The translation's units.
    bos_index, eos_index : int
        Prepended to the decoder's inputs, appended to its targets.
    output_neurons : int, optional
        The decoder's output size: a tokenizer with another number of
        units is refused.

    Returns
    -------
    list of str
        The keys it provides: ``translation_bos``, ``translation_eos``,
        ``translation_tokens``.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> class Units:  # a stand-in for a SentencePiece model
    ...     def encode_as_ids(self, text):
    ...         return [len(word) for word in text.split()]
    >>> data = {"train": DynamicItemDataset(
    ...     {"a": {"translation": "one three"}})}
    >>> add_translation_pipeline(data, Units(), 0, 0)[0]
    'translation_bos'
    >>> data["train"].set_output_keys(["translation_eos"])
    >>> data["train"][0]["translation_eos"]
    tensor([3, 5, 0])
    """
    if output_neurons is not None and tokenizer.vocab_size() != output_neurons:
        raise ValueError(
            f"the translation's SentencePiece model has "
            f"{tokenizer.vocab_size()} units, the decoder {output_neurons} "
            "outputs (translation_neurons)"
        )

    @sb.utils.data_pipeline.takes("translation")
    @sb.utils.data_pipeline.provides(
        "translation_bos", "translation_eos", "translation_tokens"
    )
    def translation_pipeline(translation):
        units = tokenizer.encode_as_ids(translation)
        yield torch.LongTensor([bos_index] + units)
        yield torch.LongTensor(units + [eos_index])
        yield torch.LongTensor(units)

    sb.dataio.dataset.add_dynamic_item(
        list(datasets.values()), translation_pipeline
    )
    return ["translation_bos", "translation_eos", "translation_tokens"]
