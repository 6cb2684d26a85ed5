"""``python -m tuneserve.cli``: the ``tuneserve`` command."""

import sys

from tuneserve.cli import main

sys.exit(main())
