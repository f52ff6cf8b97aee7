"""SHIFT for vision: find the SAE features a classifier uses for a cue it should ignore, trim them, measure the fix."""

from .run import Candidate, Ranking, Scores, ShiftError, ShiftResult, apply, evaluate, rank, retrain_head, shift
from .task import BIASED_MODEL, CUE_LAYER, build_cue_task, build_sample_cue_task, task_concepts

__all__ = ["shift", "rank", "apply", "Ranking", "ShiftResult", "Candidate", "Scores", "ShiftError", "evaluate",
           "retrain_head", "build_cue_task", "build_sample_cue_task",
           "task_concepts", "BIASED_MODEL", "CUE_LAYER"]
