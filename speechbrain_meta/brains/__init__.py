"""The meta-learning Brains.

``MetaBrain`` is the one brain: episodes, the outer step, learned update
rules, distributed gradient averaging, meta-state checkpointing.
``MetaTransferBrain`` adds a frozen backbone and per-task state files.
``MetaInitBrain`` and ``MetaOptimizerBrain`` name the two other families.
``meta_brain.py`` lists the files that hold ``MetaBrain``'s other concerns
(meta-test, episodic loading, DDP wrapping, the support-forward context,
fp16 inner loss scaling).

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.brains.meta_brain import MetaBrain
from speechbrain_meta.brains.meta_init import MetaInitBrain, MetaOptimizerBrain
from speechbrain_meta.brains.meta_transfer import MetaTransferBrain


def meta_brain_class(recipe_brain_class, meta_class=MetaInitBrain):
    """Puts a meta-learning Brain in front of an existing recipe's Brain.

    The recipe keeps its ``compute_forward``, ``compute_objectives`` and
    ``on_stage_end``; the meta Brain supplies ``fit_batch``,
    ``evaluate_batch`` and the episodic data loading. In yaml::

        meta_brain_class: !name:speechbrain_meta.MetaInitBrain

    and in ``train.py``::

        Brain = meta_brain_class(ASR, hparams["meta_brain_class"])

    Arguments
    ---------
    recipe_brain_class : type
        A subclass of ``speechbrain.Brain``.
    meta_class : type
        ``MetaInitBrain`` or another ``MetaBrain`` subclass.

    Returns
    -------
    type
        A class inheriting from both, the meta class first.

    Example
    -------
    >>> import speechbrain as sb
    >>> class ASR(sb.Brain):
    ...     pass
    >>> cls = meta_brain_class(ASR)
    >>> cls.__name__, issubclass(cls, ASR), issubclass(cls, MetaInitBrain)
    ('MetaInitASR', True, True)
    """
    if not issubclass(meta_class, MetaBrain):
        raise TypeError(f"{meta_class} is not a MetaBrain")
    if issubclass(recipe_brain_class, meta_class):
        return recipe_brain_class
    name = (
        meta_class.__name__.replace("Brain", "") + recipe_brain_class.__name__
    )
    return type(name, (meta_class, recipe_brain_class), {})


__all__ = [
    "MetaBrain",
    "MetaInitBrain",
    "MetaOptimizerBrain",
    "MetaTransferBrain",
    "meta_brain_class",
]
