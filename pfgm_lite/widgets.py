"""Moved to pfgm_lite.teaching.widgets (notebook-only code); this name keeps notebooks written before the move working."""
from .teaching.widgets import *  # noqa: F403
