"""Few-shot protocol: episodes, confidence intervals, results contract."""

import json
import math

import pytest
import torch

from speechbrain_meta.adaptation import Adaptation
from speechbrain_meta.evaluation import (
    FewShotProtocol,
    confidence_interval,
    merge_results,
    pool_seeds,
    results_table,
    validate_results,
    write_results,
)
from speechbrain_meta.inner import InnerLoop, NonFiniteInnerLoss


def _data(n_tasks=3, per_task=40):
    return [
        {"id": f"t{t}_{i}", "task": f"t{t}"}
        for t in range(n_tasks)
        for i in range(per_task)
    ]


def test_confidence_interval_known_case():
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    mean, half = confidence_interval(values)
    sd = math.sqrt(sum((v - 5.0) ** 2 for v in values) / 7)
    assert mean == 5.0
    # t_{0.975, 7} = 2.364624...
    assert half == pytest.approx(2.364624 * sd / math.sqrt(8), rel=1e-5)
    assert confidence_interval([0.3])[1] is None
    mean, half = confidence_interval([0.2] * 5)
    assert half == 0.0


def test_episodes_fixed_disjoint_and_nested():
    protocol = FewShotProtocol(_data(), "task", [0, 1, 5, 10, 20], 3, 15)
    for task in protocol.tasks:
        for e in range(3):
            sup20, query = protocol.episode(task, e, 20)
            assert len(query) == 15 and len(sup20) == 20
            assert not set(sup20) & set(query)
            for k in (0, 1, 5, 10):
                assert protocol.episode(task, e, k)[0] == sup20[:k]
        # The query set is fixed per task; episodes differ.
        assert (
            protocol.episode(task, 0, 5)[1] == protocol.episode(task, 2, 5)[1]
        )
        assert (
            protocol.episode(task, 0, 5)[0] != protocol.episode(task, 1, 5)[0]
        )


def test_same_episodes_for_every_method_and_run():
    a = FewShotProtocol(_data(), "task", [0, 5], 2, 10, seed=7)
    b = FewShotProtocol(_data(), "task", [0, 5], 2, 10, seed=7)
    c = FewShotProtocol(_data(), "task", [0, 5], 2, 10, seed=8)
    assert a.digest() == b.digest() != c.digest()
    assert a.episode("t1", 1, 5) == b.episode("t1", 1, 5)


def test_small_tasks_skipped_and_counted():
    data = _data(2, 40) + [{"id": f"s{i}", "task": "small"} for i in range(12)]
    protocol = FewShotProtocol(data, "task", [0, 5], 2, 10)
    assert "small" not in protocol.tasks
    assert protocol.skipped_tasks == {"small": 12}
    with pytest.raises(ValueError, match="no task"):
        FewShotProtocol(data[-12:], "task", [0, 5], 2, 10)


class _SpyBrain:
    """Records the support ids it adapts to; 'CER' is a function of them."""

    device = "cpu"
    evaluation_ctx = torch.no_grad()

    def __init__(self, bias):
        self.bias = bias
        self.seen = []
        self.modules = torch.nn.ModuleDict({"m": torch.nn.Linear(1, 1)})
        self.inner_loop = InnerLoop(4)
        self.update_rule = self.inner_loop.update_rule

    def own_adaptation(self):
        return Adaptation("own", steps=4)

    def meta_parameters(self, inner_loop):
        return dict(self.modules.named_parameters())

    def adapted_weights(
        self,
        support,
        inner_steps,
        inner_loop,
        train_mode,
        keep_steps,
        support_loss=None,
    ):
        assert inner_loop.inner_steps == inner_steps and keep_steps
        assert support_loss is None  # no kl: the recipe's own loss
        ids = [] if support is None else list(support.id)
        self.seen.append((tuple(ids), inner_steps))
        return [{"n": 0}] + [{"n": len(ids)}] * (inner_steps if ids else 0)

    def on_stage_start(self, stage, epoch):
        self.cer_metric = _Metric()
        self.wer_metric = _Metric()

    def task_loss(self, fast, batch, stage):
        rate = 100.0 * (self.bias + 1.0 / (1 + fast["n"]))
        self.cer_metric.value = rate
        self.wer_metric.value = rate
        return torch.tensor(0.0)


