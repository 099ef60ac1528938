"""Ids a manifest's clips get: the file stem where unique; where stems collide, the path
below the manifest's folder, or for a file elsewhere the shortest unique end of its path,
never a chain of ``../``; an id the manifest gives is kept as it is."""

from pathlib import Path

import pandas as pd
from support.corpus_fixtures import write_tone

from emofuse.cli import main
from emofuse.corpus import read_table
from emofuse.corpus.manifest import read_manifest
from emofuse.corpus.rows import path_id_candidates


def _manifest(folder: Path, audio: list[str], **columns: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["happy", "sad"] * len(audio)
    frame = pd.DataFrame({"audio": audio, "label": labels[: len(audio)], **columns})
    frame.to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def _ids(manifest: Path) -> dict[str, str]:
    """audio path -> id, from a read of the manifest."""
    table = read_manifest(manifest, workers=1, progress=False).table
    return dict(zip(table["audio"], table["id"], strict=True))


def test_unique_stems_stay_stems_wherever_the_files_are(tmp_path):
    outside = write_tone(tmp_path / "data" / "emodb" / "wav" / "03a01Fa.wav", 0.2)
    below = write_tone(tmp_path / "lists" / "clips" / "08b02Wb.wav", 0.2)
    manifest = _manifest(tmp_path / "lists", [str(outside), "clips/08b02Wb.wav"])
    assert _ids(manifest) == {str(outside): "03a01Fa", str(below): "08b02Wb"}


def test_colliding_stems_outside_the_folder_get_the_shortest_unique_path_end(tmp_path):
    """Absolute paths to files outside the manifest's folder: no `../../..` chain."""
    first = write_tone(tmp_path / "data" / "emodb" / "wav" / "03a01Fa.wav", 0.2)
    second = write_tone(tmp_path / "data" / "emodb-copy" / "wav" / "03a01Fa.wav", 0.3)
    third = write_tone(tmp_path / "data" / "other" / "03a01Fa.wav", 0.4)
    manifest = _manifest(tmp_path / "deep" / "er" / "lists", [str(first), str(second), str(third)])

    ids = _ids(manifest)
    assert ids == {
        str(first): "emodb/wav/03a01Fa",
        str(second): "emodb-copy/wav/03a01Fa",
        str(third): "other/03a01Fa",
    }
    assert not any(".." in ident for ident in ids.values())


def test_colliding_stems_below_the_folder_are_relative_to_it(tmp_path):
    a = write_tone(tmp_path / "lists" / "ses1" / "f" / "x.wav", 0.2)
    b = write_tone(tmp_path / "lists" / "ses2" / "f" / "x.wav", 0.3)
    manifest = _manifest(tmp_path / "lists", ["ses1/f/x.wav", str(b)])
    assert _ids(manifest) == {str(a): "ses1/f/x", str(b): "ses2/f/x"}


def test_a_file_below_and_one_outside_with_the_same_stem(tmp_path):
    below = write_tone(tmp_path / "lists" / "wav" / "x.wav", 0.2)
    outside = write_tone(tmp_path / "data" / "wav" / "x.wav", 0.3)
    manifest = _manifest(tmp_path / "lists", ["wav/x.wav", str(outside)])
    ids = _ids(manifest)
    assert ids[str(below)] == "wav/x"  # the path below the manifest's folder
    assert ids[str(outside)] == "data/wav/x"  # the shortest end unique against it
    assert len(set(ids.values())) == 2


def test_the_same_file_name_twice_gets_numbered(tmp_path):
    """Files that differ only by their extension: no path tells them apart."""
    wav = write_tone(tmp_path / "data" / "x.wav", 0.2)
    other = tmp_path / "data" / "x.flac"
    other.write_bytes(wav.read_bytes())  # soundfile reads the header, not the name
    manifest = _manifest(tmp_path / "lists", [str(wav), str(other)])
    ids = sorted(_ids(manifest).values())
    assert len(set(ids)) == 2 and ids[0].endswith("data/x") and ids[1].startswith(ids[0])


def test_given_ids_are_kept_and_generated_ones_avoid_them(tmp_path):
    a = write_tone(tmp_path / "data" / "a" / "x.wav", 0.2)
    b = write_tone(tmp_path / "data" / "b" / "y.wav", 0.3)
    c = write_tone(tmp_path / "data" / "c" / "z.wav", 0.4)
    given = ["../../weird/id with spaces", "", ""]
    manifest = _manifest(tmp_path / "lists", [str(a), str(b), str(c)], id=given)
    # a user-given id is never rewritten, even one that looks like a path
    assert _ids(manifest) == {str(a): given[0], str(b): "y", str(c): "z"}
    # a given id that equals a stem pushes the generated one to a longer path
    manifest = _manifest(tmp_path / "lists", [str(a), str(b)], id=["", "x"])
    assert _ids(manifest) == {str(a): "a/x", str(b): "x"}


def test_ids_do_not_depend_on_which_rows_pass(tmp_path):
    """A row dropped for a missing label or a missing file still counts when ids are made:
    labelling it later, or restoring its file, changes no other clip's id."""
    a = write_tone(tmp_path / "data" / "a" / "x.wav", 0.2)
    b = write_tone(tmp_path / "data" / "b" / "x.wav", 0.3)
    gone = tmp_path / "data" / "c" / "x.wav"
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    rows = {"audio": [str(a), str(b), str(gone)], "label": ["happy", "", "sad"]}
    pd.DataFrame(rows).to_csv(manifest, index=False)
    result = read_manifest(manifest, workers=1, progress=False)
    assert result.table["id"].tolist() == ["a/x"]
    assert len(result.problems) == 2


def test_path_id_candidates_end_with_the_whole_path():
    assert path_id_candidates("/data/emodb/wav/x.wav", "/lists") == (
        "x",
        "wav/x",
        "emodb/wav/x",
        "data/emodb/wav/x",
    )
    assert path_id_candidates("/lists/sub/x.v2.wav", "/lists") == ("x.v2", "sub/x.v2")


def test_tables_prepared_before_keep_their_ids(tmp_path):
    """Ids live in the table: a table with the old `../` ids reads back unchanged."""
    wav = write_tone(tmp_path / "data" / "x.wav", 0.2)
    manifest = _manifest(tmp_path / "lists", [str(wav)])
    assert main(["prepare", str(manifest), "-o", str(tmp_path / "c.parquet"), "--quiet"]) == 0
    table, labels = read_table(tmp_path / "c.parquet")
    table.loc[0, "id"] = "../data/x"  # how an older prepare spelled a colliding id
    table.to_parquet(tmp_path / "old.parquet")
    old, _ = read_table(tmp_path / "old.parquet")
    assert old["id"].tolist() == ["../data/x"]
