"""The batcher's queue: which rows go into the next forward pass, fairly and on time.

Every input of a request is a *row*. Rows wait in queues keyed by (backbone, precision,
length bucket) and, inside each, by tenant. :meth:`Scheduler.next_batch` builds one forward:

1. **Who is next**: the tenant that has been served the fewest tokens (start-time fair
   queueing: a tenant that becomes active starts level with the least-served active tenant,
   so idling earns no credit). Its oldest row names the queue: backbone, precision, bucket.
2. **Fill**: rows of that queue from every tenant, round robin in order of tokens served,
   until ``max_examples`` rows or ``max_tokens`` padded tokens. A tenant's rows are charged
   to it as they are taken. One batch may mix many models on the shared backbone.
3. **Wait a little**: when the queue cannot fill a batch yet and its oldest row is younger
   than ``max_wait_s``, wait for more rows (an idle device batches requests that arrive a
   few milliseconds apart); a busy device never waits, its queue has filled meanwhile.

Length buckets are powers of two (8, 16, 32, ...), so a row is never padded to more than
twice its length. Rows of a request that is finished (past its deadline, or failed) are
dropped where they are found: work past a deadline is never computed.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from app.inference.protocol import InferRequest
from worker.serving.encoding import InputRow
from worker.serving.members import Member

QueueKey = tuple[str, torch.dtype, int]


def bucket(length: int) -> int:
    """The power of two (at least 8) a row of ``length`` tokens is batched with."""
    size = 8
    while size < length:
        size *= 2
    return size


@dataclass(eq=False)
class Pending:
    """A request inside the worker: its rows, and their logits as forwards compute them."""

    request: InferRequest
    member: Member
    rows: Sequence[InputRow]
    #: rows per input when some input has several (long_text chunks); None: one each
    counts: list[int] | None = None
    received: float = field(default_factory=time.monotonic)
    finished: bool = False
    logits: list[torch.Tensor | None] = field(init=False)
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.logits = [None] * len(self.rows)
        self.remaining = len(self.rows)

    @property
    def tokens(self) -> int:
        return sum(len(row) for row in self.rows)


@dataclass(eq=False)
class Row:
    pending: Pending
    index: int
    seq: int
    arrived: float

    @property
    def length(self) -> int:
        return len(self.pending.rows[self.index])


@dataclass
class Batch:
    key: QueueKey
    rows: list[Row]

    @property
    def dtype(self) -> torch.dtype:
        return self.key[1]

    @property
    def padded_tokens(self) -> int:
        return len(self.rows) * max(row.length for row in self.rows)


class Scheduler:
    def __init__(
        self,
        *,
        max_examples: int,
        max_tokens: int,
        max_wait_s: float,
        on_expired: Callable[[Pending], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.max_examples = max(1, max_examples)
        self.max_tokens = max(1, max_tokens)
        self.max_wait_s = max_wait_s
        self.on_expired = on_expired
        self.clock, self.wall = clock, wall
        self._cond = threading.Condition()
        self._queues: dict[str, dict[QueueKey, deque[Row]]] = {}
        self._served: dict[str, float] = {}
        self._deadlines: list[tuple[float, int, Pending]] = []
        self._seq = itertools.count()
        self.rows_waiting = 0

    # -- in --------------------------------------------------------------------------------
    def submit(self, pending: Pending) -> None:
        tenant = pending.request.tenant
        now = self.clock()
        with self._cond:
            queues = self._queues.get(tenant)
            if queues is None:
                floor = min((self._served[t] for t in self._queues), default=0.0)
                self._served[tenant] = max(self._served.get(tenant, 0.0), floor)
                queues = self._queues[tenant] = {}
            backbone, dtype = pending.member.backbone.key, pending.member.dtype
            for index, encoded in enumerate(pending.rows):
                key = (backbone, dtype, bucket(len(encoded)))
                row = Row(pending, index, next(self._seq), now)
                queues.setdefault(key, deque()).append(row)
            self.rows_waiting += len(pending.rows)
            heapq.heappush(self._deadlines, (pending.request.deadline, next(self._seq), pending))
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- out -------------------------------------------------------------------------------
    def next_batch(self, timeout: float) -> Batch | None:
        """The next forward's rows; None when nothing was ready within ``timeout``."""
        give_up = self.clock() + timeout
        with self._cond:
            while True:
                self._expire()
                choice = self._choose()
                now = self.clock()
                if choice is None:
                    if now >= give_up:
                        return None
                    self._cond.wait(give_up - now)
                    continue
                key, oldest = choice
                age = now - oldest.arrived
                if age < self.max_wait_s and not self._can_fill(key) and now < give_up:
                    self._cond.wait(min(self.max_wait_s - age, give_up - now))
                    continue
                return Batch(key, self._fill(key))

    def _expire(self) -> None:
        if len(self._deadlines) > 4096:  # answered requests leave their entries behind
            self._deadlines = [entry for entry in self._deadlines if not entry[2].finished]
            heapq.heapify(self._deadlines)
        now = self.wall()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, pending = heapq.heappop(self._deadlines)
            if not pending.finished:
                self.on_expired(pending)

    def _head(self, tenant: str, key: QueueKey) -> Row | None:
        """The tenant's first live row in ``key`` (rows of finished requests are dropped)."""
        rows = self._queues[tenant].get(key)
        while rows and rows[0].pending.finished:
            rows.popleft()
            self.rows_waiting -= 1
        return rows[0] if rows else None

    def _choose(self) -> tuple[QueueKey, Row] | None:
        best: tuple[float, int, QueueKey, Row] | None = None
        for tenant in list(self._queues):
            for key in list(self._queues[tenant]):
                row = self._head(tenant, key)
                if row is None:
                    del self._queues[tenant][key]
                    continue
                rank = (self._served[tenant], row.seq, key, row)
                if best is None or rank[:2] < best[:2]:
                    best = rank
            if not self._queues[tenant]:
                del self._queues[tenant]
        if not self._queues:
            self._served.clear()  # nobody waits: everyone starts level again
        return None if best is None else (best[2], best[3])

    def _can_fill(self, key: QueueKey) -> bool:
        waiting = sum(len(queues.get(key, ())) for queues in self._queues.values())
        return waiting >= self.max_examples or waiting * key[2] >= self.max_tokens

    def _fill(self, key: QueueKey) -> list[Row]:
        order = sorted(
            (t for t in self._queues if key in self._queues[t]), key=self._served.__getitem__
        )
        rows: list[Row] = []
        width = 0
        while order and len(rows) < self.max_examples:
            still: list[str] = []
            for tenant in order:
                head = self._head(tenant, key)
                if head is None:
                    continue
                wider = max(width, head.length)
                if rows and (len(rows) + 1) * wider > self.max_tokens:
                    return rows
                self._queues[tenant][key].popleft()
                self.rows_waiting -= 1
                self._served[tenant] += head.length
                rows.append(head)
                width = wider
                still.append(tenant)
                if len(rows) >= self.max_examples:
                    return rows
            order = still
        return rows
