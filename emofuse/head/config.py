"""The settings of head training, kept apart from torch so that the CLI and grid configs
can read them (flags, validation) without importing it.

A *recipe* names how the head is trained (see :mod:`emofuse.head.train`):

- ``small-data`` (the default, chosen by measurement: ``bench/learning_curves.py``): a
  budget of at least ``min_steps`` optimiser steps, Gaussian input noise, strong weight
  decay and dropout, a class-weighted loss, the last epoch kept, an exact logistic
  regression averaged into the logits (``logistic_blend``), then the same training on
  train + val (and, with ``calibrate``, a temperature fitted on val before the refit);
- ``paper``: the published setting (batch 32, 10 epochs, best epoch on val, nothing
  else), so the paper's tables stay reproducible.

The small-data recipe also chooses its head by cross-validated UAR on train + val
(``select``: the MLP, tuned logistic regressions and their blends,
:mod:`emofuse.head.selection`) and decides whether to normalise each speaker's vectors
(``speaker_norm``: off, auto, on; :mod:`emofuse.head.speaker_norm`); the paper recipe does
neither.

``head`` left at ``"auto"``, ``speaker_norm`` at ``"recipe"``, ``weight_decay`` / ``dropout`` / ``logistic_blend`` left at
``-1`` and ``class_weighting`` / ``select`` left at ``None`` take the recipe's value
(:data:`RECIPE_DEFAULTS`); :meth:`TrainConfig.resolved` fills them in. (Plain sentinels
rather than ``None`` where they can keep fields plain ints, floats and strings for the
generated CLI flags and the grid's TOML; a flag ``--class-weighting/--no-class-weighting``
and a TOML ``true``/``false`` set the boolean.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RECIPES = ("small-data", "paper")
#: Head architectures (:class:`emofuse.head.model.FusionHead`): the paper's one-hidden-layer
#: MLP, a linear map, or both with their logits added.
HEAD_KINDS = ("mlp", "linear", "mlp+linear")
#: Speaker-adaptive normalisation: never, when the cross-validation says it helps (and
#: the training part has enough speakers), always.
SPEAKER_NORMS = ("off", "auto", "on")

#: The small-data recipe clips standardised values to +-Z_LIMIT (training and prediction
#: alike; the paper recipe does not). A feature nearly constant in training (a
#: voice-encoder unit that is 0 for all but a few speakers: std 5e-5) put a new speaker's
#: value at 3,000 standard deviations and the head's logits at 40 times their usual
#: scale: certain, and often wrong, and the CV temperature fitted to them flattened every
#: prediction. Held-out speakers, raw logits (`bench/calibration.py --z-limit`): EmoDB,
#: all clips, NLL 1.07 -> 0.84, UAR 0.718 -> 0.716; demo, 1 seed, UAR +0.022 (20 clips
#: per emotion) and +0.007 (all). 10 instead of 5: EmoDB NLL 0.94, UAR 0.709.
Z_LIMIT = 5.0


def clip_limit() -> float:
    """Today's :data:`Z_LIMIT`, read at call time (a benchmark may change it)."""
    return Z_LIMIT


#: The value that means "the recipe's", per recipe-dependent setting.
RECIPE_VALUE: dict[str, Any] = {
    "head": "auto",
    "weight_decay": -1.0,
    "dropout": -1.0,
    "logistic_blend": -1.0,
    "class_weighting": None,
    "select": None,
    "speaker_norm": "recipe",
}
#: The recipe-dependent settings of each recipe.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "head": "mlp",
        "weight_decay": 1e-2,
        "dropout": 0.2,
        "logistic_blend": 0.0,
        "class_weighting": False,
        "select": False,
        "speaker_norm": "off",
    },
    "small-data": {
        "head": "mlp+linear",
        "weight_decay": 1.0,
        "dropout": 0.5,
        "logistic_blend": 0.5,
        "class_weighting": True,
        "select": True,
        "speaker_norm": "auto",
    },
}


