"""Torch's thread count, set for one piece of work and put back afterwards.

Small sequential models (the fusion head's tiny steps, the voice-activity model's 32 ms
frames) run faster on one thread than on two: the hand-offs cost more than the work.
Measured on the project's 2-core machine: 10 epochs of the head over 600 x 344 vectors
took 0.22 s on one thread and 2-16 s on two; the VAD was 20-50x slower on two threads.
torch is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one torch thread; the caller's setting is restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def thread_count_kept() -> Iterator[None]:
    """Put the thread count back after a block that changes it behind our back (importing
    ``silero_vad`` sets it to one for the whole process)."""
    import torch

    previous = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(previous)
