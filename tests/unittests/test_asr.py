"""CTCASR with encoders given the lengths (a Conformer, a CRDNN): the padding
is masked."""

import torch
from speechbrain.lobes.models.transformer.TransformerASR import (
    EncoderWrapper,
    TransformerASR,
)
from speechbrain.nnet.activations import Softmax
from speechbrain.nnet.linear import Linear
from speechbrain.processing.features import InputNormalization

from speechbrain_meta.asr import CTCASR


def _asr(takes_lengths):
    torch.manual_seed(0)
    conformer = TransformerASR(
        input_size=6,
        tgt_vocab=5,
        d_model=16,
        nhead=2,
        num_encoder_layers=1,
        num_decoder_layers=0,
        d_ffn=32,
        dropout=0.0,
        encoder_module="conformer",
        attention_type="RelPosMHAXL",
        activation=torch.nn.GELU,
        normalize_before=True,
        kernel_size=3,
        causal=False,  # the frames attend to later ones, padding included
    )
    modules = {
        "normalize": InputNormalization(norm_type="sentence"),
        "encoder": EncoderWrapper(conformer),
        "ctc_lin": Linear(input_size=16, n_neurons=5),
    }
    hparams = {
        # Features in, to compare frame by frame.
        "compute_features": torch.nn.Identity(),
        "log_softmax": Softmax(apply_log=True),
        "encoder_takes_lengths": takes_lengths,
    }
    asr = CTCASR(modules=modules, hparams=hparams, run_opts={"device": "cpu"})
    asr.modules.eval()
    return asr


def test_encoder_takes_lengths_masks_the_padding():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 20, 6, generator=gen)
    padded = torch.cat([feats, 50 * torch.randn(1, 20, 6, generator=gen)], 1)
    half = torch.tensor([0.5])
    with torch.no_grad():
        asr = _asr(takes_lengths=True)
        alone = asr.log_probs(feats, torch.ones(1))
        masked = asr.log_probs(padded, half)[:, :20]
        asr = _asr(takes_lengths=False)
        leaked = asr.log_probs(padded, half)[:, :20]
    # All frames but the last: SpeechBrain's Conformer convolution module
    # (kernel 3) still reads one padding frame past the end.
    torch.testing.assert_close(masked[:, :19], alone[:, :19])
    # Without the lengths, the attention reads the padding from every frame.
    assert float((leaked - alone)[:, :19].abs().amax(-1).min()) > 1e-3


class _Recorder(torch.nn.Module):
    """An augmenter that adds a constant and counts its calls (and keeps
    the batch size, so the labels need no replication); ``seen`` keeps the
    first sample of each batch it got."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.seen = []

    def forward(self, wavs, lens):
        self.calls += 1
        self.seen.append(float(wavs[0, 0]))
        return wavs + 1.0, lens

    def replicate_labels(self, labels):
        return labels


class _Perturb:
    """An augmentation with SpeechBrain's (waveforms, lengths) ->
    waveforms signature that records its calls."""

    def __init__(self):
        self.calls = 0
        self.seen = []

    def __call__(self, wavs, lens):
        self.calls += 1
        self.seen.append(float(wavs[0, 0]))
        return wavs + 10.0


def test_wav_augment_touches_plain_training_batches_only():
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.dataio.encoder import CTCTextEncoder

    from speechbrain_meta import FineTune, InnerLoop, meta_brain_class
    from speechbrain_meta.adaptation import Adaptation
    from speechbrain_meta.asr import CTCASR

    torch.manual_seed(0)
    augment = _Recorder()
    edge_silence = _Recorder()
    voice_perturb = _Perturb()
    modules = {
        "normalize": InputNormalization(norm_type="sentence"),
        "encoder": torch.nn.Linear(4, 8),
        "ctc_lin": Linear(input_size=8, n_neurons=3),
    }
    hparams = {
        "compute_features": lambda wavs: wavs.unfold(1, 4, 4),
        "log_softmax": Softmax(apply_log=True),
        "ctc_cost": lambda p, t, pl, tl: -p[..., 1].mean(),
        "wav_augment": augment,
        "edge_silence": edge_silence,
        "voice_perturb": voice_perturb,
        "blank_index": 0,
    }
    Brain = meta_brain_class(CTCASR)
    brain = Brain(
        modules=modules,
        hparams=hparams,
        run_opts={"device": "cpu"},
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        meta_algorithm=FineTune(InnerLoop(2, inner_lr=0.1)),
    )
    brain.tokenizer = CTCTextEncoder()
    examples = [
        {"id": str(i), "sig": torch.randn(32), "tokens": torch.tensor([1])}
        for i in range(4)
    ]
    brain.init_optimizers()
    brain.fit_batch(PaddedBatch(examples))  # joint training: augmented
    assert augment.calls == 1 and not brain.augmenting
    # voice_perturb, then edge_silence on its output, then wav_augment
    assert voice_perturb.calls == 1 and edge_silence.calls == 1
    assert edge_silence.seen == [voice_perturb.seen[0] + 10.0]
    assert augment.seen == [edge_silence.seen[0] + 1.0]
    Adaptation("sgd", lr=0.1, steps=3)(brain, examples)  # adapting: not
    brain.task_loss({}, PaddedBatch(examples))  # an episode's loss: not
    assert augment.calls == 1 and edge_silence.calls == 1
    assert voice_perturb.calls == 1


EXPORTED = """
sample_rate: 16000
blank_index: 0
encoder_takes_lengths: True
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 6
log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True
normalize: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
encoder: !new:speechbrain.lobes.models.transformer.TransformerASR.EncoderWrapper
    transformer: !new:speechbrain.lobes.models.transformer.TransformerASR.TransformerASR
        input_size: 6
        tgt_vocab: 5
        d_model: 16
        nhead: 2
        num_encoder_layers: 1
        num_decoder_layers: 0
        d_ffn: 32
        dropout: 0.0
        encoder_module: conformer
        attention_type: RelPosMHAXL
        activation: !name:torch.nn.GELU
        normalize_before: True
        kernel_size: 3
        causal: False
