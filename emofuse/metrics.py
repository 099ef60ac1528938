"""Evaluation metrics and their files, kept apart from any model code (EmoBox-style).

The headline number is UAR (unweighted average recall = balanced accuracy): the mean
of per-class recall over the classes present in the reference, so a model cannot score
well on imbalanced data by always naming the majority class.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _as_indices(values: Sequence, labels: Sequence[str], what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size and np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() >= len(labels):
            raise ValueError(f"{what} holds class indices outside 0..{len(labels) - 1}")
        return array.astype(np.int64)
    lookup = {name: i for i, name in enumerate(labels)}
    unknown = sorted({str(v) for v in array.tolist() if v not in lookup})
    if unknown:
        raise ValueError(f"{what} holds labels not in {list(labels)}: {unknown}")
    return np.array([lookup[v] for v in array.tolist()], dtype=np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def uar_from_confusion(matrix: np.ndarray) -> float:
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((np.diag(matrix)[present] / support[present]).mean())


def unweighted_average_recall(
    y_true: Sequence[int], y_pred: Sequence[int], n_classes: int
) -> float:
    """UAR for class indices (used on validation while training)."""
    return uar_from_confusion(
        confusion_matrix(
            np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64), n_classes
        )
    )


def compute_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict:
    """UAR, accuracy, macro-F1, per-class precision/recall/F1/support and the confusion
    matrix. ``y_true``/``y_pred`` are label names or indices into ``labels``.

    Macro-F1 averages over the classes that occur in either the reference or the
    predictions (scikit-learn's convention); UAR over those in the reference.
    """
    labels = [str(label) for label in labels]
    true = _as_indices(y_true, labels, "y_true")
    pred = _as_indices(y_pred, labels, "y_pred")
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} items but y_pred has {len(pred)}")
    if len(true) == 0:
        raise ValueError("cannot compute metrics on zero items")
    matrix = confusion_matrix(true, pred, len(labels))
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    seen = (support > 0) | (predicted > 0)
    return {
        "uar": uar_from_confusion(matrix),
        "accuracy": float(tp.sum() / len(true)),
        "macro_f1": float(f1[seen].mean()),
        "n": int(len(true)),
        "labels": labels,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": matrix.tolist(),
    }


#: Equal-width confidence bins of the expected calibration error and the diagram.
ECE_BINS = 15
#: The reliability diagram's accuracy bars and the hatching of their gap to confidence.
ACCURACY_COLOUR, GAP_COLOUR = "#4c72b0", "#c0392b"


def _as_proba(proba: np.ndarray, y_true: Sequence[int] | None = None) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be a (clips, classes) matrix, got shape {p.shape}")
    if y_true is not None and len(y_true) != len(p):
        raise ValueError(f"{len(y_true)} labels for {len(p)} rows of probabilities")
    return p


def calibration_bins(
    y_true: Sequence[int], proba: np.ndarray, n_bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Per equal-width bin of top-class confidence (``(0, 1/n], ..., ((n-1)/n, 1]``): clip
    count, mean confidence and accuracy (NaN in empty bins)."""
    p = _as_proba(proba, y_true)
    y = np.asarray(y_true, dtype=np.int64)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, confidence, n_bins) / count
        acc = np.bincount(index, correct, n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"edges": edges, "count": count, "confidence": conf, "accuracy": acc}


