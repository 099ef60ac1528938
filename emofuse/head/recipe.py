"""Training a head as its recipe says, from labelled rows to the model a bundle saves.

:func:`train_head_for_recipe` is what :func:`emofuse.pipeline.train_and_evaluate` calls.
With ``select`` off and ``speaker_norm`` off (the paper recipe, a head chosen by hand) it
is :func:`~emofuse.head.train.fit_head` as it always was. Otherwise (the small-data
default) these phases, one log line each (:mod:`emofuse.head.training_log`):

1. model selection by cross-validation on train + val (:func:`~emofuse.head.selection.select_head`:
   candidates, their CV UAR, the choice; folds grouped by speaker, by script without);
2. speaker statistics: whether each speaker's speech vectors are normalised (``auto``:
   at least 4 training speakers and the CV says it helps), with its evidence;
3. the winner trained as :func:`~emofuse.head.train.fit_head` trains it
   (:func:`~emofuse.head.selection.fit_selected`): the fit on train with val watched,
   calibration on val when asked, the refit on train + val (each fit its own line and bar),
   then (unless calibrated on val) the temperature fitted on the winner's out-of-fold
   logits, so that its confidences match its accuracy;
4. a ``both`` model's single-modality heads, one line for both.

The returned head carries the decision: ``trained.speaker_norm`` (a
:class:`~emofuse.head.speaker_norm.SpeakerNorm` or None) and ``trained.selection`` (the
record the bundle stores). A ``both`` model's speech-only and text-only heads are trained
on the same (normalised) rows with the winner's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emofuse.head.config import TrainConfig
from emofuse.head.train import TrainedHead, fit_head
from emofuse.head.training_log import TrainingLog
from emofuse.modalities import SPEECH, TEXT


@dataclass
class RecipeResult:
    trained: TrainedHead
    #: single-modality heads of a ``both`` model (empty unless asked for)
    modality_heads: dict[str, TrainedHead] = field(default_factory=dict)


def _listed(values: Sequence[Any] | None, n: int) -> list[Any] | None:
    if values is None:
        return None
    out = list(values)
    if len(out) != n:
        raise ValueError(f"{n} rows but {len(out)} speaker or script names")
    return out


def _joined(a: Sequence[Any] | None, b: Sequence[Any] | None) -> list[Any] | None:
    if a is None:
        return None
    return list(a) + list(b or [])


def train_head_for_recipe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    n_classes: int,
    config: TrainConfig | None = None,
    input_dims: Mapping[str, int] | None = None,
    speakers_train: Sequence[Any] | None = None,
    speakers_val: Sequence[Any] | None = None,
    scripts_train: Sequence[Any] | None = None,
    scripts_val: Sequence[Any] | None = None,
    modality_heads: bool = False,
    progress: bool = True,
    verbose: bool = False,
    say: Callable[[str], None] | None = None,
) -> RecipeResult:
    """Train the head on ``x_train`` (+ ``x_val`` as the recipe says). ``speakers_*`` and
    ``scripts_*`` name each row's speaker and script (None: the table has none; blanks
    allowed). ``modality_heads``: also train a ``both`` model's single-modality heads.
    ``progress``: a line per phase and a bar per fit; ``verbose``: a line per epoch too;
    ``say`` receives the lines (default: stderr)."""
    log = TrainingLog(progress=progress, verbose=verbose, say=say)
    config = (config or TrainConfig()).resolved()
    input_dims = dict(input_dims) if input_dims else {SPEECH: int(np.shape(x_train)[1])}
    has_val = x_val is not None and len(x_val) > 0
    if not has_val:
        x_val = y_val = speakers_val = scripts_val = None
    n_train, n_val = len(x_train), (len(x_val) if has_val else 0)
    speakers_train, scripts_train = (
        _listed(speakers_train, n_train),
        _listed(scripts_train, n_train),
    )
    speakers_val = _listed(speakers_val, n_val) if speakers_train is not None else None
    scripts_val = _listed(scripts_val, n_val) if scripts_train is not None else None
    mode = config.speaker_norm
    if not config.select and mode == "off":
        return _plain(x_train, y_train, x_val, y_val, n_classes, config, input_dims,
                      modality_heads, log)  # fmt: skip

    from emofuse.head.selection import fit_selected, select_head

    speakers = _joined(speakers_train, speakers_val)
    if speakers is None and mode != "off":
        mode = "off"  # no speaker column: nothing to group statistics by
    x_all = np.concatenate([x_train, x_val]) if has_val else np.asarray(x_train)
    y_all = np.concatenate([y_train, y_val]) if has_val else np.asarray(y_train)
    parts = "train + val" if has_val else "train"
    with log.waiting(f"model selection by CV on {len(y_all)} rows of {parts}"):
        selection = select_head(
            x_all, y_all, n_classes=n_classes, config=config, input_dims=input_dims,
            speakers=speakers, scripts=_joined(scripts_train, scripts_val), speaker_norm=mode,
            seed=config.seed,
        )  # fmt: skip
    record = selection.record
    if speakers is None:
        record.setdefault("speaker_norm", {"decision": "off", "reason": "no speaker column"})
    if not config.select:  # the head as configured; only the speaker decision was made
        selection.config = config
        selection.temperature = 1.0  # fitted on candidates' logits, not this head's
        record["choice"] = "fixed (select off)"
        record.pop("temperature", None)
    for line in phase_lines(record, parts):
        log.phase(line)
    trained, norm = fit_selected(
        selection, x_train, y_train, x_val, y_val, n_classes=n_classes, input_dims=input_dims,
        speakers_train=speakers_train, speakers_val=speakers_val, log=log,
    )  # fmt: skip
    trained.speaker_norm = norm
    trained.selection = record
    extra = {}
    if modality_heads:
        extra = _modality_heads(
            selection.config, norm, x_all, y_all, n_train, speakers, n_classes, input_dims, log
        )
    return RecipeResult(trained, extra)


def phase_lines(record: Mapping[str, Any], rows_from: str = "") -> list[str]:
    """The training log's lines for model selection and speaker statistics (``rows_from``
    names the parts the CV's rows come from, e.g. 'train + val')."""
    lines = []
    head = f"model selection by CV on {record.get('rows', 0)} rows"
    head += f" of {rows_from}" if rows_from else ""
    if record.get("skipped"):
        lines.append(f"{head}: skipped ({record['skipped']}), kept {record.get('choice')}")
    else:
        candidates = record.get("candidates") or []
        best = {c["name"]: c["uar"] for c in candidates}
        choice = record.get("choice")
        shown = f" (CV UAR {best[choice]:.3f})" if choice in best else ""
        default = candidates[0] if candidates else None
        against = f"; default {default['uar']:.3f}" if default and default["name"] != choice else ""
        if choice in best and best[choice] < max(best.values()) and record.get("rule"):
            against += f"; rule: {record['rule']}"  # why a lower CV UAR won
        lines.append(
            f"{head}, to choose the head ({record.get('folds')} folds by "
            f"{record.get('scheme')}, {len(candidates)} candidates, "
            f"{record.get('seconds', 0):.1f}s): chose {choice}{shown}{against}"
        )
    norm = record.get("speaker_norm") or {}
    decision = norm.get("decision", "off")
    if decision == "on":
        means = "each speaker's speech vectors normalised by that speaker's statistics"
    elif "text-only" in str(norm.get("reason", "")):
        means = "nothing to normalise"
    else:
        means = "speech vectors used as they are"
    lines.append(f"speaker statistics: {decision}, {means} ({norm.get('reason', 'not decided')})")
    return lines


