"""A SentencePiece tokenizer trained once per corpus, safely under
concurrent runs.

SpeechBrain's ``speechbrain.tokenizers.SentencePiece`` trains a model
from a manifest column and loads it; two runs that start together (two
methods, two seeds) would train into the same files at once. Here the
model is trained in a private folder and moved into place whole, and a
run that finds it there loads it: every method and seed of a corpus reads
the same units, which a warm start from the joint model needs.

Authors
 * speechbrain-meta developers 2026
"""

import os
import shutil
import tempfile

import sentencepiece as spm
from speechbrain.tokenizers.SentencePiece import SentencePiece

__all__ = ["corpus_tokenizer", "tokenizer_file"]


def tokenizer_file(folder, vocab_size, model_type="unigram"):
    """Where ``corpus_tokenizer`` keeps its model.

    Arguments
    ---------
    folder : str
        The tokenizer's folder.
    vocab_size : int
        Units.
    model_type : str
        ``unigram``, ``bpe`` or ``char``.

    Returns
    -------
    str

    Example
    -------
    >>> tokenizer_file("tok", 27)
    'tok/27_unigram.model'
    """
    return os.path.join(folder, f"{vocab_size}_{model_type}.model")


def corpus_tokenizer(
    folder, annotation_train, annotation_read, vocab_size, model_type="unigram"
):
    r"""The corpus's SentencePiece model, trained if missing.

    Arguments
    ---------
    folder : str
        Where the model lives (``<vocab_size>_<model_type>.model``).
    annotation_train : str
        The training manifest (CSV).
    annotation_read : str
        Its text column.
    vocab_size : int
        Units, ``unk`` (index 0) included.
    model_type : str
        ``unigram``, ``bpe`` or ``char``.

    Returns
    -------
    sentencepiece.SentencePieceProcessor

    Example
    -------
    >>> folder = tempfile.mkdtemp()
    >>> csv_path = os.path.join(folder, "train.csv")
    >>> with open(csv_path, "w") as f:
    ...     _ = f.write("ID,translation\n" + "".join(
    ...         f"{i},one two\n" for i in range(20)))
    >>> sp = corpus_tokenizer(folder, csv_path, "translation", 8)
    >>> sp.decode_ids(sp.encode_as_ids("two one"))
    'two one'
    """
    path = tokenizer_file(folder, vocab_size, model_type)
    name = os.path.basename(path)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        private = tempfile.mkdtemp(prefix=".training_", dir=folder)
        try:
            SentencePiece(
                model_dir=private,
                vocab_size=vocab_size,
                annotation_train=annotation_train,
                annotation_read=annotation_read,
                model_type=model_type,
                character_coverage=1.0,
            )
            vocab = name.replace(".model", ".vocab")
            os.replace(
                os.path.join(private, vocab), os.path.join(folder, vocab)
            )
            # The model last: its presence means the pair is complete.
            os.replace(os.path.join(private, name), path)
        finally:
            shutil.rmtree(private, ignore_errors=True)
    processor = spm.SentencePieceProcessor()
    processor.load(path)
    return processor
