"""Data preparation for the SynthTones meta-ASR recipe.

The corpus is synthesised offline (see ``speechbrain_meta.corpora.tones``):
each task is a synthetic speaker with its own symbol-to-sound mapping.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.corpora.tones import prepare_tone_tasks


def prepare_synth_tones(save_folder, **kwargs):
    """Writes the WAVs and ``train/dev/test.csv`` manifests into save_folder.

    Arguments
    ---------
    save_folder : str
        Output folder.
    **kwargs : dict
        Corpus sizes, see ``prepare_tone_tasks``.

    Returns
    -------
    dict
        Manifest path per split.
    """
    return prepare_tone_tasks(save_folder, **kwargs)
