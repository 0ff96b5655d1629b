"""Stopping a long job cleanly on SIGINT / SIGTERM: training stops between steps with a checkpoint, rendering
between frames (its output removed, or kept with --keep-partial). The exit status is the shell's for the signal:
128 + its number (130 for SIGINT, 143 for SIGTERM)."""

from __future__ import annotations

import signal
import threading


class StopSignals:
    """While a job runs: SIGINT and SIGTERM set `signum`, which the job reads between its steps (frames).
    A second signal acts at once as the previous handler would (Ctrl-C twice: KeyboardInterrupt; SIGTERM twice:
    the process ends), with no clean stop. Installed from the main thread only (Python delivers signals
    there); a signal that was ignored (SIG_IGN, e.g. SIGINT of a background job) stays ignored. The previous
    handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = 0
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self.previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum:  # the second signal
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def agreed(self, acc) -> int:
        """The signal every process of an accelerate run stops for now (the highest any process received; one
        reduce), 0 for none."""
        import torch  # here: heavy, and the CLI imports this module before it needs torch

        return int(acc.reduce(torch.tensor(float(self.signum), device=acc.device), "max"))

