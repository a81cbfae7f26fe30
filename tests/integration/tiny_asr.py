# ruff: noqa: E501
"""A tiny ASR setup for the integration tests: data, Brains and models.

Three model families, each built from yaml: a CRDNN CTC model, a Conformer
CTC model (TransformerASR encoder + CTC head) and a TransformerASR attention
model trained with joint CTC + NLL and decoded by beam search.
"""

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_meta.corpora.tones import prepare_tone_tasks

ALPHABET = "abcdef"
PAD, BOS, EOS = 0, 1, 2  # blank == pad == 0
CHAR_OFFSET = 3


def encode(word):
    return [CHAR_OFFSET + ALPHABET.index(c) for c in word]


def decode(ids):
    return "".join(ALPHABET[i - CHAR_OFFSET] for i in ids if i >= CHAR_OFFSET)


def make_datasets(folder, **corpus):
    paths = prepare_tone_tasks(folder, **corpus)
    datasets = {
        s: sb.dataio.dataset.DynamicItemDataset.from_csv(p)
        for s, p in paths.items()
    }

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens", "tokens_bos", "tokens_eos")
    def text_pipeline(wrd):
        ids = encode(wrd)
        yield torch.LongTensor(ids)
        yield torch.LongTensor([BOS] + ids)
        yield torch.LongTensor(ids + [EOS])

    sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(sets, text_pipeline)
    sb.dataio.dataset.set_output_keys(
        sets,
        ["id", "sig", "wrd", "spk_id", "tokens", "tokens_bos", "tokens_eos"],
    )
    return datasets


class TinyASR(sb.Brain):
    """An ordinary SpeechBrain Brain: CTC, or joint CTC + attention."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        out = {"wav_lens": wav_lens}
        if "encoder" in self.modules:  # CRDNN
            enc = self.modules.encoder(feats)
        else:  # TransformerASR
            src = self.modules.frontend(feats)
            if "seq_lin" in self.modules:
                tokens_bos, _ = batch.tokens_bos
                enc, dec = self.modules.transformer(
                    src, tokens_bos, wav_lens, pad_idx=PAD
                )
                out["p_seq"] = self.hparams.log_softmax(
                    self.modules.seq_lin(dec)
                )
                out["enc"] = enc
            else:
                enc = self.modules.transformer.encode(src, wav_lens)
        out["p_ctc"] = self.hparams.log_softmax(self.modules.ctc_lin(enc))
        return out

    def compute_objectives(self, predictions, batch, stage):
        wav_lens = predictions["wav_lens"]
        tokens, tokens_lens = batch.tokens
        loss = self.hparams.ctc_cost(
            predictions["p_ctc"], tokens, wav_lens, tokens_lens
        )
        if "p_seq" in predictions:
            tokens_eos, eos_lens = batch.tokens_eos
            nll = sb.nnet.losses.nll_loss(
                predictions["p_seq"], tokens_eos, length=eos_lens
            )
            w = self.hparams.ctc_weight
            loss = w * loss + (1 - w) * nll
        if stage != sb.Stage.TRAIN:
            if "p_seq" in predictions:
                hyps, _, _, _ = self.hparams.beam_searcher(
                    predictions["enc"].detach(), wav_lens
                )
            else:
                hyps = sb.decoders.ctc_greedy_decode(
                    predictions["p_ctc"], wav_lens, blank_id=PAD
                )
            words = [decode(h) for h in hyps]
            self.cer_metric.append(
                batch.id,
                [list(w) for w in words],
                [list(w) for w in batch.wrd],
            )
        return loss

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.cer_metric = sb.utils.metric_stats.ErrorRateStats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.last_stage_loss = stage_loss
        if stage != sb.Stage.TRAIN:
            self.last_cer = self.cer_metric.summarize("error_rate")


COMMON = """
n_mels: 20
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
normalize: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True
ctc_cost: !name:speechbrain_meta.losses.ctc_loss
    blank_index: 0
ctc_weight: 0.3
"""


def _transformer_asr(
    num_decoder_layers,
    encoder_module,
    attention_type,
    extra_args="",
    extra_modules="",
    extra_keys="",
):
    """A tiny TransformerASR (+ CTC head) model in yaml."""
    return (
        COMMON
        + f"""
frontend: !new:speechbrain.nnet.linear.Linear
    input_size: !ref <n_mels>
    n_neurons: 16
transformer: !new:speechbrain.lobes.models.transformer.TransformerASR.TransformerASR
    tgt_vocab: 9
    input_size: 16
    d_model: 16
    nhead: 2
    num_encoder_layers: 1
    num_decoder_layers: {num_decoder_layers}
    d_ffn: 32
    dropout: 0.0
    activation: !name:torch.nn.GELU
    encoder_module: {encoder_module}
    attention_type: {attention_type}
    normalize_before: True
    causal: False
{extra_args}ctc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 16
    n_neurons: 9
{extra_modules}modules:
    normalize: !ref <normalize>
    frontend: !ref <frontend>
    transformer: !ref <transformer>
    ctc_lin: !ref <ctc_lin>
{extra_keys}"""
    )


MODELS = {
    "crdnn": COMMON
    + """
encoder: !new:speechbrain.lobes.models.CRDNN.CRDNN
    input_shape: [null, null, !ref <n_mels>]
    dropout: 0.0
    cnn_blocks: 1
    cnn_channels: [8]
    cnn_kernelsize: (3, 3)
    inter_layer_pooling_size: [2]
    rnn_class: !name:speechbrain.nnet.RNN.LSTM
    rnn_layers: 1
    rnn_neurons: 16
    rnn_bidirectional: True
    dnn_blocks: 1
    dnn_neurons: 16
ctc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 16
    n_neurons: 9
modules:
    normalize: !ref <normalize>
    encoder: !ref <encoder>
    ctc_lin: !ref <ctc_lin>
""",
    "conformer": _transformer_asr(
        num_decoder_layers=0,
        encoder_module="conformer",
        attention_type="RelPosMHAXL",
        extra_args="    kernel_size: 3\n",
    ),
    "transformer": _transformer_asr(
        num_decoder_layers=1,
        encoder_module="transformer",
        attention_type="regularMHA",
        extra_modules="""
seq_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 16
    n_neurons: 9
beam_searcher: !new:speechbrain.decoders.seq2seq.S2STransformerBeamSearcher
    modules: [!ref <transformer>, !ref <seq_lin>]
    bos_index: 1
    eos_index: 2
    min_decode_ratio: 0.0
    max_decode_ratio: 1.0
    beam_size: 2
    using_eos_threshold: False
    length_normalization: True
""",
        extra_keys="    seq_lin: !ref <seq_lin>\n",
    ),
}


def load_model_hparams(name, extra=""):
    return load_hyperpyyaml(MODELS[name] + extra)


def episodes(n_support=3, n_query=3, per_epoch=4, seed=1, **kw):
    return {
        "episodes": dict(
            group_by="spk_id",
            n_support=n_support,
            n_query=n_query,
            episodes_per_epoch=per_epoch,
            seed=seed,
            **kw,
        )
    }
