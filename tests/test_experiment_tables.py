"""Table builders: each figure lands in the right cell of the paper-shaped tables."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from emofuse.experiments.results import RESULT_COLUMNS
from emofuse.experiments.tables import (
    build_table,
    format_figure,
    splits_table,
    summary_table,
    table3,
    table4,
    table5,
    table6,
    tables_for,
)

SIZES = ("50", "100", "all")
ORDERS = ("random", "shortest", "longest")


def _row(**values) -> dict:
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(n_val=10, n_test=20, best_epoch=3, seconds=0.1, macro_f1=0.5)
    row.update(values)
    return row


def _value(i: int, seed: int) -> float:
    """Distinct per setting i; seeds spread it so the std is distinct too."""
    return round(0.30 + 0.01 * i + (seed - 1) * 0.001 * (i + 1), 6)


def _seeded_results(prefix: str, settings: list[dict], **common) -> pd.DataFrame:
    """Seeds 0-2 of every setting i: cell ``{prefix}{i}-{seed}``, accuracy ``_value(i, seed)``,
    7 labels x ``per_label`` training rows; ``common`` fills the other columns."""
    return pd.DataFrame(
        [
            _row(cell_id=f"{prefix}{i}-{seed}", seed=seed, n_train=7 * int(setting["per_label"]),
                 accuracy=_value(i, seed), **common, **setting)
            for i, setting in enumerate(settings)
            for seed in (0, 1, 2)
        ]
    )  # fmt: skip


def _parse(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Section title -> table rows as {header: cell} (the untitled section is '')."""
    sections: dict[str, list[dict[str, str]]] = {}
    title, header = "", None
    for line in markdown.splitlines():
        if line.startswith("**"):
            title, header = line.split("**")[1], None
        elif line.startswith("| :--"):
            continue
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                sections.setdefault(title, []).append(dict(zip(header, cells, strict=True)))
    return sections


def _expected(i: int, seeds=(0, 1, 2)) -> str:
    return format_figure(pd.Series([_value(i, s) for s in seeds]))


