"""What a newcomer sees (issue 24): `predict --manifest`'s bar has the manifest's row count
as its total; `timeline`'s bars count the recording once per pass and end at 100 %;
segments.csv has the `warnings` column the README lists, per segment."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tqdm
from support.serve_support import toy_bundle
from test_timeline_segment import scores

from emofuse.bundle import Prediction
from emofuse.cli import main
from emofuse.timeline import SegmentSettings, build_timeline
from emofuse.timeline.segment import find_segments


class Bars:
    """Every tqdm bar made (as ``tqdm.auto.tqdm``): its arguments, each state it drew, and
    where it ended."""

    def __init__(self, monkeypatch):
        self.made: list[dict] = []
        made = self.made

        class Recorded(tqdm.std.tqdm):
            def __init__(self, *args, **kwargs):
                self.shown = io.StringIO()
                kwargs.update(file=self.shown, mininterval=0, delay=0, disable=False)
                super().__init__(*args, **kwargs)
                self.record = {"desc": kwargs.get("desc"), "shown": self.shown}
                made.append(self.record)

            def close(self):
                self.record.setdefault("end", (self.n, self.total))
                super().close()

        monkeypatch.setattr("tqdm.auto.tqdm", Recorded)


# ------------------------------------------------------------------ predict --manifest


def test_the_manifest_bar_counts_to_the_manifests_rows(tmp_path_factory, tmp_path, monkeypatch):
    """It showed '0clip [?clip/s]': no total. The rows are counted in a second, streaming
    read (a quoted line break and a blank line are one row each, as the reader sees them)."""
    bundle = toy_bundle(tmp_path_factory, "text")
    texts = ["오늘 정말 기분이 좋아요", "두 줄로\n쓴 문장", "", "내일 봐요"] * 3
    manifest = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts}).to_csv(manifest, index=False)
    monkeypatch.setattr("emofuse.predict.manifest.MANIFEST_CHUNK_ROWS", 5)
    bars = Bars(monkeypatch)
    out = tmp_path / "out.csv"
    main(["predict", str(bundle), "--manifest", str(manifest), "-o", str(out),
          "--plugin", "support.toy_encoders"])  # fmt: skip
    assert len(pd.read_csv(out, keep_default_na=False)) == len(texts)
    predicting = [b for b in bars.made if b["desc"] == "predicting"]
    assert len(predicting) == 1 and predicting[0]["end"] == (len(texts), len(texts))
    shown = predicting[0]["shown"].getvalue()
    assert f"5/{len(texts)}" in shown and f"{len(texts)}/{len(texts)}" in shown
    assert not re.search(r"\d+clip \[", shown)  # the form of a bar without a total


def test_counting_rows_as_the_reader_reads_them(tmp_path):
    from emofuse.predict.manifest import count_manifest_rows, read_manifest_chunks

    files = {
        "quoted.csv": 'audio,text\na.wav,"two\nlines"\nb.wav,x\n',
        "blank.csv": "audio,text\na.wav,x\n\nb.wav,y\n",
        "header.csv": "audio,text\n",
        "tabs.tsv": 'audio\ttext\na.wav\tx\nb.wav\t"q\tz"\n',
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    pd.DataFrame({"audio": ["a.wav"] * 7}).to_parquet(tmp_path / "seven.parquet")
    for path in tmp_path.iterdir():
        read = sum(len(chunk) for chunk in read_manifest_chunks(path, 2))
        assert count_manifest_rows(path, rows=2) == read, path.name
    assert count_manifest_rows(tmp_path / "seven.parquet") == 7
    assert count_manifest_rows(tmp_path / "quoted.csv") == 2


# ------------------------------------------------------------------------- timeline


class FixedBundle:
    """A speech model that always says 'calm' (the bars and warnings are tested here)."""

    labels = ["calm", "tense"]
    needs_text = False

    def predict(self, audio, texts=None, **kwargs):
        return [Prediction("calm", {"calm": 0.9, "tense": 0.1}) for _ in audio]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> Path:
    """Two Korean sentences (espeak-ng) with pauses, at 22.05 kHz: decoding resamples, so
    the first pass's blocks do not add up to the header's length exactly."""
    from support.requirements import need_espeak

    from emofuse.timeline.compose import compose_recording

    need_espeak()
    directory = tmp_path_factory.mktemp("spoken")
    clips = []
    for i, text in enumerate(("오늘 정말 기분이 좋아요", "내일은 비가 온다고 했어요")):
        path = directory / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True)
        clips.append(path)
    recording = directory / "two.wav"
    compose_recording(clips, ["a", "b"], recording, seed=1, sample_rate_hz=22_050)
    return recording


def test_timeline_bars_count_the_recording_once_per_pass_to_100_percent(spoken, monkeypatch):
    """The one bar counted both passes (twice the recording), rounded to 0.1 s: it ended
    at 99.8 % here."""
    bars = Bars(monkeypatch)
    build_timeline(FixedBundle(), spoken, progress=True)
    duration = sf.info(spoken).duration
    assert [b["desc"] for b in bars.made] == ["finding speech", "predicting"]
    for bar in bars.made:
        n, total = bar["end"]
        assert n == total == pytest.approx(duration, abs=1e-6)
        drawn = re.findall(r"(\d+)%\|", bar["shown"].getvalue())
        assert drawn[-1] == "100" and f"{duration:.1f}/{duration:.1f} s" in bar["shown"].getvalue()


def test_separate_channels_get_their_own_bars(spoken, tmp_path, monkeypatch):
    wave, rate = sf.read(spoken)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([wave, 0.5 * wave], axis=1), rate)
    bars = Bars(monkeypatch)
    build_timeline(FixedBundle(), stereo, channels="separate", progress=True)
    assert [b["desc"] for b in bars.made] == [
        "finding speech (channel 0)", "predicting (channel 0)",
        "finding speech (channel 1)", "predicting (channel 1)",
    ]  # fmt: skip
    duration = sf.info(stereo).duration
    assert all(b["end"] == pytest.approx((duration, duration), abs=1e-6) for b in bars.made)


def test_no_bars_without_progress(spoken, monkeypatch):
    bars = Bars(monkeypatch)
    build_timeline(FixedBundle(), spoken, progress=False)
    assert bars.made == []


def test_segments_csv_has_a_warnings_column_after_text(spoken, tmp_path):
    """The README lists it; it was there only when some prediction had a warning."""
    plain = build_timeline(FixedBundle(), spoken, progress=False)
    paths = plain.save(tmp_path / "plain")
    table = pd.read_csv(paths["segments"], keep_default_na=False)
    columns = list(table.columns)
    assert columns.index("warnings") == columns.index("text") + 1
    assert len(table) == 2 and (table["warnings"] == "").all()  # two whole sentences

    settings = SegmentSettings(max_segment_s=1.0, split_search_s=0.5, min_segment_s=0.3)
    cut = build_timeline(FixedBundle(), spoken, settings=settings, progress=False)
    paths = cut.save(tmp_path / "cut")
    table = pd.read_csv(paths["segments"], keep_default_na=False)
    assert len(table) > 2
    warned = table["warnings"].str.startswith("cut: part of a longer stretch of speech")
    assert warned.all()  # every piece of a sentence longer than 1 s is part of a cut one
    firsts = table["warnings"].str.contains("goes on after it") & ~table["warnings"].str.contains(
        "began before it"
    )
    assert firsts.sum() == 2  # each sentence's first piece
    assert "max_segment_s = 1 s" in table["warnings"].iloc[0]


def test_a_lone_short_segment_then_the_predictions_own_warnings(spoken, tmp_path):
    """A segment under min_segment_s survives only as a recording's one segment; the
    prediction's own warnings follow the segment's, in the same cell."""

    class Warns(FixedBundle):
        def predict(self, audio, texts=None, **kwargs):
            return [
                Prediction("calm", {"calm": 0.6, "tense": 0.4}, extra={"warnings": ["odd"]})
                for _ in audio
            ]

    wave, rate = sf.read(spoken)
    start = int(np.argmax(np.abs(wave) > 0.1))  # the first sentence's onset
    short = tmp_path / "short.wav"
    sf.write(short, wave[max(start - rate // 10, 0) : start + rate // 2], rate)
    table = build_timeline(Warns(), short, progress=False).table
    assert len(table) == 1
    notes = table["warnings"].iloc[0].split("; ")
    assert notes[0].startswith("short: ") and "under min_segment_s = 0.75 s" in notes[0]
    assert notes[1:] == ["odd"]


def test_cut_flags_follow_the_segmentation_rules():
    settings = SegmentSettings(max_segment_s=10.0, split_search_s=3.0, pad_s=0.0)
    found = find_segments(scores([(0.0, 25.0), (27.0, 29.0)], 30.0, dips=[8.5, 17.0]), settings)
    flags = [(s.cut_before, s.cut_after) for s in found]
    assert flags == [(False, True), (True, True), (True, False), (False, False)]
    assert [bool(s.warnings(settings)) for s in found] == [True, True, True, False]
    assert "began before it and goes on after it" in found[1].warnings(settings)[0]
    # the short end of a cut stretch merged into the next stretch: still begun before it
    settings = SegmentSettings(max_segment_s=10.0, pad_s=0.0, min_silence_s=0.5)
    found = find_segments(scores([(0.0, 10.3), (11.0, 12.0)], 13.0, dips=[9.9]), settings)
    assert [(s.cut_before, s.cut_after) for s in found] == [(False, True), (True, False)]
    assert found[1].end_s == pytest.approx(12.0, abs=0.05)
