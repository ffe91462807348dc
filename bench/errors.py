"""Errors a user can act on: each carries one line naming the bad value and what was expected."""


class BenchError(Exception):
    """Base of every error `python -m bench` reports as one line."""


class SpecError(BenchError, ValueError):
    """A matrix or command line that does not describe a valid benchmark (exit 2)."""


class DataError(BenchError):
    """A dataset file that is missing, corrupted or of the wrong shape."""


class RunFailed(BenchError):
    """A run that diverged or raised; the runner records it and goes on."""

    def __init__(self, reason: str, epoch: int | None = None):
        super().__init__(reason if epoch is None else f"epoch {epoch}: {reason}")
        self.reason = reason
        self.epoch = epoch
