"""Prototypical networks, and the prototype head that gives them to any method.

Prototypical networks (Snell et al., 2017) classify a query by its distance
to each class's prototype, the mean embedding of the class's support
examples::

    c_n = mean_{x in S_n} f(x)
    p(y = n | q) = softmax_n(-||f(q) - c_n||^2)

Since ``-||f - c||^2 = 2 c.f - ||c||^2 - ||f||^2`` and the last term is the
same for every class, this is a linear output layer with weights ``2 c_n``
and biases ``-||c_n||^2`` on top of the embedding (Triantafillou et al.,
2020). ``PrototypeHead`` sets a classifier's output layer so, from the
support set of a task, as any method's ``task_init``: with no inner step it
*is* a prototypical network (``ProtoNet``), with inner steps it is
Proto-MAML, and it gives a fine-tuned baseline or an ANIL model an output
layer for any number of classes (N-way tasks of any N from one model).

The episode's labels are the classes' positions in the episode (the
``way`` key that ``EpisodeCollate`` writes with a ``label_key``).

Authors
 * speechbrain-meta developers 2026
"""

import speechbrain as sb
import torch

from speechbrain_meta.algorithms.maml import MAML
from speechbrain_meta.inner import InnerLoop  # noqa: F401 (doctests)


class PrototypeHead:
    """A task's output layer from its support set's class prototypes.

    The support batch is run through the model with the task's weights; a
    hook reads the input of the output layer (the embedding); the output
    layer's weight and bias entries of the weights are replaced by
    ``2 c_n`` and ``-||c_n||^2`` (a tensor of N rows for N classes,
    whatever size the model's own output layer has). Gradients flow into
    the embedding through the prototypes.

    Arguments
    ---------
    head : str
        The output layer's module name in ``brain.modules`` (e.g.
        ``classifier.out.w``, a ``torch.nn.Linear``).
    label_key : str
        The batch key holding each example's class position in the episode.

    Example
    -------
    >>> head = PrototypeHead("out")
    >>> emb = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> weight, bias = head.layer(emb, torch.tensor([0, 0, 1]))
    >>> weight, bias
    (tensor([[4., 0.],
            [0., 4.]]), tensor([-4., -4.]))
    """

    def __init__(self, head, label_key="way"):
        self.head = head
        self.label_key = label_key

    def layer(self, embeddings, labels):
        """The output layer of the prototypes of these examples.

        Arguments
        ---------
        embeddings : torch.Tensor
            ``[examples, dim]``.
        labels : torch.Tensor
            ``[examples]`` class positions ``0 .. N-1``, each present.

        Returns
        -------
        tuple of torch.Tensor
            ``weight`` ``[N, dim]`` and ``bias`` ``[N]``.
        """
        n_way = int(labels.max()) + 1
        one_hot = torch.nn.functional.one_hot(labels, n_way).to(embeddings)
        counts = one_hot.sum(0)
        if bool((counts == 0).any()):
            missing = sorted(set(range(n_way)) - set(labels.tolist()))
            raise ValueError(
                f"PrototypeHead: classes {missing} have no support example"
            )
        prototypes = (one_hot.t() @ embeddings) / counts[:, None]
        return 2.0 * prototypes, -(prototypes**2).sum(-1)

    def locate(self, modules):
        """The output layer and its name, through DDP wrappers.

        Under ``torchrun`` a brain's modules are wrapped in
        ``DistributedDataParallel``: ``classifier.out.w`` is then
        ``classifier.module.out.w`` (the names of the weights alike).

        Arguments
        ---------
        modules : torch.nn.Module
            The brain's modules.

        Returns
        -------
        tuple
            ``(module, name)``.
        """
        module, path = modules, []
        for part in self.head.split("."):
            if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                module, path = module.module, path + ["module"]
            module, path = module.get_submodule(part), path + [part]
        return module, ".".join(path)

    def embeddings(self, learner, params, batch):
        """The inputs of the output layer for a batch, with these weights.

        Arguments
        ---------
        learner : MetaBrain
            The brain.
        params : dict
            Weights to run with.
        batch : PaddedBatch
            The examples.

        Returns
        -------
        torch.Tensor
            ``[examples, dim]``.
        """
        module, _ = self.locate(learner.modules)
        seen = []
        hook = module.register_forward_pre_hook(
            lambda _, inputs: seen.append(inputs[0])
        )
        try:
            # A support forward: normalisation statistics stay as they are.
            with learner.support_forward_context(False):
                learner.call_with(
                    params, learner.compute_forward, batch, sb.Stage.TRAIN
                )
        finally:
            hook.remove()
        if not seen:
            raise RuntimeError(
                f"PrototypeHead: the forward never reached {self.head!r}"
            )
        return seen[-1].reshape(batch.batchsize, -1)

    def __call__(self, learner, params, support):
        """The task's starting weights: ``params`` with a prototype head.

        Arguments
        ---------
        learner : MetaBrain
            The brain.
        params : dict
            The weights the task starts from.
        support : PaddedBatch
            The support set, with ``label_key``.

        Returns
        -------
        dict
        """
        labels = torch.as_tensor(
            getattr(support, self.label_key), device=learner.device
        )
        weight, bias = self.layer(
            self.embeddings(learner, params, support), labels
        )
        # The inner loop differentiates the support loss with respect to
        # the weights and the head as separate variables: the weights enter
        # as new graph nodes (views), of which the head does not depend, so
        # their inner gradients are partial derivatives. The outer gradient
        # still reaches the weights through both.
        start = {n: w.view_as(w) for n, w in params.items()}
        _, name = self.locate(learner.modules)
        start[f"{name}.weight"] = weight
        start[f"{name}.bias"] = bias
        return start


def prototype_head(head=None, label_key="way"):
    """A ``PrototypeHead`` on this output layer, or None without one.

    For the hparams fragments (``prototype_head: <module name>`` or null).

    Arguments
    ---------
    head : str, optional
        The output layer's module name.
    label_key : str
        The batch key of the episode's class positions.

    Returns
    -------
    PrototypeHead or None

    Example
    -------
    >>> prototype_head(None) is None, prototype_head("out").head
    (True, 'out')
    """
    return None if head is None else PrototypeHead(head, label_key)


class ProtoNet(MAML):
    """Prototypical networks: the query loss of the prototype head.

    With ``inner_steps`` 0 (the default of ``protonet.yaml``) the outer
    objective is Snell et al.'s: the cross-entropy of the queries under
    the softmax of negative squared distances to the support prototypes,
    back-propagated into the embedding. With inner steps, the prototype
    head (and whatever else the inner loop adapts) is then fine-tuned on
    the support: Proto-MAML (Triantafillou et al., 2020).

    Arguments
    ---------
    inner_loop : InnerLoop
        Inner-loop settings (0 steps: a plain prototypical network).
    head : str
        The output layer's module name (see ``PrototypeHead``).
    label_key : str
        The batch key of the episode's class positions.
    **kwargs : dict
        As for ``MAML``.

    Example
    -------
    >>> proto = ProtoNet(InnerLoop(inner_steps=0), head="classifier.out.w")
    >>> proto.task_init.head
    'classifier.out.w'
    """

    def __init__(self, inner_loop, head, label_key="way", **kwargs):
        super().__init__(
            inner_loop, task_init=PrototypeHead(head, label_key), **kwargs
        )
