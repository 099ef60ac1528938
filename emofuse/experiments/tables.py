"""Paper-shaped Markdown tables from a grid's results (pure: a DataFrame in, text out).

Every figure is a percentage, mean ± sample standard deviation over the runs that share
the cell's settings (seeds, and folds for cross-validation); a figure from a single run
has no ± part. Tables follow the paper:

- ``table3``: speech only, training size x random / shortest / longest first (and any
  other order the grid ran: diverse, speaker-balanced);
- ``table4``: text only, by N per emotion (shortest / longest by text length);
- ``table5``: text encoders compared (a row per encoder);
- ``table6``: speech + text, short vs long by N per emotion;
- ``splits``: modality x split strategy (how much of a figure is leakage);
- ``summary``: every setting of the grid in one long table.

Where a grid has several split strategies or encoders, a table gets one section each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from emofuse.modalities import BOTH, MODALITIES, SPEECH, TEXT
from emofuse.sampling import ORDERS

#: Display names for split strategies that override :data:`STRATEGY_NAMES`.
Names = Mapping[str, str] | None

METRICS = ("accuracy", "uar", "macro_f1")
METRIC_NAMES = {"accuracy": "Accuracy", "uar": "UAR", "macro_f1": "Macro-F1"}
#: Display names of the sampling orders, in :data:`emofuse.sampling.ORDERS`' order.
ORDER_NAMES = {
    "random": "Random",
    "shortest": "Shortest first",
    "longest": "Longest first",
    "diverse": "Diverse (k-center)",
    "speaker-balanced": "Speaker-balanced",
}
MODALITY_NAMES = {SPEECH: "Speech", TEXT: "Text", BOTH: "Speech + text"}
STRATEGY_NAMES = {
    "corpus": "corpus split",
    "stratified": "random (stratified)",
    "speaker": "speaker-disjoint",
    "script": "script-disjoint",
    "speaker+script": "speaker- and script-disjoint",
    "kfold": "k-fold (grouped)",
    "logo": "leave-one-group-out",
}
TABLE_NAMES = ("table3", "table4", "table5", "table6", "splits", "summary")
TABLE_TITLES = {
    "table3": "Table 3 — speech only: training size × sampling order",
    "table4": "Table 4 — text only by N per emotion",
    "table5": "Table 5 — text encoders",
    "table6": "Table 6 — speech + text: short vs long by N per emotion",
    "splits": "Split strategies — modality × split (leakage check)",
    "summary": "Summary — every setting of the grid",
}


# ------------------------------------------------------------------------- helpers


def parse_per_label(value: object) -> int | None:
    """results.csv keeps ``per_label`` as text: a number or ``all``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return None if text in ("", "all") else int(float(text))


def per_label_sort_key(value: object) -> float:
    parsed = parse_per_label(value)
    return float("inf") if parsed is None else float(parsed)


def _normalise(results: pd.DataFrame) -> pd.DataFrame:
    frame = results.copy()
    if "speaker_norm" not in frame:  # results written before the axis existed
        frame["speaker_norm"] = "off"
    frame["speaker_norm"] = frame["speaker_norm"].replace("", "off").fillna("off").astype(str)
    for key in ("split_strategy", "fold", "modality", "speech_encoder", "text_encoder", "order"):
        frame[key] = frame[key].fillna("").astype(str)
    frame["per_label"] = frame["per_label"].map(
        lambda v: "all" if parse_per_label(v) is None else str(parse_per_label(v))
    )
    return frame


def _ordered(values: Sequence[str], canonical: Sequence[str] = ()) -> list[str]:
    """Distinct values: canonical ones first in canonical order, then the rest as met."""
    seen = list(dict.fromkeys(values))
    return [v for v in canonical if v in seen] + [v for v in seen if v not in canonical]


