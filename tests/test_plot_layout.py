"""What a newcomer reads off the PNGs and the training log: no legend over the data, the
title above the legends, learning-curve ticks at the grid's sizes, and a model-selection
line that says why a lower CV score won."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.text import Text

from emofuse.experiments.plots import plot_learning_curves
from emofuse.experiments.results import RESULT_COLUMNS
from emofuse.head.recipe import phase_lines
from emofuse.metrics import plot_reliability
from emofuse.timeline.outputs import plot_timeline
from emofuse.timeline.result import Timeline

LABELS = ["angry", "happy", "neutral", "sad"]


def _kept_figures(monkeypatch) -> list:
    """The figures a plot function closes, kept (and drawn) for inspection."""
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    return kept


def _extent(artist, fig):
    return artist.get_window_extent(fig.canvas.get_renderer())


def test_reliability_legend_sits_between_title_and_panel_not_over_the_bars(tmp_path, monkeypatch):
    # Under-confident: the low-confidence bins are all right, so their bars reach 1.0 at
    # the left, where a legend inside the panel would hide them.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    proba = np.full((200, 4), 0.2)
    proba[np.arange(200), y] = rng.uniform(0.3, 0.95, 200)
    proba /= proba.sum(axis=1, keepdims=True)
    kept = _kept_figures(monkeypatch)
    plot_reliability(y, proba, tmp_path / "reliability.png")
    (fig,) = kept
    fig.canvas.draw()
    top = fig.axes[0]
    legend, panel, title = (
        _extent(top.get_legend(), fig),
        _extent(top, fig),
        _extent(top.title, fig),
    )
    assert legend.y0 >= panel.y1 - 1  # wholly above the panel
    assert title.y0 >= legend.y1 - 1  # and under the title


def _timeline(channels: int) -> Timeline:
    rows = []
    for c in range(channels):
        for i, label in enumerate(LABELS):
            row = {"start_s": 2.0 * i, "end_s": 2.0 * i + 1.5, "label": label}
            row.update({"confidence": 0.4 + 0.15 * i, "channel": c})
            row.update({f"p_{x}": (0.7 if x == label else 0.1) for x in LABELS})
            rows.append(row)
    table = pd.DataFrame(rows)
    if channels == 1:
        table = table.drop(columns="channel")
    summary = {"recording": {"path": "talk.wav", "duration_s": 8.0}}
    return Timeline(table, summary, LABELS)


def test_timeline_png_reads_title_then_legends_then_panels(tmp_path, monkeypatch):
    for channels in (1, 2):
        kept = _kept_figures(monkeypatch)
        plot_timeline(_timeline(channels), tmp_path / f"timeline-{channels}.png")
        (fig,) = kept
        fig.canvas.draw()
        (title,) = [_extent(t, fig) for t in fig.findobj(Text) if "talk.wav" in t.get_text()]
        legends = [_extent(legend, fig) for legend in fig.legends]
        top_panel = max(_extent(ax, fig).y1 for ax in fig.axes)
        assert len(fig.axes) == channels and len(legends) == 2
        for legend in legends:
            assert title.y0 >= legend.y1 - 1 and legend.y0 >= top_panel - 1
        assert legends[0].x0 > legends[1].x1  # emotions right, confidence strip left


def test_learning_curves_tick_the_grid_sizes_and_one_all(tmp_path, monkeypatch):
    rows = []
    for modality in ("speech", "text"):
        for per_label in ("3", "6", "12", "all"):
            for seed in (0, 1):
                row = dict.fromkeys(RESULT_COLUMNS, "")
                n = 20 if per_label == "all" else int(per_label)
                row.update(cell_id=f"{modality}-{per_label}-{seed}", split_strategy="script",
                           modality=modality, speech_encoder="s" if modality == "speech" else "",
                           text_encoder="t" if modality == "text" else "", order="random",
                           per_label=per_label, seed=seed, n_train=4 * n, n_val=4, n_test=8,
                           accuracy=0.5 + 0.01 * n, uar=0.5 + 0.01 * n)  # fmt: skip
                rows.append(row)
    kept = _kept_figures(monkeypatch)
    plot_learning_curves(pd.DataFrame(rows), tmp_path, n_classes=4)
    (fig,) = kept
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "6", "12", "all"]
        assert not [t for t in ax.texts if t.get_text() == "all"]  # no label per curve


def _selection(chosen_uar: float, best_uar: float) -> dict:
    candidates = [
        {"name": "mlp+linear", "uar": best_uar},
        {"name": "logistic C=0.1", "uar": chosen_uar},
    ]
    return {"rows": 40, "folds": 4, "scheme": "speaker", "seconds": 1.0,
            "candidates": candidates, "choice": "logistic C=0.1",
            "rule": "the best logistic regression unless beaten by > 0.01 CV UAR"}  # fmt: skip


def test_model_selection_line_says_why_a_lower_cv_score_won():
    (line, _) = phase_lines(_selection(chosen_uar=0.867, best_uar=0.871))
    assert "chose logistic C=0.1 (CV UAR 0.867); default 0.871" in line
    assert "rule: the best logistic regression unless beaten by > 0.01" in line
    (line, _) = phase_lines(_selection(chosen_uar=0.9, best_uar=0.8))
    assert "rule:" not in line


def test_the_metrics_line_shows_the_ece_that_the_reliability_diagram_titles():
    from emofuse.metrics import compute_metrics, format_metrics, probability_metrics

    y = [0, 1, 1, 0]
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.6, 0.4]])
    metrics = compute_metrics(y, proba.argmax(axis=1), ["a", "b"])
    assert "ECE" not in format_metrics(metrics)
    metrics.update(probability_metrics(y, proba, ["a", "b"]))
    assert f"ECE {metrics['ece']:.3f}" in format_metrics(metrics)
