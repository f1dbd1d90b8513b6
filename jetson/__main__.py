"""``python3 -m jetson``: the fer-edge agent on an NVIDIA Jetson (see jetson/agent.py)."""

import sys

from .agent import main

if __name__ == "__main__":
    sys.exit(main())
