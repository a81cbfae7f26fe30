"""SpeechBrain's CRDNN, with its RNN given each utterance's length.

``speechbrain.lobes.models.CRDNN.CRDNN`` is a ``Sequential``: its forward
takes no lengths, so in a padded batch the reverse direction of its
bidirectional RNN starts on the padding after an utterance, and an
utterance is transcribed differently alone and in a batch (on the
SynthDigits recipe's real voices, by 4-8 CER points). SpeechBrain's RNNs
take ``lengths`` (they pack the sequence) and its
``LengthsCapableSequential`` passes them on to the layers that do;
``LengthsCapableCRDNN`` is the CRDNN built on it: the same layers, names
and checkpoints, and ``forward(x, lengths)``. A recipe using it sets
``encoder_takes_lengths: True`` so that ``CTCASR`` passes the relative
lengths. Packed sequences keep the written-out second derivatives of
``speechbrain_meta.lstm``.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.nnet.containers import LengthsCapableSequential


class LengthsCapableCRDNN(LengthsCapableSequential, CRDNN):
    """A ``CRDNN`` whose forward takes the relative lengths of the batch.

    The arguments are those of ``speechbrain.lobes.models.CRDNN.CRDNN``;
    the parameters have the same names, so a CRDNN checkpoint loads into
    it. The CNN's frames and the time pooling are unchanged; the RNN runs
    each utterance up to its own length (the time pooling keeps relative
    lengths), and its outputs on padded frames are zeros. Its
    ``rnn_class`` must take ``lengths`` (``speechbrain.nnet.RNN``'s
    ``LSTM``, ``GRU``, ``RNN``; CRDNN's default ``LiGRU`` does not).

    Arguments
    ---------
    *args : tuple
        Positional arguments of ``CRDNN``.
    **kwargs : dict
        Keyword arguments of ``CRDNN`` (``input_shape``, ``rnn_layers``...).

    Example
    -------
    >>> import torch
    >>> from speechbrain.nnet.RNN import LSTM
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = LengthsCapableCRDNN(
    ...     input_shape=[None, None, 20],
    ...     cnn_blocks=1,
    ...     cnn_channels=[4],
    ...     rnn_class=LSTM,
    ...     rnn_layers=1,
    ...     rnn_neurons=8,
    ...     dnn_blocks=1,
    ...     dnn_neurons=8,
    ...     dropout=0.0,
    ... ).eval()
    >>> utterance = torch.randn(1, 12, 20)
    >>> def padded_batch(frames):  # the utterance and a longer one
    ...     tail = torch.zeros(1, frames - 12, 20)
    ...     longer = torch.randn(1, frames, 20)
    ...     return torch.cat([torch.cat([utterance, tail], 1), longer])
    >>> short = model(padded_batch(24), torch.tensor([12 / 24, 1.0]))
    >>> long = model(padded_batch(48), torch.tensor([12 / 48, 1.0]))
    >>> # Its frames (6 after the time pooling) whatever the padding:
    >>> bool(torch.allclose(short[0, :6], long[0, :6], atol=1e-6))
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "RNN" in self and not self.takes_lengths[list(self).index("RNN")]:
            raise ValueError(
                f"LengthsCapableCRDNN: its RNN ({type(self.RNN).__name__}) "
                "takes no lengths; use an rnn_class that does (LSTM, GRU, "
                "RNN of speechbrain.nnet.RNN), or CRDNN"
            )
