"""SpeechBrain's pretrained ASR models, as they are on disk, made adaptable.

A folder in SpeechBrain's hub format (``hyperparams.yaml`` with ``modules``,
a ``pretrainer`` and a ``tokenizer``, beside the files the pretrainer
loads) is loaded by SpeechBrain's own interface class: ``EncoderASR`` when
the yaml has a ``decoding_function`` (CTC: ``modules.encoder`` maps
waveforms to output scores, the decoding function decodes them), otherwise
``EncoderDecoderASR`` (``modules.encoder`` and ``modules.decoder``, a
sequence-to-sequence beam searcher). The Brains here put such a model
behind the package's adaptation, with the model's own tokenizer (a
SentencePiece model or a ``CTCTextEncoder``) and decoding:

* ``HubCTC``: the CTC loss of the encoder's output (made log-probabilities
  by a log-softmax, which changes nothing when the model already ends in
  one); decoding is the model's ``decoding_function``.
* ``HubSeq2Seq``: the attention decoder's negative log-likelihood under
  teacher forcing, computed with the beam searcher's own parts
  (``S2SRNNBeamSearcher``: ``emb``, ``dec``, ``fc``;
  ``S2STransformerBeamSearcher``: ``model.decode``, ``fc``), plus, when the
  searcher scores with a CTC head, that head's CTC loss with the weight
  the beam search gives it (``searcher.ctc_weight``), the rest to the
  decoder's loss; decoding is the beam search.

Authors
 * speechbrain-meta developers 2026
"""

import os

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.utils.metric_stats import ErrorRateStats

from speechbrain_meta.asr import ErrorRateBrain
from speechbrain_meta.layered_yaml import layer_keys
from speechbrain_meta.losses import ctc_loss

HPARAMS_FILE = "hyperparams.yaml"


def is_hub_model(folder):
    """Whether a folder looks like a SpeechBrain hub-format ASR model.

    Arguments
    ---------
    folder : str
        The folder.

    Returns
    -------
    bool
        True when its ``hyperparams.yaml`` has ``modules``, ``pretrainer``
        and ``tokenizer``.

    Raises
    ------
    ruamel.yaml.YAMLError
        When that file is not valid YAML (the message names the file and
        the line); SpeechBrain's loader would fail on it the same way.

    Example
    -------
    >>> is_hub_model("/nonexistent")
    False
    """
    path = os.path.join(str(folder), HPARAMS_FILE)
    if not os.path.isfile(path):
        return False
    return {"modules", "pretrainer", "tokenizer"} <= set(layer_keys(path))


def load_hub_model(source, savedir=None, run_opts=None):
    """Loads a hub-format folder with SpeechBrain's own interface.

    Arguments
    ---------
    source : str
        The model's folder (local: nothing is downloaded here).
    savedir : str, optional
        Where the pretrainer collects the files (SpeechBrain's ``savedir``).
    run_opts : dict, optional
        SpeechBrain run options (``device``).

    Returns
    -------
    EncoderASR or EncoderDecoderASR
        ``EncoderASR`` when the yaml has a ``decoding_function``.
    """
    from speechbrain.inference.ASR import EncoderASR, EncoderDecoderASR

    keys = layer_keys(os.path.join(str(source), HPARAMS_FILE))
    interface = (
        EncoderASR if "decoding_function" in keys else (EncoderDecoderASR)
    )
    return interface.from_hparams(
        source=str(source), savedir=savedir, run_opts=run_opts or {}
    )


def text_to_ids(tokenizer, text):
    """Token indices of a transcript under the model's tokenizer.

    Arguments
    ---------
    tokenizer : CTCTextEncoder or sentencepiece.SentencePieceProcessor
        The model's tokenizer.
    text : str
        A transcript.

    Returns
    -------
    list of int

    Example
    -------
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable("ab ", sequence_input=True)
    >>> text_to_ids(encoder, "ba")
    [1, 0]
    """
    if isinstance(tokenizer, CTCTextEncoder):
        return tokenizer.encode_sequence(list(text))
    return list(tokenizer.encode_as_ids(text))


