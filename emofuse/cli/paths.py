"""Output paths that can never destroy a command's inputs.

Every command that writes files names its inputs and outputs here before it writes
anything; an output that is an input, or a folder that holds an input, is refused with a
one-line error. "Is" means either the same path once links are followed, or the same file
on disk (device and inode: a hard link, a bind mount, a second spelling on a
case-insensitive disk).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from emofuse.cli import CommandError


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve(strict=False)


def _same_file(a: Path, b: Path) -> bool:
    """The same file or folder on disk (device + inode); False when either is absent."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _is_input(output: Path, source: Path) -> bool:
    return output == source or _same_file(output, source)


def _is_within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies under it, by path or by the identity of a folder on
    the way up."""
    try:
        inner.relative_to(outer)
    except ValueError:
        pass
    else:
        return True
    if not outer.is_dir():
        return False
    return any(_same_file(parent, outer) for parent in (inner, *inner.parents))


def check_output_paths(
    inputs: Iterable[str | os.PathLike[str] | None],
    outputs: Iterable[str | os.PathLike[str] | None],
    *,
    output_dirs: Iterable[str | os.PathLike[str] | None] = (),
    writable: bool = True,
) -> None:
    """Raise :class:`CommandError` before any work when an output file is an input, an
    output folder (which the command may replace) is or contains an input or the working
    folder, or (with ``writable``) an output cannot be written. A feature store passes
    ``writable=False``: a read-only store that already holds everything still serves."""
    ins = [(p, _resolved(p)) for p in inputs if p is not None]
    outputs = list(outputs)
    for out in outputs:
        if out is None:
            continue
        target = _resolved(out)
        for given, source in ins:
            if _is_input(target, source):
                raise CommandError(
                    f"{out}: this output is also an input ({given}); write it elsewhere"
                )
    for out in output_dirs:
        if out is None:
            continue
        target = _resolved(out)
        for given, source in ins:
            if _is_input(target, source) or _is_within(source, target):
                raise CommandError(
                    f"{out}: this output folder holds an input ({given}); choose another folder"
                )
        if target == _resolved(Path.cwd()) or _is_within(_resolved(Path.cwd()), target):
            raise CommandError(
                f"{out}: this output folder is (or holds) the working folder; choose a new folder"
            )
        if writable:
            check_writable(out)
    for out in outputs:
        if out is not None and writable:
            check_writable(out)


def check_writable(path: str | os.PathLike[str]) -> None:
    """A one-line error now, not a traceback after the work, when ``path`` cannot be written."""
    target = _resolved(path)
    parent = target if target.is_dir() else target.parent
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CommandError(f"cannot write {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CommandError(f"cannot write {path}: no permission to write in {probe}")
    if target.exists() and not target.is_dir() and not os.access(target, os.W_OK):
        raise CommandError(f"cannot write {path}: the file exists and is not writable")
