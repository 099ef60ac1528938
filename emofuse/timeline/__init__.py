"""Long recordings become an emotion timeline: voice-activity segments, each with its
words and the bundle's prediction, summarised over time (``emofuse timeline``).

Names are imported on first use, so that ``emofuse --help`` (which reads the segment
settings to build its flags) does not load torch and the voice-activity model.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Timeline": "emofuse.timeline.result",
    "TimelineError": "emofuse.timeline.run",
    "build_timeline": "emofuse.timeline.run",
    "Segment": "emofuse.timeline.segment",
    "SegmentSettings": "emofuse.timeline.segment",
    "TranscriptError": "emofuse.timeline.transcript",
    "Word": "emofuse.timeline.transcript",
    "read_transcript": "emofuse.timeline.transcript",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'emofuse.timeline' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