class _Metric:
    value = 0.0

    def summarize(self, field):
        return self.value


def test_every_method_gets_the_same_episodes_and_budget():
    protocol = FewShotProtocol(_data(), "task", [0, 1, 5], 2, 10)
    spies = [_SpyBrain(0.0), _SpyBrain(0.1)]
    rows = [protocol.evaluate(spy, f"m{i}") for i, spy in enumerate(spies)]
    assert spies[0].seen == spies[1].seen
    # k = 0 is scored once per task (3 tasks), without adaptation: no
    # copied episodes narrow its interval.
    assert sum(1 for ids, _ in spies[0].seen if not ids) == 3
    assert {steps for ids, steps in spies[0].seen if ids} == {4}
    by_k = {r["k_shot"]: r for r in rows[0]}
    assert by_k[5]["cer_mean"] == pytest.approx(1 / 6)
    assert by_k[0]["n_episodes"] == 3 and by_k[0]["adapt_steps"] == 0
    assert by_k[5]["n_episodes"] == 6 and by_k[5]["adapt_steps"] == 4
    assert by_k[5]["adaptation"]["rule"] == "own"
    assert len(by_k[5]["episode_cers"]) == 6
    assert rows[1][0]["cer_mean"] == pytest.approx(rows[0][0]["cer_mean"] + 0.1)


def test_seeds_pool_over_every_episode():
    protocol = FewShotProtocol(_data(), "task", [0, 5], 2, 10)
    docs = []
    for seed, bias in ((1, 0.0), (2, 0.2)):
        rows = protocol.evaluate(_SpyBrain(bias), "m")
        for row in rows:
            row.update(budget="tuned", seeds=[seed])
        docs.append({"protocol": protocol.description(), "results": rows})
    pooled = {r["k_shot"]: r for r in pool_seeds(docs)["results"]}
    assert pooled[5]["seeds"] == [1, 2] and pooled[5]["budget"] == "tuned"
    assert pooled[5]["n_episodes"] == 12
    assert pooled[5]["cer_mean"] == pytest.approx(1 / 6 + 0.1)
    values = (
        docs[0]["results"][1]["episode_cers"]
        + docs[1]["results"][1]["episode_cers"]
    )
    assert pooled[5]["cer_ci95"] == pytest.approx(
        confidence_interval(values)[1]
    )
    assert pooled[0]["n_episodes"] == 6


class _DivergingBrain(_SpyBrain):
    def adapted_weights(self, support, **kwargs):
        if support is not None and len(support.id) >= 5:
            raise NonFiniteInnerLoss(2, "gradient")
        return super().adapted_weights(support, **kwargs)


def test_diverging_adaptation_is_a_counted_failure_not_a_crash(caplog):
    protocol = FewShotProtocol(_data(), "task", [0, 1, 5], 2, 10)
    rows = {r["k_shot"]: r for r in protocol.evaluate(_DivergingBrain(0), "x")}
    assert rows[5]["cer_mean"] == 1.0 and rows[5]["diverged_episodes"] == 6
    assert rows[1]["diverged_episodes"] == 0 and rows[1]["cer_mean"] < 1
    assert "diverged" in caplog.text


def test_results_files_and_schema(tmp_path):
    protocol = FewShotProtocol(_data(), "task", [0, 1, 5], 2, 10)
    rows = protocol.evaluate(_SpyBrain(0.0), "joint")
    rows += protocol.evaluate(_SpyBrain(0.05), "maml")
    doc = write_results(tmp_path, protocol.description(), rows, "t")
    on_disk = json.loads((tmp_path / "few_shot_results.json").read_text())
    assert validate_results(on_disk) == ["joint", "maml"]
    assert (tmp_path / "few_shot_cer.png").stat().st_size > 1000
    table = (tmp_path / "few_shot_results.md").read_text()
    assert "| maml |" in table and "CER % k=5" in table
    assert results_table(rows) in (tmp_path / "few_shot_results.md").read_text()
    broken = json.loads(json.dumps(doc))
    del broken["results"][0]["cer_ci95"]
    with pytest.raises(ValueError, match="cer_ci95"):
        validate_results(broken)
    broken = json.loads(json.dumps(doc))
    broken["results"].pop()
    with pytest.raises(ValueError, match="maml"):
        validate_results(broken)


