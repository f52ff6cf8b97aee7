"""SHIFT for vision: find the SAE features a classifier uses for a cue it should ignore, trim them, measure the fix."""

from .run import Candidate, Scores, ShiftError, ShiftResult, evaluate, retrain_head, shift

__all__ = ["shift", "ShiftResult", "Candidate", "Scores", "ShiftError", "evaluate", "retrain_head"]
