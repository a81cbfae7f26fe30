"""Episodic data: task sampling and episode collation.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.data.episode import Episode, EpisodeCollate
from speechbrain_meta.data.sampler import TaskSampler, WayShotSampler

__all__ = ["Episode", "EpisodeCollate", "TaskSampler", "WayShotSampler"]
