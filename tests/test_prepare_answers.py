"""`emofuse prepare POOL --answers answers.csv`: a pool labelled by its answers, through the
usual prepare output (corpus table + problems report)."""

from pathlib import Path

import pandas as pd
import pytest
from support.corpus_fixtures import write_tone

from emofuse.cli import main
from emofuse.corpus import read_table
from emofuse.corpus.answers import append_answer
from emofuse.corpus.joined import join_answers
from emofuse.corpus.pool import read_pool


def _pool(tmp_path: Path, labels: list[str] | None = None) -> Path:
    """Six clips c0..c5 under pool/clips, texts t0..t5; optionally a label column."""
    paths = [write_tone(tmp_path / "pool" / "clips" / f"c{i}.wav", 0.2) for i in range(6)]
    frame = pd.DataFrame(
        {"audio": [str(p) for p in paths], "text": [f"문장 {i}" for i in range(6)]}
    )
    if labels is not None:
        frame["emotion"] = labels
    path = tmp_path / "pool" / "pool.csv"
    frame.to_csv(path, index=False)
    return path


def _answers(tmp_path: Path) -> Path:
    """c0: two agree; c1: 2 of 3; c2: a tie; c3: labelled then retracted; c4: changed mind;
    c5: no answer; plus answers for an id not in the pool."""
    path = tmp_path / "answers.csv"
    for who, ident, label in [
        ("kim", "c0", "happy"),
        ("lee", "c0", "happy"),
        ("kim", "c1", "sad"),
        ("lee", "c1", "sad"),
        ("park", "c1", "angry"),
        ("kim", "c2", "happy"),
        ("lee", "c2", "sad"),
        ("kim", "c3", "angry"),
        ("kim", "c4", "happy"),
        ("kim", "c4", "neutral"),
        ("kim", "../../etc/passwd", "happy"),
        ("lee", "gone", "sad"),
    ]:
        append_answer(path, id=ident, label=label, annotator=who)
    append_answer(path, id="c3", annotator="kim", action="retract")
    return path


def _prepare(tmp_path: Path, *extra: str) -> tuple[int, pd.DataFrame | None]:
    out = tmp_path / "out" / "corpus.parquet"
    code = main(["prepare", *extra, "-o", str(out), "--quiet", "--workers", "1"])
    return code, (read_table(out)[0] if out.exists() else None)


def test_answers_label_the_pool(tmp_path, capsys):
    pool, answers = _pool(tmp_path), _answers(tmp_path)
    code, table = _prepare(tmp_path, str(pool), "--answers", str(answers))
    printed = capsys.readouterr().out
    assert code == 0
    labels = dict(zip(table["id"], table["label"], strict=True))
    assert labels == {"c0": "happy", "c1": "sad", "c4": "neutral"}
    assert table["text"].tolist() == ["문장 0", "문장 1", "문장 4"]
    assert table["duration_s"].tolist() == pytest.approx([0.2] * 3, abs=1e-3)

    # what was left out, and why, is said
    assert "left out, no label yet: 2 of the pool's 6 clips" in printed  # c3, c5
    assert "left out, annotators split evenly (tied-answers): 1 clip\n" in printed
    assert "4 clips answered by 3 annotators, 3 labelled from them" in printed  # not c3
    assert "3 answered by more than one annotator, who agree on 1" in printed
    assert "wrote " in printed and "3 utterances; 1 row dropped (tied-answers 1)" in printed
    problems = pd.read_csv(tmp_path / "out" / "corpus.problems.csv")
    tie = problems[problems["reason"].str.startswith("tied-answers")]
    assert tie["file"].tolist() == [str(tmp_path / "pool" / "clips" / "c2.wav")]
    assert "kim: happy, lee: sad" in tie["reason"].iloc[0]
    unknown = problems[problems["reason"].str.startswith("unknown-answer-id")]
    assert sorted(unknown["reason"].str.extract(r"'(.*)'")[0]) == ["../../etc/passwd", "gone"]


def test_the_pools_own_labels_count_where_no_answer_is_given(tmp_path, capsys):
    pool = _pool(tmp_path, labels=["sad", "", "", "", "", "기쁨"])
    code, table = _prepare(tmp_path, str(pool), "--answers", str(_answers(tmp_path)))
    printed = capsys.readouterr().out
    assert code == 0
    labels = dict(zip(table["id"], table["label"], strict=True))
    assert labels == {"c0": "happy", "c1": "sad", "c4": "neutral", "c5": "happy"}
    assert "the pool's own label kept for 1 clip without answers" in printed  # c5
    assert "answers replace the pool's own label on 1 clip\n" in printed  # c0


def test_a_torn_line_in_the_answers_is_reported_not_fatal(tmp_path, capsys):
    pool, answers = _pool(tmp_path), _answers(tmp_path)
    with answers.open("a", encoding="utf-8") as handle:
        handle.write("c5,ang")  # a write cut by a kill
    code, table = _prepare(tmp_path, str(pool), "--answers", str(answers))
    assert code == 0 and "c5" not in set(table["id"])
    problems = pd.read_csv(tmp_path / "out" / "corpus.problems.csv")
    assert problems["reason"].str.startswith("unreadable-answer").sum() == 1
    assert "unreadable-answer (1)" in capsys.readouterr().out


def test_labels_restrict_the_joined_corpus(tmp_path):
    code, table = _prepare(
        tmp_path,
        str(_pool(tmp_path)),
        "--answers",
        str(_answers(tmp_path)),
        "--labels",
        "happy,sad",
    )
    assert code == 0 and sorted(table["label"]) == ["happy", "sad"]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ("absent.csv", "absent.csv: no such answers file"),
        ("notanswers.csv", "not an answers file"),
    ],
)
def test_a_bad_answers_file_is_one_clear_error(tmp_path, capsys, answers, message):
    (tmp_path / "notanswers.csv").write_text("path,emotion\nx.wav,happy\n")
    code, table = _prepare(tmp_path, str(_pool(tmp_path)), "--answers", str(tmp_path / answers))
    assert code == 2 and table is None
    assert message in capsys.readouterr().err


def test_answers_need_a_pool_manifest(tmp_path, capsys):
    answers = _answers(tmp_path)
    code, _ = _prepare(tmp_path, str(tmp_path / "pool"), "--answers", str(answers))
    assert code == 2 and "no such manifest file" in capsys.readouterr().err
    code, _ = _prepare(
        tmp_path, str(_pool(tmp_path)), "--answers", str(answers), "--layout", "flat"
    )
    assert code == 2 and "--answers labels a pool manifest" in capsys.readouterr().err


def test_the_answers_file_is_never_an_output(tmp_path, capsys):
    answers = _answers(tmp_path)
    before = answers.read_bytes()
    code = main(["prepare", str(_pool(tmp_path)), "--answers", str(answers), "-o", str(answers)])
    assert code == 2 and answers.read_bytes() == before


def test_join_answers_without_any_answer_leaves_every_clip_out(tmp_path):
    answers = tmp_path / "empty.csv"
    append_answer(answers, id="c0", label="happy")
    append_answer(answers, id="c0", action="retract")
    result = join_answers(read_pool(_pool(tmp_path)), answers)
    assert result.table.empty
    assert "left out, no label yet: 6 of the pool's 6 clips" in result.notes
