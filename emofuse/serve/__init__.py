"""The HTTP prediction service and its web page (`emofuse serve BUNDLE`).

The app (FastAPI, numpy) is imported on first use, so `emofuse --help` stays fast.
"""

from __future__ import annotations

from typing import Any

from emofuse.serve.limits import ServeLimits

__all__ = ["Predictor", "ServeLimits", "create_app", "warm_up"]


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "create_app", "warm_up"):
        from emofuse.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'emofuse.serve' has no attribute {name!r}")
