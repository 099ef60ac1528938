"""`emofuse train`, `emofuse evaluate` and `emofuse predict`: a split table to a model
bundle, a bundle scored on a labelled table, and a bundle applied to new clips."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.plugins import add_plugin_option, load_plugins

MODALITIES = ("speech", "text", "both")


# ----------------------------------------------------------------------------- parsers


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``batch_size`` -> ``--batch-size``), help from the field."""
    from emofuse.train_config import TrainConfig

    group = parser.add_argument_group("training settings")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if f.type in (bool, "bool"):
            group.add_argument(flag, dest=f.name, action="store_true", help=help_text)
        else:
            type_name = f.type if isinstance(f.type, str) else f.type.__name__
            kind = {"int": int, "float": float}.get(type_name, str)
            group.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a speech / text / fused model on a split table and save a bundle",
        description=(
            "Train on rows with part == train (the best epoch is picked on part == val), "
            "score part == test, and write a bundle directory (config.json, "
            "model.safetensors, encoder state, evaluation/ with metrics and the confusion "
            "matrix). Features come from the feature store: computed once, reused."
        ),
    )
    train.add_argument(
        "split", type=Path, metavar="SPLIT", help="table with a `part` column (`emofuse split`)"
    )
    train.add_argument(
        "--modality",
        choices=MODALITIES,
        default="both",
        help="inputs the model reads (default: both)",
    )
    train.add_argument(
        "--speech", metavar="SPEC", help="speech encoder (default: egemaps+resemblyzer)"
    )
    train.add_argument("--text", metavar="SPEC", help="text encoder (default: kiwi-tfidf)")
    train.add_argument(
        "--store", type=Path, required=True, metavar="DIR", help="feature store directory"
    )
    train.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="BUNDLE_DIR",
        help="bundle directory to write",
    )
    train.add_argument(
        "--extract-batch-size",
        type=int,
        default=8,
        metavar="N",
        help="clips per encoder call while extracting (default 8)",
    )
    train.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes for CPU-bound feature extraction (default 1)",
    )
    train.add_argument(
        "--split-strategy", metavar="NAME", help="how SPLIT was made, recorded in the bundle"
    )
    train.add_argument(
        "--split-seed", type=int, metavar="N", help="the split's seed, recorded in the bundle"
    )
    train.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the Hugging Face encoder(s) end to end with the head (GPU advised; see emofuse.finetune)",
    )
    train.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no", help="with --finetune"
    )
    train.add_argument(
        "--encoder-lr", type=float, default=2e-5, help="with --finetune: encoder learning rate"
    )
    add_plugin_option(train)
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_config_flags(train)
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a bundle on a labelled corpus table (UAR, accuracy, macro-F1, confusion)",
        description="Features come from the bundle's own encoders (fitted state included).",
    )
    evaluate.add_argument("bundle", type=Path, metavar="BUNDLE")
    evaluate.add_argument(
        "corpus", type=Path, metavar="CORPUS", help="labelled table (`emofuse prepare` / `split`)"
    )
    evaluate.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="write metrics.json, confusion.csv/.png, per_class.csv, predictions.csv",
    )
    evaluate.add_argument("--part", metavar="PART", help="only rows with this `part` (e.g. test)")
    evaluate.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="feature store to reuse (default: a temporary one)",
    )
    add_plugin_option(evaluate)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=run_evaluate)

    predict = subparsers.add_parser(
        "predict",
        help="predict the emotion of clips with a bundle",
        description=(
            "One clip: `emofuse predict BUNDLE clip.wav [--text '...'] [--asr vosk]`. "
            "Many: `emofuse predict BUNDLE --manifest clips.csv -o predictions.csv` (columns "
            "audio and optional text; relative paths are relative to the manifest). A bad row "
            "gets an `error` value and the rest go on; the exit status is 1 if any row failed."
        ),
    )
    predict.add_argument("bundle", type=Path, metavar="BUNDLE")
    predict.add_argument(
        "audio",
        type=Path,
        nargs="?",
        metavar="AUDIO",
        help="audio file (omit for a text-only model given --text)",
    )
    predict.add_argument("--text", metavar="TEXT", help="the transcript of the clip")
    predict.add_argument(
        "--asr",
        default="none",
        metavar="NAME",
        help="transcribe clips without text: vosk or none (default)",
    )
    predict.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help="CSV/TSV/Parquet with `audio` and optional `text`, `id` columns",
    )
    predict.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="CSV",
        help="with --manifest: where to write predictions",
    )
    predict.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="clips per model call (default 16)"
    )
    add_plugin_option(predict)
    predict.add_argument("--no-progress", action="store_true")
    predict.set_defaults(handler=run_predict)


