"""Running the HTTP API under uvicorn with limits a slow or hostile client cannot hold open.

- **Header timeout** (``--header-timeout``, default 10 s): a connection whose request line and headers are not all
  in by then is closed (a "slowloris" sending a header byte now and then, or nothing after connecting).
- **Body timeout** (``--body-timeout``, default 60 s): a request whose body has not fully arrived by then is closed
  (the app sees the client as gone and answers nothing).
- **Keep-alive timeout** (5 s): an idle connection between requests is closed.
- **Connection cap** (``--max-connections``, default 64): over it, a new request gets HTTP 503 at once.
- Request heads over 16 KB are refused (h11's limit).
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT_S", "BODY_TIMEOUT_S", "KEEP_ALIVE_S", "MAX_CONNECTIONS", "timed_protocol", "run"]

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0
KEEP_ALIVE_S = 5.0
MAX_CONNECTIONS = 64


class _TimedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's head and one for its body."""

    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # the request is in and being answered: the app's own time, not the client's
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() sees the client gone
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._deadline is None:  # the first bytes of the next request on a kept-alive connection
            self._arm(self.header_timeout)
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is not before and cycle is not None:  # a request's head is in: now its body has a deadline
            if cycle.more_body:
                self._arm(self.body_timeout)
            else:
                self._disarm()
        elif cycle is not None and not cycle.more_body and not cycle.response_complete:
            self._disarm()  # the body is complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def timed_protocol(header_timeout: float = HEADER_TIMEOUT_S, body_timeout: float = BODY_TIMEOUT_S) -> type:
    """An h11 protocol class for uvicorn with these deadlines."""
    return type("TimedH11", (_TimedH11,), {"header_timeout": float(header_timeout), "body_timeout": float(body_timeout)})


def uvicorn_log_config() -> dict:
    """uvicorn's logging configuration with the library's "lookalike" loggers on uvicorn's own handler, so the
    server's log holds them in its format (configuring the logger drops the command line's one-line handler)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    from lookalike.log import LOGGER_NAME

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"][LOGGER_NAME] = {"handlers": ["default"], "level": "WARNING", "propagate": False}
    return cfg


def run(app: Any, host: str, port: int, header_timeout: float = HEADER_TIMEOUT_S, body_timeout: float = BODY_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve ``app`` until interrupted, with the limits above; the library logs through uvicorn's handler."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=uvicorn_log_config(),
                http=timed_protocol(header_timeout, body_timeout), timeout_keep_alive=int(KEEP_ALIVE_S),
                limit_concurrency=max_connections, h11_max_incomplete_event_size=16 * 1024)
