"""Meta-gradients through attention models, checked at ``fit_batch`` level.

A user's joint CTC/attention Brain, as SpeechBrain's seq2seq recipes write
it (encoder; the decoder reads the encoder states under teacher forcing;
``ctc_weight`` x CTC + (1 - ``ctc_weight``) x NLL), with three decoders:
SpeechBrain's ``AttentionalRNNDecoder`` with a GRU and with an LSTM cell
(content attention: SpeechBrain's location-aware attention makes its first
weights in float32, ``1 / enc_len.float()``, so it cannot run in the
float64 a finite-difference check needs), and a ``TransformerASR``
encoder-decoder with a Transformer and with a Conformer encoder (its
convolution module and macaron feed-forward layers), as the
``meta_transformer`` recipe has; with absolute positions here:
SpeechBrain's relative-position attention (``RelPosMHAXL``, the recipe's)
takes its softmax in float32 whatever the input, which a float64 check
cannot run through.
Float64, through ``MetaBrain.fit_batch`` with gradient accumulation: the
meta-gradient left in ``.grad`` is compared with central finite
differences of the outer objective (second-order MAML, Meta-SGD with its
learned rates) or of the first-order objective, the query loss at the
support-adapted weights with the inner updates held constant (FOMAML).
"""

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.RNN import AttentionalRNNDecoder
from speechbrain.processing.features import InputNormalization
from test_fit_batch_gradients import (
    ACCUMULATE,
    _check_against_fd,
    _check_first_order,
)

from speechbrain_meta import FOMAML, MAML, InnerLoop, MetaBrain, MetaSGD
from speechbrain_meta.data import Episode
from speechbrain_meta.losses import ctc_loss

FEATS, HIDDEN, VOCAB = 3, 6, 6  # 0 blank/pad, 1 bos, 2 eos, 3-5 labels
BOS, EOS = 1, 2


class JointASR(MetaBrain):
    """Joint CTC/attention, as upstream's seq2seq recipes."""

    def compute_forward(self, batch, stage):
        x, lens = batch.x
        x = self.modules.normalize(x.to(self.device), lens.to(self.device))
        tokens_bos, _ = batch.tokens_bos
        if "transformer" in self.modules:
            states, hidden = self.modules.transformer(
                self.modules.frontend(x), tokens_bos, lens, pad_idx=0
            )
        else:
            states, _ = self.modules.encoder(x)
            hidden, _ = self.modules.decoder(
                self.modules.emb(tokens_bos), states, lens
            )
        p_seq = self.modules.seq_lin(hidden).log_softmax(-1)
        p_ctc = self.modules.ctc_lin(states).log_softmax(-1)
        return p_ctc, p_seq, lens

    def compute_objectives(self, predictions, batch, stage):
        p_ctc, p_seq, lens = predictions
        tokens, token_lens = batch.tokens
        tokens_eos, eos_lens = batch.tokens_eos
        ctc = ctc_loss(p_ctc, tokens, lens, token_lens, blank_index=0)
        nll = sb.nnet.losses.nll_loss(p_seq, tokens_eos, length=eos_lens)
        weight = self.hparams.ctc_weight
        return weight * ctc + (1 - weight) * nll


def _modules(decoder):
    torch.manual_seed(0)
    modules = {"normalize": InputNormalization(norm_type="global")}
    if decoder in ("transformer", "conformer"):
        from speechbrain.lobes.models.transformer.TransformerASR import (
            TransformerASR,
        )

        modules["frontend"] = torch.nn.Linear(FEATS, HIDDEN)
        modules["transformer"] = TransformerASR(
            tgt_vocab=VOCAB,
            input_size=HIDDEN,
            d_model=HIDDEN,
            nhead=2,
            num_encoder_layers=1,
            num_decoder_layers=1,
            d_ffn=8,
            dropout=0.0,
            activation=torch.nn.GELU,
            encoder_module=decoder,
            attention_type="regularMHA",
            kernel_size=3,
            normalize_before=True,
            causal=False,
        )
    else:
        modules["encoder"] = torch.nn.LSTM(FEATS, HIDDEN, batch_first=True)
        modules["emb"] = torch.nn.Embedding(VOCAB, 4)
        modules["decoder"] = AttentionalRNNDecoder(
            rnn_type=decoder,
            attn_type="content",
            hidden_size=HIDDEN,
            attn_dim=4,
            num_layers=1,
            enc_dim=HIDDEN,
            input_size=4,
            channels=2,
            kernel_size=3,
            re_init=False,
            dropout=0.0,
        )
    modules["seq_lin"] = torch.nn.Linear(HIDDEN, VOCAB)
    modules["ctc_lin"] = torch.nn.Linear(HIDDEN, VOCAB)
    return {k: m.double() for k, m in modules.items()}


def _batch(gen, n, offset):
    examples = []
    for i in range(n):
        ids = [3 + (i + j) % 3 for j in range(2 + i % 2)]
        examples.append(
            {
                "id": f"u{offset + i}",
                "x": torch.randn(
                    8 - i % 3, FEATS, generator=gen, dtype=torch.float64
                )
                * 2
                + 1,
                "tokens": torch.tensor(ids),
                "tokens_bos": torch.tensor([BOS] + ids),
                "tokens_eos": torch.tensor(ids + [EOS]),
            }
        )
    return PaddedBatch(examples)


