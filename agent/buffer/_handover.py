"""Read-only questions a key rotation asks of the buffer (``nengtan provision rotate``): is an
agent using it, and from which cycle on will the next envelope be signed?"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from agent.buffer._inspect import _meta
from agent.buffer._open import read_epoch
from nengtan.errors import StoreError

#: SQLite's unix VFS: every connection of a WAL database holds a shared POSIX lock on this byte
#: of the ``-shm`` file for as long as it is open (the "DMS" slot, UNIX_SHM_DMS in os_unix.c).
SHM_DMS_OFFSET = 128


def buffer_holder(path: Path) -> int | None:
    """The pid of a process that has the buffer open (the running agent), or None.

    The agent keeps its connection open while it runs. Ask from another process than the one
    using the buffer: POSIX locks of the asking process are invisible to it, and closing any
    descriptor of the ``-shm`` file (as this does) drops them, SQLite's own included.
    """
    shm = Path(f"{path}-shm")
    try:
        fd = os.open(shm, os.O_RDONLY)
    except FileNotFoundError:
        return None  # WAL mode always has the -shm file while a connection is open
    except OSError as exc:
        raise StoreError(f"cannot check whether the agent uses {path}: {exc}") from exc
    try:
        # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid}, native layout.
        query = struct.pack("@hhqqi", fcntl.F_WRLCK, os.SEEK_SET, SHM_DMS_OFFSET, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query + bytes(16))
        l_type, _, _, _, l_pid = struct.unpack_from("@hhqqi", answer)
    except OSError as exc:
        raise StoreError(f"cannot check whether the agent uses {path}: {exc}") from exc
    finally:
        os.close(fd)
    return None if l_type == fcntl.F_UNLCK else int(l_pid)


def next_signed_cycle(path: Path) -> tuple[int, int]:
    """The (epoch, seq) of the first cycle not yet sealed: the next envelope the agent seals
    starts there (cycles are sealed in seq order). Without a buffer, the agent's next start
    opens a new epoch, so that epoch's first cycle. StoreError if the buffer cannot be read.
    """
    if not path.exists():
        claimed = read_epoch(path.parent)
        if claimed == 0:
            raise StoreError(f"{path.parent / 'epoch'} is unreadable: cannot tell which epoch "
                             "the agent starts next")
        return (claimed or 0) + 1, 1
    try:
        with closing(sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True,
                                     timeout=5)) as conn:
            epoch = _meta(conn, "epoch")
            row = conn.execute("SELECT MIN(seq) FROM cycles WHERE envelope IS NULL").fetchone()
            seq = int(row[0]) if row and row[0] is not None else _meta(conn, "next_seq", 1)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the buffer at {path}: {exc} (if it is damaged, the agent "
                         "moves it to quarantine/ and starts a new epoch at its next start)") from exc
    if epoch < 1:
        raise StoreError(f"the buffer at {path} holds no epoch: it is not an initialised buffer")
    return epoch, seq