def ids_to_text(tokenizer, ids):
    """A transcript from token indices, as SpeechBrain's interfaces write it.

    Arguments
    ---------
    tokenizer : CTCTextEncoder or sentencepiece.SentencePieceProcessor
        The model's tokenizer.
    ids : list of int
        Token indices.

    Returns
    -------
    str

    Example
    -------
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable("ab ", sequence_input=True)
    >>> ids_to_text(encoder, [1, 2, 0])
    'b a'
    """
    ids = [int(i) for i in ids]
    if isinstance(tokenizer, CTCTextEncoder):
        return "".join(tokenizer.decode_ndim(ids))
    return tokenizer.decode_ids(ids)


def tokenizer_characters(tokenizer):
    """The characters a tokenizer can write (space included).

    Arguments
    ---------
    tokenizer : CTCTextEncoder or sentencepiece.SentencePieceProcessor
        The model's tokenizer.

    Returns
    -------
    set of str

    Example
    -------
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable("ab ", sequence_input=True)
    >>> sorted(tokenizer_characters(encoder))
    [' ', 'a', 'b']
    """
    if isinstance(tokenizer, CTCTextEncoder):
        labels = tokenizer.lab2ind
    else:
        labels = [
            tokenizer.id_to_piece(i)
            for i in range(tokenizer.get_piece_size())
            if not (
                tokenizer.is_unknown(i)
                or tokenizer.is_control(i)
                or tokenizer.is_unused(i)
            )
        ]
    chars = {c for label in labels if isinstance(label, str) for c in label}
    return {" " if c == "\u2581" else c for c in chars}


class HubASR(ErrorRateBrain):
    """What both hub Brains share: the tokenizer (and, from
    ``ErrorRateBrain``, the error trackers).

    Hyperparameters: ``tokenizer`` (the model's), ``cer_computer`` and
    ``wer_computer`` (``ErrorRateStats`` factories).
    """

    def tokenize(self, text):
        """The batch items of a transcript (``tokens``).

        Arguments
        ---------
        text : str
            A transcript.

        Returns
        -------
        dict
            Name to tensor.
        """
        return {
            "tokens": torch.LongTensor(
                text_to_ids(self.hparams.tokenizer, text)
            )
        }

    def _as_model_dtype(self, wavs):
        """Waveforms in the model's floating type (float32 as SpeechBrain's
        interfaces give, unless the model was made float64).
        """
        dtype = next(self.modules.parameters()).dtype
        return wavs.double() if dtype == torch.float64 else wavs.float()


class HubCTC(HubASR):
    """An ``EncoderASR`` model's CTC loss and decoding, as a Brain.

    Hyperparameters (beside ``HubASR``'s): ``decoding_function`` (the
    model's, as ``EncoderASR`` sets it) and ``blank_index``.

    Example
    -------
    >>> from speechbrain_meta.brains import meta_brain_class
    >>> issubclass(meta_brain_class(HubCTC), HubCTC)
    True
    """

    def log_probs(self, wavs, wav_lens):
        """Output log-probabilities of waveforms.

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
        scores = self.modules.encoder(self._as_model_dtype(wavs), wav_lens)
        return torch.log_softmax(scores, dim=-1)

    def compute_forward(self, batch, stage):
        """``(log_probs, wav_lens)`` of a batch with ``sig``."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        return self.log_probs(wavs, wav_lens), wav_lens

    def frame_log_probs(self, predictions):
        """The CTC frame posteriors of ``compute_forward``'s predictions."""
        return predictions

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; the model's decoding and CER/WER outside training."""
        log_probs, wav_lens = predictions
        tokens, token_lens = batch.tokens
        loss = ctc_loss(
            log_probs, tokens, wav_lens, token_lens, self.hparams.blank_index
        )
        if stage != sb.Stage.TRAIN:
            self.track_error_rates(batch, self.decode(log_probs, wav_lens)[0])
        return loss

    def decode(self, log_probs, wav_lens):
        """Words and tokens from log-probabilities, the model's own way.

        Arguments
        ---------
        log_probs : torch.Tensor
            ``[batch, frames, labels]``.
        wav_lens : torch.Tensor
            Relative lengths.

        Returns
        -------
        tuple
            ``(words, tokens)`` as ``EncoderASR.transcribe_batch``.
        """
        predictions = self.hparams.decoding_function(log_probs, wav_lens)
        if predictions and not isinstance(predictions[0], (list, tuple)):
            predictions = [list(p) for p in predictions]
        if (
            predictions
            and predictions[0]
            and hasattr(predictions[0][0], "text")
        ):
            return [hyps[0].text for hyps in predictions], predictions
        tokenizer = self.hparams.tokenizer
        return [ids_to_text(tokenizer, p) for p in predictions], predictions

    def transcribe(self, wavs, wav_lens):
        """``(words, tokens)`` of a batch of waveforms."""
        with torch.no_grad():
            return self.decode(self.log_probs(wavs, wav_lens), wav_lens)