def test_merge_refuses_different_episodes():
    a = FewShotProtocol(_data(), "task", [0, 5], 2, 10, seed=1)
    b = FewShotProtocol(_data(), "task", [0, 5], 2, 10, seed=2)
    docs = [
        {"protocol": p.description(), "results": p.evaluate(_SpyBrain(0), m)}
        for p, m in ((a, "x"), (b, "y"))
    ]
    with pytest.raises(ValueError, match="different episodes"):
        merge_results(docs)
    assert len(merge_results([docs[0], docs[0]])["results"]) == 4


class _TranslatingBrain(_SpyBrain):
    """A translation recipe: its TEST stage also makes a ``bleu_metric``
    (BLEU in sacrebleu's 0-100 scale), rising with the support size."""

    def on_stage_start(self, stage, epoch):
        super().on_stage_start(stage, epoch)
        self.bleu_metric = _Metric()

    def task_loss(self, fast, batch, stage):
        self.bleu_metric.value = 10.0 * fast["n"] + 100.0 * self.bias
        return super().task_loss(fast, batch, stage)


def test_translation_rows_carry_bleu_through_pooling_table_and_plot(tmp_path):
    """A recipe with a ``bleu_metric`` gets BLEU in every row (as a
    fraction, episode by episode, pooled over seeds), its table is by BLEU
    and a BLEU plot is written; a diverged episode scores BLEU 0; a BLEU
    outside [0, 1] is refused."""
    protocol = FewShotProtocol(_data(), "task", [0, 1, 5], 2, 10)
    docs = []
    for seed, bias in ((1, 0.0), (2, 0.2)):
        rows = protocol.evaluate(_TranslatingBrain(bias), "m")
        for row in rows:
            row.update(budget="tuned", seeds=[seed])
        docs.append({"protocol": protocol.description(), "results": rows})
    by_k = {r["k_shot"]: r for r in docs[0]["results"]}
    assert by_k[0]["bleu_mean"] == pytest.approx(0.0)
    assert by_k[5]["bleu_mean"] == pytest.approx(0.5)
    assert by_k[5]["episode_bleus"] == pytest.approx([0.5] * 6)
    pooled = {r["k_shot"]: r for r in pool_seeds(docs)["results"]}
    assert pooled[5]["bleu_mean"] == pytest.approx(0.6)
    assert len(pooled[5]["episode_bleus"]) == 12
    rows = pool_seeds(docs)["results"]
    write_results(tmp_path, protocol.description(), rows, "st")
    table = (tmp_path / "few_shot_results.md").read_text()
    assert "BLEU % k=5" in table and "| 60.0 ± " in table
    assert "WER %: " in table and "CER %: " in table
    assert (tmp_path / "few_shot_bleu.png").stat().st_size > 1000
    document = json.loads((tmp_path / "few_shot_results.json").read_text())
    document["results"][0]["bleu_mean"] = 60.0  # not a fraction
    with pytest.raises(ValueError, match="bleu_mean"):
        validate_results(document)

    class Diverging(_TranslatingBrain):
        def adapted_weights(self, support, **kwargs):
            if support is not None and len(support.id) >= 5:
                raise NonFiniteInnerLoss(2, "gradient")
            return super().adapted_weights(support, **kwargs)

    rows = {r["k_shot"]: r for r in protocol.evaluate(Diverging(0), "d")}
    assert rows[5]["bleu_mean"] == 0.0 and rows[5]["cer_mean"] == 1.0
    assert rows[1]["bleu_mean"] == pytest.approx(0.1)
