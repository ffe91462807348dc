"""Stopping a process's runs at a step boundary: signals, a parent's event, a parent's death."""

from __future__ import annotations

import os
import signal
import time


class StopFlag:
    """SIGTERM/SIGINT: finish the current epoch, checkpoint, mark the run resumable, exit."""

    def __init__(self, event=None, parent: int | None = None):
        self._requested = False
        self._event = event  # a multiprocessing Event shared with a parent, if any
        self.child = None  # the isolated cell's process, which gets the signal passed on
        # the pid of a parent this process reports to: its death (even by SIGKILL, which runs no
        # handler) is a stop request, so an orphan leaves its run resumable
        self._parent = parent

    @property
    def requested(self) -> bool:
        return (
            self._requested
            or (self._event is not None and self._event.is_set())
            or self.orphaned
        )

    @property
    def orphaned(self) -> bool:
        return self._parent is not None and os.getppid() != self._parent

    @requested.setter
    def requested(self, value: bool) -> None:
        self._requested = value

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def __call__(self, signum, frame):
        self.requested = True
        if self.child is not None and self.child.pid:
            os.kill(self.child.pid, signal.SIGTERM)

    def install(self):
        previous = {s: signal.signal(s, self) for s in (signal.SIGTERM, signal.SIGINT)}
        return lambda: [signal.signal(s, h) for s, h in previous.items()]
