"""Moved to pfgm_lite.teaching.exercises (notebook-only code); this name keeps notebooks written before the move working."""
from .teaching.exercises import *  # noqa: F403
