"""Server-Sent Events: the line protocol (WHATWG HTML, "event stream interpretation") and the
resume position of a job's event stream. Shared by both clients; nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass

from tuneserve.models import JobEvent


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


class SSEDecoder:
    """Feed it the stream's lines one at a time (without their line ends); it returns an
    event at each blank line that ends one. Comments (``: ping``) are skipped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            sse = ServerSentEvent(self._event or "message", "\n".join(self._data), self._last_id)
            self._event, self._data = "", []
            return sse
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None


class EventCursor:
    """Where a job's event stream is: the id of the last event handed out, sent back as
    ``Last-Event-ID`` when the stream reconnects, so no event is lost or repeated."""

    def __init__(self, last_event_id: int | None = None) -> None:
        self.last_event_id = last_event_id

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return headers

    def accept(self, sse: ServerSentEvent) -> JobEvent | None:
        """The job event ``sse`` carries, unless it was handed out before."""
        return self.take(JobEvent.model_validate_json(sse.data))

    def take(self, event: JobEvent) -> JobEvent | None:
        """``event``, moving the cursor past it, unless it was handed out before."""
        if self.last_event_id is not None and event.id <= self.last_event_id:
            return None
        self.last_event_id = event.id
        return event
