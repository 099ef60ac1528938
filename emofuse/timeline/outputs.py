"""A timeline on disk: ``segments.csv``, ``summary.json`` and ``timeline.png``.

The picture has one panel per channel: each segment is a column as wide as the segment,
split into bands by the probability of each emotion (the band chart), under a strip
whose colour is the label and whose strength is the confidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from emofuse.outputs import OutputFiles
from emofuse.palette import label_colours

if TYPE_CHECKING:
    import pandas as pd

SEGMENTS_FILE = "segments.csv"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "timeline.png"


class TimelineLike(Protocol):
    """What is written: a :class:`emofuse.timeline.result.Timeline` (which writes itself
    with :func:`write_timeline`, so this module does not import it back)."""

    table: pd.DataFrame
    summary: dict[str, Any]
    labels: list[str]

    def channels(self) -> dict[str, pd.DataFrame]: ...


def write_timeline(timeline: TimelineLike, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "segments": out / SEGMENTS_FILE,
        "summary": out / SUMMARY_FILE,
        "plot": out / PLOT_FILE,
    }
    # Each file is written beside its name and all are renamed into place at the end, the
    # summary last: a full disk or a kill never leaves a cut file beside whole ones.
    with OutputFiles() as files:
        with files.writing(paths["segments"]) as partial:
            timeline.table.to_csv(partial, index=False, float_format="%.4g")
        with files.writing(paths["plot"]) as partial:
            plot_timeline(timeline, partial)
        with files.writing(paths["summary"]) as partial:
            partial.write_text(
                json.dumps(timeline.summary, indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
    return paths


def plot_timeline(timeline: TimelineLike, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    labels = timeline.labels
    colours = label_colours(labels)
    parts = timeline.channels()
    duration = float(timeline.summary.get("recording", {}).get("duration_s", 0.0)) or 1.0
    fig_height = 1.15 + 2.2 * len(parts)  # inches; the top 0.6 hold the title and the legends
    fig, axes = plt.subplots(len(parts), 1, figsize=(12, fig_height), squeeze=False, sharex=True)
    for ax, (name, table) in zip(axes[:, 0], parts.items(), strict=True):
        if len(table):
            starts = table["start_s"].to_numpy(float)
            widths = (table["end_s"] - table["start_s"]).to_numpy(float)
            bottom = np.zeros(len(table))
            for label in labels:
                height = table[f"p_{label}"].to_numpy(float)
                ax.bar(starts, height * 0.8, widths, bottom=bottom, align="edge",
                       color=colours[label], linewidth=0)  # fmt: skip
                bottom += height * 0.8
            for start, width, label, confidence in zip(
                starts, widths, table["label"], table["confidence"], strict=True
            ):
                ax.bar(start, 0.15, width, bottom=0.83, align="edge", color=colours[label],
                       alpha=float(np.clip(confidence, 0.15, 1.0)), linewidth=0)  # fmt: skip
        else:
            ax.text(0.5, 0.5, "no speech found", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(0, duration)
        ax.set_ylim(0, 1)
        ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 0.905], ["0", ".25", ".5", ".75", "1", "label"])
        ax.set_ylabel("p(emotion)" if name == "mix" else f"channel {name}\np(emotion)")
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1, 0].set_xlabel("time (s)")
    name = Path(str(timeline.summary.get("recording", {}).get("path", ""))).name
    # The title first, the legends in a row under it, then the panels (legends above the
    # title read as a second caption).
    below_top = 1 - 0.35 / fig_height  # figure fraction 0.35 in under the top edge
    fig.suptitle(
        f"emotion over time: {name}" if name else "emotion over time", y=1 - 0.06 / fig_height
    )
    fig.legend(
        handles=[Patch(color=colours[x], label=x) for x in labels],
        loc="upper right", bbox_to_anchor=(0.995, below_top), ncol=min(len(labels), 7),
        frameon=False, fontsize=8,
    )  # fmt: skip
    fig.legend(  # the label strip's strength is the confidence
        handles=[Patch(color="#555555", alpha=a, label=f"{a:.0%}") for a in (1.0, 0.6, 0.3)],
        title="label strip: confidence", title_fontsize=8, loc="upper left",
        bbox_to_anchor=(0.005, below_top + 0.12 / fig_height), ncol=3, frameon=False, fontsize=8,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig_height))
    fig.savefig(path, dpi=110, format="png")  # not from the name: it may be a .partial
    plt.close(fig)
    return Path(path)
