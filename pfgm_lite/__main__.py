"""`python -m pfgm_lite ...`: the command line of pfgm_lite.cli."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