# ----------------------------------------------------------------------------- helpers


def _plugins(args: argparse.Namespace) -> None:
    load_plugins(args.plugin)


def _read_table(path: Path):
    from emofuse.corpus.table import CorpusTableError, read_table

    try:
        return read_table(path)
    except (FileNotFoundError, CorpusTableError) as err:
        raise CommandError(str(err)) from None


def _load_bundle(path: Path):
    from emofuse.bundle import Bundle, BundleError

    try:
        return Bundle.load(path)
    except BundleError as err:
        raise CommandError(str(err)) from None


def _print_metrics(metrics: dict) -> None:
    from emofuse.metrics import format_metrics

    print(format_metrics(metrics))
    width = max(len(label) for label in metrics["labels"])
    print(f"{'':{width}}  precision  recall     f1  support")
    for label in metrics["labels"]:
        c = metrics["per_class"][label]
        print(
            f"{label:{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  {c['support']:7d}"
        )


def _provenance(args: argparse.Namespace, table) -> dict:
    import hashlib

    digest = hashlib.sha256()
    for row in table[["id", "part"]].astype(str).itertuples(index=False):
        digest.update(f"{row.id}\t{row.part}\n".encode())
    record = {
        "split_file": str(args.split.resolve()),
        "split_digest": digest.hexdigest()[:16],
        "split_strategy": args.split_strategy,
        "split_seed": args.split_seed,
        "command": "emofuse " + " ".join(sys.argv[1:]),
    }
    try:
        from emofuse.splits import leakage_report

        leak = leakage_report(table)
        record["leakage"] = {
            "shared_speakers": leak.shared_speakers,
            "shared_texts": leak.shared_texts,
        }
    except Exception:  # provenance is best effort; a table without speakers is still trainable
        pass
    return record


# ----------------------------------------------------------------------------- commands


def run_train(args: argparse.Namespace) -> int:
    from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT
    from emofuse.train_config import TrainConfig

    _plugins(args)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**values)
    except ValueError as err:
        raise CommandError(str(err)) from None
    speech = args.speech or (OFFLINE_SPEECH if args.modality != "text" else None)
    text = args.text or (OFFLINE_TEXT if args.modality != "speech" else None)
    table, labels = _read_table(args.split)
    if "part" not in table.columns:
        raise CommandError(
            f"{args.split}: no `part` column; make a split with `emofuse split` first"
        )
    provenance = _provenance(args, table)

    if args.finetune:
        return _run_finetune(args, table, labels, speech, text, config, provenance)

    from emofuse.encoders.base import EncoderError
    from emofuse.features import FeatureStoreError
    from emofuse.pipeline import PipelineError, train_and_evaluate

    print(f"training a {args.modality} model on {args.split} "
          f"({'speech ' + speech if speech and args.modality != 'text' else ''}"
          f"{' + ' if args.modality == 'both' else ''}"
          f"{'text ' + text if text and args.modality != 'speech' else ''})", file=sys.stderr)  # fmt: skip
    try:
        run = train_and_evaluate(
            table, labels, modality=args.modality, store=args.store, speech=speech, text=text,
            config=config, out_dir=args.output, provenance=provenance,
            progress=not args.no_progress, batch_size=args.extract_batch_size, workers=args.workers,
        )  # fmt: skip
    except (PipelineError, EncoderError, FeatureStoreError, ValueError) as err:
        raise CommandError(str(err)) from None
    if run.metrics is not None:
        _print_metrics(run.metrics)
    print(f"bundle written to {run.bundle_dir}")
    return 0


