"""Moved to pfgm_lite.teaching.plotting (notebook-only code); this name keeps notebooks written before the move working."""
from .teaching.plotting import *  # noqa: F403
