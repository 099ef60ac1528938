"""`emofuse sample --order diverse | speaker-balanced`: round robin over speakers, k-center
picks over the store's vectors (speech, or text on a text-only corpus), and the one-line
errors when what an order needs is missing. Toy encoders keep it fast."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-len
from support.toy_bundle import corpus_row, tone_wav

from emofuse.cli import build_parser, main
from emofuse.corpus.table import read_table, write_table
from emofuse.encoders.registry import OFFLINE_SPEECH, build_encoder
from emofuse.features import FeatureStore
from emofuse.sampling import ORDERS

LABELS = ["happy", "sad"]
# Three tight groups of clips per label, far apart in toy-stats space (amplitude,
# duration, pitch), of unequal sizes so a random pick of 3 often misses a small one.
GROUPS = ((0.05, 0.2, 150.0, 6), (0.3, 0.6, 420.0, 2), (0.6, 1.0, 900.0, 2))


def clustered_corpus(directory: Path, *, part: bool = False) -> Path:
    rows = []
    (directory / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for label in LABELS:
        i = 0
        for group, (amplitude, seconds, freq, n) in enumerate(GROUPS):
            for _ in range(n):
                uid = f"{label}_{i:02d}"
                jitter = 1 + 0.03 * rng.standard_normal()
                path = tone_wav(directory / "wav" / f"{uid}.wav", seconds * jitter, freq, i)
                _scale(path, amplitude * jitter)
                extra = {"part": "train" if i % 5 else "test"} if part else {}
                rows.append(
                    corpus_row(
                        uid, path, f"{label} {i}", label, i % 3, str(group), seconds, **extra
                    )
                )
                i += 1
    return write_table(pd.DataFrame(rows), directory / "corpus.parquet", LABELS)


def _scale(path: Path, amplitude: float) -> None:
    import soundfile as sf

    wave, rate = sf.read(path, dtype="float32")
    sf.write(path, wave / np.abs(wave).max() * amplitude, rate)


def sample(corpus: Path, out: Path, order: str, *extra: str, per_label: int = 3) -> int:
    argv = ["sample", str(corpus), "--per-label", str(per_label), "--order", order]
    return main([*argv, *extra, "-o", str(out), "--no-progress"])


def toy_vectors(corpus: Path, store: Path) -> pd.DataFrame:
    """The corpus's standardised toy-stats vectors, one column per dimension, by id."""
    table, _ = read_table(corpus)
    vectors = FeatureStore(store).get(table, build_encoder("toy-stats", "speech"))
    std = vectors.std(axis=0)
    standard = (vectors - vectors.mean(axis=0)) / np.where(std < 1e-8, 1, std)
    return pd.DataFrame(standard, index=table["id"])


def covering_radius(points: np.ndarray, centres: np.ndarray) -> float:
    gaps = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
    return float(gaps.min(axis=1).max())


# --------------------------------------------------------------------------- choices


def test_order_choices_are_the_sampling_orders():
    parser = build_parser()
    sample_parser = parser._subparsers._group_actions[0].choices["sample"]
    order = next(a for a in sample_parser._actions if a.dest == "order")
    speech = next(a for a in sample_parser._actions if a.dest == "speech")
    assert tuple(order.choices) == ORDERS
    assert speech.default == OFFLINE_SPEECH


# ------------------------------------------------------------------------- diverse


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Path:
    return clustered_corpus(tmp_path_factory.mktemp("clustered"))


