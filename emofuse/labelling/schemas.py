"""What the labelling API answers: the JSON shapes of its responses (in the OpenAPI schema),
made from the desk's plain dataclasses."""

from __future__ import annotations

from dataclasses import asdict

from pydantic import BaseModel, Field

from emofuse.corpus.answers import Answer
from emofuse.labelling.desk import DeskView


class GuessOut(BaseModel):
    label: str = Field(description="The model's most probable label for the clip.")
    probability: float
    second: str | None = Field(None, description="The runner-up label.")
    second_probability: float | None = None


class ClipOut(BaseModel):
    id: str = Field(description="The pool's id of the clip (send it back with the label).")
    text: str = Field(description="The clip's transcript ('' when the pool has none).")
    has_audio: bool = Field(description="False for a text-only row: GET /label/audio is 404.")
    duration_s: float | None
    position: int = Field(description="1-based place of the clip in the labelling order.")
    guess: GuessOut | None = Field(None, description="The model's guess (with --bundle).")


class ProgressOut(BaseModel):
    pool_size: int = Field(description="Clips in the labelling order.")
    answered_by_me: int
    answered_by_anyone: int
    mine: dict[str, int] = Field(description="label -> clips this annotator gave it.")
    everyone: dict[str, int] = Field(
        description="label -> clips whose annotators' majority is that label."
    )
    ties: int = Field(description="Clips whose annotators are split evenly.")
    shared: int = Field(description="Clips answered by two or more annotators.")
    agreeing: int = Field(description="Of those, the clips on which all of them agree.")


class LastOut(BaseModel):
    id: str
    label: str = Field(description="This annotator's answer.")
    others: dict[str, str] = Field(description="annotator -> their answer on the same clip.")


class NextOut(BaseModel):
    annotator: str = Field(description="Whose answers these are (from the token, or --annotator).")
    labels: list[str] = Field(description="The label set, in key order (1-9 for the first nine).")
    colours: dict[str, str] = Field(description="label -> '#rrggbb', the emotion palette.")
    clip: ClipOut | None = Field(description="The clip to label next; null when all are done.")
    progress: ProgressOut
    last: LastOut | None = Field(description="This annotator's latest standing answer.")


class AnswerOut(BaseModel):
    id: str
    label: str = Field(description="The label ('' for a retraction).")
    annotator: str
    time: str = Field(description="UTC, ISO 8601.")
    action: str = Field(description='"label", or "retract" for an undo.')


class UndoOut(BaseModel):
    undone: AnswerOut | None = Field(
        description="The retraction appended, or null when there was nothing to undo."
    )


class SkipOut(BaseModel):
    skipped: str


def answer_out(answer: Answer) -> AnswerOut:
    return AnswerOut(**asdict(answer))


def next_out(view: DeskView, labels: list[str], colours: dict[str, str]) -> NextOut:
    """``view`` (nested dataclasses, validated field by field) with the label set."""
    return NextOut(**asdict(view), labels=labels, colours=colours)
