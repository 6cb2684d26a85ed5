"""Promote a sweep's winner once its last candidate has ended, from the worker side."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from app.db import session_scope
from app.sweeps.service import settle_sweep

log = logging.getLogger(__name__)


def settle_sweeps(sweep_ids: Iterable[str | None]) -> None:
    """Settle each sweep (a candidate of it just ended: finished, failed or reaped), each in
    its own transaction. Best effort: reading a sweep settles it too, so a failure here loses
    nothing and is only logged."""
    for sweep_id in dict.fromkeys(s for s in sweep_ids if s):
        try:
            with session_scope() as s:
                settle_sweep(s, sweep_id)
        except Exception:
            log.exception("sweep %s: settling failed (GET /v1/sweeps/{id} retries it)", sweep_id)
