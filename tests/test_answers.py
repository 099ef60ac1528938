"""answers.csv (emofuse.corpus.answers): appends that survive several writers and a kill,
retractions, and one label per clip by majority with ties left out."""

import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from emofuse.corpus.answers import (
    ANONYMOUS,
    answered_ids,
    append_answer,
    read_answers,
    resolve_answers,
)

_WRITER = """
import os, sys, time
from emofuse.corpus.answers import append_answer
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(f"{path}.ready-{who}", "w").close()
while n > 0 and not os.path.exists(f"{path}.go"):  # start together
    time.sleep(0.001)
for i in range(n if n > 0 else 10**9):
    append_answer(path, id=f"{who}-{i}", label="happy" if i % 2 else "sad", annotator=who)
"""


def _writer(path: Path, who: str, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), who, str(n)])


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    path = tmp_path / "answers.csv"
    n = 150
    writers = [_writer(path, who, n) for who in ("kim", "lee")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{path}.ready-{w}").exists() for w in ("kim", "lee")):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers)
        time.sleep(0.01)
    Path(f"{path}.go").touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    log = read_answers(path)
    assert log.skipped == []
    turns = sum(a.annotator != b.annotator for a, b in pairwise(log.answers))
    assert turns > 1  # the two wrote at the same time, not one after the other
    for who in ("kim", "lee"):
        mine = [a for a in log.answers if a.annotator == who]
        assert [a.id for a in mine] == [f"{who}-{i}" for i in range(n)]  # in order, none lost
    assert path.read_text(encoding="utf-8").count("id,label,annotator") == 1  # one header


def test_a_line_torn_by_a_kill_is_skipped_and_the_next_append_is_whole(tmp_path):
    path = tmp_path / "answers.csv"
    append_answer(path, id="a", label="happy", annotator="kim")
    with path.open("ab") as handle:
        handle.write(b"b,sa")  # the write a kill cut short
    append_answer(path, id="c", label="sad", annotator="kim")
    log = read_answers(path)
    assert [(a.id, a.label) for a in log.answers] == [("a", "happy"), ("c", "sad")]
    assert [line for line, _ in log.skipped] == [3]


def test_a_writer_killed_mid_stream_leaves_a_readable_file(tmp_path):
    path = tmp_path / "answers.csv"
    writer = _writer(path, "kim", 0)  # appends until killed
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 2000) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    append_answer(path, id="after", label="angry", annotator="lee")
    log = read_answers(path)
    assert len(log.answers) > 20 and len(log.skipped) <= 1
    assert log.answers[-1].id == "after" and log.answers[-1].label == "angry"
    kim = [a.id for a in log.answers if a.annotator == "kim"]
    assert kim == [f"kim-{i}" for i in range(len(kim))]


def test_a_retraction_withdraws_that_annotators_latest_answer(tmp_path):
    path = tmp_path / "answers.csv"
    append_answer(path, id="x", label="happy", annotator="kim")
    append_answer(path, id="x", label="sad", annotator="kim")
    append_answer(path, id="x", label="angry", annotator="lee")
    append_answer(path, id="x", action="retract", annotator="kim")
    assert resolve_answers(path).by_annotator == {"x": {"kim": "happy", "lee": "angry"}}
    append_answer(path, id="x", action="retract", annotator="kim")
    append_answer(path, id="x", action="retract", annotator="lee")
    append_answer(path, id="x", action="retract", annotator="lee")  # nothing left: no effect
    resolved = resolve_answers(path)
    assert resolved.labels == {} and resolved.by_annotator == {}
    assert answered_ids(path) == set()
    # a retraction is appended, never a rewrite: every line is still there
    assert len(read_answers(path).answers) == 7


def test_majority_of_each_annotators_latest_answer_and_ties(tmp_path):
    path = tmp_path / "answers.csv"
    for ident, who, label in [
        ("two-to-one", "kim", "sad"),
        ("two-to-one", "lee", "sad"),
        ("two-to-one", "park", "happy"),
        ("tie", "kim", "sad"),
        ("tie", "lee", "happy"),
        ("changed", "kim", "sad"),
        ("changed", "lee", "happy"),
        ("changed", "kim", "happy"),  # kim's latest counts, once
        ("alone", "park", "angry"),
    ]:
        append_answer(path, id=ident, label=label, annotator=who)
    resolved = resolve_answers(path)
    assert resolved.labels == {"two-to-one": "sad", "changed": "happy", "alone": "angry"}
    assert resolved.ties == ["tie"]
    assert resolved.by_annotator["changed"] == {"kim": "happy", "lee": "happy"}
    assert answered_ids(path) == {"two-to-one", "tie", "changed", "alone"}


def test_no_file_means_no_answers_and_an_anonymous_default(tmp_path):
    path = tmp_path / "answers.csv"
    assert read_answers(path).answers == [] and resolve_answers(path).labels == {}
    answer = append_answer(path, id="x", label="happy", annotator="")
    assert answer.annotator == ANONYMOUS and answer.time.endswith("+00:00")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": "a\nb", "label": "happy"}, "line break"),
        ({"id": " ", "label": "happy"}, "empty id"),
        ({"id": "x", "label": ""}, "empty label"),
        ({"id": "x", "label": "happy", "action": "delete"}, "action must be"),
    ],
)
def test_an_answer_that_would_break_the_file_is_refused(tmp_path, fields, message):
    path = tmp_path / "answers.csv"
    with pytest.raises(ValueError, match=message):
        append_answer(path, **fields)
    assert not path.exists() or read_answers(path).answers == []


def test_a_file_that_is_not_an_answers_file_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("path,emotion\nx.wav,happy\n")
    with pytest.raises(ValueError, match="not an answers file"):
        read_answers(path)


def test_an_id_is_kept_byte_for_byte(tmp_path):
    """A pool id with spaces at its ends (a file named 'clip .wav') must come back as it
    was written, or its answer would never find its clip again."""
    from emofuse.corpus.answers import answered_ids, append_answer, read_answers

    path = tmp_path / "answers.csv"
    append_answer(path, id=" clip ", label="sad", annotator="kim")
    assert answered_ids(path) == {" clip "}
    assert read_answers(path).answers[0].id == " clip "
    with pytest.raises(ValueError, match="line break"):
        append_answer(path, id="a\nb", label="sad")
    with pytest.raises(ValueError, match="empty"):
        append_answer(path, id="   ", label="sad")


@pytest.mark.parametrize("cut", ["id,lab", "id,label,annot", "i"])
def test_a_kill_during_the_first_write_leaves_a_readable_file(tmp_path, cut):
    """The header itself cut by a kill: the next append writes it again, and readers skip
    the cut line."""
    from emofuse.corpus.answers import append_answer, read_answers, resolve_answers

    path = tmp_path / "answers.csv"
    path.write_text(cut)
    assert read_answers(path).answers == []
    append_answer(path, id="c1", label="sad", annotator="kim")
    log = read_answers(path)
    assert [a.id for a in log.answers] == ["c1"] and log.skipped
    assert resolve_answers(path).labels == {"c1": "sad"}


def test_a_header_of_whole_names_cut_short_is_mended_by_the_rewritten_header(tmp_path):
    from emofuse.corpus.answers import append_answer, read_answers

    path = tmp_path / "answers.csv"
    path.write_text("id,label,annotator")  # cut exactly at a comma: looks like a header
    append_answer(path, id="c1", label="sad", annotator="kim")
    assert [a.label for a in read_answers(path).answers] == ["sad"]
