"""The plain CTC recogniser the recipes of this repository put meta brains on.

Nothing in it is meta-specific: ``CTCASR`` is an ordinary SpeechBrain Brain
(features, normalisation, encoder, CTC head; greedy decoding and error-rate
trackers outside training), and ``add_ctc_pipelines`` the usual audio and
character pipelines with a ``CTCTextEncoder``. A recipe subclasses
``CTCASR`` for what is its own (what a checkpoint records) and puts a meta
brain in front with ``meta_brain_class``. What any ASR Brain of these
recipes shares whatever its decoder (error-rate trackers, validation
checkpoints on CER, when to augment) is ``ErrorRateBrain``: the
attention recipe's Brain builds on it too.

Hparams read: ``compute_features``, ``log_softmax``, ``ctc_cost``,
``blank_index``, ``cer_computer``, ``wer_computer``, ``train_logger``,
``epoch_counter``, optionally ``encoder_takes_lengths`` (default False:
True calls ``encoder(feats, wav_lens)``, as SpeechBrain's Transformer and
Conformer ``EncoderWrapper`` needs), ``wav_augment`` (a SpeechBrain
``Augmenter`` applied to the waveforms of plain training batches, as
upstream's recipes do; never to an episode's support or query, nor while
a model adapts), ``edge_silence`` (applied before it, to the same
batches: ``speechbrain_meta.augment.EdgeSilence``) and ``voice_perturb``
(first of all, on the speech alone: e.g.
``speechbrain_meta.augment.VocalTractPerturb``); modules:
``normalize``, ``encoder``, ``ctc_lin``.

Authors
 * speechbrain-meta developers 2026
"""

import speechbrain as sb
import torch


def words(transcripts):
    """Transcripts as the error-rate trackers take them: lists of words.

    SpeechBrain's recipes give words to both trackers; the CER tracker
    (``split_tokens=True``) splits them into characters with one ``_``
    token at each word boundary (``"1 2"`` is ``1 _ 2``).

    Arguments
    ---------
    transcripts : list
        Strings, or lists of character labels (the space separates words).

    Returns
    -------
    list of list of str

    Example
    -------
    >>> words(["1 2", ["3", " ", "4"]])
    [['1', '2'], ['3', '4']]
    """
    return ["".join(t).split() for t in transcripts]


def transcript_error_stats(hypotheses, references):
    """SpeechBrain's CER and WER trackers, given transcripts as its
    recipes give them (``words``).

    Arguments
    ---------
    hypotheses : list of str
        Transcripts.
    references : list of str
        What was said.

    Returns
    -------
    tuple
        ``(cer, wer)``: ``ErrorRateStats`` (the CER one with
        ``split_tokens=True``), one entry per utterance.

    Example
    -------
    >>> cer, _ = transcript_error_stats(["5 1 2"], ["1 2"])
    >>> cer.summarize()["insertions"]
    2
    """
    from speechbrain.utils.metric_stats import ErrorRateStats

    cer, wer = ErrorRateStats(split_tokens=True), ErrorRateStats()
    ids = [str(i) for i in range(len(references))]
    hyp_words, ref_words = words(hypotheses), words(references)
    cer.append(ids, hyp_words, ref_words)
    wer.append(ids, hyp_words, ref_words)
    return cer, wer


def transcript_error_rates(hypotheses, references):
    """CER and WER of transcripts, as SpeechBrain's recipes count them.

    Arguments
    ---------
    hypotheses : list of str
        Transcripts.
    references : list of str
        What was said.

    Returns
    -------
    tuple of float
        ``(cer, wer)``, fractions pooled over the utterances.

    Example
    -------
    >>> cer, wer = transcript_error_rates(["1 2", "3"], ["1 2", "4"])
    >>> round(cer, 4), round(wer, 4)
    (0.25, 0.3333)
    """
    cer, wer = transcript_error_stats(hypotheses, references)
    return cer.summarize("error_rate") / 100, wer.summarize("error_rate") / 100


