"""The main job's exported models and few-shot protocols, for scripts.

Scripts that score the main job's exported models as a user would load
them (``hub_adaptation.py``, ``unsupervised_adaptation.py``) need the
same episodes the main job scored: the corpus of the benchmark folder, the
recipe's ``few_shot`` settings, the first ``few_shot_voice_tasks`` unseen
voices. ``main_job_protocols`` builds them.

Authors
 * speechbrain-meta developers 2026
"""

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _train_module():
    # train.py under its own name: another recipe's train.py may be
    # imported as `train` in the same process.
    spec = importlib.util.spec_from_file_location(
        "synthdigits_meta_asr_train", os.path.join(HERE, "train.py")
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train


def main_job_protocols(benchmark_folder, seed, output_folder):
    """The few-shot protocol of every evaluation set of the main job.

    Arguments
    ---------
    benchmark_folder : str
        The main job's output folder (``data/``, ``seed<S>/``).
    seed : int
        The seed whose joint model's hparams are read.
    output_folder : str
        Where the hparams of this reading go.

    Returns
    -------
    dict
        Set name to ``FewShotProtocol`` (the sets the corpus has).
    """
    from speechbrain_meta.evaluation import FewShotProtocol

    train = _train_module()
    overrides = {
        "seed": seed,
        "output_folder": os.path.join(output_folder, "joint_hparams"),
        "joint_folder": os.path.join(benchmark_folder, f"seed{seed}", "joint"),
        "data_folder": os.path.join(benchmark_folder, "data"),
    }
    joint = os.path.join(HERE, "hparams", "joint.yaml")
    hparams = train.layered_experiment(joint, train.COMMON, overrides)
    datasets, _, _ = train.dataio_prepare(
        hparams, train.prepare_corpora(hparams)
    )
    tasks = train.few_shot_tasks(hparams, datasets)
    protocols = {}
    for split, group_by in hparams["few_shot_sets"].items():
        if group_by is None:  # not evaluated
            continue
        if datasets.get(split) is None:
            continue
        protocols[split] = FewShotProtocol(
            datasets[split],
            group_by=group_by,
            tasks=tasks.get(split),
            dataset_name=f"SynthDigits/{split}",
            **hparams["few_shot"],
        )
    return protocols
