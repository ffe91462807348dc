"""What a kdbench process writes to its stdout and stderr: never a known secret (see
`bench.secrets`), and never a reason to stop, since a reader may leave (`bench run ... | head`)
while training goes on: once a pipe is broken, its output goes to /dev/null."""

from __future__ import annotations

import os
import sys

from bench.secrets import scrub


class GuardedOutput:
    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            self._stream.write(scrub(text))
        except BrokenPipeError:
            self._to_devnull()
        return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_output() -> None:
    """Guard this process's stdout and stderr (once)."""
    if not isinstance(sys.stdout, GuardedOutput):
        sys.stdout = GuardedOutput(sys.stdout)
    if not isinstance(sys.stderr, GuardedOutput):
        sys.stderr = GuardedOutput(sys.stderr)
