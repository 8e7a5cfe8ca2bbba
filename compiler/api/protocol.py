"""uvicorn's h11 protocol with a deadline for each request's headers.

uvicorn closes a connection idle after a response (timeout_keep_alive) but waits forever for the
first request, or for headers sent a byte at a time: hundreds of such connections exhaust the
server. Here a connection that has not sent a whole request line and headers within HEADER_S of
opening, or of its last answer, is closed. The access log is the guard's, which leaves out the
query string (where a client may have put a token).
"""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_S = 10.0


class DeadlineH11(H11Protocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False  # uvicorn's line has the query string; compiler/api/guard.py logs without it

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._waiting_for = self.cycle
        self._deadline = self.loop.call_later(HEADER_S, self._expire)

    def _expire(self) -> None:
        if self.cycle is self._waiting_for and not self.transport.is_closing():  # no new request since
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadline.cancel()
        self._arm()

    def connection_lost(self, exc) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)