class HubSeq2Seq(HubASR):
    """An ``EncoderDecoderASR`` model's loss and beam search, as a Brain.

    Hyperparameters (beside ``HubASR``'s): ``transformer_beam_search`` (as
    in the model's yaml: the encoder's output then goes through
    ``modules.transformer.encode``).

    Example
    -------
    >>> from speechbrain_meta.brains import meta_brain_class
    >>> issubclass(meta_brain_class(HubSeq2Seq), HubSeq2Seq)
    True
    """

    @property
    def searcher(self):
        """The model's beam searcher (``modules.decoder``)."""
        return self.modules.decoder

    def ctc_head(self):
        """The searcher's CTC scorer, or None."""
        scorer = getattr(self.searcher, "scorer", None)
        if scorer is None or self.searcher.ctc_weight <= 0:
            return None
        return {**scorer.full_scorers, **scorer.partial_scorers}["ctc"]

    def tokenize(self, text):
        """``tokens``, ``tokens_bos`` and ``tokens_eos`` of a transcript."""
        ids = text_to_ids(self.hparams.tokenizer, text)
        bos, eos = self.searcher.bos_index, self.searcher.eos_index
        return {
            "tokens": torch.LongTensor(ids),
            "tokens_bos": torch.LongTensor([bos] + ids),
            "tokens_eos": torch.LongTensor(ids + [eos]),
        }

    def encode(self, wavs, wav_lens):
        """The encoder states the decoder attends to."""
        states = self.modules.encoder(self._as_model_dtype(wavs), wav_lens)
        if getattr(self.hparams, "transformer_beam_search", False):
            states = self.modules.transformer.encode(states, wav_lens)
        return states

    def compute_forward(self, batch, stage):
        """Encoder states and the decoder's teacher-forced log-probabilities
        (None for a batch of audio alone, which has no ``tokens_bos``).
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        states = self.encode(wavs, wav_lens)
        if not hasattr(batch, "tokens_bos"):  # adaptation without text
            return {"states": states, "p_seq": None, "wav_lens": wav_lens}
        tokens_bos, _ = batch.tokens_bos
        searcher = self.searcher
        if hasattr(searcher, "dec"):  # S2SRNNBeamSearcher
            hidden, _ = searcher.dec(searcher.emb(tokens_bos), states, wav_lens)
        else:  # S2STransformerBeamSearcher
            enc_lens = torch.round(states.shape[1] * wav_lens).int()
            hidden, _ = searcher.model.decode(tokens_bos, states, enc_lens)
        p_seq = torch.log_softmax(searcher.fc(hidden), dim=-1)
        return {"states": states, "p_seq": p_seq, "wav_lens": wav_lens}

    def frame_log_probs(self, predictions):
        """The CTC head's frame posteriors, which adaptation without
        transcripts scores (a model whose beam search has no CTC scorer
        has none: refused).

        Arguments
        ---------
        predictions : dict
            From ``compute_forward``.

        Returns
        -------
        tuple
            ``(log_probs, wav_lens)``.
        """
        ctc = self.ctc_head()
        if ctc is None:
            raise NotImplementedError(
                "this attention model's beam search has no CTC scorer: "
                "adaptation without transcripts scores CTC posteriors"
            )
        log_probs = torch.log_softmax(ctc.ctc_fc(predictions["states"]), -1)
        return log_probs, predictions["wav_lens"]

    def compute_objectives(self, predictions, batch, stage):
        """NLL (+ the searcher's CTC weight of CTC); beam search outside
        training.
        """
        wav_lens = predictions["wav_lens"]
        tokens_eos, eos_lens = batch.tokens_eos
        loss = sb.nnet.losses.nll_loss(
            predictions["p_seq"], tokens_eos, length=eos_lens
        )
        ctc = self.ctc_head()
        if ctc is not None:
            weight = self.searcher.ctc_weight
            p_ctc = torch.log_softmax(ctc.ctc_fc(predictions["states"]), -1)
            tokens, token_lens = batch.tokens
            ctc_value = ctc_loss(
                p_ctc, tokens, wav_lens, token_lens, ctc.blank_index
            )
            loss = weight * ctc_value + (1 - weight) * loss
        if stage != sb.Stage.TRAIN:
            self.track_error_rates(
                batch, self.search(predictions["states"], wav_lens)[0]
            )
        return loss

    def search(self, states, wav_lens):
        """``(words, tokens)`` by the model's beam search."""
        with torch.no_grad():
            tokens, _, _, _ = self.searcher(states, wav_lens)
        words = [ids_to_text(self.hparams.tokenizer, t) for t in tokens]
        return words, tokens

    def transcribe(self, wavs, wav_lens):
        """``(words, tokens)`` of a batch of waveforms."""
        with torch.no_grad():
            return self.search(self.encode(wavs, wav_lens), wav_lens)


def hub_brain_hparams(interface):
    """The hparams a hub Brain needs, from SpeechBrain's interface object.

    Arguments
    ---------
    interface : EncoderASR or EncoderDecoderASR
        The loaded model.

    Returns
    -------
    tuple
        ``(brain class, hparams dict)``.
    """
    import functools

    hparams = {
        "tokenizer": interface.tokenizer,
        "cer_computer": functools.partial(ErrorRateStats, split_tokens=True),
        "wer_computer": ErrorRateStats,
    }
    if hasattr(interface, "decoding_function"):
        decoding = interface.decoding_function
        keywords = getattr(decoding, "keywords", {})
        blank = keywords.get("blank_id", getattr(decoding, "blank_index", 0))
        hparams.update(decoding_function=decoding, blank_index=int(blank))
        return HubCTC, hparams
    hparams["transformer_beam_search"] = interface.transformer_beam_search
    return HubSeq2Seq, hparams


HUB_CTC_TAIL = """tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder
asr_model: !new:torch.nn.ModuleList
    - [!ref <enc>, !ref <ctc_lin>]
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    model: !ref <enc>
    ctc_lin: !ref <ctc_lin>
    log_softmax: !ref <log_softmax>
decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: !ref <blank_index>
modules:
    encoder: !ref <encoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        asr: !ref <asr_model>
        normalizer: !ref <normalize>
        tokenizer: !ref <tokenizer>
"""


def _write_hub_yaml(values, tail, interface, source_folder, hub_folder):
    """A hub folder's ``hyperparams.yaml``: the model's values (in order),
    then the interface's wiring (``tail``).
    """
    from io import StringIO

    import ruamel.yaml

    stream = StringIO()
    ruamel.yaml.YAML().dump(ruamel.yaml.comments.CommentedMap(values), stream)
    os.makedirs(hub_folder, exist_ok=True)
    path = os.path.join(hub_folder, HPARAMS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            f"# An {interface} written from {os.path.abspath(source_folder)}\n"
            + stream.getvalue()
            + tail
        )


def write_encoder_asr(export_folder, hub_folder):
    """Writes a model exported by this package as a SpeechBrain hub folder.

    The folder an ``EncoderASR`` loads as SpeechBrain's own CTC models are
    laid out: ``hyperparams.yaml`` (the export's feature pipeline,
    normalisation and modules; ``encoder`` a ``LengthsCapableSequential``
    of them ending in the log-softmax; a ``CTCTextEncoder`` tokenizer; greedy
    CTC decoding; a ``Pretrainer`` reading ``asr.ckpt``, ``normalizer.ckpt``
    and ``tokenizer.ckpt`` from the folder, the hub's default source).
    Nothing of the meta-learning is kept: it is the model a user would
    have from a plain SpeechBrain recipe. For a model without task
    parameters (``joint`` and the meta-initialisation methods); an encoder
    that takes lengths (``speechbrain_meta.crdnn.LengthsCapableCRDNN``)
    gets the relative lengths from the ``LengthsCapableSequential``.

    Arguments
    ---------
    export_folder : str
        A folder written by ``speechbrain_meta.inference.export_model``.
    hub_folder : str
        Where the hub folder goes.

    Returns
    -------
    str
        ``hub_folder``.
    """
    import shutil

    import ruamel.yaml

    with open(os.path.join(export_folder, HPARAMS_FILE), encoding="utf-8") as f:
        source = ruamel.yaml.YAML().load(f)
    if "adapters" in source:
        raise ValueError(
            f"{export_folder}: a model with task parameters is not written "
            "as an EncoderASR here"
        )
    keys = [
        "sample_rate",
        "blank_index",
        "compute_features",
        "log_softmax",
        "normalize",
        "ctc_lin",
    ]
    out = {key: source[key] for key in keys}
    out["enc"] = source["encoder"]  # "encoder" is the whole pipeline here
    _write_hub_yaml(out, HUB_CTC_TAIL, "EncoderASR", export_folder, hub_folder)
    parts = [
        torch.load(
            os.path.join(export_folder, f"{name}.ckpt"), map_location="cpu"
        )
        for name in ("encoder", "ctc_lin")
    ]
    torch.save(
        {
            f"{i}.{k}": v
            for i, part in enumerate(parts)
            for k, v in part.items()
        },
        os.path.join(hub_folder, "asr.ckpt"),
    )
    shutil.copyfile(
        os.path.join(export_folder, "normalize.ckpt"),
        os.path.join(hub_folder, "normalizer.ckpt"),
    )
    shutil.copyfile(
        os.path.join(export_folder, "label_encoder.ckpt"),
        os.path.join(hub_folder, "tokenizer.ckpt"),
    )
    return hub_folder


def char_tokenizer(label_encoder, model_file):
    """A SentencePiece model with a character label encoder's ids.

    SpeechBrain's ``EncoderDecoderASR`` writes its hypotheses with the
    tokenizer's ``decode_ids`` (SentencePiece's), so a model trained over a
    ``CTCTextEncoder``'s characters (blank, bos, eos, then the characters,
    as the attention recipes here) goes to the hub format with this
    SentencePiece model: its pieces are the label encoder's labels at the
    same ids (blank as the unknown piece, bos and eos as ``<s>`` and
    ``</s>``, every character a piece of its own, the space as ``▁``), so
    the trained output layer is used as it is. Trained by SentencePiece's
    own trainer (BPE with every character a user-defined symbol: nothing is
    merged).

    Arguments
    ---------
    label_encoder : CTCTextEncoder
        With ``blank_label`` 0, ``bos_label`` 1 and ``eos_label`` 2.
    model_file : str
        Where the ``.model`` file goes.

    Returns
    -------
    str
        ``model_file``.

    Example
    -------
    >>> import tempfile
    >>> import sentencepiece
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(" 0123", sequence_input=False)
    >>> encoder.insert_blank(index=0)
    >>> encoder.insert_bos_eos(bos_index=1, eos_index=2)
    >>> path = char_tokenizer(encoder, tempfile.mkdtemp() + "/chars.model")
    >>> sp = sentencepiece.SentencePieceProcessor(model_file=path)
    >>> ids = [encoder.lab2ind[c] for c in "01 32"]
    >>> sp.encode("01 32") == ids, sp.decode_ids(ids)
    (True, '01 32')
    """
    import io

    import sentencepiece

    specials = [
        getattr(label_encoder, name, None)
        for name in ("blank_label", "bos_label", "eos_label")
    ]
    labels = [label_encoder.ind2lab[i] for i in range(len(label_encoder))]
    if [label_encoder.lab2ind.get(label) for label in specials] != [0, 1, 2]:
        raise ValueError(
            "char_tokenizer: the label encoder needs blank 0, bos 1, eos 2"
        )
    chars = labels[3:]
    if any(not isinstance(c, str) or len(c) != 1 for c in chars):
        raise ValueError(
            f"char_tokenizer: labels that are not characters: {chars}"
        )
    pieces = ["\u2581" if c == " " else c for c in chars]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["".join(chars)]),
        model_writer=model,
        model_type="bpe",
        vocab_size=len(labels),
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece=str(labels[0]),
        user_defined_symbols=pieces,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        character_coverage=1.0,
        minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(
        model_proto=model.getvalue()
    )
    written = [processor.id_to_piece(i) for i in range(3, len(labels))]
    if written != pieces:  # never expected: SentencePiece kept the order
        raise RuntimeError(f"char_tokenizer: pieces {written} != {pieces}")
    os.makedirs(os.path.dirname(os.path.abspath(model_file)), exist_ok=True)
    with open(model_file, "wb") as f:
        f.write(model.getvalue())
    return model_file