class ErrorRateBrain(sb.Brain):
    """An ASR Brain scored by its error rates, whatever its decoder.

    Fresh ``cer_metric`` and ``wer_metric`` trackers (the ``cer_computer``
    and ``wer_computer`` hparams; a ``bleu_metric`` too where there is a
    ``bleu_computer``: a translation) at each evaluation stage and the
    scoring of hypotheses against ``batch.wrd`` or other references;
    validation checkpoints that keep the lowest CER (``checkpoint_meta``
    says what they record); and
    ``augmenting``, True only while ``fit_batch`` trains on a plain batch
    with a ``wav_augment`` hparam: a subclass's ``compute_forward``
    augments then, never an episode's support or query, nor a model that
    adapts (those also run at ``Stage.TRAIN``).

    Example
    -------
    >>> issubclass(CTCASR, ErrorRateBrain)
    True
    """

    augmenting = False  # True inside fit_batch of a plain training batch

    def on_stage_start(self, stage, epoch=None):
        """Fresh error-rate trackers for each evaluation stage.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        epoch : int, optional
            The epoch.
        """
        if stage != sb.Stage.TRAIN:
            self.cer_metric = self.hparams.cer_computer()
            self.wer_metric = self.hparams.wer_computer()
            bleu = getattr(self.hparams, "bleu_computer", None)
            self.bleu_metric = None if bleu is None else bleu()

    def fit_batch(self, batch):
        """``sb.Brain.fit_batch``, with ``wav_augment`` on the batch.

        Arguments
        ---------
        batch : PaddedBatch
            A plain training batch.

        Returns
        -------
        torch.Tensor
            The detached loss.
        """
        self.augmenting = getattr(self.hparams, "wav_augment", None) is not None
        try:
            return super().fit_batch(batch)
        finally:
            self.augmenting = False

    def augment(self, wavs, wav_lens):
        """A plain training batch's waveforms augmented: ``voice_perturb``
        and ``edge_silence`` (where the recipe has them), then
        ``wav_augment``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor
            Relative lengths.

        Returns
        -------
        tuple
            ``(wavs, wav_lens)``; ``wav_augment.replicate_labels`` gives
            the labels of the copies it may add.
        """
        voice_perturb = getattr(self.hparams, "voice_perturb", None)
        if voice_perturb is not None:
            wavs = voice_perturb(wavs, wav_lens)
        edge_silence = getattr(self.hparams, "edge_silence", None)
        if edge_silence is not None:
            wavs, wav_lens = edge_silence(wavs, wav_lens)
        return self.hparams.wav_augment(wavs, wav_lens)

    def track_error_rates(self, batch, hyps, refs=None):
        """Scores hypotheses against the batch's transcripts (or other
        references: a translation recipe's); BLEU too where the recipe
        has a ``bleu_computer``.

        Arguments
        ---------
        batch : PaddedBatch
            Has ``id`` and ``wrd``.
        hyps : list
            Per utterance, its characters: a string, or a list of labels
            (the space separates the words).
        refs : list of str, optional
            The references (default: ``batch.wrd``).
        """
        refs = batch.wrd if refs is None else refs
        hyp_words, ref_words = words(hyps), words(refs)
        self.cer_metric.append(batch.id, hyp_words, ref_words)
        self.wer_metric.append(batch.id, hyp_words, ref_words)
        if getattr(self, "bleu_metric", None) is not None:
            self.bleu_metric.append(
                batch.id, ["".join(h) for h in hyps], [list(refs)]
            )

    def checkpoint_meta(self, stats, epoch):
        """What a validation checkpoint records (a recipe may add to it).

        Arguments
        ---------
        stats : dict
            The validation statistics (``CER``, ``WER``, ``loss``).
        epoch : int
            The epoch.

        Returns
        -------
        dict
        """
        return {"CER": stats["CER"], "updates": self.optimizer_step}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; checkpoints on validation CER; keeps the test statistics.

        Arguments
        ---------
        stage : sb.Stage
            The stage.
        stage_loss : float
            Its mean loss.
        epoch : int, optional
            The epoch.
        """
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["CER"] = self.cer_metric.summarize("error_rate")
        stats["WER"] = self.wer_metric.summarize("error_rate")
        if getattr(self, "bleu_metric", None) is not None:
            stats["BLEU"] = self.bleu_metric.summarize("BLEU")
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "updates": self.optimizer_step},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta=self.checkpoint_meta(stats, epoch),
                min_keys=["CER"],
                # As many as are averaged at the end (average_checkpoints).
                num_to_keep=max(
                    1, int(getattr(self.hparams, "average_checkpoints", 1))
                ),
                ckpt_predicate=lambda c: (
                    not (c.meta.get("keep") or c.meta.get("averaged"))
                ),
            )
        else:
            self.test_stats = stats
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )


class CTCASR(ErrorRateBrain):
    """Waveform -> features -> normalisation -> encoder -> CTC.

    The label encoder is the ``tokenizer`` attribute (a ``CTCTextEncoder``,
    see ``add_ctc_pipelines``). Validation and test stages decode greedily
    and fill ``cer_metric`` (characters) and ``wer_metric`` (words);
    validation checkpoints keep the lowest CER.

    Example
    -------
    >>> from speechbrain_meta.brains import meta_brain_class
    >>> issubclass(meta_brain_class(CTCASR), CTCASR)
    True
    """

    def compute_forward(self, batch, stage):
        """CTC log-probabilities of a batch.

        Arguments
        ---------
        batch : PaddedBatch
            Has ``sig``.
        stage : sb.Stage
            The stage.

        Returns
        -------
        tuple
            ``(log_probs, wav_lens)``.
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        if self.augmenting and stage == sb.Stage.TRAIN:
            wavs, wav_lens = self.augment(wavs, wav_lens)
        return self.log_probs(wavs, wav_lens), wav_lens

    def frame_log_probs(self, predictions):
        """The CTC frame posteriors of ``compute_forward``'s predictions.

        Arguments
        ---------
        predictions : tuple
            ``(log_probs, wav_lens)``.

        Returns
        -------
        tuple
            ``(log_probs, wav_lens)``.
        """
        return predictions

    def log_probs(self, wavs, wav_lens):
        """CTC log-probabilities of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor
            Relative lengths.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, labels]``.
        """
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        if getattr(self.hparams, "encoder_takes_lengths", False):
            encoded = self.modules.encoder(feats, wav_lens)
        else:
            encoded = self.modules.encoder(feats)
        logits = self.modules.ctc_lin(encoded)
        return self.hparams.log_softmax(logits)

    def tokenize(self, text):
        """The batch items of a transcript: ``tokens`` (label indices).

        Arguments
        ---------
        text : str
            A transcript in the label encoder's characters.

        Returns
        -------
        dict
            Name to tensor.
        """
        return {
            "tokens": torch.LongTensor(
                self.tokenizer.encode_sequence(list(text))
            )
        }

    def decode(self, log_probs, wav_lens):
        """Greedy CTC decoding.

        Arguments
        ---------
        log_probs : torch.Tensor
            ``[batch, frames, labels]``.
        wav_lens : torch.Tensor
            Relative lengths.

        Returns
        -------
        tuple
            ``(labels, tokens)``: per utterance, its labels and their
            indices.
        """
        tokens = sb.decoders.ctc_greedy_decode(
            log_probs, wav_lens, blank_id=self.hparams.blank_index
        )
        return [list(self.tokenizer.decode_ndim(t)) for t in tokens], tokens

    def transcribe(self, wavs, wav_lens):
        """Greedy CTC transcripts of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor
            Relative lengths.

        Returns
        -------
        tuple
            ``(words, tokens)``: a string and a list of label indices per
            utterance.
        """
        with torch.no_grad():
            labels, tokens = self.decode(
                self.log_probs(wavs, wav_lens), wav_lens
            )
        return ["".join(h) for h in labels], tokens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; greedy decoding and CER/WER outside training.

        Arguments
        ---------
        predictions : tuple
            From ``compute_forward``.
        batch : PaddedBatch
            Has ``tokens``, ``wrd`` and ``id``.
        stage : sb.Stage
            The stage.

        Returns
        -------
        torch.Tensor
            The CTC loss.
        """
        p_ctc, wav_lens = predictions
        tokens, tokens_lens = batch.tokens
        if self.augmenting and stage == sb.Stage.TRAIN:
            # The augmenter may add augmented copies to the batch.
            tokens = self.hparams.wav_augment.replicate_labels(tokens)
            tokens_lens = self.hparams.wav_augment.replicate_labels(tokens_lens)
        loss = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        if stage != sb.Stage.TRAIN:
            self.track_error_rates(batch, self.decode(p_ctc, wav_lens)[0])
        return loss


def add_ctc_pipelines(
    datasets, label_encoder_file, blank_index, train="train", labels=None
):
    """Audio and character pipelines, and the label encoder of the training set.

    Arguments
    ---------
    datasets : dict of str:DynamicItemDataset
        The splits; each row has ``wav`` and ``wrd``.
    label_encoder_file : str
        Where the label encoder is saved (and loaded from on a rerun).
    blank_index : int
        The CTC blank's index.
    train : str
        The split whose characters make the label set.
    labels : iterable of str, optional
        The label set itself (a corpus's alphabet, the same whatever
        subset of it is read), in place of the training set's characters.

    Returns
    -------
    CTCTextEncoder
        The label encoder; the datasets provide ``sig``, ``char_list`` and
        ``tokens``.

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> rows = {"a": {"wav": "a.wav", "wrd": "1 2"}}
    >>> data = {"train": DynamicItemDataset(rows)}
    >>> encoder = add_ctc_pipelines(
    ...     data, os.path.join(tempfile.mkdtemp(), "labels.txt"), 0)
    >>> sorted(encoder.lab2ind)
    [' ', '1', '2', '<blank>']
    >>> encoder = add_ctc_pipelines(
    ...     data, os.path.join(tempfile.mkdtemp(), "labels.txt"), 0,
    ...     labels="0123456789 ")
    >>> len(encoder)
    12
    """

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    label_encoder = sb.dataio.encoder.CTCTextEncoder()

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("char_list", "tokens")
    def text_pipeline(wrd):
        char_list = list(wrd)
        yield char_list
        yield torch.LongTensor(label_encoder.encode_sequence(char_list))

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    if labels is None:
        source = {"from_didatasets": [datasets[train]], "sequence_input": True}
    else:
        source = {"from_iterables": [sorted(labels)], "sequence_input": False}
    label_encoder.load_or_create(
        path=label_encoder_file,
        output_key="char_list",
        special_labels={"blank_label": blank_index},
        **source,
    )
    return label_encoder
