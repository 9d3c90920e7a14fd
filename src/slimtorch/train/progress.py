"""The progress bar of fine-tuning: loss, samples per second and time left (tqdm).

Shown on rank 0 only, and only when stderr is a terminal; elsewhere (a log file, CI) a
``Progress`` prints one plain line every tenth of the run instead, if ``progress`` is on.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``update(steps, samples, loss)`` after each optimizer step; ``close()`` at the end."""

    def __init__(self, total: int, done: int, enabled: bool, main: bool) -> None:
        self.total, self.done, self._initial = total, done, done
        self.enabled = enabled and main
        self._bar: Any = None
        self._start = time.perf_counter()
        self._samples = 0
        self._every = max(1, total // 10)
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=done, unit="step", dynamic_ncols=True)

    def update(self, samples: int, loss: float) -> None:
        self.done += 1
        self._samples += samples
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = self._samples / elapsed
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}", refresh=False)
            self._bar.update(1)
        elif self.done % self._every == 0 or self.done == self.total:
            left = (self.total - self.done) * elapsed / max(self.done - self._initial, 1)
            print(
                f"step {self.done}/{self.total}  loss {loss:.4f}  {rate:.0f} samples/s  "
                f"ETA {left:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
