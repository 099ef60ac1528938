"""One emotion palette (emofuse.palette) for the PNGs and the page: the colours the
service sends with GET /labels are the ones timeline.png is drawn with; the reliability
diagram shows every colour it uses in its legend; timeline.png explains its faded label
strip and puts ticks on its p(emotion) axis."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from matplotlib.colors import to_hex

from emofuse.bundle import Prediction
from emofuse.labels import KOREAN_EMOTIONS, KOREAN_TO_ENGLISH
from emofuse.metrics import plot_reliability
from emofuse.palette import KOREAN_EMOTION_COLOURS, label_colours
from emofuse.serve import create_app
from emofuse.timeline.outputs import plot_timeline
from emofuse.timeline.result import Timeline

KOREAN = list(KOREAN_EMOTIONS.names)
HEX = re.compile(r"^#[0-9a-f]{6}$")


class LabelsOnly:
    """A model of the seven Korean emotions that is never asked to predict."""

    labels = KOREAN
    modality = "speech"
    needs_text = False
    needs_audio = True

    def predict(self, audio, texts=None, *, asr=None):
        return [Prediction(KOREAN[0], {label: 1 / 7 for label in KOREAN}) for _ in audio]


def _kept_figure(monkeypatch) -> list:
    """The figures a plot function closes, kept for inspection."""
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    return kept


# --- the palette ---------------------------------------------------------------------


def test_the_seven_korean_emotions_have_their_own_colours_by_either_name():
    colours = label_colours(KOREAN)
    assert colours == KOREAN_EMOTION_COLOURS and len(set(colours.values())) == 7
    assert all(HEX.match(c) for c in colours.values())
    korean = label_colours(KOREAN_TO_ENGLISH)  # the Korean names: the same colours
    assert [korean[k] for k in KOREAN_TO_ENGLISH] == [
        colours[e] for e in KOREAN_TO_ENGLISH.values()
    ]
    assert label_colours(["Sad", "happy"]) == {"Sad": colours["sad"], "happy": colours["happy"]}


@pytest.mark.parametrize(
    "labels",
    [
        ["loud", "soft"],
        ["anxious", "fear", "calm", "x"],  # fear shares anxious's colour: it gets another
        [f"class-{i}" for i in range(30)],  # past the fallback palette: spread hues
    ],
)
def test_any_other_label_set_gets_distinct_colours_deterministically(labels):
    colours = label_colours(labels)
    assert list(colours) == labels
    assert len(set(colours.values())) == len(labels)
    assert all(HEX.match(c) for c in colours.values())
    assert label_colours(list(labels)) == colours


# --- served to the page, drawn in the PNG ---------------------------------------------


def test_labels_answer_carries_the_palette_the_timeline_png_uses(tmp_path, monkeypatch):
    answer = TestClient(create_app(LabelsOnly(), warm=False)).get("/labels").json()
    assert answer["labels"] == KOREAN
    assert answer["colours"] == label_colours(KOREAN) == KOREAN_EMOTION_COLOURS

    # Each segment sure of one emotion: its probability band has that emotion's colour.
    rows = []
    for i, label in enumerate(KOREAN):
        row = {"start_s": 2.0 * i, "end_s": 2.0 * i + 1.5, "label": label, "confidence": 1.0}
        row.update({f"p_{x}": float(x == label) for x in KOREAN})
        rows.append(row)
    summary = {"recording": {"path": "talk.wav", "duration_s": 14.0}}
    kept = _kept_figure(monkeypatch)
    plot_timeline(Timeline(pd.DataFrame(rows), summary, KOREAN), tmp_path / "timeline.png")
    (fig,) = kept
    ax = fig.axes[0]
    drawn = {}  # band colour per segment start, from the full-height bars
    for bar in ax.patches:
        if bar.get_height() > 0.5:
            drawn[round(bar.get_x(), 3)] = to_hex(bar.get_facecolor())
    assert [drawn[2.0 * i] for i in range(7)] == [answer["colours"][x] for x in KOREAN]
    emotion_legend = next(lg for lg in fig.legends if lg.get_title().get_text() == "")
    shown = {t.get_text(): to_hex(h.get_facecolor())
             for t, h in zip(emotion_legend.get_texts(), emotion_legend.legend_handles, strict=True)}  # fmt: skip
    assert shown == answer["colours"]


def test_timeline_png_explains_the_faded_strip_and_ticks_its_probability_axis(
    tmp_path, monkeypatch
):
    rows = [{"start_s": 0.0, "end_s": 2.0, "label": "calm", "confidence": 0.4,
             "p_calm": 0.4, "p_tense": 0.6}]  # fmt: skip
    kept = _kept_figure(monkeypatch)
    timeline = Timeline(pd.DataFrame(rows), {"recording": {"duration_s": 2.0}}, ["calm", "tense"])
    plot_timeline(timeline, tmp_path / "timeline.png")
    (fig,) = kept
    strip = next(lg for lg in fig.legends if "confidence" in lg.get_title().get_text())
    alphas = [h.get_alpha() for h in strip.legend_handles]
    assert alphas == sorted(alphas, reverse=True) and alphas[-1] < 0.5  # faded = unsure
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[:5] == ["0", ".25", ".5", ".75", "1"] and "label" in ticks
    assert fig.axes[0].get_ylabel() == "p(emotion)"


def test_reliability_diagram_shows_every_colour_it_draws_in_its_legend(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(0, 1, (300, 4))
    logits[np.arange(300), y] += 1.5
    proba = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    kept = _kept_figure(monkeypatch)
    plot_reliability(y, proba, tmp_path / "reliability.png")
    (fig,) = kept
    top = fig.axes[0]
    legend = top.get_legend()
    entries = {
        text.get_text(): handle
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    assert {"accuracy", "gap to mean confidence"} <= set(entries)

    def colours(patch) -> set[str]:
        """What a bar shows: its fill if filled, else its edge (the hatching)."""
        face = patch.get_facecolor()
        return {to_hex(face)} if face[3] > 0 else {to_hex(patch.get_edgecolor())}

    in_legend = set().union(*(colours(h) for h in entries.values() if hasattr(h, "get_hatch")))
    bars = top.patches
    assert bars and set().union(*(colours(b) for b in bars)) <= in_legend
    # No bar is see-through filled: where the gap lies over an accuracy bar, the two
    # never blend into a colour that the legend does not show.
    assert all(b.get_facecolor()[3] in (0.0, 1.0) for b in bars)
    gaps = [b for b in bars if b.get_hatch()]
    assert gaps and all(b.get_facecolor()[3] == 0.0 for b in gaps)
