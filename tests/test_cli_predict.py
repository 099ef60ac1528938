"""`emofuse predict --manifest`: streams (read, predict, write a chunk at a time), a bad
row fails alone, and rows already predicted are on disk if the run stops."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support.serve_support import toy_bundle

from emofuse.cli import main


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return toy_bundle(tmp_path_factory, "speech")


@pytest.fixture
def manifest(tmp_path) -> Path:
    import soundfile as sf
    from support.serve_support import TOY_PITCH_HZ, toy_clip

    rows = []
    for i in range(10):
        label = list(TOY_PITCH_HZ)[i % 4]
        sf.write(tmp_path / f"c{i}.wav", toy_clip(label, 0.5, seed=100 + i), 16_000)
        rows.append({"id": f"c{i}", "audio": f"c{i}.wav"})  # relative to the manifest
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav file")
    rows.insert(3, {"id": "bad", "audio": "broken.wav"})
    rows.insert(6, {"id": "gone", "audio": "missing.wav"})
    path = tmp_path / "clips.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _predict(bundle_dir, manifest, out) -> int:
    return main(["predict", str(bundle_dir), "--manifest", str(manifest), "-o", str(out),
                 "--plugin", "support.toy_encoders", "--no-progress"])  # fmt: skip


def test_bad_rows_fail_alone(bundle_dir, manifest, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    assert _predict(bundle_dir, manifest, out) == 1
    frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == 12
    errors = dict(zip(frame["id"], frame["error"], strict=True))
    assert "broken.wav: unreadable audio" in errors["bad"]
    assert "missing.wav: no such file" in errors["gone"]
    good = frame[frame["error"] == ""]
    assert len(good) == 10 and (good["predicted"] != "").all()
    assert "10 of 12 clips predicted, 2 errors" in capsys.readouterr().err


def test_streams_in_chunks_and_keeps_finished_rows(bundle_dir, manifest, tmp_path, monkeypatch):
    """Reading every clip before predicting (as before) held the whole manifest in memory
    and lost everything when a late row stopped the run."""
    from emofuse.predict.engine import PredictionEngine

    monkeypatch.setattr("emofuse.predict.manifest.MANIFEST_CHUNK_ROWS", 4)
    sizes = []
    original = PredictionEngine.predict_each

    def spy(self, items):
        sizes.append(len(items))
        if len(sizes) == 3:
            raise KeyboardInterrupt  # the user stops the run in the third chunk
        return original(self, items)

    monkeypatch.setattr(PredictionEngine, "predict_each", spy)
    out = tmp_path / "predictions.csv"
    assert _predict(bundle_dir, manifest, out) == 130
    assert sizes == [4, 4, 4]
    assert not out.exists()  # never a cut file under the output's name
    frame = pd.read_csv(tmp_path / "predictions.csv.partial", keep_default_na=False)
    assert len(frame) == 8  # the two finished chunks
    assert list(frame["id"]) == list(pd.read_csv(manifest)["id"][:8])


def test_parquet_manifest_and_output_checks(bundle_dir, manifest, tmp_path, capsys):
    parquet = manifest.with_suffix(".parquet")
    pd.read_csv(manifest).to_parquet(parquet)
    out = tmp_path / "from-parquet.csv"
    assert _predict(bundle_dir, parquet, out) == 1
    assert len(pd.read_csv(out)) == 12
    assert _predict(bundle_dir, manifest, manifest) == 2  # would overwrite what it reads
    no_audio = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a"]}).to_csv(no_audio, index=False)
    assert _predict(bundle_dir, no_audio, tmp_path / "x.csv") == 2
    errors = capsys.readouterr().err
    assert "this output is also an input" in errors
    assert "no `audio` column" in errors


def test_one_clip_or_one_text_is_printed(bundle_dir, manifest, tmp_path_factory, capsys):
    from support.serve_support import TOY_SENTENCES

    clip = manifest.parent / "c0.wav"
    assert main(["predict", str(bundle_dir), str(clip), "--plugin", "support.toy_encoders"]) == 0
    assert capsys.readouterr().out.startswith("label: ")
    text_bundle = toy_bundle(tmp_path_factory, "text")
    sentence = TOY_SENTENCES["sad"]
    argv = [
        "predict",
        str(text_bundle),
        "--text",
        f"  {sentence} ",
        "--plugin",
        "support.toy_encoders",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("label: sad") and f"text: {sentence}\n" in out
    assert main(["predict", str(text_bundle), "--plugin", "support.toy_encoders"]) == 2
    assert "give an audio file or --text" in capsys.readouterr().err
