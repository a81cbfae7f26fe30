"""Property tests of the TaskSampler (hypothesis)."""

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_meta.data import TaskSampler


@st.composite
def corpora(draw):
    """Task sizes (some too small for an episode), K, Q and a seed."""
    n_support = draw(st.integers(0, 4))
    n_query = draw(st.integers(1 if n_support == 0 else 0, 4))
    need = n_support + n_query
    sizes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=8))
    sizes.append(need + draw(st.integers(0, 5)))  # at least one eligible
    data = [{"spk_id": f"s{t}"} for t, n in enumerate(sizes) for _ in range(n)]
    return data, n_support, n_query, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(corpora(), st.booleans(), st.integers(0, 5))
def test_support_and_query_are_disjoint_utterances_of_one_task(
    corpus, fixed_query, epoch
):
    data, k, q, seed = corpus
    sampler = TaskSampler(
        data, "spk_id", k, q, 20, seed, fixed_query=fixed_query
    )
    sampler.set_epoch(epoch)
    for episode in sampler:
        assert len(episode) == len(set(episode)) == k + q
        assert len({data[i]["spk_id"] for i in episode}) == 1
    eligible = {
        t for t, n in Counter(d["spk_id"] for d in data).items() if n >= k + q
    }
    assert set(sampler.tasks) == eligible


@settings(max_examples=40, deadline=None)
@given(corpora(), st.integers(0, 5))
def test_same_seed_and_epoch_same_episodes(corpus, epoch):
    data, k, q, seed = corpus
    a = TaskSampler(data, "spk_id", k, q, 15, seed)
    b = TaskSampler(data, "spk_id", k, q, 15, seed)
    a.set_epoch(epoch)
    b.set_epoch(epoch)
    assert list(a) == list(b)
    assert list(a) == list(a)  # a restart re-reads the same epoch


def _within_bounds(counts, draws, tasks):
    """Each task's count within 6 standard deviations of the binomial mean."""
    p = 1 / len(tasks)
    mean, sd = draws * p, math.sqrt(draws * p * (1 - p))
    return all(abs(counts[t] - mean) <= 6 * sd + 1 for t in tasks)


@settings(max_examples=40, deadline=None)
@given(corpora())
def test_every_eligible_task_is_drawn_within_bounds(corpus):
    data, k, q, seed = corpus
    probe = TaskSampler(data, "spk_id", k, q, 1, seed)
    draws = 40 * len(probe.tasks)
    sampler = TaskSampler(data, "spk_id", k, q, draws, seed)
    counts = Counter(data[e[0]]["spk_id"] for e in sampler)
    assert set(counts) == set(sampler.tasks)  # every one, at least once
    assert _within_bounds(counts, draws, sampler.tasks)


@settings(max_examples=40, deadline=None)
@given(corpora(), st.integers(2, 4))
def test_ranks_draw_disjoint_tasks_and_cover_all(corpus, world_size):
    data, k, q, seed = corpus
    per_rank = 30 * len(TaskSampler(data, "spk_id", k, q, 1, seed).tasks)
    ranks = [
        list(TaskSampler(data, "spk_id", k, q, per_rank, seed, rank=r,
                         world_size=world_size))
        for r in range(world_size)
    ]  # fmt: skip
    tasks = TaskSampler(data, "spk_id", k, q, 1, seed).tasks
    pooled = Counter()
    for step in zip(*ranks):
        step_tasks = [data[e[0]]["spk_id"] for e in step]
        if len(tasks) >= world_size:  # distinct tasks at every step
            assert len(set(step_tasks)) == world_size
        pooled.update(step_tasks)
    # Together the ranks draw like one process drawing world_size x as many
    # episodes: every task, within the same bounds.
    assert set(pooled) == set(tasks)
    assert _within_bounds(pooled, per_rank * world_size, tasks)
