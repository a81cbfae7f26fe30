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
import re

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.utils.metric_stats import ErrorRateStats

from speechbrain_meta.asr import ErrorRateBrain
from speechbrain_meta.losses import ctc_loss

HPARAMS_FILE = "hyperparams.yaml"


def _top_level_keys(path):
    with open(path, encoding="utf-8") as fin:
        return set(re.findall(r"^([A-Za-z_]\w*)\s*:", fin.read(), re.M))


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

    Example
    -------
    >>> is_hub_model("/nonexistent")
    False
    """
    path = os.path.join(str(folder), HPARAMS_FILE)
    if not os.path.isfile(path):
        return False
    return {"modules", "pretrainer", "tokenizer"} <= _top_level_keys(path)


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

    keys = _top_level_keys(os.path.join(str(source), HPARAMS_FILE))
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
    have from a plain SpeechBrain recipe. For a model whose encoder does
    not take lengths, without task parameters (``joint`` and the
    meta-initialisation methods).

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
    if source.get("encoder_takes_lengths") or "adapters" in source:
        raise ValueError(
            f"{export_folder}: an encoder that takes lengths or has task "
            "parameters is not written as an EncoderASR here"
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


HUB_SEQ2SEQ_TAIL = """tokenizer: !new:sentencepiece.SentencePieceProcessor
asr_model: !new:torch.nn.ModuleList
    - [!ref <enc>, !ref <emb>, !ref <dec>, !ref <seq_lin>]
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    normalize: !ref <normalize>
    model: !ref <enc>
decoder: !new:speechbrain.decoders.S2SRNNBeamSearcher
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
modules:
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
    models are laid out (``hyperparams.yaml``: the run's feature pipeline,
    normalisation, encoder, embedding, attentional decoder and output
    layer, an ``S2SRNNBeamSearcher`` over them, a SentencePiece tokenizer, a
    ``Pretrainer`` reading ``asr.ckpt``, ``normalizer.ckpt`` and
    ``tokenizer.ckpt`` from the folder); ``AdaptiveASR`` loads it too, and
    adapts it from k (audio, text) pairs by the decoder's NLL. The speech
    translation recipes write their models so: a translation is what it
    "transcribes". Nothing of the meta-learning is kept; for models without
    task parameters (``joint`` and the meta-initialisation methods).

    Arguments
    ---------
    run_folder : str
        The run's output folder (its ``hyperparams.yaml``: ``compute_features``,
        ``normalize``, ``encoder``, ``modules`` with ``emb``, ``decoder`` and
        ``seq_lin``, ``bos_index``, ``eos_index``, ``beam_size``,
        ``max_decode_ratio``, ``eos_threshold``).
    modules : torch.nn.ModuleDict
        The trained modules (``normalize``, ``encoder``, ``emb``,
        ``decoder``, ``seq_lin``).
    tokenizer_file : str
        The SentencePiece model (``.model``).
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
        "eos_threshold",
        "compute_features",
        "normalize",
    ]
    out = {key: source[key] for key in keys}
    out["enc"] = source["encoder"]  # "encoder" is the whole pipeline here
    out["emb"] = source["modules"]["emb"]
    out["dec"] = source["modules"]["decoder"]
    out["seq_lin"] = source["modules"]["seq_lin"]
    _write_hub_yaml(
        out, HUB_SEQ2SEQ_TAIL, "EncoderDecoderASR", run_folder, hub_folder
    )
    model = torch.nn.ModuleList(
        [modules[name] for name in ("encoder", "emb", "decoder", "seq_lin")]
    )
    torch.save(
        {k: v.cpu() for k, v in model.state_dict().items()},
        os.path.join(hub_folder, "asr.ckpt"),
    )
    modules["normalize"]._save(os.path.join(hub_folder, "normalizer.ckpt"))
    shutil.copyfile(tokenizer_file, os.path.join(hub_folder, "tokenizer.ckpt"))
    return hub_folder