@pytest.fixture()
def speech_results() -> pd.DataFrame:
    rows = []
    settings = list(itertools.product(("script", "speaker"), SIZES, ORDERS))
    for i, (strategy, size, order) in enumerate(settings):
        for seed in (0, 1, 2):
            rows.append(
                _row(
                    cell_id=f"s{i}-{seed}",
                    split_strategy=strategy,
                    modality="speech",
                    speech_encoder="egemaps",
                    per_label=size,
                    order=order,
                    seed=seed,
                    n_train=7 * (int(size) if size != "all" else 300),
                    accuracy=_value(i, seed),
                    uar=_value(i, seed) - 0.05,
                )  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_format_figure():
    assert format_figure(pd.Series([0.5, 0.7])) == "60.0 ± 14.1"
    assert format_figure(pd.Series([0.712])) == "71.2"
    assert format_figure(pd.Series([], dtype=float)) == "–"


def test_table3_puts_every_figure_in_its_row_and_column(speech_results):
    md = table3(speech_results, "accuracy")
    sections = _parse(md)
    assert list(sections) == [
        "split: speaker-disjoint · speech: `egemaps`",
        "split: script-disjoint · speech: `egemaps`",
    ]
    names = {"random": "Random", "shortest": "Shortest first", "longest": "Longest first"}
    settings = list(itertools.product(("script", "speaker"), SIZES, ORDERS))
    for i, (strategy, size, order) in enumerate(settings):
        title = next(t for t in sections if ("script" in t) == (strategy == "script"))
        row = next(r for r in sections[title] if r["N per emotion"] == size)
        assert row[names[order]] == _expected(i), (strategy, size, order)
    # rows in size order, "all" last; clip counts from n_train
    first = sections[next(iter(sections))]
    assert [r["N per emotion"] for r in first] == ["50", "100", "all"]
    assert [r["train clips"] for r in first] == ["350", "700", "2,100"]


def test_uar_table_reads_the_uar_column(speech_results):
    row = _parse(table3(speech_results, "uar"))["split: script-disjoint · speech: `egemaps`"][0]
    expected = format_figure(pd.Series([_value(0, s) - 0.05 for s in (0, 1, 2)]))
    assert row["Random"] == expected


def test_tables_ignore_other_modalities(speech_results):
    assert table4(speech_results) == ""
    assert table6(speech_results) == ""
    assert table5(speech_results) == ""


def test_table4_and_table6_by_modality():
    settings = [
        {"modality": modality, "speech_encoder": "w2v" if modality == "both" else "",
         "per_label": size, "order": order}
        for modality, size, order in itertools.product(
            ("text", "both"), ("50", "200"), ("shortest", "longest")
        )
    ]  # fmt: skip
    results = _seeded_results("c", settings, split_strategy="corpus", text_encoder="kc", uar=0.1)
    t4 = _parse(table4(results))["split: corpus split · text: `kc`"]
    assert [r["Shortest first"] for r in t4] == [_expected(0), _expected(2)]
    assert [r["Longest first"] for r in t4] == [_expected(1), _expected(3)]
    assert "Random" not in t4[0]
    t6 = _parse(table6(results))["split: corpus split · speech: `w2v` · text: `kc`"]
    assert [r["Shortest first"] for r in t6] == [_expected(4), _expected(6)]
    assert [r["Longest first"] for r in t6] == [_expected(5), _expected(7)]


def test_table5_a_row_per_text_encoder():
    encoders = ["skt/kobert-base-v1", "klue/bert-base", "beomi/KcELECTRA-base-v2022"]
    settings = [
        {"text_encoder": encoder, "per_label": size}
        for encoder, size in itertools.product(encoders, ("100", "500"))
    ]
    results = _seeded_results(
        "t", settings, split_strategy="corpus", modality="text", order="random", uar=0.2
    )
    table = _parse(table5(results))["split: corpus split"]
    assert [r["Text encoder"] for r in table] == [f"`{e}`" for e in encoders]
    for j, row in enumerate(table):
        assert row["N=100"] == _expected(2 * j)
        assert row["N=500"] == _expected(2 * j + 1)
    assert "table5" in tables_for(results)


def test_splits_table_modality_by_strategy_with_folds():
    rows = []
    strategies = ("corpus", "script", "logo")
    for i, (modality, strategy) in enumerate(itertools.product(("speech", "text"), strategies)):
        folds = ("spk1", "spk2") if strategy == "logo" else ("",)
        for fold, seed in itertools.product(folds, (0, 1)):
            rows.append(
                _row(
                    cell_id=f"x{i}{fold}{seed}",
                    split_strategy=strategy,
                    fold=fold,
                    modality=modality,
                    speech_encoder="eg" if modality == "speech" else "",
                    text_encoder="kt" if modality == "text" else "",
                    per_label="all",
                    order="random",
                    seed=seed,
                    n_train=100,
                    accuracy=0.5 + 0.05 * i + 0.01 * seed + (0.002 if fold == "spk2" else 0),
                    uar=0.4,
                )  # fmt: skip
            )
    results = pd.DataFrame(rows)
    md = splits_table(results, names={"logo": "leave-one-speaker-out"})
    table = _parse(md)["N per emotion: all · order: Random"]
    assert list(table[0]) == [
        "Modality",
        "corpus split",
        "script-disjoint",
        "leave-one-speaker-out",
    ]
    frame = results.assign(i=[int(c[1]) for c in results["cell_id"]])
    for row, modality in zip(table, ("speech", "text"), strict=True):
        assert row["Modality"].startswith("Speech" if modality == "speech" else "Text")
        for strategy, column in zip(strategies, list(row)[1:], strict=True):
            at = frame[(frame["modality"] == modality) & (frame["split_strategy"] == strategy)]
            assert row[column] == format_figure(at["accuracy"])  # over seeds and folds
    assert len(frame[frame["split_strategy"] == "logo"]) == 8
    assert "(2 seeds × 2 folds)" in md


def test_summary_and_build_table(speech_results):
    summary = _parse(summary_table(speech_results))[""]
    assert len(summary) == 2 * len(SIZES) * len(ORDERS)
    assert {r["runs"] for r in summary} == {"3"}
    doc = build_table(speech_results, "table3")
    assert doc.startswith("## Table 3")
    assert "### Accuracy" in doc and "### UAR" in doc
    assert build_table(speech_results, "table6") == ""
    assert tables_for(speech_results) == ["table3", "splits", "summary"]
    with pytest.raises(ValueError, match="unknown table"):
        build_table(speech_results, "table9")


def test_plot_learning_curves(tmp_path, speech_results):
    from emofuse.experiments.plots import curve_points, plot_learning_curves

    points = curve_points(speech_results, "accuracy", n_classes=7)
    at_all = points[points["per_label"] == "all"]
    assert np.allclose(at_all["x"], 300) and at_all["is_all"].all()
    assert set(curve_points(speech_results, "accuracy")["per_label"]) == {"50", "100"}
    paths = plot_learning_curves(speech_results, tmp_path, n_classes=7, title="t")
    assert sorted(p.name for p in paths) == ["curves-script.png", "curves-speaker.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
