"""Segmentation rules on made-up frame scores (no model): pauses, splits, merges, drops."""

from __future__ import annotations

import numpy as np
import pytest

from emofuse.timeline.segment import SegmentSettings, find_segments
from emofuse.timeline.vad import FRAME_S, FrameScores


def scores(spans_s: list[tuple[float, float]], duration_s: float, dips=()) -> FrameScores:
    """Speech probability 0.95 inside spans, 0.02 outside; loudness -20 dB in speech,
    -60 dB outside, and -45 dB at each time in ``dips`` (a quiet moment inside speech)."""
    n = int(np.ceil(duration_s / FRAME_S))
    t = np.arange(n) * FRAME_S
    prob = np.full(n, 0.02, dtype=np.float32)
    level = np.full(n, -60.0, dtype=np.float32)
    for a, b in spans_s:
        inside = (t >= a) & (t < b)
        prob[inside], level[inside] = 0.95, -20.0
    for d in dips:
        level[int(d / FRAME_S)] = -45.0
    return FrameScores(prob, level, duration_s)


def test_pauses_separate_segments_and_padding_stays_between_neighbours():
    settings = SegmentSettings(pad_s=0.1, min_silence_s=0.5)
    found = find_segments(scores([(1.0, 3.0), (4.0, 6.0)], 8.0), settings)
    assert len(found) == 2
    assert found[0].start_s == pytest.approx(0.9, abs=FRAME_S)
    assert found[0].end_s == pytest.approx(3.1, abs=FRAME_S)
    assert found[1].start_s == pytest.approx(3.9, abs=FRAME_S)


def test_a_pause_shorter_than_min_silence_does_not_split():
    found = find_segments(scores([(1.0, 3.0), (3.3, 5.0)], 6.0), SegmentSettings(min_silence_s=0.5))
    assert len(found) == 1


def test_long_stretch_is_split_at_its_quietest_point_before_the_maximum():
    settings = SegmentSettings(max_segment_s=10.0, split_search_s=3.0, pad_s=0.0)
    found = find_segments(scores([(0.0, 25.0)], 25.0, dips=[8.5, 17.0]), settings)
    assert all(s.duration_s <= 10.0 + 1e-6 for s in found)
    assert found[0].end_s == pytest.approx(8.5, abs=2 * FRAME_S)
    assert found[1].end_s == pytest.approx(17.0, abs=2 * FRAME_S)
    assert found[-1].end_s == pytest.approx(25.0, abs=FRAME_S)


def test_without_a_quiet_point_the_split_still_respects_the_maximum():
    found = find_segments(scores([(0.0, 31.0)], 31.0), SegmentSettings(pad_s=0.0))
    assert len(found) == 4 and all(s.duration_s <= 10.0 + 1e-6 for s in found)


def test_short_segment_merges_with_a_near_neighbour_or_is_dropped():
    settings = SegmentSettings(min_segment_s=1.0, merge_gap_s=1.0, min_silence_s=0.5, pad_s=0.0)
    near = find_segments(scores([(1.0, 4.0), (4.8, 5.3)], 8.0), settings)
    assert len(near) == 1 and near[0].end_s == pytest.approx(5.3, abs=FRAME_S)
    far = find_segments(scores([(1.0, 4.0), (6.0, 6.5)], 8.0), settings)
    assert len(far) == 1 and far[0].end_s == pytest.approx(4.0, abs=FRAME_S)


def test_blips_shorter_than_min_speech_are_noise():
    found = find_segments(scores([(1.0, 1.1), (3.0, 5.0)], 6.0), SegmentSettings())
    assert len(found) == 1 and found[0].start_s > 2.5


def test_a_recording_shorter_than_one_segment_keeps_its_only_segment():
    found = find_segments(scores([(0.1, 0.5)], 0.6), SegmentSettings(min_segment_s=1.0))
    assert len(found) == 1


def test_silence_gives_no_segments():
    assert find_segments(scores([], 30.0), SegmentSettings()) == []


@pytest.mark.parametrize(
    "field, value", [("threshold", 1.5), ("max_segment_s", 0), ("pad_s", -1), ("min_segment_s", 20)]
)
def test_bad_settings_are_refused_with_the_field_name(field, value):
    with pytest.raises(ValueError, match=field):
        SegmentSettings(**{field: value})


def test_every_setting_has_a_one_line_help():
    helps = SegmentSettings.help()
    assert helps and all(text and "\n" not in text for text in helps.values())
