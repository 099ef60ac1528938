"""Transcript files (SRT, VTT, CSV) and giving each segment its words."""

from __future__ import annotations

import pytest

from emofuse.timeline.transcript import (
    TranscriptError,
    Word,
    assign_words,
    parse_time,
    read_transcript,
    split_cues,
)

SRT = """1
00:00:01,000 --> 00:00:02,500
오늘 정말

2
00:00:04,000 --> 00:00:05,000
<i>좋아요</i>
"""

VTT = """WEBVTT

NOTE a comment --> with an arrow-like text is not a cue

intro
00:01.000 --> 00:02.500 align:start
오늘 정말

00:00:04.000 --> 00:00:05.000
좋아요
"""


@pytest.mark.parametrize("name, body", [("a.srt", SRT), ("a.vtt", VTT)])
def test_srt_and_vtt_give_the_same_cues(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    cues = read_transcript(path)
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [
        (1.0, 2.5, "오늘 정말"),
        (4.0, 5.0, "좋아요"),
    ]


def test_csv_with_seconds_or_clock_times_and_any_delimiter(tmp_path):
    comma = tmp_path / "a.csv"
    comma.write_text("start,end,text\n4,5,좋아요\n1.0,2.5,오늘 정말\n", encoding="utf-8")
    tab = tmp_path / "b.tsv"
    tab.write_text("Start\tEnd\tTranscript\n00:00:01.0\t00:00:02.5\t오늘 정말\n", encoding="utf-8")
    assert [c.text for c in read_transcript(comma)] == ["오늘 정말", "좋아요"]
    assert read_transcript(tab)[0] == Word(1.0, 2.5, "오늘 정말")


def test_errors_name_the_file_and_the_line(tmp_path):
    bad = tmp_path / "bad.srt"
    bad.write_text("1\n00:00:0x,000 --> 00:00:02,000\nhi\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"bad\.srt:2"):
        read_transcript(bad)
    columns = tmp_path / "cols.csv"
    columns.write_text("from_here,words\n1,hi\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"cols\.csv: needs columns start, end and text"):
        read_transcript(columns)
    backwards = tmp_path / "back.csv"
    backwards.write_text("start,end,text\n3,2,hi\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"back\.csv:2"):
        read_transcript(backwards)
    with pytest.raises(TranscriptError, match="no such transcript"):
        read_transcript(tmp_path / "missing.srt")


def test_parse_time_forms():
    assert parse_time("01:02:03,500") == pytest.approx(3723.5)
    assert parse_time("02:03.25") == pytest.approx(123.25)
    assert parse_time("7.5") == 7.5
    with pytest.raises(ValueError):
        parse_time("soon")


def test_a_cue_spanning_two_segments_gives_each_the_words_said_in_it():
    words = split_cues([Word(0.0, 4.0, "aa bb cc dd")])
    texts, lost = assign_words([(0.0, 1.9), (2.1, 4.0)], words)
    assert texts == ["aa bb", "cc dd"] and lost == 0


def test_words_go_to_the_segment_holding_them_or_the_nearest_within_reach():
    words = [Word(0.2, 0.4, "a"), Word(1.05, 1.15, "b"), Word(5.0, 5.2, "far"), Word(2.2, 2.4, "c")]
    texts, lost = assign_words([(0.0, 1.0), (2.0, 3.0)], words, reach_s=0.5)
    assert texts == ["a b", "c"]
    assert lost == 1
