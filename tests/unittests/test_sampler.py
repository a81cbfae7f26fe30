"""TaskSampler: disjoint episodes, determinism, DDP split, skips, resume."""

import logging

import pytest
import torch
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_meta.data import Episode, TaskSampler


def make_dataset(sizes):
    data, n = {}, 0
    for task, size in sizes.items():
        for _ in range(size):
            data[f"utt{n}"] = {"spk_id": task, "x": float(n)}
            n += 1
    ds = DynamicItemDataset(data)
    ds.set_output_keys(["id", "spk_id", "x"])
    return ds


SIZES = {"a": 10, "b": 12, "c": 3, "d": 9, "e": 11}


def test_support_and_query_are_disjoint_and_from_one_task():
    ds = make_dataset(SIZES)
    sampler = TaskSampler(ds, "spk_id", 4, 4, episodes_per_epoch=50, seed=1)
    for indices in sampler:
        assert len(indices) == 8 and len(set(indices)) == 8
        tasks = {ds.data[ds.data_ids[i]]["spk_id"] for i in indices}
        assert len(tasks) == 1


def test_deterministic_by_seed_and_epoch():
    ds = make_dataset(SIZES)

    def draw(seed, epoch):
        s = TaskSampler(ds, "spk_id", 3, 2, episodes_per_epoch=20, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert draw(1, 0) == draw(1, 0)
    assert draw(1, 0) != draw(1, 1)
    assert draw(1, 0) != draw(2, 0)
    assert len(TaskSampler(ds, "spk_id", 3, 2, episodes_per_epoch=7)) == 7


def test_small_tasks_are_skipped_with_a_count(caplog):
    ds = make_dataset(SIZES)
    with caplog.at_level(logging.WARNING):
        sampler = TaskSampler(ds, "spk_id", 5, 5, episodes_per_epoch=5)
    assert sampler.skipped_tasks == {"c": 3, "d": 9}
    assert sampler.tasks == ["a", "b", "e"]
    assert "skipped 2 of 5 tasks" in caplog.text
    with pytest.raises(ValueError, match="no task grouped by 'spk_id'"):
        TaskSampler(ds, "spk_id", 10, 10)


def test_ddp_ranks_get_different_tasks():
    ds = make_dataset(SIZES)
    per_rank = [
        list(TaskSampler(ds, "spk_id", 2, 2, 30, seed=5, rank=r, world_size=2))
        for r in range(2)
    ]
    for ep0, ep1 in zip(*per_rank):
        t0 = ds.data[ds.data_ids[ep0[0]]]["spk_id"]
        t1 = ds.data[ds.data_ids[ep1[0]]]["spk_id"]
        assert t0 != t1


def test_fixed_query_is_the_same_every_episode():
    ds = make_dataset(SIZES)
    s = TaskSampler(ds, "spk_id", 3, 4, 40, seed=2, fixed_query=True)
    queries = {}
    for ep in s:
        task = ds.data[ds.data_ids[ep[0]]]["spk_id"]
        queries.setdefault(task, set()).add(tuple(ep[3:]))
        assert not set(ep[:3]) & set(ep[3:])
    assert all(len(q) == 1 for q in queries.values())


def test_collation_and_intra_epoch_resume(tmp_path):
    ds = make_dataset(SIZES)

    def loader():
        s = TaskSampler(ds, "spk_id", 2, 3, episodes_per_epoch=6, seed=9)
        s.set_epoch(3)
        return SaveableDataLoader(
            ds, batch_sampler=s, collate_fn=s.collate_fn()
        )

    full = [ep.support.id + ep.query.id for ep in loader()]
    first = loader()
    ckpt = Checkpointer(tmp_path, {"loader": first})
    for i, ep in enumerate(first):
        assert isinstance(ep, Episode) and ep.n_support == 2
        assert ep.n_query == 3 and ep.task in SIZES
        assert torch.is_tensor(ep.query.x)
        if i == 2:
            ckpt.save_checkpoint(end_of_epoch=False)
            break
    resumed = loader()
    Checkpointer(tmp_path, {"loader": resumed}).recover_if_possible()
    rest = [ep.support.id + ep.query.id for ep in resumed]
    assert rest == full[3:]
