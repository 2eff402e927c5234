"""Writing files and directories so that concurrent writers and readers never collide.

Every writer builds under its own unique temporary name in the target's directory (so the final
rename stays on one file system) and then renames it into place: a reader sees the old content or
the new one, never half of either, and two processes writing the same cache at once both succeed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, permissions: int = 0o666,
                encoding: str | None = "utf-8") -> Iterator[IO]:
    """A handle on a unique temporary file beside `path`, renamed over `path` when the block succeeds.

    `permissions` is filtered by the umask (as for any new file). On an exception the temporary file
    is removed and `path` is left as it was.
    """
    if mode not in {"w", "wb"}:
        raise ValueError(f"atomic_open writes whole files ('w' or 'wb'), not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, permissions)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, **kwargs) -> None:
    with atomic_open(path, "w", **kwargs) as handle:
        handle.write(text)


def write_bytes(path: str | Path, data: bytes, **kwargs) -> None:
    with atomic_open(path, "wb", **kwargs) as handle:
        handle.write(data)


def publish_dir(target: str | Path, build: Callable[[Path], None], *,
                complete: Callable[[Path], bool] | None = None) -> bool:
    """Build a directory with `build(tmp)` in a unique temporary directory beside `target`, then rename it.

    Returns True when this call's directory was published, False when another writer's complete
    directory was already there (ours is then discarded: the two are the same cache). A `target`
    that exists but is not `complete` (left by something else) is moved aside and replaced; it is
    never deleted while in place, so a process reading it is not pulled out from under.
    """
    target = Path(target)
    complete = complete or (lambda p: p.is_dir() and any(p.iterdir()))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700
        for _ in range(3):
            try:
                os.rename(tmp, target)  # atomic; fails if target is a non-empty directory
                return True
            except OSError:
                if complete(target):
                    return False
                stale = _temp_name(target)
                try:
                    os.rename(target, stale)
                except FileNotFoundError:
                    continue
                shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, target)
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_umask() -> int:
    # Only readable by setting it: done once, at import, before any thread of ours runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
