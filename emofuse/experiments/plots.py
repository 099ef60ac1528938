"""Learning curves from a grid's results: accuracy and UAR against training clips per
emotion, a line per modality (and encoder) and sampling order, shaded ± one std over
seeds and folds; a log x axis when the sizes span a decade or more."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emofuse.experiments.tables import (
    MODALITY_NAMES,
    ORDER_NAMES,
    STRATEGY_NAMES,
    parse_per_label,
    strategy_name,
)
from emofuse.modalities import MODALITIES
from emofuse.sampling import ORDERS

_LINESTYLES = {"random": "-", "shortest": "--", "longest": ":", "diverse": "-."}
_LINESTYLES["speaker-balanced"] = (0, (5, 1, 1, 1, 1, 1))  # dash-dot-dot
_MARKERS = {"random": "o", "shortest": "v", "longest": "^", "diverse": "s"}
_MARKERS["speaker-balanced"] = "D"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "all"


def curve_points(
    results: pd.DataFrame, metric: str, *, n_classes: int | None = None
) -> pd.DataFrame:
    """Per (split, modality, encoders, order, size): x, mean, std and runs. ``all``
    sizes sit at the mean training clips per emotion (training clips / ``n_classes``);
    without ``n_classes`` they are left out."""
    frame = results.copy()
    if "speaker_norm" not in frame:
        frame["speaker_norm"] = "off"
    for key in ("split_strategy", "modality", "speech_encoder", "text_encoder", "order"):
        frame[key] = frame[key].fillna("").astype(str)
    frame["speaker_norm"] = frame["speaker_norm"].fillna("off").replace("", "off").astype(str)
    frame["size"] = frame["per_label"].map(parse_per_label)
    keys = ["split_strategy", "modality", "speech_encoder", "text_encoder", "speaker_norm"]
    keys += ["order", "per_label"]
    rows = []
    for values, at in frame.groupby(keys, sort=False):
        size = at["size"].iloc[0]
        if size is None or pd.isna(size):
            if not n_classes:
                continue
            x, is_all = float(at["n_train"].mean()) / n_classes, True
        else:
            x, is_all = float(size), False
        scores = pd.to_numeric(at[metric], errors="coerce").dropna()
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "x": x,
                "is_all": is_all,
                "mean": float(scores.mean()),
                "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
                "runs": len(scores),
            }
        )
    return pd.DataFrame(rows)


def plot_learning_curves(
    results: pd.DataFrame,
    out_dir: str | Path,
    *,
    n_classes: int | None = None,
    metrics: tuple[str, ...] = ("accuracy", "uar"),
    title: str = "",
    names: Mapping[str, str] | None = None,
) -> list[Path]:
    """One PNG per split strategy (a panel per metric); strategies with a single training
    size are skipped (no curve to draw). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    points = {m: curve_points(results, m, n_classes=n_classes) for m in metrics}
    first = points[metrics[0]]
    if not len(first):
        return []
    written = []
    strategies = [s for s in STRATEGY_NAMES if s in set(first["split_strategy"])]
    strategies += [s for s in first["split_strategy"].unique() if s not in strategies]
    for strategy in strategies:
        if first.loc[first["split_strategy"] == strategy, "x"].nunique() < 2:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 4.2), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            _draw(ax, points[metric], strategy, metric)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8,
                   frameon=False)  # fmt: skip
        heading = f"{title} — " if title else ""
        fig.suptitle(f"{heading}{strategy_name(strategy, names)}", fontsize=11)
        rows = (len(labels) + 2) // 3
        fig.tight_layout(rect=(0, 0.02 + 0.045 * rows, 1, 1))
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"curves-{_slug(strategy)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _line_name(modality: str, speech: str, text: str, several: bool) -> str:
    name = MODALITY_NAMES.get(modality, modality)
    if several:
        encoders = " + ".join(e for e in (speech, text) if e)
        name += f" ({encoders})"
    return name


def _draw(ax, points: pd.DataFrame, strategy: str, metric: str) -> None:
    part = points[points["split_strategy"] == strategy]
    lines = part[["modality", "speech_encoder", "text_encoder", "speaker_norm"]].drop_duplicates()
    lines = lines.sort_values("modality", key=lambda s: s.map(MODALITIES.index), kind="stable")
    encoders_of = lines[["modality", "speech_encoder", "text_encoder"]].drop_duplicates()
    several = any(encoders_of["modality"].value_counts() > 1)
    norms_vary = lines["speaker_norm"].nunique() > 1
    colours = matplotlib_colours(len(lines))
    for colour, (_, line) in zip(colours, lines.iterrows(), strict=False):
        same = part[
            (part["modality"] == line["modality"])
            & (part["speech_encoder"] == line["speech_encoder"])
            & (part["text_encoder"] == line["text_encoder"])
            & (part["speaker_norm"] == line["speaker_norm"])
        ]
        name = _line_name(line["modality"], line["speech_encoder"], line["text_encoder"], several)
        if norms_vary:
            name += f", speaker norm {line['speaker_norm']}"
        for order in [o for o in ORDERS if o in set(same["order"])]:
            curve = same[same["order"] == order].sort_values("x")
            x, mean, std = curve["x"].to_numpy(), curve["mean"].to_numpy(), curve["std"].to_numpy()
            label = f"{name}, {ORDER_NAMES[order].lower()}"
            ax.plot(x, 100 * mean, linestyle=_LINESTYLES.get(order, "-"),
                    marker=_MARKERS.get(order, "o"), color=colour, label=label,
                    markersize=4)  # fmt: skip
            ax.fill_between(x, 100 * (mean - std), 100 * (mean + std), color=colour, alpha=0.12)
    xs, at_all = part["x"].to_numpy(), part["is_all"].to_numpy(bool)
    if len(xs) and xs.min() > 0 and xs.max() / xs.min() >= 10:
        ax.set_xscale("log")
        ax.minorticks_off()
    # Ticks at the grid's sizes and one "all" (where the all-clips points sit), not
    # fractional ticks and an "all" beside every curve's end (they piled up).
    ticks = sorted(set(xs[~at_all].tolist()))
    names = [f"{t:g}" for t in ticks]
    if at_all.any():
        x_all = float(np.median(xs[at_all]))
        near = [i for i, t in enumerate(ticks) if max(t, x_all) <= 1.15 * min(t, x_all)]
        if near:  # too close to a size to label apart
            names[near[0]] += "/all"
        else:
            ticks.append(x_all)
            names.append("all")
    ax.set_xticks(ticks, names, fontsize=8)
    ax.set_xlabel("training clips per emotion")
    ax.set_ylabel(f"{'UAR' if metric == 'uar' else metric.replace('_', ' ').capitalize()} (%)")
    ax.grid(True, alpha=0.3)


def matplotlib_colours(n: int) -> list:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(max(n, 1))]
