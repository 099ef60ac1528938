"""What head training tells the person running it: one line per phase (what is fitted,
on which rows, what for), one progress bar per fit (epochs; on a terminal only, gone when
the fit ends) and one line per epoch only when asked (``verbose``, ``emofuse train
--verbose``).

A training run is several fits in a row (model selection by CV, the fit on train with
val watched, calibration on val, the refit on train + val, a ``both`` model's
single-modality heads): without a heading each, a second "epoch 1/67" after "epoch
86/86" says nothing of what it is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TrainingLog:
    """Where and how much training says.

    ``progress``: the phase lines, and a bar per fit when stderr is a terminal (the rule of
    every bar in emofuse); ``verbose``: one line per epoch too (and the phase lines, even
    without ``progress``); ``say`` receives each line (default: stderr). ``phases`` off
    keeps a fit's own lines to itself (a ``both`` model's single-modality heads are
    announced once for both); ``label`` names the fit in its bar; ``views``: training rows
    per clip (speaker normalisation trains on each clip seen several ways)."""

    progress: bool = True
    verbose: bool = False
    say: Callable[[str], None] | None = None
    phases: bool = True
    label: str = ""
    views: int = 1

    @property
    def talks(self) -> bool:
        """Whether phase lines are shown."""
        return self.phases and (self.progress or self.verbose)

    def phase(self, line: str) -> None:
        """One phase's line (nothing when the log is quiet)."""
        if self.talks:
            (self.say or _to_stderr)(line)

    def rows(self, n: int) -> str:
        """``n`` training rows in words: '243 rows', or for rows seen in speaker-normalised
        views (``views`` copies of each) '243 rows in 3 speaker-normalised views'."""
        if self.views <= 1:
            return f"{n} rows"
        return f"{n // self.views} rows in {self.views} speaker-normalised views"

    @contextlib.contextmanager
    def waiting(self, text: str) -> Iterator[None]:
        """A phase without a bar (model selection by CV): ``text ...`` on a terminal while
        it runs, wiped when it ends (its own line follows), like a bar that is not kept."""
        shown = self.talks and self.progress and self.say is None and sys.stderr.isatty()
        if shown:
            sys.stderr.write(f"{text} ...")
            sys.stderr.flush()
        try:
            yield
        finally:
            if shown:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()

    def quiet_fits(self, label: str) -> TrainingLog:
        """The log of fits announced elsewhere: their bar (named ``label``), no lines."""
        return replace(self, phases=False, verbose=False, label=label)

    @contextlib.contextmanager
    def epochs(self, total: int, desc: str) -> Iterator[Callable[[str], None]]:
        """A bar of ``total`` epochs for one fit; yields what receives each epoch's line
        (:func:`emofuse.head.train.run_epochs`' ``log``): it advances the bar and, with
        ``verbose``, prints the line above it."""
        bar = epoch_bar(total, f"{self.label}: {desc}" if self.label else desc, self.progress)
        say = self.say or _to_stderr

        def epoch_done(line: str) -> None:
            if self.verbose:
                with bar.external_write_mode(file=sys.stderr):
                    say(line)
            bar.update(1)

        try:
            yield epoch_done
        finally:
            bar.close()


def epoch_bar(total: int, desc: str, progress: bool) -> Any:
    """A tqdm bar of epochs on stderr; off when ``progress`` is False or stderr is not a
    terminal, and cleared when closed (the phase lines stay, the bars do not)."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit="epoch", leave=False, dynamic_ncols=True,
        disable=not (progress and sys.stderr.isatty()), file=sys.stderr,
    )  # fmt: skip


def head_name(config: Any) -> str:
    """The head a :class:`~emofuse.head.config.TrainConfig` trains, in words."""
    blend, c = float(config.logistic_blend or 0.0), float(config.logistic_c)
    if blend >= 1.0:
        return f"logistic regression (C={c:g})"
    name = f"{config.head} head"
    return name + (f" + logistic regression (w={blend:g}, C={c:g})" if blend else "")


def fit_on_train_line(
    log: TrainingLog, config: Any, n_train: int, n_val: int | None, epochs: int
) -> str:
    """The line of a fit on the train part: the head, the rows, the epochs, and what the
    val rows (``n_val``; None: no val part) are for under the config's recipe."""
    head = f"fit on train: {log.rows(n_train)}, {epochs} epochs, {head_name(config)}"
    if not n_val:
        return f"{head}; the last epoch kept (no val part): the model saved"
    val = f"val ({log.rows(n_val)})"
    if config.recipe == "paper":
        return f"{head}; the epoch with the best UAR on {val} kept: the model saved"
    uses = ["the training history"]
    if config.patience > 0:
        head = head.replace(f", {epochs} epochs", f", up to {epochs} epochs")
        uses.append(f"the epoch count (patience {config.patience})")
    if config.calibrate:
        uses.append("calibration")
    uses = ", ".join(uses[:-1]) + " and " + uses[-1] if len(uses) > 1 else uses[0]
    watched = f"{head}; {val} watched for {uses}"
    return watched if config.refit else f"{watched}: the model saved"