def format_figure(values: pd.Series) -> str:
    """``71.2 ± 1.5`` (percent; sample std over runs), ``71.2`` for one run, ``–`` for none."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if not len(values):
        return "–"
    mean = 100 * float(values.mean())
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * float(values.std(ddof=1)):.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; the first column left-aligned, the rest right."""
    align = [":--"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _runs_note(frame: pd.DataFrame) -> str:
    seeds = frame["seed"].nunique()
    folds = frame.loc[frame["fold"] != "", "fold"].nunique()
    parts = [f"{seeds} seed{'s' if seeds != 1 else ''}"]
    if folds:
        parts.append(f"{folds} folds")
    return " × ".join(parts)


def strategy_name(strategy: str, names: Mapping[str, str] | None = None) -> str:
    """How a split strategy is named in a table (``names`` overrides the defaults, e.g.
    ``{"logo": "leave-one-speaker-out"}``)."""
    return (names or {}).get(strategy) or STRATEGY_NAMES.get(strategy, strategy)


def _section_title(keys: dict[str, str], names: Mapping[str, str] | None = None) -> str:
    bits = []
    for key, value in keys.items():
        if key == "split_strategy":
            bits.append(f"split: {strategy_name(value, names)}")
        elif key == "per_label":
            bits.append(f"N per emotion: {value}")
        elif key == "order":
            bits.append(f"order: {ORDER_NAMES.get(value, value)}")
        elif key == "speaker_norm":
            bits.append(f"speaker norm: {value}")
        elif value:
            bits.append(f"{key.replace('_encoder', '')}: `{value}`")
    return " · ".join(bits)


def _sections(
    frame: pd.DataFrame,
    keys: Sequence[str],
    render: Callable[[pd.DataFrame], str],
    names: Mapping[str, str] | None = None,
) -> str:
    """One rendered block per distinct combination of ``keys`` (headed when several); a
    grid that sweeps speaker normalisation gets a block per setting too."""
    if not len(frame):
        return ""
    if "speaker_norm" in frame and frame["speaker_norm"].nunique() > 1:
        keys = [*keys, "speaker_norm"]
    combos = frame[list(keys)].drop_duplicates()
    canon = {"split_strategy": tuple(STRATEGY_NAMES), "modality": MODALITIES, "order": ORDERS}
    for key in reversed(list(keys)):
        if key == "per_label":
            combos = combos.sort_values(key, key=lambda s: s.map(per_label_sort_key), kind="stable")
        else:
            order = _ordered(frame[key].tolist(), canon.get(key, ()))
            combos = combos.sort_values(key, key=lambda s, o=order: s.map(o.index), kind="stable")
    blocks = []
    for _, combo in combos.iterrows():
        part = frame
        for key in keys:
            part = part[part[key] == combo[key]]
        body = render(part)
        title = _section_title({k: combo[k] for k in keys}, names)
        blocks.append(f"**{title}** ({_runs_note(part)})\n\n{body}" if title else body)
    return "\n\n".join(blocks)


def _size_rows(
    part: pd.DataFrame, metric: str, columns: list[str], column_key: str, names: dict[str, str]
) -> tuple[list[str], list[list[str]]]:
    """Rows: N per emotion (and the mean number of training clips); columns: ``columns``."""
    header = ["N per emotion", "train clips"] + [names.get(c, c) for c in columns]
    rows = []
    for size in sorted(part["per_label"].unique(), key=per_label_sort_key):
        at = part[part["per_label"] == size]
        row = [size, f"{at['n_train'].mean():,.0f}"]
        row += [format_figure(at.loc[at[column_key] == c, metric]) for c in columns]
        rows.append(row)
    return header, rows


# --------------------------------------------------------------------------- tables


def _by_size_table(
    frame: pd.DataFrame, metric: str, keys: Sequence[str], names: Mapping[str, str] | None
) -> str:
    def render(part: pd.DataFrame) -> str:
        orders = _ordered(part["order"].tolist(), ORDERS)
        return markdown_table(*_size_rows(part, metric, orders, "order", ORDER_NAMES))

    return _sections(frame, keys, render, names)


def _of_modality(results: pd.DataFrame, modality: str) -> pd.DataFrame:
    frame = _normalise(results)
    return frame[frame["modality"] == modality]


def table3(results: pd.DataFrame, metric: str = "accuracy", *, names: Names = None) -> str:
    """Speech only: a row per training size, a column per sampling order."""
    frame = _of_modality(results, SPEECH)
    return _by_size_table(frame, metric, ["split_strategy", "speech_encoder"], names)


def table4(results: pd.DataFrame, metric: str = "accuracy", *, names: Names = None) -> str:
    """Text only: a row per N per emotion, a column per order (by text length)."""
    frame = _of_modality(results, TEXT)
    return _by_size_table(frame, metric, ["split_strategy", "text_encoder"], names)


def table5(results: pd.DataFrame, metric: str = "accuracy", *, names: Names = None) -> str:
    """Text encoders: a row per encoder; a column per (N per emotion, order)."""
    frame = _of_modality(results, TEXT)
    if not len(frame):
        return ""

    def render(part: pd.DataFrame) -> str:
        sizes = sorted(part["per_label"].unique(), key=per_label_sort_key)
        orders = _ordered(part["order"].tolist(), ORDERS)
        columns = [(s, o) for s in sizes for o in orders]
        if len(columns) == 1:
            names = [METRIC_NAMES.get(metric, metric)]
        elif len(orders) == 1:
            names = [f"N={s}" for s, _ in columns]
        else:
            names = [f"N={s}, {ORDER_NAMES.get(o, o).lower()}" for s, o in columns]
        rows = []
        for encoder in _ordered(part["text_encoder"].tolist()):
            at = part[part["text_encoder"] == encoder]
            rows.append(
                [f"`{encoder}`"]
                + [
                    format_figure(at.loc[(at["per_label"] == s) & (at["order"] == o), metric])
                    for s, o in columns
                ]
            )
        return markdown_table(["Text encoder", *names], rows)

    return _sections(frame, ["split_strategy"], render, names)


def table6(results: pd.DataFrame, metric: str = "accuracy", *, names: Names = None) -> str:
    """Speech + text: a row per N per emotion, a column per order (short vs long)."""
    frame = _of_modality(results, BOTH)
    return _by_size_table(
        frame, metric, ["split_strategy", "speech_encoder", "text_encoder"], names
    )


def splits_table(results: pd.DataFrame, metric: str = "accuracy", *, names: Names = None) -> str:
    """A row per modality (and encoders), a column per split strategy; one section per
    training size and order."""
    frame = _normalise(results)
    if not len(frame):
        return ""

    def render(part: pd.DataFrame) -> str:
        strategies = _ordered(part["split_strategy"].tolist(), tuple(STRATEGY_NAMES))
        rows = []
        combos = part[["modality", "speech_encoder", "text_encoder"]].drop_duplicates()
        combos = combos.sort_values(
            "modality", key=lambda s: s.map(MODALITIES.index), kind="stable"
        )
        for _, combo in combos.iterrows():
            at = part[
                (part["modality"] == combo["modality"])
                & (part["speech_encoder"] == combo["speech_encoder"])
                & (part["text_encoder"] == combo["text_encoder"])
            ]
            encoders = " + ".join(e for e in (combo["speech_encoder"], combo["text_encoder"]) if e)
            rows.append(
                [f"{MODALITY_NAMES[combo['modality']]} (`{encoders}`)"]
                + [format_figure(at.loc[at["split_strategy"] == s, metric]) for s in strategies]
            )
        header = ["Modality", *[strategy_name(s, names) for s in strategies]]
        return markdown_table(header, rows)

    return _sections(frame, ["per_label", "order"], render, names)


def summary_table(
    results: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy", "uar"),
    *,
    names: Mapping[str, str] | None = None,
) -> str:
    """One row per setting (split, modality, encoders, N, order) with runs and metrics."""
    frame = _normalise(results)
    if not len(frame):
        return ""
    keys = ["split_strategy", "modality", "speech_encoder", "text_encoder", "per_label", "order"]
    header = ["Split", "Modality", "Encoders", "N per emotion", "Order", "runs", "train clips"]
    swept = frame["speaker_norm"].nunique() > 1
    if swept:  # a column only when the grid sweeps speaker normalisation
        keys.append("speaker_norm")
        header.insert(5, "Speaker norm")
    header += [METRIC_NAMES.get(m, m) for m in metrics]
    groups = frame.groupby(keys, sort=False)
    rows = []
    for values, at in groups:
        setting = dict(zip(keys, values, strict=True))
        encoders = " + ".join(e for e in (setting["speech_encoder"], setting["text_encoder"]) if e)
        rows.append(
            (
                (
                    tuple(STRATEGY_NAMES).index(setting["split_strategy"])
                    if setting["split_strategy"] in STRATEGY_NAMES
                    else 99,
                    MODALITIES.index(setting["modality"]),
                    encoders,
                    per_label_sort_key(setting["per_label"]),
                    ORDERS.index(setting["order"]) if setting["order"] in ORDERS else 9,
                    setting.get("speaker_norm", ""),
                ),
                [
                    strategy_name(setting["split_strategy"], names),
                    MODALITY_NAMES.get(setting["modality"], setting["modality"]),
                    f"`{encoders}`",
                    setting["per_label"],
                    ORDER_NAMES.get(setting["order"], setting["order"]),
                    *([setting["speaker_norm"]] if swept else []),
                    str(len(at)),
                    f"{at['n_train'].mean():,.0f}",
                ]
                + [format_figure(at[m]) for m in metrics],
            )
        )
    rows.sort(key=lambda r: r[0])
    return markdown_table(header, [r[1] for r in rows])


_BUILDERS: dict[str, Callable[..., str]] = {
    "table3": table3,
    "table4": table4,
    "table5": table5,
    "table6": table6,
    "splits": splits_table,
}


def tables_for(results: pd.DataFrame) -> list[str]:
    """The tables a grid's results can fill (what ``tables = ["auto"]`` writes)."""
    frame = _normalise(results)
    names = []
    modalities = set(frame["modality"])
    if "speech" in modalities:
        names.append("table3")
    if "text" in modalities:
        names.append("table4")
        if frame.loc[frame["modality"] == "text", "text_encoder"].nunique() > 1:
            names.append("table5")
    if "both" in modalities:
        names.append("table6")
    if frame["split_strategy"].nunique() > 1 or (frame["fold"] != "").any():
        names.append("splits")
    names.append("summary")
    return names


def build_table(
    results: pd.DataFrame,
    name: str,
    metrics: Sequence[str] = ("accuracy", "uar"),
    *,
    names: Mapping[str, str] | None = None,
) -> str:
    """A table as a Markdown document: a title, then one block per metric."""
    if name not in TABLE_NAMES:
        raise ValueError(f"unknown table {name!r}; choose from {', '.join(TABLE_NAMES)}")
    title = f"## {TABLE_TITLES[name]}"
    note = (
        "Figures: percent, mean ± sample std over runs (seeds, and folds for "
        "cross-validation); test part of each split."
    )
    if name == "summary":
        body = summary_table(results, metrics, names=names)
        return f"{title}\n\n{note}\n\n{body}\n" if body else ""
    blocks = []
    for metric in metrics:
        body = _BUILDERS[name](results, metric, names=names)
        if body:
            blocks.append(f"### {METRIC_NAMES.get(metric, metric)}\n\n{body}")
    if not blocks:
        return ""
    return f"{title}\n\n{note}\n\n" + "\n\n".join(blocks) + "\n"