def _episode(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Episode(_batch(gen, 4, 0), _batch(gen, 3, 10), task="t")


ALGORITHMS = {
    "maml": lambda: MAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
    "metasgd": lambda: MAML(
        InnerLoop(inner_steps=2, update_rule=MetaSGD(init_lr=0.1))
    ),
    "fomaml": lambda: FOMAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
}


@pytest.fixture(autouse=True)
def float64():
    """Float64 throughout: tensors the modules make (the positional tables,
    the attention's first context) are made at the default dtype."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _brain(decoder, algorithm):
    brain = JointASR(
        modules=_modules(decoder),
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={
            "grad_accumulation_factor": ACCUMULATE,
            "adapt_in_train_mode": True,
            "ctc_weight": 0.3,
        },
        run_opts={"device": "cpu"},
        meta_algorithm=ALGORITHMS[algorithm](),
        rule_opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    )
    brain.modules.train()
    with torch.no_grad():  # global statistics that are not empty
        brain.compute_forward(_episode(5).support, None)
    brain.init_optimizers()
    return brain


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
@pytest.mark.parametrize("decoder", ["gru", "lstm", "transformer", "conformer"])
def test_second_order_meta_gradient_through_the_decoder(decoder, algorithm):
    brain = _brain(decoder, algorithm)
    tensors = list(brain.modules.parameters())
    if algorithm == "metasgd":
        tensors += list(brain.meta_algorithm.parameters())
    _check_against_fd(brain, _episode(), tensors)
    # The decoder's own weights get a meta-gradient.
    part = "transformer" if "former" in decoder else "decoder"
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in brain.modules[part].parameters()
    )


@pytest.mark.parametrize("decoder", ["gru", "lstm", "transformer", "conformer"])
def test_first_order_meta_gradient_through_the_decoder(decoder):
    """FOMAML's meta-gradient is that of F(theta) = L_query(theta + delta),
    delta the inner loop's whole update at the current theta, held."""
    brain = _brain(decoder, "fomaml")
    _check_first_order(brain, _episode(), list(brain.modules.parameters()))


class _Encoder(torch.nn.Module):
    """An LSTM whose forward returns its states alone (a lobe's interface)."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(FEATS, HIDDEN, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


def _st_episode(seed=0):
    """Episodes for the speech-translation Brain: a source transcript for
    its CTC branch (3 labels + blank) and a translation in another order
    and vocabulary (reversed, shifted) for its decoder."""
    gen = torch.Generator().manual_seed(seed)

    def batch(n, offset):
        examples = []
        for i in range(n):
            source = [1 + (i + j) % 3 for j in range(2 + i % 2)]
            target = [3 + (2 - s + 1) % 3 for s in reversed(source)]
            examples.append(
                {
                    "id": f"u{offset + i}",
                    "sig": torch.randn(
                        8 - i % 3, FEATS, generator=gen, dtype=torch.float64
                    )
                    * 2
                    + 1,
                    "tokens": torch.tensor(source),
                    "translation_bos": torch.tensor([BOS] + target),
                    "translation_eos": torch.tensor(target + [EOS]),
                    "translation": " ".join(map(str, target)),
                }
            )
        return PaddedBatch(examples)

    return Episode(batch(4, 0), batch(3, 10), task="t")


def _st_brain(algorithm):
    from speechbrain_meta import MetaInitBrain, meta_brain_class
    from speechbrain_meta.translation import ST

    modules = _modules("gru")
    modules["encoder"] = _Encoder().double()
    modules["ctc_lin"] = torch.nn.Linear(HIDDEN, 4).double()
    Brain = meta_brain_class(ST, MetaInitBrain)
    brain = Brain(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={
            "grad_accumulation_factor": ACCUMULATE,
            "adapt_in_train_mode": True,
            "ctc_weight": 0.3,
            "compute_features": torch.nn.Identity(),
            "log_softmax": torch.nn.LogSoftmax(dim=-1),
            "ctc_cost": lambda p, t, pl, tl: ctc_loss(p, t, pl, tl, 0),
            "seq_cost": sb.nnet.losses.nll_loss,
        },
        run_opts={"device": "cpu"},
        meta_algorithm=ALGORITHMS[algorithm](),
    )
    brain.modules.train()
    with torch.no_grad():  # global statistics that are not empty
        brain.compute_forward(_st_episode(5).support, sb.Stage.TRAIN)
    brain.init_optimizers()
    return brain


def test_meta_gradients_through_the_speech_translation_brain():
    """The package's ST Brain (``speechbrain_meta.translation.ST``: CTC on
    the source transcript + NLL of a translation in another order and
    vocabulary) behind a meta brain: second-order MAML's meta-gradient at
    ``fit_batch`` level matches finite differences, and FOMAML's matches
    its first-order objective's."""
    brain = _st_brain("maml")
    _check_against_fd(brain, _st_episode(), list(brain.modules.parameters()))
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in brain.modules["decoder"].parameters()
    )
    brain = _st_brain("fomaml")
    _check_first_order(brain, _st_episode(), list(brain.modules.parameters()))
