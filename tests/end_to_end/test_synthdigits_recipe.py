"""The SynthDigits recipe: hparams files, and the quick main job end to end."""

import glob
import json
import math
import os
import runpy

import pytest
import ruamel.yaml

from speechbrain_meta.evaluation import validate_results
from speechbrain_meta.evaluation.selection import choose_setting
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import adapt_if_it_gains, recover_selected

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")
HPARAMS = sorted(glob.glob(os.path.join(RECIPE, "hparams", "*.yaml")))
COMMON = os.path.join(RECIPE, "hparams", "models", "common.yaml")


def test_every_method_has_an_hparams_file():
    names = {os.path.basename(p)[:-5] for p in HPARAMS}
    assert names == {
        "joint", "scratch", "lora", "adapter",
        "maml", "fomaml", "reptile", "anil",
        "metasgd", "layer_step_lr", "learned_update",
        "scale_shift", "lhuc", "meta_lora", "meta_adapter",
        "unsupervised_maml",
    }  # fmt: skip


def _raw(path):
    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML().load(f)


@pytest.mark.parametrize("path", HPARAMS, ids=os.path.basename)
def test_method_files_say_only_what_the_method_changes(path):
    common = _raw(COMMON)
    method = _raw(path)
    assert method["method"] == os.path.basename(path)[:-5]
    assert "meta" in method
    # A key the common file also sets must be set to something else.
    same = [
        k for k in method if k in common and repr(method[k]) == repr(common[k])
    ]
    assert not same, f"{path} repeats common.yaml: {same}"
    with open(path, encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= 40


@pytest.mark.parametrize("path", HPARAMS, ids=os.path.basename)
def test_hparams_load(path, tmp_path):
    hparams, text = load_layered_hparams(
        path, COMMON, {"output_folder": str(tmp_path)}
    )
    method = os.path.basename(path)[:-5]
    assert hparams["method"] == method
    assert f"method: {method}" in text
    assert hparams["meta_algorithm"].inner_loop is not None
    assert 0 in hparams["few_shot"]["k_shots"]
    assert {1, 5, 10} <= set(hparams["few_shot"]["k_shots"])
    corpus = hparams["corpus"]
    languages = (
        corpus["train_languages"]
        + corpus["dev_languages"]
        + corpus["test_languages"]
    )
    assert len(languages) == len(set(languages)) >= 12
    assert {"en", "cmn", "ja"} <= set(languages)
    params = sum(
        p.numel() for m in hparams["modules"].values() for p in m.parameters()
    )
    assert params < 3_000_000


def test_an_override_of_an_unknown_key_is_refused(tmp_path):
    with pytest.raises(KeyError, match="inner_lrr"):
        load_layered_hparams(HPARAMS[0], COMMON, {"inner_lrr": 0.1})


def test_quick_main_job(quick_benchmark):
    module, out, merged = quick_benchmark
    sets = {
        "test": out,
        "test_voices": out / "test_voices",
        "real": out / "real",
    }
    if "real" not in merged:
        # No apt-get here: the real-speech set is skipped, and said so.
        del sets["real"]
        assert not (out / "real").exists()
    for split, folder in sets.items():
        with open(folder / "few_shot_results.json") as f:
            document = json.load(f)
        assert validate_results(document) == module["METHODS"]
        for row in document["results"]:
            # The mean over tasks x episodes is the mean of the per-task
            # means (every task has the same episodes).
            per_task = list(row["cer_per_task"].values())
            assert row["cer_mean"] == pytest.approx(
                sum(per_task) / len(per_task)
            )
            episodes = (
                1
                if row["k_shot"] == 0
                else (document["protocol"]["episodes_per_task"])
            )
            assert row["n_episodes"] == row["n_tasks"] * episodes
            assert row["seeds"] == [1234]
        budgets = {r["budget"] for r in document["results"]}
        assert budgets == {
            "tuned",
            "default",
            "unsupervised_tuned",
            "unsupervised",
            "unsupervised_each",
        }
        table = (folder / "few_shot_results.md").read_text()
        assert table.count("adaptation |") == 5
        assert (folder / "few_shot_cer.png").stat().st_size > 5000
        protocol = document["protocol"]
        assert protocol["k_shots"] == [0, 1, 5]
        assert (
            len(protocol["tasks"])
            == {"test": 4, "test_voices": 2, "real": 3}[split]
        )
        by = {
            (r["method"], r["budget"], r["k_shot"]): r
            for r in document["results"]
        }
        # Adapter baselines adapt a small fraction of the parameters.
        full = by[("joint", "tuned", 5)]["trainable_params"]
        assert by[("lora", "tuned", 5)]["trainable_params"] < 0.05 * full
        assert by[("anil", "tuned", 5)]["trainable_params"] < 0.05 * full
        # Zero-shot: the warm-started adapters start exactly at the joint
        # model, whose CER they therefore share.
        assert (
            by[("lora", "tuned", 0)]["cer_mean"]
            == by[("joint", "tuned", 0)]["cer_mean"]
        )
        # The default adaptation (validated, through AdaptiveASR) abstains
        # with one utterance: the unadapted model, every episode counted.
        for method in module["METHODS"]:
            assert (
                by[(method, "default", 1)]["cer_mean"]
                == by[(method, "default", 0)]["cer_mean"]
            )
            one = by[(method, "default", 1)]
            assert one["abstained_episodes"] == one["n_episodes"]
            assert by[(method, "default", 5)]["adaptation"]["folds"] == 5
            check_unsupervised_rows(out / "seed1234" / method, by, method)
    # The meta-optimisers report what they learned.
    for rule in ("metasgd", "layer_step_lr", "learned_update"):
        rates = json.loads(
            (out / "seed1234" / rule / "learned_rates.json").read_text()
        )
        # One row per step of the meta-dev adaptation, which runs with
        # the rule's own rates for `eval_inner_steps` steps.
        text = (out / "seed1234" / rule / "hyperparams.yaml").read_text()
        line = [x for x in text.splitlines() if x.startswith("eval_inner_")]
        steps = int(line[0].split(":")[1])
        assert {r["step"] for r in rates} == set(range(steps))
        assert all(math.isfinite(r["effective_lr"]) for r in rates)
        if rule != "learned_update":  # explicit positive rates
            assert all(r["lr_min"] > 0 for r in rates)
            # The fitted rate lies in the rule's range (float32 steps: up
            # to rounding, and only where the gradient does not vanish).
            assert all(
                r["lr_min"] * (1 - 1e-3)
                <= r["effective_lr"]
                <= r["lr_max"] * (1 + 1e-3)
                for r in rates
                if r["grad_norm"] > 1e-4
            )
    summary = json.loads((out / "benchmark.json").read_text())
    assert summary["methods"] == module["METHODS"] and summary["quick"]
    assert set(summary["goals"]) == set(merged)
    report = (out / "benchmark.md").read_text()
    # Per set: the default adaptation's check, and the one without
    # transcripts.
    assert report.count("pairs worse") == 2 * len(merged)
    assert set(summary["goals"]["test"]) >= {"never_worse_unsupervised"}
    # Every method's search table, with its interval and cliff check.
    search = (out / "seed1234" / "joint" / "adaptation_search.md").read_text()
    assert "CER % at 2x steps" in search and "±" in search
    assert (out / "meta_dev.md").read_text().count("|") > 30
    # Every method exported its model.
    for method in module["METHODS"]:
        assert (
            out / "seed1234" / method / "inference" / "hyperparams.yaml"
        ).exists()
    # Rerunning skips what is done and gives the same table.
    again = module["main"](
        ["--quick", "--methods", "all", "--output_folder", str(out)]
    )
    assert again == merged


def check_unsupervised_rows(run, by, method):
    """A method's rows without transcripts in one set's results: the
    adaptations its searches chose on meta-dev (the rule of
    ``adapt_if_it_gains``, with common.yaml's ``min_gain``) are the
    exported ones, and the rows measure them through the exported model."""
    text = (run / "inference" / "hyperparams.yaml").read_text()
    document = ruamel.yaml.YAML().load(text)
    exported = {
        key: json.loads(json.dumps(document[key]))
        for key in ("unsupervised_adaptation", "unsupervised_each_adaptation")
    }
    min_gain = load_layered_hparams(
        os.path.join(RECIPE, "hparams", "joint.yaml"), COMMON
    )[0]["unsupervised_search"]["min_gain"]
    chosen = {}
    for name in ("", "_each"):
        search = json.loads(
            (run / f"unsupervised{name}_search.json").read_text()
        )
        assert search["key"].get("per_utterance", False) == (name == "_each")
        steps = sorted({r["steps"] for r in search["scores"]})
        assert steps[0] == 0  # not adapting is always scored
        table, _ = choose_setting(
            search["scores"], [s for s in steps if 2 * s in steps]
        )
        chosen[name] = adapt_if_it_gains(table, min_gain)
        mine = exported[f"unsupervised{name}_adaptation"]
        assert mine["steps"] == chosen[name][1].steps
        assert mine["unsupervised"]["objective"] == "entropy"
    # The best setting that adapts, run as it is (SUTA-style, tuned).
    tuned = by[(method, "unsupervised_tuned", 5)]["adaptation"]
    assert tuned["steps"] == chosen[""][0].steps > 0
    # The same unadapted model on the same queries as the default's k = 0.
    zero = by[(method, "unsupervised", 0)]
    assert zero["cer_mean"] == by[(method, "default", 0)]["cer_mean"]
    default = exported["unsupervised_adaptation"]
    for k in (1, 5):
        row = by[(method, "unsupervised", k)]
        assert row["adaptation"]["unsupervised"] == default["unsupervised"]
        # (abstentions are counted by AdaptiveASR.adapt: the user's path)
        if default["steps"] == 0:  # abstains, and says so in every episode
            assert row["abstained_episodes"] == row["n_episodes"]
            assert row["cer_mean"] == zero["cer_mean"]
        else:
            assert row["abstained_episodes"] == 0
    # One utterance at a time: its own exported choice.
    each = by[(method, "unsupervised_each", 0)]
    assert each["adaptation"]["per_utterance"] is True
    alone = exported["unsupervised_each_adaptation"]
    assert each["adaptation"]["steps"] == alone["steps"]
    # Its baseline: each utterance transcribed alone, unadapted (not the
    # k = 0 row's padded batch: the CRDNN's LSTMs run over the padding).
    assert set(each["unadapted_cer_per_task"]) == set(zero["cer_per_task"])
    if alone["steps"] == 0:
        assert each["cer_mean"] == each["unadapted_cer_mean"]


def test_one_method_alone_trains_the_joint_model_it_needs(tmp_path):
    """`train.py hparams/lhuc.yaml` on its own: the joint model it starts
    from is trained first (same shared overrides, its own folder)."""
    module = runpy.run_path(os.path.join(RECIPE, "train.py"))
    quick = [
        "--corpus={speakers_per_language: 2, utts_per_speaker: 16, "
        "heldout_utts_per_speaker: 32, train_languages: [en, de, fr, es, ru, "
        "tr, hi, ko]}",
        "--joint_epochs=2",
        "--warm_start_epoch=1",
        "--episodes_per_epoch=4",
        "--few_shot={k_shots: [0, 1, 5], episodes_per_task: 1, "
        "query_utterances: 10}",
        "--adaptation_search={rules: [own], modes: [eval], steps: [1], "
        "query_utterances: 4}",
        "--unsupervised_search={rules: [own], adam_lrs: [], steps: [1], "
        "episodes_per_task: 1, query_utterances: 4}",
        "--few_shot_voice_tasks=1",
        f"--data_folder={tmp_path / 'data'}",
        f"--joint_folder={tmp_path / 'joint'}",
        f"--output_folder={tmp_path / 'lhuc'}",
        "--inner_lr=0.05",  # a method key: must not reach the joint run
        "--noprogressbar",
    ]
    results = module["main"](
        [os.path.join(RECIPE, "hparams", "lhuc.yaml")] + quick
    )
    assert {"test", "test_voices"} <= set(results)
    validate_results(results["test"])
    # The joint model was trained (2 epochs, its checkpoints) but not
    # evaluated, and with its own settings, not the method's.
    joint_log = (tmp_path / "joint" / "train_log.txt").read_text()
    assert "epoch: 2" in joint_log
    assert not (tmp_path / "joint" / "few_shot").exists()
    joint_hparams = (tmp_path / "joint" / "hyperparams.yaml").read_text()
    assert "inner_lr: 0.05" not in joint_hparams
    # The method started from the joint model of the warm-start epoch.
    log = (tmp_path / "lhuc" / "log.txt").read_text()
    assert "Initialised from the joint model" in log
    rows = {
        r["k_shot"]: r
        for r in results["test"]["results"]
        if r["budget"] == "tuned"
    }
    assert rows[5]["trainable_params"] == 172


def test_joint_model_averages_its_best_checkpoints(quick_benchmark, tmp_path):
    """average_checkpoints: the selected joint model is the mean of the
    weights of the best-CER checkpoints, scored and saved, and what the
    run (and every method built on it) loads."""
    import torch
    from speechbrain.utils.checkpoints import Checkpointer

    module, out, _ = quick_benchmark
    train = module["_load_recipe"]()
    overrides = {
        **json.loads(json.dumps(module["QUICK"])),
        "seed": 1234,
        "output_folder": str(tmp_path / "joint"),
        "joint_folder": str(tmp_path / "joint"),
        "data_folder": str(out / "data"),
        "joint_epochs": 4,
        "average_checkpoints": 3,
        "run_few_shot": False,
    }
    joint = os.path.join(RECIPE, "hparams", "joint.yaml")
    train.run(joint, {"device": "cpu", "noprogressbar": True}, overrides)
    checkpointer = Checkpointer(str(tmp_path / "joint" / "save"))
    saved = checkpointer.list_checkpoints()
    (averaged,) = [c for c in saved if c.meta.get("averaged")]
    assert averaged.meta["averaged"] == 3 and "CER" in averaged.meta
    with open(averaged.paramfiles["counter"]) as fin:
        assert int(fin.read()) == 4  # the end of training: none to redo
    best = [c for c in saved if c.path.name in averaged.meta["averaged_from"]]
    assert len(best) == 3
    cers = sorted(c.meta["CER"] for c in saved if not c.meta.get("keep"))
    assert sorted(c.meta["CER"] for c in best) == cers[:3]
    states = [torch.load(c.paramfiles["encoder"]) for c in best]
    mean = torch.load(averaged.paramfiles["encoder"])
    for key, value in mean.items():
        if value.is_floating_point():
            expected = sum(s[key] for s in states) / len(states)
            torch.testing.assert_close(value, expected)
    assert any(
        not torch.equal(states[0][k], mean[k])
        for k in mean
        if mean[k].is_floating_point()
    )
    # A rerun trains nothing and averages nothing again; the run loads it.
    train.run(joint, {"device": "cpu", "noprogressbar": True}, overrides)
    assert len(
        Checkpointer(str(tmp_path / "joint" / "save")).list_checkpoints()
    ) == len(saved)
    hparams = train.layered_experiment(joint, train.COMMON, overrides)
    assert recover_selected(hparams).path == averaged.path
