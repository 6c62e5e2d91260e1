"""The technician's tool: build, flash, provision, verify, image and list hall evaluators.

    python tools/flash.py VERB --help

Exit codes are bit flags OR-ed over every port: see tools/flashkit/errors.py or --help.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.flashkit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
