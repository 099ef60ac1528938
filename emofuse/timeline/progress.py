"""The timeline's progress: one bar per pass over the recording (finding speech, then
predicting; per channel with ``channels="separate"``), each counting seconds of the
recording up to its length, so a bar ends at 100 % of what the recording holds.

One bar for both passes counted the recording twice, rounded to 0.1 s, and stopped short
of (or ran past) 100 %: the first pass counts decoded blocks, which may fall a fraction
short of the header's length, and the second counts segment ends.
"""

from __future__ import annotations

from typing import Any

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]"


class PassBar:
    """A bar of ``duration_s`` seconds (nothing when not ``enabled``), moved to positions in
    the recording (:meth:`reach`) and to its end when the pass is over (:meth:`close`)."""

    def __init__(self, duration_s: float, desc: str, enabled: bool):
        self.total_s = max(float(duration_s), 0.0)
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total_s, desc=desc, unit="s", leave=False, delay=0.5,
                bar_format=BAR_FORMAT,
            )  # fmt: skip

    def __enter__(self) -> PassBar:
        return self

    def __exit__(self, error_type: object, *exc: object) -> None:
        self.close(finished=error_type is None)

    def reach(self, position_s: float) -> None:
        """Move on to ``position_s`` seconds into the recording (never back, never past its
        length)."""
        if self.bar is None:
            return
        target = min(max(float(position_s), 0.0), self.total_s)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)

    def close(self, finished: bool = True) -> None:
        """End the pass: at the recording's length (100 %) when it ran to the end."""
        if self.bar is None:
            return
        if finished:
            self.bar.n = self.total_s  # exactly: float sums of the steps may fall short
            self.bar.refresh()  # drawn even when the last step came too soon to be
        self.bar.close()
        self.bar = None
