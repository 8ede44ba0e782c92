"""Progress of a run: a tqdm bar per epoch on a terminal, else one plain line per epoch."""
import contextlib
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """What fit prints: every `every`-th epoch and the last, to `stream` (stderr by default)."""
    every: int = 1
    stream: Any = None

    def __post_init__(self):
        if not (isinstance(self.every, int) and self.every >= 1):
            raise ValueError(f"Progress: every must be a positive int, got {self.every!r}")

    @property
    def out(self):
        return self.stream if self.stream is not None else sys.stderr

    def epoch(self, epoch, epochs, batches, shown=True):
        """The bar (or line) of one epoch; silent unless `shown` and the epoch is one to show."""
        shown = shown and (epoch % self.every == 0 or epoch == epochs)
        return EpochBar(shown, batches, f"epoch {epoch}/{epochs}", self.out)


class EpochBar:
    """tqdm over the batches of one epoch when tqdm is installed and `stream` is a terminal, else one line."""

    def __init__(self, enabled, total, desc, stream):
        self.bar, self.enabled, self.stream, self.desc = None, enabled, stream, desc
        if enabled and total > 1 and _is_terminal(stream):     # no \r updates into a log file
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, file=stream, leave=True, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, postfix=None, steps=1):
        if self.bar is not None:
            with _lost_stream_ignored(self):
                if postfix is not None:
                    self.bar.set_postfix(postfix, refresh=False)
                self.bar.update(steps)

    def close(self, line):
        with _lost_stream_ignored(self):
            if self.bar is not None:
                self.bar.set_postfix_str(line)
                self.bar.close()
            elif self.enabled:
                print(f"{self.desc}: {line}", file=self.stream, flush=True)


@contextlib.contextmanager
def _lost_stream_ignored(bar):
    """Progress is not worth a run: a stream that is gone (a closed pipe, a full log disk) silences the bar."""
    try:
        yield
    except OSError:
        bar.bar, bar.enabled = None, False


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):   # no isatty, or a closed stream
        return False