ctc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 16
    n_neurons: 5
"""


def test_export_keeps_encoder_takes_lengths(tmp_path):
    """An exported Conformer CTC model still gives its encoder the lengths:
    loaded with AdaptiveASR, a padded utterance is read as alone."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CTCTextEncoder

    from speechbrain_meta.adaptation import Adaptation
    from speechbrain_meta.inference import AdaptiveASR, export_model

    torch.manual_seed(0)
    hparams = load_hyperpyyaml(EXPORTED)
    labels = CTCTextEncoder()
    labels.insert_blank(index=0)
    labels.update_from_iterable("abcd", sequence_input=True)
    modules = {k: hparams[k] for k in ("normalize", "encoder", "ctc_lin")}
    export_model(
        str(tmp_path / "model"),
        EXPORTED,
        modules,
        labels,
        Adaptation("sgd", lr=0.1, steps=1),
        ["*"],
    )
    asr = AdaptiveASR.from_hparams(
        source=str(tmp_path / "model"), savedir=str(tmp_path / "saved")
    )
    assert asr.brain.hparams.encoder_takes_lengths is True
    # The loaded model's encoder reads the lengths (how it masks the
    # padding is test_encoder_takes_lengths_masks_the_padding's).
    gen = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(1, 16000, generator=gen)
    padded = torch.cat([wav, 5 * torch.randn(1, 16000, generator=gen)], 1)
    half = torch.tensor([0.5])
    masked = asr.encode_batch(padded, half)
    asr.brain.hparams.encoder_takes_lengths = False
    leaked = asr.encode_batch(padded, half)
    assert float((masked - leaked)[:, :90].abs().amax()) > 1e-3


EXPORTED_CRDNN = """
sample_rate: 16000
blank_index: 0
encoder_takes_lengths: True
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 8
log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True
normalize: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
encoder: !new:speechbrain_meta.crdnn.LengthsCapableCRDNN
    input_shape: [null, null, 8]
    cnn_blocks: 1
    cnn_channels: [4]
    time_pooling: True
    rnn_class: !name:speechbrain.nnet.RNN.LSTM
    rnn_layers: 1
    rnn_neurons: 8
    dnn_blocks: 1
    dnn_neurons: 8
    dropout: 0.0
ctc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 8
    n_neurons: 5
"""


def test_a_crdnn_given_lengths_exported_and_written_for_the_hub(tmp_path):
    """A LengthsCapableCRDNN CTC model: exported, loaded with AdaptiveASR
    and, written as a hub folder, with SpeechBrain's own EncoderASR; both
    read a padded batch as the export does, and the LSTM reads no padding
    (the same posteriors whatever follows the utterance, except the last
    frames, which the CNN reads past the end)."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CTCTextEncoder
    from speechbrain.inference.ASR import EncoderASR

    from speechbrain_meta.adaptation import Adaptation
    from speechbrain_meta.hub import write_encoder_asr
    from speechbrain_meta.inference import AdaptiveASR, export_model

    torch.manual_seed(0)
    hparams = load_hyperpyyaml(EXPORTED_CRDNN)
    labels = CTCTextEncoder()
    labels.insert_blank(index=0)
    labels.update_from_iterable("abcd", sequence_input=True)
    modules = {k: hparams[k] for k in ("normalize", "encoder", "ctc_lin")}
    for module in modules.values():
        module.eval()
    folder = str(tmp_path / "model")
    export_model(
        folder,
        EXPORTED_CRDNN,
        modules,
        labels,
        Adaptation("sgd", lr=0.1, steps=1),
        ["*"],
    )
    asr = AdaptiveASR.from_hparams(source=folder, savedir=str(tmp_path / "s"))
    hub = write_encoder_asr(folder, str(tmp_path / "hub"))
    plain = EncoderASR.from_hparams(source=hub, savedir=str(tmp_path / "sb"))
    gen = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(1, 16000, generator=gen)
    longer = 0.1 * torch.randn(1, 32000, generator=gen)
    silence = torch.zeros(1, 16000)
    batch = torch.cat([torch.cat([wav, silence], 1), longer])
    lens = torch.tensor([0.5, 1.0])
    ours = asr.encode_batch(batch, lens)
    theirs = plain.encode_batch(batch, lens)
    torch.testing.assert_close(theirs, ours)
    # More padding after the utterance changes nothing it reads.
    wider = torch.cat(
        [
            torch.cat([wav, silence, silence], 1),
            torch.cat([longer, 0.1 * torch.randn(1, 16000, generator=gen)], 1),
        ]
    )
    frames = ours.shape[1] // 2 - 3  # the utterance, but its last frames
    again = asr.encode_batch(wider, torch.tensor([1 / 3, 1.0]))
    torch.testing.assert_close(again[0, :frames], ours[0, :frames])
    # Without the lengths, the LSTM's reverse direction starts in the
    # padding: the same frames differ.
    asr.brain.hparams.encoder_takes_lengths = False
    leaked = asr.encode_batch(wider, torch.tensor([1 / 3, 1.0]))
    assert float((leaked - again)[0, :frames].abs().amax()) > 1e-3
