"""Data preparation for the SynthDigits recipes (CTC and attention).

The corpus is synthesised with espeak-ng (``espeakng-loader``, one fresh
worker process per speaker so that the same seed gives the same bytes):
connected digits read in many languages and voices, see
``speechbrain_meta.corpora.synth``. Nothing is downloaded. Both recipes
(``meta_asr/``, ``meta_seq2seq/``) link to this file, as upstream's
recipes of one corpus share its prepare script: the same corpus, room
responses, real voices and manifest checks, so that their results compare.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta.corpora.asterisk import prepare_asterisk_digits
from speechbrain_meta.corpora.rooms import prepare_simulated_rirs
from speechbrain_meta.corpora.synth import prepare_synth_digits
from speechbrain_meta.data.manifest import load_manifest
from speechbrain_meta.data.tasks import task_values

__all__ = [
    "few_shot_tasks",
    "load_splits",
    "prepare_corpora",
    "prepare_synth_digits",
]
logger = get_logger(__name__)
SPLITS = ("dev", "test", "test_voices")  # checked against train's labels


def prepare_corpora(hparams):
    """Synthesises SynthDigits, the simulated room responses of the
    augmentation and the real-speech set, unless done.

    Arguments
    ---------
    hparams : dict
        Loaded hparams (``data_folder``, ``corpus``, ``rir_folder``,
        ``rirs``, ``real_folder``, ``real_speech``, ``few_shot_sets``).

    Returns
    -------
    str or None
        The real-speech manifest, or None where it cannot be built.
    """
    run_on_main(
        prepare_synth_digits,
        kwargs={"save_folder": hparams["data_folder"], **hparams["corpus"]},
    )
    if hparams.get("rirs") is not None:
        run_on_main(
            prepare_simulated_rirs,
            kwargs={"save_folder": hparams["rir_folder"], **hparams["rirs"]},
        )
    if (hparams["few_shot_sets"] or {}).get("real") is None:
        return None
    kwargs = {"save_folder": hparams["real_folder"], **hparams["real_speech"]}
    run_on_main(prepare_asterisk_digits, kwargs=kwargs)
    return prepare_asterisk_digits(**kwargs)


def load_splits(hparams, real_csv=None):
    """The manifests as datasets, every row checked up front.

    Bad rows are named with file and line and skipped and counted, or stop
    the run (``bad_input``); the evaluation sets' transcripts are checked
    against the training set's characters (the label set), and every
    utterance against its transcript's CTC length (both recipes train a
    CTC head). ``real`` (the recorded voices) is there when prepared.

    Arguments
    ---------
    hparams : dict
        ``bad_input``, ``audio_checks``, ``sample_rate``, ``hop_length``,
        ``time_pooling_size``, ``data_folder``, ``real_folder`` and the
        ``<split>_csv`` manifests.
    real_csv : str, optional
        The real-speech manifest (``prepare_corpora``).

    Returns
    -------
    tuple
        ``(datasets, skipped)``: split name to ``DynamicItemDataset`` (no
        pipelines yet) and to its skipped rows.
    """
    checks = {
        "bad_input": hparams["bad_input"],
        "audio_checks": hparams["audio_checks"],
        # A CTC path needs a frame per label: hop x time pooling.
        "samples_per_frame": hparams["sample_rate"]
        * hparams["hop_length"]
        / 1000
        * hparams["time_pooling_size"],
    }
    datasets, skipped = {}, {}
    datasets["train"], skipped["train"] = load_manifest(
        hparams["train_csv"],
        replacements={"data_root": hparams["data_folder"]},
        **checks,
    )
    labels = {c for row in datasets["train"].data.values() for c in row["wrd"]}
    manifests = {split: hparams[f"{split}_csv"] for split in SPLITS}
    folders = dict.fromkeys(SPLITS, hparams["data_folder"])
    if real_csv is not None:
        manifests["real"], folders["real"] = real_csv, hparams["real_folder"]
    for split, manifest in manifests.items():
        datasets[split], skipped[split] = load_manifest(
            manifest,
            replacements={"data_root": folders[split]},
            labels=labels,
            **checks,
        )
    for split, bad in skipped.items():
        logger.info(
            "%s: %d utterances, %d skipped",
            split,
            len(datasets[split]),
            len(bad),
        )
    return datasets, skipped


def few_shot_tasks(hparams, datasets):
    """The tasks the few-shot protocol evaluates where not all of them:
    the first ``few_shot_voice_tasks`` held-out voices (sorted speaker IDs).

    Arguments
    ---------
    hparams : dict
        ``few_shot_voice_tasks``.
    datasets : dict
        Has ``test_voices``.

    Returns
    -------
    dict
        Set name to its tasks.
    """
    voices = sorted(
        {str(v) for v in task_values(datasets["test_voices"], "spk_id")}
    )
    return {"test_voices": voices[: hparams["few_shot_voice_tasks"]]}