def write_char_encoder_decoder(run_folder, modules, label_encoder, hub_folder):
    """``write_encoder_decoder`` for a model over a character label
    encoder: its SentencePiece twin (``char_tokenizer``) is the hub
    folder's tokenizer. The attention recipes write their models so.

    Arguments
    ---------
    run_folder : str
        The run's output folder.
    modules : torch.nn.ModuleDict
        The trained modules.
    label_encoder : CTCTextEncoder
        The model's labels (blank 0, bos 1, eos 2, then characters).
    hub_folder : str
        Where the hub folder goes.

    Returns
    -------
    str
        ``hub_folder``.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model_file = char_tokenizer(label_encoder, os.path.join(tmp, "c.model"))
        return write_encoder_decoder(
            run_folder, modules, model_file, hub_folder
        )


_HUB_TOKENIZER = "tokenizer: !new:sentencepiece.SentencePieceProcessor\n"
# The beam searchers' CTC scorer, for models whose beam search has one.
_HUB_CTC_SCORER = """ctc_scorer: !new:speechbrain.decoders.scorer.CTCScorer
    eos_index: !ref <eos_index>
    blank_index: !ref <blank_index>
    ctc_fc: !ref <ctc_lin>
scorer: !new:speechbrain.decoders.scorer.ScorerBuilder
    full_scorers: [!ref <ctc_scorer>]
    weights:
        ctc: !ref <ctc_weight_decode>
