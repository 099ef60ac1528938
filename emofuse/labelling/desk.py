"""The labelling work, without HTTP: which clip an annotator sees next, taking an answer
(appended to answers.csv at once, before it counts), undo and skip, and the clip's audio
file looked up by the pool's id (never by a path a client sends).

answers.csv is the only thing written. It is read once on start, so a restarted page
resumes where each annotator left off; one server per answers.csv (annotators share it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emofuse.corpus.answers import RETRACT, Answer, append_answer, read_answers
from emofuse.corpus.pool import Pool
from emofuse.labelling.queue import LabelQueue, Progress
from emofuse.labels import LabelSet, UnknownLabelError


class UnknownClip(LookupError):
    """An id the pool does not hold (the message never repeats a long id)."""


class NoAudio(LookupError):
    """A clip of a text-only row, or one whose audio file is gone."""


@dataclass(frozen=True)
class Guess:
    """The model's guess on a clip: its top label and the runner-up, with probabilities."""

    label: str
    probability: float
    second: str | None = None
    second_probability: float | None = None


@dataclass(frozen=True)
class Clip:
    """What the page shows of one clip."""

    id: str
    text: str
    has_audio: bool
    duration_s: float | None
    #: 1-based place in the labelling order
    position: int
    guess: Guess | None


@dataclass(frozen=True)
class LastAnswer:
    """An annotator's latest standing answer and what the others said on that clip."""

    id: str
    label: str
    others: dict[str, str]


@dataclass(frozen=True)
class DeskView:
    """Everything the page needs after a step: the next clip, the progress, the last answer."""

    annotator: str
    clip: Clip | None
    progress: Progress
    last: LastAnswer | None


class LabellingDesk:
    """A pool's clips in a labelling order, the label set, and answers.csv.

    ``order``: the ids to walk (default: the pool's unlabelled clips in pool order);
    ``guesses``: the model's guess per id, shown beside the clip. Thread safe."""

    def __init__(
        self,
        pool: Pool,
        labels: LabelSet,
        answers_path: str | Path,
        *,
        order: Sequence[str] | None = None,
        guesses: Mapping[str, Guess] | None = None,
    ):
        self.pool = pool
        self.labels = labels
        self.answers_path = Path(answers_path)
        self.guesses = dict(guesses or {})
        if order is None:
            unlabelled = pool.table[pool.table["label"] == ""]
            order = unlabelled["id"].tolist()
        self.queue = LabelQueue(order, labels.names)
        log = read_answers(self.answers_path)
        #: lines of answers.csv that could not be read (a line torn by a kill), as found
        self.skipped_lines = log.skipped
        #: answers in answers.csv on clips not in the order (another pool's, a hand edit)
        self.foreign_answers = self.queue.replay(log.answers)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- steps

    def view(self, annotator: str) -> DeskView:
        with self._lock:
            ident = self.queue.next_for(annotator)
            return DeskView(
                annotator=annotator,
                clip=None if ident is None else self._clip(ident),
                progress=self.queue.progress(annotator),
                last=self._last(annotator),
            )

    def answer(self, annotator: str, ident: str, label: str) -> Answer:
        """Append ``annotator``'s ``label`` for clip ``ident`` to answers.csv (fsynced)
        and count it. :class:`UnknownClip` or ``UnknownLabelError`` before any write."""
        self._check_id(ident)
        canonical = self.labels.canonical(label)
        with self._lock:
            saved = append_answer(self.answers_path, id=ident, label=canonical, annotator=annotator)
            self.queue.record(annotator, ident, canonical)
        return saved

    def undo(self, annotator: str) -> Answer | None:
        """Withdraw ``annotator``'s latest answer (a ``retract`` line) and serve that clip
        again next; None when they have nothing to undo."""
        with self._lock:
            ident = self.queue.last_answered(annotator)
            if ident is None:
                return None
            saved = append_answer(self.answers_path, id=ident, annotator=annotator, action=RETRACT)
            self.queue.undo(annotator)
        return saved

    def skip(self, annotator: str, ident: str) -> None:
        """Serve ``ident`` to ``annotator`` after the rest (in memory only: nothing written)."""
        self._check_id(ident)
        with self._lock:
            self.queue.skip(annotator, ident)

    def audio_file(self, ident: str) -> Path:
        """The pool's audio file of clip ``ident``."""
        self._check_id(ident)
        audio = str(self.pool.row(ident)["audio"])
        if not audio:
            raise NoAudio("this clip has no audio (a text-only row): its text is the clip")
        path = Path(audio)
        if not path.is_file():
            raise NoAudio("the audio file of this clip cannot be found on the server")
        return path

    # ---------------------------------------------------------------- helpers

    def _check_id(self, ident: str) -> None:
        if ident not in self.queue.index:
            raise UnknownClip(f"no clip with id {ident[:80]!r} in this pool's labelling order")

    def _clip(self, ident: str) -> Clip:
        row = self.pool.row(ident)
        duration = row.get("duration_s")
        return Clip(
            id=ident,
            text=str(row.get("text") or ""),
            has_audio=bool(row.get("audio")),
            duration_s=None if duration is None or duration != duration else float(duration),
            position=self.queue.index[ident] + 1,
            guess=self.guesses.get(ident),
        )

    def _last(self, annotator: str) -> LastAnswer | None:
        ident = self.queue.last_answered(annotator)
        if ident is None:
            return None
        by_annotator = self.queue.standing.get(ident, {})
        return LastAnswer(
            id=ident,
            label=by_annotator[annotator],
            others={name: lab for name, lab in by_annotator.items() if name != annotator},
        )


__all__ = [
    "Clip",
    "DeskView",
    "Guess",
    "LabellingDesk",
    "LastAnswer",
    "NoAudio",
    "UnknownClip",
    "UnknownLabelError",
]