def expected_calibration_error(
    y_true: Sequence[int], proba: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """ECE: the clip-weighted mean gap between accuracy and mean top-class confidence over
    ``n_bins`` equal-width confidence bins (15 by default)."""
    bins = calibration_bins(y_true, proba, n_bins)
    filled = bins["count"] > 0
    if not filled.any():
        raise ValueError("cannot compute the calibration error on zero items")
    gap = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float((bins["count"][filled] * gap).sum() / bins["count"].sum())


ece = expected_calibration_error


def negative_log_likelihood(y_true: Sequence[int], proba: np.ndarray) -> float:
    """Mean -log p(true class) (probabilities floored at 1e-12)."""
    p = _as_proba(proba, y_true)
    if not len(p):
        raise ValueError("cannot compute the log-likelihood on zero items")
    y = np.asarray(y_true, dtype=np.int64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


nll = negative_log_likelihood


def probability_metrics(y_true: Sequence, proba: np.ndarray, labels: Sequence[str]) -> dict:
    """``ece`` and ``nll`` of class probabilities (columns in ``labels`` order), to merge
    into :func:`compute_metrics`'s dict."""
    y = _as_indices(y_true, [str(label) for label in labels], "y_true")
    return {"ece": expected_calibration_error(y, proba), "nll": negative_log_likelihood(y, proba)}


def plot_reliability(
    y_true: Sequence[int], proba: np.ndarray, path: str | Path, *, title: str | None = None,
    n_bins: int = ECE_BINS,
) -> Path:  # fmt: skip
    """Reliability diagram: accuracy per confidence bin against the diagonal, with the
    clip count per bin underneath and the ECE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibration_bins(y_true, proba, n_bins)
    edges, count = bins["edges"], bins["count"]
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / n_bins
    filled = count > 0
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.0, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    accuracy, confidence = bins["accuracy"][filled], bins["confidence"][filled]
    top.bar(centres[filled], accuracy, width=width, edgecolor="black", color=ACCURACY_COLOUR,
            label="accuracy")  # fmt: skip
    # The gap to the bin's mean confidence: hatched, unfilled, so that where it lies over
    # the accuracy bar (under-confidence) both stay visible and no third colour appears.
    top.bar(centres[filled], confidence - accuracy, width=width, bottom=accuracy,
            facecolor="none", edgecolor=GAP_COLOUR, hatch="///", linewidth=1.2,
            label="gap to mean confidence")  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    # Above the panel, under the title: inside it, the legend hid the tall bars of
    # low-confidence bins (an under-confident model's bins reach 1.0 at the left).
    top.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False,
               fontsize=8, handlelength=1.5, columnspacing=1.0)  # fmt: skip
    ece_value = expected_calibration_error(y_true, proba, n_bins)
    top.set_title(title or f"reliability (ECE {ece_value:.3f}, {n_bins} bins)", pad=22)
    bottom.bar(centres, count, width=width, edgecolor="black", color="#8c8c8c")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("clips")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def format_metrics(metrics: dict) -> str:
    """One line for a terminal: UAR, accuracy, macro-F1, ECE (when computed) and the count."""
    ece_part = f"ECE {metrics['ece']:.3f}  " if metrics.get("ece") is not None else ""
    return (
        f"UAR {metrics['uar']:.3f}  accuracy {metrics['accuracy']:.3f}  "
        f"macro-F1 {metrics['macro_f1']:.3f}  {ece_part}(n={metrics['n']})"
    )


#: Fonts with Hangul, tried in order when a label is not plain ASCII.
HANGUL_FONTS = ("Noto Sans CJK KR", "NanumGothic", "Noto Sans KR", "Malgun Gothic", "AppleGothic")


def _label_font(labels: Sequence[str]) -> str | None:
    """A font that can draw non-ASCII labels (e.g. Korean), if one is installed."""
    if all(label.isascii() for label in labels):
        return None
    from matplotlib import font_manager

    for name in HANGUL_FONTS:
        try:
            font_manager.findfont(name, fallback_to_default=False)
            return name
        except ValueError:
            continue
    return None


def plot_confusion(metrics: dict, path: str | Path, *, title: str | None = None) -> Path:
    """Row-normalised confusion matrix (colour = share of the true class) with the
    counts written in each cell; readable with seven or more classes.

    Labels are drawn as given: the canonical English names draw everywhere; Korean
    names need a Hangul font (used when installed, else shown as missing glyphs)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = _label_font(metrics["labels"])
    style = {"font.family": [font, "DejaVu Sans"]} if font else {}
    with plt.rc_context(style), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        return _plot_confusion(metrics, Path(path), title, plt)


def _plot_confusion(metrics: dict, path: Path, title: str | None, plt) -> Path:
    labels = metrics["labels"]
    counts = np.asarray(metrics["confusion"], dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    k = len(labels)
    size = max(4.0, 0.75 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    font = 10 if k <= 8 else max(6, 10 - (k - 8) // 2)
    for i in range(k):
        for j in range(k):
            ax.text(
                j, i, f"{counts[i, j]}\n{share[i, j]:.0%}" if rows[i, 0] else "0",
                ha="center", va="center", fontsize=font,
                color="white" if share[i, j] > 0.5 else "black",
            )  # fmt: skip
    ax.set_title(title or f"UAR {metrics['uar']:.3f}, accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_metrics(
    metrics: dict,
    out_dir: str | Path,
    *,
    y_true: Sequence | None = None,
    proba: np.ndarray | None = None,
) -> Path:
    """Write metrics.json, confusion.csv, confusion.png and per_class.csv into ``out_dir``.

    With the clips' class probabilities (``proba``, columns in label order, and their
    ``y_true``), ``ece`` and ``nll`` are added to the metrics (unless already there) and a
    reliability diagram is written as reliability.png.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if proba is not None:
        if y_true is None:
            raise ValueError("write_metrics: proba needs y_true")
        metrics = {**probability_metrics(y_true, proba, metrics["labels"]), **metrics}
        y = _as_indices(y_true, [str(label) for label in metrics["labels"]], "y_true")
        plot_reliability(y, proba, out / "reliability.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    labels = metrics["labels"]
    with open(out / "confusion.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *labels])
        for label, row in zip(labels, metrics["confusion"], strict=True):
            writer.writerow([label, *row])
    with open(out / "per_class.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "precision", "recall", "f1", "support"])
        for label in labels:
            c = metrics["per_class"][label]
            writer.writerow(
                [
                    label,
                    f"{c['precision']:.4f}",
                    f"{c['recall']:.4f}",
                    f"{c['f1']:.4f}",
                    c["support"],
                ]
            )
    plot_confusion(metrics, out / "confusion.png")
    return out
