"""`emofuse timeline` arguments: every segmentation setting is a flag; bad ones are named."""

from __future__ import annotations

import dataclasses

import pytest

from emofuse.cli import build_parser, main
from emofuse.timeline.segment import SegmentSettings


def test_every_setting_is_a_flag_with_its_default():
    args = build_parser().parse_args(["timeline", "b", "r.wav", "-o", "out"])
    for f in dataclasses.fields(SegmentSettings):
        assert getattr(args, f.name) == f.default
    args = build_parser().parse_args(
        ["timeline", "b", "r.wav", "-o", "out", "--max-segment-s", "6", "--channels", "separate"]
    )
    assert args.max_segment_s == 6.0 and args.channels == "separate"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-segment-s", "0"], "--max-segment-s must be positive"),
        (["--threshold", "2"], "--threshold must be in (0, 1)"),
        (["--asr", "vosk", "--transcript", "t.srt"], "--asr or --transcript, not both"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, flags, message):
    code = main(["timeline", str(tmp_path), str(tmp_path / "r.wav"), "-o", str(tmp_path / "o"),
                 *flags])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
