"""What a client is told when a form part that should carry a file does not.

A multipart part is an upload only when its ``Content-Disposition`` has a ``filename``;
without one (some clients drop an empty file name) the part arrives as text, and the
framework's own words ("Expected UploadFile, received str") say nothing a client can act
on. An empty part is an empty upload: no file was chosen.
"""

from __future__ import annotations

from typing import Any


def not_a_file(field: str, value: Any = None) -> str:
    """The 422 detail for a ``field`` part that arrived as ``value`` (text), not a file."""
    if value is None or value == "":
        return f"field '{field}': the upload is empty (no file was chosen, or 0 bytes)"
    return (
        f"field '{field}': the part has an empty file name (or none), so it arrived as "
        "text, not as an uploaded file; send the clip as a file part with its file name "
        "(e.g. curl -F audio=@clip.wav)"
    )
