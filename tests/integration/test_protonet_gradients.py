"""Prototypical networks and prototype heads, checked through fit_batch.

A tiny float64 utterance classifier (global ``InputNormalization``,
BatchNorm in train mode, mean pooling, a linear output layer) behind a
``MetaBrain``, trained on N-way K-shot episodes that ``WayShotSampler``
draws and collates: the meta-gradient ``fit_batch`` leaves in ``.grad`` is
compared with central finite differences of the outer objective for
``ProtoNet`` (no inner step) and Proto-MAML (second order through the
prototype head), and ProtoNet's objective with its closed form
(cross-entropy under negative squared distances to the prototypes).
"""

import pytest
import torch
from speechbrain.nnet.normalization import BatchNorm1d
from speechbrain.processing.features import InputNormalization
from test_fit_batch_gradients import (
    ACCUMULATE,
    DEVICE,
    _check_against_fd,
    _check_first_order,
)

from speechbrain_meta import InnerLoop, MetaBrain
from speechbrain_meta.algorithms import ProtoNet
from speechbrain_meta.data import WayShotSampler

FEATS, HIDDEN = 3, 6


class TinyClassifier(MetaBrain):
    def compute_forward(self, batch, stage):
        x, lens = batch.x
        x = self.modules.normalize(x.to(self.device), lens.to(self.device))
        hidden = self.modules.net(x).mean(1)  # [batch, hidden]
        return self.modules.out(hidden).log_softmax(-1)

    def compute_objectives(self, predictions, batch, stage):
        targets = torch.as_tensor(batch.way).to(predictions.device)
        return torch.nn.functional.nll_loss(predictions, targets)


def _data(classes=4, per_class=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    data = []
    for c in range(classes):
        centre = torch.randn(FEATS, generator=gen, dtype=torch.float64)
        for i in range(per_class):
            frames = 6 + i % 3
            x = centre + 0.7 * torch.randn(
                frames, FEATS, generator=gen, dtype=torch.float64
            )
            data.append({"id": f"c{c}u{i}", "word": f"w{c}", "x": x})
    return data


def _episode(data, n_way=3, k=2, q=2, seed=0):
    sampler = WayShotSampler(data, "word", n_way, k, q, 1, seed=seed)
    indices = next(iter(sampler))
    return sampler.collate_fn()([data[i] for i in indices])


def _brain(inner_steps=0, first_order=True):
    torch.manual_seed(0)
    modules = {
        "normalize": InputNormalization(norm_type="global").double(),
        "net": torch.nn.Sequential(
            torch.nn.Linear(FEATS, HIDDEN),
            BatchNorm1d(input_size=HIDDEN),
            torch.nn.Tanh(),
        ).double(),
        "out": torch.nn.Linear(HIDDEN, 7).double(),  # size unused
    }
    algorithm = ProtoNet(
        InnerLoop(
            inner_steps=inner_steps, inner_lr=0.3, first_order=first_order
        ),
        head="out",
    )
    brain = TinyClassifier(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={
            "grad_accumulation_factor": ACCUMULATE,
            "adapt_in_train_mode": True,
        },
        run_opts={"device": DEVICE},
        meta_algorithm=algorithm,
    )
    brain.modules.train()
    with torch.no_grad():  # global statistics that are not empty
        brain.compute_forward(_episode(_data(seed=5)).support, None)
    brain.init_optimizers()
    return brain


def test_sampler_episode_labels_are_positions_of_shuffled_classes():
    data = _data(classes=6, per_class=4)
    sampler = WayShotSampler(data, "word", 3, 1, 2, 20, seed=0)
    collate = sampler.collate_fn()
    orders = set()
    for indices in sampler:
        episode = collate([data[i] for i in indices])
        classes = episode.task.split("+")
        assert len(set(classes)) == 3
        assert set(episode.support.id).isdisjoint(episode.query.id)
        for batch, k in ((episode.support, 1), (episode.query, 2)):
            assert list(batch.way) == [w for w in range(3) for _ in range(k)]
            assert [classes[w] for w in batch.way] == list(batch.word)
        orders.add(episode.task)
    assert len(orders) > 5  # the class-to-label mapping changes


def test_sampler_ranks_draw_different_episodes_of_the_same_step():
    data = _data(classes=6, per_class=4)
    ranks = [
        list(WayShotSampler(data, "word", 3, 1, 1, 5, seed=1, rank=r,
                            world_size=2))
        for r in (0, 1)
    ]  # fmt: skip
    assert len(ranks[0]) == len(ranks[1]) == 5
    assert ranks[0] != ranks[1]
    again = list(WayShotSampler(data, "word", 3, 1, 1, 5, seed=1, rank=0,
                                world_size=2))  # fmt: skip
    assert again == ranks[0]


def test_protonet_objective_is_cross_entropy_of_squared_distances():
    brain = _brain()
    episode = _episode(_data())
    brain.modules.eval()
    objective, _ = brain.meta_algorithm.outer_loss(brain, episode, 0)
    head = brain.meta_algorithm.task_init
    params = dict(brain.modules.named_parameters())
    support = head.embeddings(brain, params, episode.support)
    query = head.embeddings(brain, params, episode.query)
    labels = torch.as_tensor(episode.support.way)
    prototypes = torch.stack([support[labels == n].mean(0) for n in range(3)])
    logits = -(torch.cdist(query, prototypes) ** 2)
    expected = torch.nn.functional.cross_entropy(
        logits, torch.as_tensor(episode.query.way)
    )
    torch.testing.assert_close(objective, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "inner_steps,first_order", [(0, True), (2, False), (2, True)]
)
def test_prototype_head_meta_gradient_through_fit_batch(
    inner_steps, first_order
):
    """ProtoNet, Proto-MAML second and first order: the gradient reaches
    the embedding through the prototypes (and the model's own output
    layer, replaced by the prototype head, gets none)."""
    brain = _brain(inner_steps, first_order)
    episode = _episode(_data(), seed=3)
    tensors = [
        p
        for n, p in brain.modules.named_parameters()
        if not n.startswith("out")
    ]
    if first_order and inner_steps:
        _check_first_order(brain, episode, tensors)
    else:
        _check_against_fd(brain, episode, tensors)
    assert all(p.grad is None for p in brain.modules.out.parameters())