def test_diverse_without_a_store_names_both_flags(clustered, tmp_path, capsys):
    out = tmp_path / "s.parquet"
    assert sample(clustered, out, "diverse") == 2
    err = capsys.readouterr().err.strip()
    assert "--store" in err and "--speech" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_diverse_covers_each_label_better_than_random_and_is_seeded(clustered, tmp_path):
    store = tmp_path / "store"
    flags = ("--store", str(store), "--speech", "toy-stats")
    picks = {}
    for name, order, seed in (("a", "diverse", 0), ("b", "diverse", 0), ("r", "random", 0)):
        out = tmp_path / f"{name}.parquet"
        assert sample(clustered, out, order, *flags, "--seed", str(seed)) == 0
        picks[name] = read_table(out)[0]
    assert list(picks["a"]["id"]) == list(picks["b"]["id"])  # same seed, same picks
    assert set(picks["a"]["id"]) != set(picks["r"]["id"])
    assert picks["a"]["label"].value_counts().to_dict() == {"happy": 3, "sad": 3}

    space = toy_vectors(clustered, store)
    for label in LABELS:
        pool = space.loc[[i for i in space.index if i.startswith(label)]].to_numpy()
        chosen = space.loc[picks["a"].loc[picks["a"]["label"] == label, "id"]].to_numpy()
        radius = covering_radius(pool, chosen)
        # k-center greedy is within twice the best covering by any 3 clips ...
        best = min(
            covering_radius(pool, pool[list(c)]) for c in itertools.combinations(range(10), 3)
        )
        assert radius <= 2 * best + 1e-9
        # ... and here it reaches every group, which seeded random picks of 3 mostly miss
        assert len(set(picks["a"].loc[picks["a"]["label"] == label, "script"])) == 3
        rng = np.random.default_rng(1)
        random_radii = [
            covering_radius(pool, pool[rng.choice(len(pool), 3, replace=False)]) for _ in range(50)
        ]
        assert radius <= np.median(random_radii)


def test_diverse_reuses_the_store(clustered, tmp_path, monkeypatch):
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    flags = ("--store", str(tmp_path / "store"), "--speech", "toy-stats")
    assert sample(clustered, tmp_path / "a.parquet", "diverse", *flags) == 0
    first = len(log.read_text().splitlines())
    assert first == 20
    assert sample(clustered, tmp_path / "b.parquet", "diverse", *flags, "--seed", "3") == 0
    assert len(log.read_text().splitlines()) == first  # nothing encoded twice


def test_diverse_on_a_split_table_encodes_and_samples_only_the_train_part(tmp_path, monkeypatch):
    corpus = clustered_corpus(tmp_path / "c", part=True)
    table, _ = read_table(corpus)
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    out = tmp_path / "s.parquet"
    flags = ("--store", str(tmp_path / "store"), "--speech", "toy-stats")
    assert sample(corpus, out, "diverse", *flags) == 0
    n_train = int((table["part"] == "train").sum())
    assert len(log.read_text().splitlines()) == n_train
    sampled, _ = read_table(out)
    train = sampled[sampled["part"] == "train"]
    assert set(train["id"]) <= set(table.loc[table["part"] == "train", "id"])
    assert sorted(sampled.loc[sampled["part"] == "test", "id"]) == sorted(
        table.loc[table["part"] == "test", "id"]
    )


def text_only_corpus(directory: Path) -> Path:
    rows = []
    for label in LABELS:
        for i in range(8):
            text = ("응" if i < 5 else "정말 너무너무 길고 긴 문장이에요!! " * (i - 3)).strip()
            rows.append(corpus_row(f"{label}{i}", "", text, label, i % 2, str(i), np.nan))
    frame = pd.DataFrame(rows).assign(audio="")
    return write_table(frame, directory / "texts.parquet", LABELS)


def test_diverse_on_a_text_only_corpus_reads_text_vectors(tmp_path, capsys):
    corpus = text_only_corpus(tmp_path)
    out = tmp_path / "s.parquet"
    flags = ("--store", str(tmp_path / "store"), "--text", "toy-len")
    assert sample(corpus, out, "diverse", *flags, per_label=2) == 0
    assert "text-only corpus" in capsys.readouterr().out
    sampled, _ = read_table(out)
    # five identical short texts and three long ones: two picks span short and long
    for label in LABELS:
        lengths = sampled.loc[sampled["label"] == label, "text"].str.len()
        assert lengths.min() == 1 and lengths.max() > 20


def test_diverse_refuses_a_text_encoder_that_learns_from_the_labels(tmp_path, capsys):
    corpus = text_only_corpus(tmp_path)
    flags = ("--store", str(tmp_path / "store"), "--text", "kiwi-sparse")
    assert sample(corpus, tmp_path / "s.parquet", "diverse", *flags, per_label=2) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "learns from the labels" in err
    assert not (tmp_path / "s.parquet").exists()


