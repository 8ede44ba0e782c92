"""Stopping a run on a signal. SIGINT (Ctrl-C) and SIGTERM (what a scheduler, `timeout` or a container stop sends)
ask the loop to stop after the step it is in: it writes the checkpoint, report and curves and raises RunStopped,
whose exit status is the shell's convention (128 + the signal: 130, 143). A Ctrl-C after the first signal stops at
once (KeyboardInterrupt); the last checkpoint written stays."""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(Exception):
    """The run stopped on a signal after writing its checkpoint; exit_status is 128 + the signal's number."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum, self.exit_status = signum, 128 + signum


class StopSignals:
    """Within the `with` block, SIGINT and SIGTERM are recorded in `received` instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere the block records nothing and signals keep their
    usual effect. A block inside another one (fit inside the `gpudl train` command) shares the outer one's record.
    """

    def __init__(self):
        self.received = None        # the first signal's number
        self._previous = {}

    @staticmethod
    def installed():
        """The StopSignals whose block holds the handlers now, or None."""
        owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        return owner if isinstance(owner, StopSignals) else None

    @property
    def name(self):
        return signal.Signals(self.received).name if self.received is not None else None

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt     # Ctrl-C after a first signal: stop now
        if self.received is None:
            self.received = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False