def _recipe_help(name: str) -> str:
    values = ", ".join(f"{recipe} {RECIPE_DEFAULTS[recipe][name]}" for recipe in RECIPES)
    return f"{RECIPE_VALUE[name]}: the recipe's ({values})"


@dataclass
class TrainConfig:
    """Every knob of head training; the CLI builds its flags from these fields."""

    recipe: str = field(
        default="small-data",
        metadata={
            "help": "how to train: small-data, or paper (the published setting: `epochs` "
            "passes, best epoch on val, nothing else)",
            "choices": RECIPES,
        },
    )
    head: str = field(
        default="auto",
        metadata={
            "help": "mlp (one hidden layer), linear, or mlp+linear (an MLP plus a linear "
            f"shortcut, logits added); {_recipe_help('head')}",
            "choices": ("auto", *HEAD_KINDS),
        },
    )
    batch_size: int = field(default=32, metadata={"help": "clips per optimisation step"})
    epochs: int = field(
        default=10, metadata={"help": "passes over the training set (small-data: at least)"}
    )
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(
        default=-1.0, metadata={"help": f"AdamW weight decay; {_recipe_help('weight_decay')}"}
    )
    hidden: int = field(default=256, metadata={"help": "width of the hidden layer"})
    dropout: float = field(
        default=-1.0,
        metadata={"help": f"dropout after the hidden layer; {_recipe_help('dropout')}"},
    )
    seed: int = field(default=0, metadata={"help": "seed for initialisation, shuffling, dropout"})
    class_weighting: bool | None = field(
        default=None,
        metadata={
            "help": "weight the loss by inverse class frequency (every class counts the same, "
            f"as in UAR); {_recipe_help('class_weighting')}"
        },
    )
    min_steps: int = field(
        default=600, metadata={"help": "small-data: train at least this many optimiser steps"}
    )
    patience: int = field(
        default=0,
        metadata={
            "help": "small-data: stop after this many epochs without a better val UAR and keep "
            "the best epoch (0: train the whole budget, keep the last epoch)"
        },
    )
    input_noise: float = field(
        default=1.0,
        metadata={"help": "small-data: std of Gaussian noise added to standardised inputs"},
    )
    refit: bool = field(
        default=True,
        metadata={"help": "small-data: train again on train + val; that model is kept"},
    )
    logistic_blend: float = field(
        default=-1.0,
        metadata={
            "help": "small-data: weight of an exact logistic regression (logistic.py, C = "
            "`logistic_c`, on the same rows) averaged into the head's logits, 0 = off "
            f"(needs a head with a linear part); {_recipe_help('logistic_blend')}"
        },
    )
    logistic_c: float = field(
        default=1.0,
        metadata={"help": "inverse L2 strength of that logistic regression (scikit-learn's C)"},
    )
    calibrate: bool = field(
        default=False,
        metadata={
            "help": "small-data: fit the softmax temperature on val (calibration.py) instead "
            "of on the model selection's out-of-fold logits; off by default: fitted on one "
            "held-out speaker it made test ECE worse on average (bench/learning_curves.py)"
        },
    )

    select: bool | None = field(
        default=None,
        metadata={
            "help": "small-data: choose the head (the MLP, class-balanced logistic regressions "
            "over a C grid, their blends) by cross-validated UAR on train + val, folds grouped "
            "by speaker (by script without speakers), and divide its logits by a temperature "
            f"fitted on its out-of-fold logits; {_recipe_help('select')}"
        },
    )
    speaker_norm: str = field(
        default="recipe",
        metadata={
            "help": "normalise each speaker's speech vectors by that speaker's statistics, "
            "shrunk by clip count (off, auto: when the training part has at least 4 speakers "
            "and cross-validation says it helps, on); not with --finetune (fine-tuned "
            f"bundles never adapt); {_recipe_help('speaker_norm')}",
            "choices": ("recipe", *SPEAKER_NORMS),
        },
    )

    def __post_init__(self) -> None:
        problems = train_config_problems(self)
        if problems:
            raise ValueError("bad training config: " + "; ".join(problems))

    def resolved(self) -> TrainConfig:
        """A copy with the recipe's values in place of the "recipe's value" sentinels."""
        defaults = RECIPE_DEFAULTS[self.recipe]
        values = {k: v for k, v in defaults.items() if getattr(self, k) == RECIPE_VALUE[k]}
        fixed = self.head != RECIPE_VALUE["head"] or self.logistic_blend != -1.0
        if fixed and "select" in values:
            values["select"] = False  # a head chosen by hand is trained as asked
        if effective_head(self) == "mlp" and "logistic_blend" in values:
            values["logistic_blend"] = 0.0  # no linear part to blend into
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