def _announce_modality_heads(log: TrainingLog, input_dims: Mapping[str, int], n: int) -> None:
    names = " and ".join(f"{m}-only" for m in _blocks(input_dims))
    log.phase(
        f"single-modality heads: {names} on the same {log.rows(n)}, for the per-modality "
        "distributions (and their agreement) predictions carry"
    )


def _plain(x_train, y_train, x_val, y_val, n_classes, config, input_dims, modality_heads,
           log: TrainingLog) -> RecipeResult:  # fmt: skip
    trained = fit_head(
        x_train, y_train, x_val, y_val, n_classes=n_classes, config=config,
        input_dims=input_dims, log=log,
    )  # fmt: skip
    extra = {}
    if modality_heads:  # what the voice alone and the words alone say, same rows
        n = len(x_train) + (len(x_val) if x_val is not None else 0)
        _announce_modality_heads(log, input_dims, n)
        for m, (start, stop) in _blocks(input_dims).items():
            extra[m] = fit_head(
                x_train[:, start:stop], y_train,
                x_val[:, start:stop] if x_val is not None else None, y_val,
                n_classes=n_classes, config=config, input_dims={m: stop - start},
                log=log.quiet_fits(f"{m}-only head"),
            )  # fmt: skip
    return RecipeResult(trained, extra)


def _blocks(input_dims: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    out, start = {}, 0
    for m in (SPEECH, TEXT):
        if m in input_dims:
            out[m] = (start, start + int(input_dims[m]))
            start += int(input_dims[m])
    return out


def _modality_heads(config, norm, x_all, y_all, n_train, speakers, n_classes, input_dims, log):
    """Single-modality heads on the rows the fused head was refitted on (normalised as
    :func:`~emofuse.head.selection.fit_selected` normalises them)."""
    _announce_modality_heads(log, input_dims, len(x_all))
    if norm is not None:
        from emofuse.head.speaker_choice import TRAIN_FEW

        rows, index = norm.training_rows(x_all, speakers, few=TRAIN_FEW, seed=config.seed)
    else:
        rows, index = np.asarray(x_all, dtype=np.float32), np.arange(len(x_all))
    in_train = index < n_train
    y_rows = np.asarray(y_all)[index]
    val = ~in_train
    out = {}
    for m, (start, stop) in _blocks(input_dims).items():
        out[m] = fit_head(
            rows[in_train, start:stop], y_rows[in_train],
            rows[val, start:stop] if val.any() else None, y_rows[val] if val.any() else None,
            n_classes=n_classes, config=config, input_dims={m: stop - start},
            log=log.quiet_fits(f"{m}-only head"),
        )  # fmt: skip
    return out
