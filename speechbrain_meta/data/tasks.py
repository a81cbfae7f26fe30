"""What a task is: utterances grouped by a key, large enough to sample from.

The ``TaskSampler`` (training episodes) and the few-shot protocol
(evaluation episodes) both start here, so they agree on which utterances
form a task, what ``tasks=`` means, which tasks are too small, and how
episodes are seeded.

Authors
 * speechbrain-meta developers 2026
"""

import hashlib
from collections import OrderedDict

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def task_values(dataset, key):
    """The value of ``key`` for every index of a (filtered) dataset.

    Static CSV fields are read without loading any audio; a dynamic item or
    a plain list of dicts is computed.

    Arguments
    ---------
    dataset : DynamicItemDataset or list of dict
        The dataset.
    key : str
        The grouping key (``spk_id``, ``lang``, ...).

    Returns
    -------
    list
        One value per index.

    Example
    -------
    >>> task_values([{"spk_id": "a"}, {"spk_id": "b"}], "spk_id")
    ['a', 'b']
    """
    data = getattr(dataset, "data", None)
    data_ids = getattr(dataset, "data_ids", None)
    if data is not None and data_ids is not None:
        first = data[data_ids[0]] if data_ids else {}
        if key in first:
            return [data[i][key] for i in data_ids]
    if hasattr(dataset, "output_keys_as"):
        with dataset.output_keys_as([key]):
            return [dataset[i][key] for i in range(len(dataset))]
    return [dataset[i][key] for i in range(len(dataset))]


def stable_seed(*keys):
    """A 64-bit seed from strings and numbers, the same on every platform.

    (Python's ``hash`` of a string changes from process to process.)

    Arguments
    ---------
    *keys : str or int
        What the seed depends on.

    Returns
    -------
    int

    Example
    -------
    >>> stable_seed(1234, "en", 3) == stable_seed(1234, "en", 3)
    True
    >>> stable_seed(1234, "en", 3) == stable_seed(1234, "de", 3)
    False
    """
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def group_tasks(dataset, group_by, tasks=None, min_size=1, who="tasks"):
    """Groups a dataset's indices into tasks, keeping those large enough.

    Arguments
    ---------
    dataset : DynamicItemDataset or list of dict
        The dataset.
    group_by : str
        The key whose value names an utterance's task.
    tasks : list of str, optional
        Keep only these tasks. Asking for a task the data does not have is
        an error (a typo would otherwise silently change the experiment).
    min_size : int
        Tasks with fewer utterances are skipped, with one logged line.
    who : str
        Names the caller in the messages.

    Returns
    -------
    groups : OrderedDict
        Task name (str) to its indices in dataset order, sorted by name.
    skipped : dict
        Task name to size, for the tasks that were too small.

    Example
    -------
    >>> data = [{"spk": s} for s in "aabbbc"]
    >>> groups, skipped = group_tasks(data, "spk", min_size=2)
    >>> dict(groups), skipped
    ({'a': [0, 1], 'b': [2, 3, 4]}, {'c': 1})
    >>> group_tasks(data, "spk", tasks=["z"])
    Traceback (most recent call last):
    ...
    ValueError: tasks: tasks ['z'] not found by 'spk' (found ['a', 'b', 'c'])
    """
    groups = OrderedDict()
    for index, value in enumerate(task_values(dataset, group_by)):
        groups.setdefault(str(value), []).append(index)
    if tasks is not None:
        wanted = [str(t) for t in tasks]
        missing = sorted(set(wanted) - set(groups))
        if missing:
            raise ValueError(
                f"{who}: tasks {missing} not found by {group_by!r} "
                f"(found {sorted(groups)})"
            )
        groups = OrderedDict((t, groups[t]) for t in wanted)
    skipped = {t: len(v) for t, v in groups.items() if len(v) < min_size}
    if skipped:
        logger.warning(
            "%s: skipped %d of %d tasks (by %r) with fewer than %d "
            "utterances: %s",
            who,
            len(skipped),
            len(groups),
            group_by,
            min_size,
            ", ".join(f"{t} ({n})" for t, n in sorted(skipped.items())[:20]),
        )
    kept = OrderedDict(
        (t, v) for t, v in sorted(groups.items()) if len(v) >= min_size
    )
    if not kept:
        raise ValueError(
            f"{who}: no task grouped by {group_by!r} has the {min_size} "
            f"utterances needed ({len(groups)} tasks found, sizes "
            f"{dict(list(skipped.items())[:10])})"
        )
    return kept, skipped