def _run_finetune(args, table, labels, speech, text, config, provenance) -> int:
    from emofuse.finetune import FinetuneConfig, FinetuneError, finetune_and_evaluate

    try:
        ft_config = FinetuneConfig.from_train_config(
            config, encoder_lr=args.encoder_lr, mixed_precision=args.mixed_precision
        )
        run = finetune_and_evaluate(
            table, labels, modality=args.modality, speech=speech, text=text,
            config=ft_config, out_dir=args.output, provenance=provenance,
            progress=not args.no_progress,
        )  # fmt: skip
    except (FinetuneError, ValueError) as err:
        raise CommandError(str(err)) from None
    if run.metrics is not None:
        _print_metrics(run.metrics)
    if run.bundle_dir is not None:
        print(f"bundle written to {run.bundle_dir}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import tempfile

    _plugins(args)
    bundle = _load_bundle(args.bundle)
    table, _ = _read_table(args.corpus)
    if args.part:
        if "part" not in table.columns:
            raise CommandError(f"{args.corpus}: no `part` column to select --part {args.part} from")
        table = table[table["part"].astype(str) == args.part]
        if table.empty:
            raise CommandError(f"{args.corpus}: no rows with part == {args.part!r}")

    from emofuse.bundle import BundleError
    from emofuse.features import FeatureStoreError
    from emofuse.pipeline import PipelineError, evaluate_bundle

    with tempfile.TemporaryDirectory(prefix="emofuse-eval-") as scratch:
        try:
            result = evaluate_bundle(
                bundle, table, store=args.store or Path(scratch), out_dir=args.output,
                progress=not args.no_progress,
            )  # fmt: skip
        except (BundleError, PipelineError, FeatureStoreError) as err:
            raise CommandError(str(err)) from None
    print(bundle.describe())
    _print_metrics(result.metrics)
    if result.out_dir is not None:
        print(f"metrics written to {result.out_dir}")
    return 0


def _format_prediction(prediction) -> str:
    lines = [f"label: {prediction.label}"]
    if prediction.text is not None:
        lines.append(f"text: {prediction.text}")
    lines += [f"warning: {w}" for w in prediction.extra.get("warnings", [])]
    width = max(len(label) for label in prediction.probabilities)
    for label, p in sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {label:{width}}  {p:.3f}  {'#' * round(p * 30)}")
    return "\n".join(lines)


def _build_asr(name: str):
    from emofuse.asr import build_asr

    try:
        return build_asr(name)
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        raise CommandError(f"--asr {name}: {err}") from None


def run_predict(args: argparse.Namespace) -> int:
    _plugins(args)
    if args.manifest is not None:
        if args.audio is not None or args.text is not None:
            raise CommandError("give either --manifest or one AUDIO [--text], not both")
        if args.output is None:
            raise CommandError("--manifest needs -o predictions.csv")
        bundle = _load_bundle(args.bundle)
        return _predict_manifest(args, bundle, _build_asr(args.asr))
    if args.output is not None:
        raise CommandError("-o goes with --manifest; one clip's prediction is printed")
    bundle = _load_bundle(args.bundle)
    if args.audio is None and (bundle.needs_audio or not args.text):
        raise CommandError(
            "give an audio file" + ("" if bundle.needs_audio else " or --text '...'")
            + f" (this is a {bundle.modality} model)"
        )  # fmt: skip
    asr = _build_asr(args.asr)

    from emofuse.audio import AudioError
    from emofuse.bundle import BundleError

    try:
        (prediction,) = bundle.predict(
            [args.audio] if args.audio is not None else None,
            [args.text] if args.text is not None else None,
            asr=asr,
        )
    except (AudioError, BundleError) as err:
        raise CommandError(str(err)) from None
    print(_format_prediction(prediction))
    return 0


def _read_manifest(path: Path):
    import pandas as pd

    if not path.exists():
        raise CommandError(f"{path}: no such manifest")
    try:
        if path.suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            sep = "\t" if path.suffix in (".tsv", ".tab") else ","
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except Exception as err:
        raise CommandError(f"{path}: unreadable manifest ({err})") from None
    return frame


def _predict_manifest(args: argparse.Namespace, bundle, asr) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from emofuse.audio import AudioError

    frame = _read_manifest(args.manifest)
    if "audio" not in frame.columns and bundle.needs_audio:
        raise CommandError(f"{args.manifest}: no `audio` column (columns: {list(frame.columns)})")
    if "audio" not in frame.columns and "text" not in frame.columns:
        raise CommandError(f"{args.manifest}: needs an `audio` and/or a `text` column")
    base = args.manifest.resolve().parent
    n = len(frame)
    errors: list[str] = [""] * n
    inputs: list[tuple | None] = [None] * n
    texts: list[str | None] = [None] * n
    from emofuse.bundle import BundleError

    try:
        rate = bundle.encoder("speech").sample_rate_hz if bundle.needs_audio else 16_000
    except BundleError as err:  # e.g. an encoder whose fingerprint changed since training
        raise CommandError(str(err)) from None
    wants_audio = bundle.needs_audio or asr is not None

    for i in tqdm(range(n), desc="reading clips", unit="clip", disable=args.no_progress or n < 50):
        row = frame.iloc[i]
        text = str(row["text"]) if "text" in frame.columns and row["text"] is not None else ""
        texts[i] = text if text.strip() else None
        raw = (
            str(row["audio"]).strip()
            if "audio" in frame.columns and row["audio"] is not None
            else ""
        )
        if not raw:
            if bundle.needs_audio:
                errors[i] = "no audio path"
            elif bundle.needs_text and texts[i] is None:
                errors[i] = "no text and no audio to transcribe"
            continue
        path = Path(raw) if Path(raw).is_absolute() else base / raw
        if not wants_audio:
            continue
        if bundle.needs_text and texts[i] is not None and not bundle.needs_audio:
            continue  # text-only model with the text given: the audio is not needed
        try:
            inputs[i] = (bundle.load_waveform(path, rate), rate)
        except AudioError as err:
            errors[i] = str(err)
        if bundle.needs_text and texts[i] is None and asr is None and not errors[i]:
            errors[i] = "no text for a model that reads text: add a `text` value or use --asr vosk"

    good = [i for i in range(n) if not errors[i]]
    probs = np.full((n, len(bundle.labels)), np.nan)
    used_text: list[str | None] = [None] * n
    bar = tqdm(
        total=len(good), desc="predicting", unit="clip", disable=args.no_progress or len(good) < 50
    )
    for start in range(0, len(good), args.batch_size):
        chunk = good[start : start + args.batch_size]
        try:
            _predict_rows(bundle, chunk, inputs, texts, asr, probs, used_text)
        except (ValueError, RuntimeError):  # isolate the row(s) at fault, keep the rest
            for i in chunk:
                try:
                    _predict_rows(bundle, [i], inputs, texts, asr, probs, used_text)
                except (ValueError, RuntimeError) as err:
                    errors[i] = str(err)
        bar.update(len(chunk))
    bar.close()

    out = frame.copy()
    labels = bundle.labels
    ok = np.array([not e for e in errors])
    out["predicted"] = [
        labels[int(np.nanargmax(p))] if k else "" for p, k in zip(probs, ok, strict=True)
    ]
    if bundle.needs_text:
        out["text_used"] = [t if t is not None else "" for t in used_text]
    for k, label in enumerate(labels):
        out[f"p_{label}"] = probs[:, k]
    out["error"] = errors
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.output, index=False)
    failed = int((~ok).sum())
    print(f"{n - failed} of {n} clips predicted, {failed} errors -> {args.output}", file=sys.stderr)
    for i in [i for i in range(n) if errors[i]][:5]:
        print(f"  row {i}: {errors[i]}", file=sys.stderr)
    return 1 if failed else 0


def _predict_rows(bundle, rows, inputs, texts, asr, probs, used_text) -> None:
    audio = [inputs[i] for i in rows]
    predictions = bundle.predict(
        audio if any(a is not None for a in audio) else None,
        [texts[i] for i in rows] if bundle.needs_text else None,
        asr=asr,
    )
    for i, prediction in zip(rows, predictions, strict=True):
        probs[i] = [prediction.probabilities[label] for label in bundle.labels]
        used_text[i] = prediction.text
