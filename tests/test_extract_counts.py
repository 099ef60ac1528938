"""`emofuse extract` counts clips (and distinct texts), not vectors: a speech encoder of
two parts computes two vectors per clip, and the report still says how many clips."""

from __future__ import annotations

import support.toy_encoders  # noqa: F401 - registers toy-stats / toy-len
from support.toy_encoders import make_corpus
from test_extract_resume import extract_argv

from emofuse.cli import main
from emofuse.corpus.table import write_table
from emofuse.encoders import build_encoder
from emofuse.features import FeatureStore

TWO_PARTS = "toy-stats+toy-stats?scale=3"


def _lines(out: str, start: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(start)]


def test_extract_counts_clips_per_encoder_not_vectors(tmp_path, capsys):
    table = make_corpus(tmp_path / "corpus", n=6)
    corpus = write_table(table, tmp_path / "corpus.csv")
    argv = extract_argv(corpus, tmp_path / "store", "--text", "toy-len", speech=TWO_PARTS)
    assert main(argv) == 0
    out = capsys.readouterr().out
    (speech,) = _lines(out, f"speech {TWO_PARTS}:")
    assert "6 computed, 0 cached, 0 failed of 6 clips" in speech  # not "12 computed"
    # One line per encoder part, each counting the same 6 clips.
    assert len(_lines(out, "  toy-stats: 6 computed, 0 cached, 0 failed")) == 1
    assert len(_lines(out, "  toy-stats?scale=3: 6 computed, 0 cached, 0 failed")) == 1
    (text,) = _lines(out, "text toy-len:")
    assert "4 computed, 0 cached, 0 failed of 4 distinct texts" in text  # 4 scripts, 6 clips

    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "0 computed, 6 cached, 0 failed of 6 clips" in _lines(again, "speech ")[0]


def test_a_clip_counts_once_whatever_its_parts_did(tmp_path):
    table = make_corpus(tmp_path / "corpus", n=9)
    store = FeatureStore(tmp_path / "store")
    store.ensure(table.iloc[:4], build_encoder("toy-stats", "speech"), progress=False)
    # The first part has 4 of the 9 clips, the second part none: all 9 clips get work.
    report = store.ensure(table, build_encoder(TWO_PARTS, "speech"), progress=False)
    assert (report.computed, report.cached) == (5 + 9, 4)  # vectors, part by part
    assert report.item_counts() == {"items": 9, "computed": 9, "cached": 0, "failed": 0}
    again = store.ensure(table, build_encoder(TWO_PARTS, "speech"), progress=False)
    assert again.item_counts() == {"items": 9, "computed": 0, "cached": 9, "failed": 0}