"""
_HUB_RNN_ENCODER = """\
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    model: !ref <enc>
"""
_HUB_RNN_SEARCHER = """decoder: !new:speechbrain.decoders.S2SRNNBeamSearcher
    embedding: !ref <emb>
    decoder: !ref <dec>
    linear: !ref <seq_lin>
    bos_index: !ref <bos_index>
    eos_index: !ref <eos_index>
    min_decode_ratio: 0.0
    max_decode_ratio: !ref <max_decode_ratio>
    beam_size: !ref <beam_size>
    eos_threshold: !ref <eos_threshold>
    using_max_attn_shift: False
"""
# Upstream's Transformer hub models: the encoder runs the front end and the
# Transformer's encoder (``EncoderWrapper``), the searcher its decoder.
_HUB_TRANSFORMER_ENCODER = (
    "transformer_encoder: !new:speechbrain.lobes.models.transformer."
    "TransformerASR.EncoderWrapper\n"
    """    transformer: !ref <transformer>
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    cnn: !ref <cnn>
    transformer_encoder: !ref <transformer_encoder>
"""
)
_HUB_TRANSFORMER_SEARCHER = """\
decoder: !new:speechbrain.decoders.S2STransformerBeamSearcher
    modules:
        - !ref <transformer>
        - !ref <seq_lin>
    bos_index: !ref <bos_index>
    eos_index: !ref <eos_index>
    min_decode_ratio: 0.0
    max_decode_ratio: !ref <max_decode_ratio>
    beam_size: !ref <beam_size>
    using_eos_threshold: False
    length_normalization: True