def effective_head(config: Any) -> str:
    """The head kind training will build: ``head``, or the recipe's when left at "auto"
    (kept as "auto" for an unknown recipe, which the checks report)."""
    if config.head != RECIPE_VALUE["head"]:
        return config.head
    return RECIPE_DEFAULTS.get(config.recipe, {}).get("head", config.head)


def train_config_problems(config: Any) -> list[str]:
    """What is wrong with a set of training settings (an object with TrainConfig's
    fields), each as ``"<field> must ..."``; empty when they are fine."""
    problems = []
    if config.recipe not in RECIPES:
        problems.append(f"recipe must be one of {', '.join(RECIPES)} (got {config.recipe!r})")
    if config.head != RECIPE_VALUE["head"] and config.head not in HEAD_KINDS:
        problems.append(
            f"head must be auto or one of {', '.join(HEAD_KINDS)} (got {config.head!r})"
        )
    if config.batch_size < 1:
        problems.append(f"batch_size must be >= 1 (got {config.batch_size})")
    if config.epochs < 1:
        problems.append(f"epochs must be >= 1 (got {config.epochs})")
    if not config.lr > 0:
        problems.append(f"lr must be > 0 (got {config.lr})")
    if config.weight_decay != RECIPE_VALUE["weight_decay"] and config.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0, or -1 (got {config.weight_decay})")
    if config.hidden < 1:
        problems.append(f"hidden must be >= 1 (got {config.hidden})")
    if config.dropout != RECIPE_VALUE["dropout"] and not 0 <= config.dropout < 1:
        problems.append(f"dropout must be in [0, 1), or -1 (got {config.dropout})")
    blend = config.logistic_blend
    if blend != RECIPE_VALUE["logistic_blend"] and not 0 <= blend <= 1:
        problems.append(f"logistic_blend must be in [0, 1], or -1 (got {blend})")
    if blend > 0 and config.recipe == "paper":
        problems.append("logistic_blend is a small-data setting: the paper recipe never blends")
    elif blend > 0 and effective_head(config) == "mlp":
        problems.append(
            "logistic_blend needs a head with a linear part (linear or mlp+linear), "
            "not mlp; set it to 0"
        )
    norm = getattr(config, "speaker_norm", RECIPE_VALUE["speaker_norm"])  # a grid sweeps it
    if norm != RECIPE_VALUE["speaker_norm"] and norm not in SPEAKER_NORMS:
        problems.append(
            f"speaker_norm must be recipe or one of {', '.join(SPEAKER_NORMS)} (got {norm!r})"
        )
    if config.recipe == "paper" and (config.select or norm in ("auto", "on")):
        problems.append(
            "select and speaker_norm are small-data settings: the paper recipe never "
            "selects a head or adapts to speakers"
        )
    if not config.logistic_c > 0:
        problems.append(f"logistic_c must be > 0 (got {config.logistic_c})")
    if config.min_steps < 0:
        problems.append(f"min_steps must be >= 0 (got {config.min_steps})")
    if config.patience < 0:
        problems.append(f"patience must be >= 0 (got {config.patience})")
    if config.input_noise < 0:
        problems.append(f"input_noise must be >= 0 (got {config.input_noise})")
    return problems
