"""Moved to pfgm_lite.teaching.student (notebook-only code); this name keeps `python -m pfgm_lite.student` working."""
import sys

from .teaching.student import *  # noqa: F403
from .teaching.student import main

if __name__ == "__main__":
    sys.exit(main())