"""
_HUB_SEQ2SEQ_END = """modules:
    encoder: !ref <encoder>
    decoder: !ref <decoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        asr: !ref <asr_model>
        normalizer: !ref <normalize>
        tokenizer: !ref <tokenizer>
"""


def write_encoder_decoder(run_folder, modules, tokenizer_file, hub_folder):
    """Writes a trained attention model as a SpeechBrain hub folder.

    The folder an ``EncoderDecoderASR`` loads as SpeechBrain's own attention
    models are laid out: ``hyperparams.yaml`` with the run's feature
    pipeline, normalisation and model, a beam searcher over it, a
    SentencePiece tokenizer, a ``Pretrainer`` reading ``asr.ckpt``,
    ``normalizer.ckpt`` and ``tokenizer.ckpt`` from the folder.
    ``AdaptiveASR`` loads it too, and adapts it from k (audio, text) pairs
    by the decoder's NLL (plus the CTC head's loss when the beam search
    scores with it). Two layouts, after the run's modules:

    * an attentional RNN decoder (``modules``: ``emb``, ``decoder``,
      ``seq_lin``; the run's ``encoder`` the whole encoder):
      ``S2SRNNBeamSearcher``, as upstream's seq2seq models;
    * ``TransformerASR`` (``modules``: ``transformer``, ``seq_lin``; the
      run's ``encoder`` its convolutional front end): ``encoder`` runs the
      front end and the Transformer's encoder (``EncoderWrapper``),
      ``S2STransformerBeamSearcher`` its decoder, as upstream's Transformer
      and Conformer models.

    A run with ``ctc_weight_decode`` > 0 (a joint CTC/attention recogniser)
    keeps its CTC head (``ctc_lin``) as the beam search's scorer with that
    weight; without it (speech translation, whose CTC head transcribes the
    source language) the head is left out. Nothing of the meta-learning is
    kept; for models without task parameters (``joint`` and the
    meta-initialisation methods).

    Arguments
    ---------
    run_folder : str
        The run's output folder (its ``hyperparams.yaml``:
        ``compute_features``, ``normalize``, ``encoder``, ``modules``,
        ``bos_index``, ``eos_index``, ``beam_size``, ``max_decode_ratio``,
        ``eos_threshold`` for an RNN decoder; ``ctc_lin``, ``blank_index``
        and ``ctc_weight_decode`` for the CTC scorer).
    modules : torch.nn.ModuleDict
        The trained modules (``normalize``, ``encoder``, ``seq_lin``, and
        ``emb`` + ``decoder`` or ``transformer``; ``ctc_lin``).
    tokenizer_file : str
        The SentencePiece model (``.model``; ``char_tokenizer`` writes one
        for a character label encoder).
    hub_folder : str
        Where the hub folder goes.

    Returns
    -------
    str
        ``hub_folder``.
    """
    import shutil

    import ruamel.yaml
    from hyperpyyaml import resolve_references

    path = os.path.join(run_folder, HPARAMS_FILE)
    with open(path, encoding="utf-8") as f:  # values, not references
        source = ruamel.yaml.YAML().load(resolve_references(f.read()))
    if source.get("adapters") is not None:
        raise ValueError(
            f"{path}: a model with task parameters or adapters is not "
            "written as an EncoderDecoderASR here"
        )
    keys = [
        "sample_rate",
        "bos_index",
        "eos_index",
        "beam_size",
        "max_decode_ratio",
        "compute_features",
        "normalize",
    ]
    out = {key: source[key] for key in keys}
    if "transformer" in source["modules"]:
        out["cnn"] = source["encoder"]  # the front end
        out["transformer"] = source["modules"]["transformer"]
        parts = {"cnn": "encoder", "transformer": "transformer"}
        encoder, searcher = _HUB_TRANSFORMER_ENCODER, _HUB_TRANSFORMER_SEARCHER
    else:
        out["eos_threshold"] = source["eos_threshold"]
        out["enc"] = source["encoder"]  # "encoder" is the whole pipeline here
        out["emb"] = source["modules"]["emb"]
        out["dec"] = source["modules"]["decoder"]
        parts = {"enc": "encoder", "emb": "emb", "dec": "decoder"}
        encoder, searcher = _HUB_RNN_ENCODER, _HUB_RNN_SEARCHER
    out["seq_lin"] = source["modules"]["seq_lin"]
    parts["seq_lin"] = "seq_lin"
    scorer = ""
    if (source.get("ctc_weight_decode") or 0) > 0:
        out["ctc_lin"] = source["ctc_lin"]
        out["blank_index"] = source["blank_index"]
        out["ctc_weight_decode"] = source["ctc_weight_decode"]
        parts["ctc_lin"] = "ctc_lin"
        scorer, searcher = (
            _HUB_CTC_SCORER,
            searcher + "    scorer: !ref <scorer>\n",
        )
    asr_model = ", ".join(f"!ref <{name}>" for name in parts)
    tail = (
        _HUB_TOKENIZER
        + f"asr_model: !new:torch.nn.ModuleList\n    - [{asr_model}]\n"
        + encoder
        + scorer
        + searcher
        + _HUB_SEQ2SEQ_END
    )
    _write_hub_yaml(out, tail, "EncoderDecoderASR", run_folder, hub_folder)
    model = torch.nn.ModuleList([modules[name] for name in parts.values()])
    torch.save(
        {k: v.cpu() for k, v in model.state_dict().items()},
        os.path.join(hub_folder, "asr.ckpt"),
    )
    modules["normalize"]._save(os.path.join(hub_folder, "normalizer.ckpt"))
    shutil.copyfile(tokenizer_file, os.path.join(hub_folder, "tokenizer.ckpt"))
    return hub_folder
