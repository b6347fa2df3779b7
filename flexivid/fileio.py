"""How the tools write files: to output paths checked before any work starts, and atomically.

``check_output`` runs before a model loads or a video is generated, so an unusable path costs a second, not the
minutes of work whose result it could not hold; it refuses to replace an existing file unless told to.
``unique_path`` gives default names that no earlier run used. ``atomic_write``: a file appears complete under its
final name or not at all.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it onto ``path``.

    The temporary name keeps ``path``'s suffix (writers that pick a format from it still work); the rename is atomic
    because both live in one folder. On any failure the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _writable_dir(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder where a file can be created."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
    try:  # os.access says yes to root everywhere, even on /proc: try it
        fd, probe = tempfile.mkstemp(prefix=".flexivid-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write in {parent} ({e.strerror or type(e).__name__}); "
                         f"choose another location") from None


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], flag: str = "--output",
                 overwrite: bool = False, sidecars: tuple[str, ...] = ()) -> Path:
    """Validate one output file; returns it as a ``Path``. ValueError naming the flag, the problem and the fix.

    ``sidecars``: suffixes of companion files written next to it (``.json``), held to the same rules.
    """
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {out}: unknown suffix '{out.suffix}'; use one of {', '.join(suffixes)}")
    for f in (out, *(out.with_suffix(s) for s in sidecars)):
        if f.is_dir():
            raise ValueError(f"{flag} {out}: {f} is a folder; give a file name")
        if f.exists() and not overwrite:
            raise ValueError(f"{flag} {out}: {f} already exists; pass --overwrite to replace it, or choose another "
                             f"name")
    _writable_dir(out, flag)
    return out


def unique_path(path: str | os.PathLike, sidecars: tuple[str, ...] = (), taken: set[Path] | None = None) -> Path:
    """``path``, or ``<stem>-2<suffix>``, ``-3``, ... : the first name that neither it nor a sidecar uses yet."""
    path, taken = Path(path), taken or set()
    candidate, k = path, 2
    while candidate in taken or any(f.exists() for f in (candidate, *(candidate.with_suffix(s) for s in sidecars))):
        candidate, k = path.with_name(f"{path.stem}-{k}{path.suffix}"), k + 1
    return candidate
