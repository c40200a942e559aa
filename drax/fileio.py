"""Files a reader never sees half-written: write to a temporary file in the same directory, then rename.

Temporary names are ``.<name>.<host>.<pid>.<random>.tmp[<ext>]`` (directories: the same without
``<ext>``). A writer that is killed before its rename (SIGKILL, power loss) cannot remove its own;
:func:`remove_stale_temp_files` deletes those of this host whose process is gone, which the recipe
engine does before it runs any stage. A pid says nothing about another host's processes, so on a
shared disk (Slurm) another node's temp files are left to that node.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_TEMP_NAME = re.compile(r"^\..+\.([A-Za-z0-9-]+)\.(\d+)\.[a-z0-9_]+\.tmp(\.[A-Za-z0-9]+)?$")
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def temp_prefix(name: str) -> str:
    """The start of a temporary name for `name` written by this process."""
    return f".{name}.{HOST}.{os.getpid()}."


def temp_path(path: str | os.PathLike, suffix: str = "") -> str:
    """A new empty file beside `path`, named as its writer's temporary file; `suffix` keeps an
    extension that tools read the format from (sox, matplotlib)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(os.path.basename(path)), suffix=".tmp" + suffix, dir=d)
    os.close(fd)
    return tmp


def temp_dir(parent: str | os.PathLike, name: str) -> str:
    """A new empty directory in `parent`, named as its writer's temporary directory."""
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=temp_prefix(name), suffix=".tmp", dir=parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """A temporary path beside `path` to write to; renamed to `path` (with the usual permissions)
    when the block ends without an exception, removed otherwise."""
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, content: str) -> None:
    """Write `content` to `path` through a temporary file in the same directory + rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())


def atomic_save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure (format from the extension of `path`) and close it."""
    import matplotlib.pyplot as plt  # heavy, needed only where figures are drawn

    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(*dirs: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and directories under `dirs` written on this host by a process that
    no longer runs; returns them."""
    removed = []
    for d in dirs:
        for path in sorted(Path(d).rglob(".*.tmp*")) if Path(d).is_dir() else []:
            match = _TEMP_NAME.match(path.name)
            if match and match[1] == HOST and path.exists() and not _alive(int(match[2])):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        logger.warning("removed %d temporary file(s) an interrupted run left behind: %s", len(removed),
                       ", ".join(str(p) for p in removed[:5]) + (" ..." if len(removed) > 5 else ""))
    return removed
