"""One colour per emotion, for every picture: the PNGs and the served page.

`label_colours(labels)` gives each label of a label set a ``#rrggbb`` colour. The seven
emotions of the Korean corpus (by English name or Korean alias) and the usual names of
other corpora (EmoDB's ``anger``, ``boredom``, ``disgust``...) have a colour of their own,
so an emotion looks the same in every plot and on the page; a name that means the same
emotion (``fear`` / ``anxious``) shares it. Any other label, or a second label wanting a
colour already taken, gets the next unused colour of a qualitative palette in label order
(and, past it, evenly spread hues): the same label set always gets the same colours.
The service sends this mapping with ``GET /labels``; the page draws with it.
"""

from __future__ import annotations

import colorsys
import unicodedata
from collections.abc import Iterable

from emofuse.labels import KOREAN_TO_ENGLISH

#: The seven emotions of the Korean corpus (dataset 466), by their English names.
KOREAN_EMOTION_COLOURS: dict[str, str] = {
    "happy": "#f0a202",  # amber
    "anxious": "#7b4fa0",  # purple
    "angry": "#d62728",  # red
    "sad": "#1f77b4",  # blue
    "embarrassed": "#e377c2",  # pink
    "neutral": "#8f959e",  # grey
    "hurt": "#17a2b8",  # teal
}

#: Other spellings of those emotions and the emotions of other corpora.
OTHER_EMOTION_COLOURS: dict[str, str] = {
    "anger": "#d62728",
    "happiness": "#f0a202",
    "joy": "#f0a202",
    "sadness": "#1f77b4",
    "fear": "#7b4fa0",
    "fearful": "#7b4fa0",
    "disgust": "#2ca02c",
    "disgusted": "#2ca02c",
    "surprise": "#bcbd22",
    "surprised": "#bcbd22",
    "boredom": "#8c564b",
    "bored": "#8c564b",
    "calm": "#76b7b2",
}

#: Colours for labels without one of their own, used in label order (Tableau 10 + 2).
FALLBACK_COLOURS: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#edc948",
    "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295",
)  # fmt: skip

#: Colour of a label the mapping does not know (the page falls back to it too).
UNKNOWN_COLOUR = "#888888"


def _key(label: str) -> str:
    return unicodedata.normalize("NFC", str(label)).strip().casefold()


EMOTION_COLOURS: dict[str, str] = {
    **OTHER_EMOTION_COLOURS,
    **KOREAN_EMOTION_COLOURS,
    **{_key(k): KOREAN_EMOTION_COLOURS[v] for k, v in KOREAN_TO_ENGLISH.items()},
}


def emotion_colour(label: str) -> str | None:
    """The fixed colour of an emotion name (case and Unicode form ignored), or None."""
    return EMOTION_COLOURS.get(_key(label))


def _spread_hue(i: int) -> str:
    """The ``i``-th of an endless run of distinct hues (golden-ratio steps)."""
    r, g, b = colorsys.hsv_to_rgb((0.11 + i * 0.618034) % 1.0, 0.55, 0.80)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def label_colours(labels: Iterable[str]) -> dict[str, str]:
    """``{label: "#rrggbb"}`` for ``labels`` in order, every colour different."""
    labels = [str(label) for label in labels]
    colours: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        known = emotion_colour(label)
        if known is not None and known not in used and label not in colours:
            colours[label] = known
            used.add(known)
    spare = (c for c in FALLBACK_COLOURS if c not in used)
    extra = 0
    for label in labels:
        if label in colours:
            continue
        colour = next(spare, None)
        while colour is None or colour in used:
            colour, extra = _spread_hue(extra), extra + 1
        colours[label] = colour
        used.add(colour)
    return {label: colours[label] for label in labels}
