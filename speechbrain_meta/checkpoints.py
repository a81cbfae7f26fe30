"""Checkpoints that survive a kill: atomic saves, random states, counters.

SpeechBrain's ``Checkpointer`` writes a checkpoint's ``CKPT.yaml`` first
and its parameter files after; a process killed in between leaves a
checkpoint that looks complete and does not load. ``AtomicCheckpointer``
writes into a hidden folder and renames it into place once everything is
on disk, so a kill during a save leaves the previous checkpoint the newest.
``RandomState`` makes the random number generators part of a checkpoint
(dropout, augmentation), and ``Counters`` any plain attributes of an
object (the meta-brain's skipped-episode counts), so a resumed run
continues exactly where the checkpoint was taken.

Authors
 * speechbrain-meta developers 2026
"""

import os
import pathlib
import random
import shutil

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    Checkpoint,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_meta.distributed import world

PARTIAL = ".partial-"


class AtomicCheckpointer(Checkpointer):
    """A ``Checkpointer`` whose checkpoints appear whole or not at all.

    A checkpoint is written into ``.partial-CKPT+...`` (which SpeechBrain
    does not list) and renamed to ``CKPT+...`` when every file is written.
    Leftovers of a killed save are removed at the next save. Use it in
    hparams exactly as ``Checkpointer``.

    Arguments
    ---------
    *args : tuple
        As for ``Checkpointer``.
    **kwargs : dict
        As for ``Checkpointer``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> layer = torch.nn.Linear(2, 2)
    >>> ckpter = AtomicCheckpointer(folder, {"layer": layer})
    >>> ckpt = ckpter.save_checkpoint()
    >>> sorted(os.listdir(folder)) == [ckpt.path.name]
    True
    >>> sorted(p.name for p in ckpt.path.iterdir())
    ['CKPT.yaml', 'layer.ckpt']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._final_dir = None

    def save_checkpoint(self, *args, **kwargs):
        """``Checkpointer.save_checkpoint``, renamed into place at the end.

        Arguments
        ---------
        *args : tuple
            As for ``Checkpointer.save_checkpoint``.
        **kwargs : dict
            As for ``Checkpointer.save_checkpoint``.

        Returns
        -------
        Checkpoint or None
            The saved checkpoint (None on other processes than the main).
        """
        if if_main_process():
            for leftover in self.checkpoints_dir.glob(PARTIAL + "*"):
                shutil.rmtree(leftover, ignore_errors=True)
        ckpt = super().save_checkpoint(*args, **kwargs)
        ddp_barrier()  # every process has written its files
        if ckpt is not None:
            final = self._final_dir
            os.replace(ckpt.path, final)
            ckpt = Checkpoint(
                final,
                ckpt.meta,
                {
                    k: final / pathlib.Path(p).name
                    for k, p in ckpt.paramfiles.items()
                },
            )
        # Every process sees the checkpoint before it goes on (to list the
        # checkpoints to delete, for instance).
        ddp_barrier()
        return ckpt

    def _new_checkpoint_dirpath(self):
        return self._partial(super()._new_checkpoint_dirpath())

    def _custom_checkpoint_dirpath(self, name):
        return self._partial(super()._custom_checkpoint_dirpath(name))

    def _partial(self, final):
        assert final.name.startswith(CKPT_PREFIX)
        self._final_dir = final
        return final.parent / (PARTIAL + final.name)


class RandomState:
    """The random generators' states (torch, CUDA, numpy, python) as a
    checkpoint recoverable.

    Each process saves and restores its own states (a file per rank).

    Arguments
    ---------
    defer : bool
        Restore the states of an intra-epoch checkpoint only at
        ``apply_pending()`` (the brain calls it before its next batch):
        creating the epoch's data-loader iterator draws from torch's
        generator, which the interrupted run did before that checkpoint.
        End-of-epoch checkpoints are restored at once.

    Example
    -------
    >>> import tempfile
    >>> ckpter = Checkpointer(tempfile.mkdtemp(), {"rng": RandomState()})
    >>> _ = ckpter.save_checkpoint()
    >>> a = torch.rand(1)
    >>> _ = ckpter.recover_if_possible()
    >>> torch.equal(torch.rand(1), a)
    True
    """

    def __init__(self, defer=False):
        self.defer = defer
        self.pending = None

    @staticmethod
    def _path(path):
        rank = world()[0]
        path = pathlib.Path(path)
        return path if rank == 0 else path.with_suffix(f".rank{rank}.ckpt")

    @mark_as_saver
    def save(self, path):
        """Writes this process's generator states.

        Arguments
        ---------
        path : str
            The checkpoint file.
        """
        state = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, self._path(path))

    @mark_as_loader
    def load(self, path, end_of_epoch):
        """Restores this process's generator states.

        Arguments
        ---------
        path : str
            The checkpoint file.
        end_of_epoch : bool
            Whether the checkpoint ends an epoch (see ``defer``).
        """
        state = torch.load(self._path(path), weights_only=False)
        if self.defer and not end_of_epoch:
            self.pending = state
        else:
            self._restore(state)

    def apply_pending(self):
        """Restores the states of a deferred load, if there is one."""
        if self.pending is not None:
            state, self.pending = self.pending, None
            self._restore(state)

    @staticmethod
    def _restore(state):
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


register_checkpoint_hooks(RandomState, save_on_main_only=False)


@register_checkpoint_hooks
class Counters:
    """Plain attributes of an object (counts, flags) as a recoverable.

    Arguments
    ---------
    owner : object
        Whose attributes.
    names : list of str
        The attributes.

    Example
    -------
    >>> import tempfile, types
    >>> brain = types.SimpleNamespace(skipped_episodes=3)
    >>> ckpter = Checkpointer(
    ...     tempfile.mkdtemp(), {"c": Counters(brain, ["skipped_episodes"])})
    >>> _ = ckpter.save_checkpoint()
    >>> brain.skipped_episodes = 7
    >>> _ = ckpter.recover_if_possible()
    >>> brain.skipped_episodes
    3
    """

    def __init__(self, owner, names):
        self.owner = owner
        self.names = list(names)

    @mark_as_saver
    def save(self, path):
        """Writes the attributes.

        Arguments
        ---------
        path : str
            The checkpoint file.
        """
        torch.save({n: getattr(self.owner, n) for n in self.names}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        """Restores the attributes.

        Arguments
        ---------
        path : str
            The checkpoint file.
        end_of_epoch : bool
            Unused.
        """
        del end_of_epoch
        for name, value in torch.load(path, weights_only=False).items():
            setattr(self.owner, name, value)
