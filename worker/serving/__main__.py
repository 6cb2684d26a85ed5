"""``python -m worker.serving``: run an inference worker (see worker/serving/server.py)."""

from worker.serving.server import main

raise SystemExit(main())
