"""Files written whole or not at all: atomic writes through a temporary file beside the target,
the temporary names they use, the locks that tell a live save from an abandoned one, and what
kind of file system object a path is."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .config import MAX_FILE_NAME_BYTES

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

TEMPORARY_SUFFIX = ".tmp"  # atomic_write's temporary files: <temp_prefix><random><suffix>


def file_kind(mode: int) -> str:
    """What a stat mode names, in words: "a regular file", "a folder", "a FIFO (named pipe)"..."""
    import stat

    kinds = {stat.S_ISREG: "a regular file", stat.S_ISDIR: "a folder",
             stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def temp_prefix(path) -> str:
    """How atomic_write's temporary names for `path` start (mkstemp adds 8 random characters
    and '.tmp'): the name is cut so that a temporary name fits wherever `path`'s name fits."""
    room = MAX_FILE_NAME_BYTES - len("..") - 8 - len(TEMPORARY_SUFFIX)
    return "." + Path(path).name.encode()[:room].decode(errors="ignore") + "."


def not_written(path, err: BaseException) -> OSError | None:
    """The OSError "<path>: not written (<reason>)" for a write that failed on the file system,
    or None if `err` is no I/O failure. Some writers hide the system's reason behind their own
    error (torch's "enforce fail ... unexpected pos"): it is looked up in the error's chain."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    return OSError(err.errno, f"{path}: not written ({err.strerror or err})")


def lock(file, wait: bool) -> bool:
    """An exclusive lock on an open file, held until it is closed: False when another open
    file holds one, or the file system (or Windows) has no such locks."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def remove_abandoned_temporaries(path: Path) -> None:
    """Delete the temporary files of `path` that a killed save left behind. A live save holds a
    lock on its temporary file (atomic_write), so only abandoned ones can be locked here; on
    Windows a file still open elsewhere refuses to be deleted instead. On a file system without
    locks nothing is deleted: a save in progress cannot be told from an abandoned one."""
    pattern = re.compile(re.escape(temp_prefix(path)) + "[a-z0-9_]+" + re.escape(TEMPORARY_SUFFIX))
    for tmp in path.parent.iterdir():
        if pattern.fullmatch(tmp.name) and tmp.is_file():  # opening a FIFO would wait for ever
            try:
                with open(tmp, "rb") as file:
                    if fcntl is None or lock(file, wait=False):
                        tmp.unlink()
            except OSError:  # in use on Windows, or already gone
                pass


def atomic_write(path, write) -> Path:
    """Call write(tmp_path), then move tmp_path over `path`: readers never see half a file.

    `write` must write through Python's file objects (or through a library that passes the
    system's error on), so that a full disk surfaces as an OSError. Any failure removes the
    temporary file and leaves `path` as it was; a file-system failure is raised as OSError
    "<path>: not written (<reason>)". Temporary files of `path` that a killed save left behind
    are removed first."""
    path = Path(path)
    tmp = held = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path),
                                   suffix=TEMPORARY_SUFFIX)
        held = open(fd, "rb")
        if not lock(held, wait=True):  # locked until the file is in place: "a save is running"
            held.close()  # Windows renames no file that is open anywhere
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        failure = not_written(path, err) if isinstance(err, Exception) else None
        if failure is None:  # an interrupt, or a failure that is not the file system's
            raise
        raise failure from err
    finally:
        if held is not None:
            held.close()
    return path
