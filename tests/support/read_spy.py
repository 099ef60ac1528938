"""Records how many frames each ``soundfile.SoundFile.read`` call asks for, so a test
can check that audio is decoded in bounded blocks (or only the frames it needs)."""

from __future__ import annotations

import pytest
import soundfile as sf


def spy_on_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch ``SoundFile.read`` to record its ``frames`` argument; return the record."""
    asked: list[int] = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        asked.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    return asked