def test_diverse_on_a_mixed_corpus_is_one_clear_line(clustered, tmp_path, capsys):
    table, _ = read_table(clustered)
    table.loc[:3, "audio"] = ""
    mixed = write_table(table, tmp_path / "mixed.parquet", LABELS)
    code = sample(mixed, tmp_path / "s.parquet", "diverse", "--store", str(tmp_path / "st"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "4 of 20 rows have no audio" in err and "diverse" in err


# --------------------------------------------------------------- speaker-balanced


def speakers_table(directory: Path) -> Path:
    """Per label: speaker a has 10 clips, b 4, c 2 (no audio needed)."""
    rows = []
    for label in LABELS:
        for speaker, n in (("a", 10), ("b", 4), ("c", 2)):
            for i in range(n):
                uid = f"{label}_{speaker}{i}"
                rows.append(corpus_row(uid, f"/x/{uid}.wav", uid, label, 0, uid, 1.0 + i))
                rows[-1]["speaker"] = speaker
    return write_table(pd.DataFrame(rows), directory / "speakers.parquet", LABELS)


def balanced(counts: pd.Series, available: pd.Series) -> bool:
    """Every speaker not yet used up has at most one clip fewer than the busiest one."""
    counts = counts.reindex(available.index, fill_value=0)
    open_speakers = counts[counts < available]
    return bool((open_speakers >= counts.max() - 1).all())


@pytest.mark.parametrize("per_label", [3, 6, 8, 11])
def test_speaker_balanced_spreads_each_emotion_over_speakers(tmp_path, per_label):
    corpus = speakers_table(tmp_path)
    table, _ = read_table(corpus)
    out = tmp_path / "s.parquet"
    assert sample(corpus, out, "speaker-balanced", per_label=per_label) == 0
    sampled, _ = read_table(out)
    for label in LABELS:
        available = table.loc[table["label"] == label, "speaker"].value_counts()
        counts = sampled.loc[sampled["label"] == label, "speaker"].value_counts()
        assert counts.sum() == per_label
        assert balanced(counts, available), counts.to_dict()


def test_random_picks_are_not_speaker_balanced_here(tmp_path):
    """The check above can fail: seeded random picks follow the 10:4:2 speaker mix."""
    corpus = speakers_table(tmp_path)
    table, _ = read_table(corpus)
    unbalanced = 0
    for seed in range(5):
        out = tmp_path / f"r{seed}.parquet"
        assert sample(corpus, out, "random", "--seed", str(seed), per_label=6) == 0
        sampled, _ = read_table(out)
        for label in LABELS:
            available = table.loc[table["label"] == label, "speaker"].value_counts()
            counts = sampled.loc[sampled["label"] == label, "speaker"].value_counts()
            unbalanced += not balanced(counts, available)
    assert unbalanced >= 5


def test_speaker_balanced_without_speakers_is_one_clear_line(tmp_path, capsys):
    table, _ = read_table(speakers_table(tmp_path))
    nameless = write_table(table.assign(speaker=""), tmp_path / "nameless.parquet", LABELS)
    out = tmp_path / "s.parquet"
    assert sample(nameless, out, "speaker-balanced") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "speaker-balanced" in err and "nameless" in err
    assert not out.exists()


def test_diverse_never_takes_a_clip_twice_when_vectors_coincide(tmp_path):
    """Identical texts give identical vectors: k-center greedy once re-picked the first
    clip (all distances 0), so the sampled table held duplicate ids and was not written."""
    from emofuse.sampling import k_center_order

    assert sorted(k_center_order(np.zeros((5, 2)))) == [0, 1, 2, 3, 4]
    assert len(set(k_center_order(np.array([[0.0], [0.0], [1.0], [1.0]]), 3))) == 3
    table, _ = read_table(text_only_corpus(tmp_path))
    same = write_table(table.assign(text="응"), tmp_path / "same.parquet", LABELS)
    out = tmp_path / "s.parquet"
    flags = ("--store", str(tmp_path / "store"), "--text", "toy-len")
    assert sample(same, out, "diverse", *flags, per_label=4) == 0
    sampled, _ = read_table(out)
    assert sampled["id"].is_unique and len(sampled) == 8
