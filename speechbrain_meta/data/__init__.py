"""Reading corpora: manifests and utterances checked up front, tasks, task
sampling and episode collation, and the units a corpus is trained with
(SentencePiece). What produces corpora is in ``speechbrain_meta.corpora``.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.data.episode import Episode, EpisodeCollate
from speechbrain_meta.data.sampler import TaskSampler, WayShotSampler

__all__ = ["Episode", "EpisodeCollate", "TaskSampler", "WayShotSampler"]
