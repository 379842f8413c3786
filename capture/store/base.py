"""Opening the database, one connection per thread, and the write transaction.

Why one connection per thread: the run engine's writer thread commits shots while the web app
reads pages and statistics.  In WAL mode readers never block the writer and the writer never
blocks readers, but only if they use separate connections; a single shared connection behind a
lock would make a slow statistics query stall the capture pipeline.  Writers still serialise
(SQLite allows one at a time): every write takes ``BEGIN IMMEDIATE`` so the write lock is taken
up front and ``busy_timeout`` waits for it instead of failing half way.

Why ``synchronous=FULL``: each commit then fsyncs the WAL, so a shot, a run state, a latched
fault or an incident that was reported as stored is still there after a power cut.  NORMAL
would keep the database consistent but could forget the last commits; the price of FULL is one
fsync per commit, small next to the file's own fsyncs (see docs/datasets.md and bench/store.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Self

from sqlite_utils import Database

from capture.store.files import REAL_FS, FileSystem, ensure_dir, os_error
from capture.store.schema import migrate
from rig.errors import DiskFull, StoreError

DB_NAME = "partrig.db"
BUSY_TIMEOUT_MS = 10_000
#: What to do about a damaged database: restore a backup, or salvage the readable rows.
#: NOTE: not ``.recover``: Debian's (and Raspberry Pi OS's) sqlite3 3.40 is built without
#: the sqlite_dbpage table it needs and fails with "SQL logic error".  ``.dump`` skips what it
#: cannot read and ends with ROLLBACK, turned into COMMIT to keep the rest; the schema
#: version (user_version) is not dumped, so it is copied across by hand.
DAMAGED_DB_STEPS = """\
  1. stop everything that uses the data folder: sudo systemctl stop partrig
  2. keep a copy of the damaged files: cp -a {db}* <a backup folder>/
  3. restore {name} from your backup (then skip to 7), or salvage the readable rows
     (apt install sqlite3):
       cd {folder}
       sqlite3 {name} .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' \\
         | sqlite3 {name}.recovered
       sqlite3 {name}.recovered "PRAGMA user_version = $(sqlite3 {name} 'PRAGMA user_version')"
  4. sqlite3 {name}.recovered 'PRAGMA integrity_check'   (must print: ok)
  5. mv {name}.recovered {name} && rm -f {name}-wal {name}-shm
  6. the image files are untouched: shots whose rows were lost show as orphan files
  7. run partrig dataset check again"""


def damaged_db_steps(db_path: Path) -> str:
    """The numbered steps above for one database file."""
    return DAMAGED_DB_STEPS.format(db=db_path, name=db_path.name, folder=db_path.parent)


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether an sqlite3 error means damaged pages (not a lock, a full disk or a bad query)."""
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def damaged_db_message(db_path: Path, detail: str) -> str:
    """One line for errors and logs; ``partrig dataset check`` prints the full steps."""
    return (
        f"the database {db_path} is damaged ({detail}): stop partrig and restore it from a "
        "backup or salvage its readable rows; `partrig dataset check` prints the steps "
        "(docs/datasets.md, 'A damaged database'); the image files are untouched"
    )


def db_error(exc: sqlite3.Error, data_dir: Path) -> StoreError:
    """Map an sqlite3 error to the store error that says what to fix."""
    text = str(exc).lower()
    if "full" in text:
        full = DiskFull(
            f"no space left for the database in {data_dir}: free space on that disk or point "
            "data.dir at a larger one; nothing already stored was changed"
        )
        full.errno = 28
        return full
    if "readonly" in text or "unable to open" in text or "permission" in text:
        return StoreError(
            f"cannot write the database in {data_dir} ({exc}): make the directory and "
            f"{DB_NAME} writable by this user, or set data.dir to a writable directory"
        )
    if is_damage(exc):
        return StoreError(damaged_db_message(data_dir / DB_NAME, str(exc)))
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"refused by the database: {exc}")
    return StoreError(f"database error in {data_dir}: {exc}")


class StoreBase:
    """Connections, transactions and the data directory, shared by every repository.

    The store's API lives in small repositories over this one object (:class:`Repository`),
    so every area reads and writes through the same per-thread connections.
    """

    data_dir: Path

    def __init__(
        self, data_dir: Path, *, thumbnail_px: int = 256, fs: FileSystem = REAL_FS
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.db_path = self.data_dir / DB_NAME
        self.thumbnail_px = int(thumbnail_px)
        self.fs = fs
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, data_dir: Path | str, *, thumbnail_px: int = 256) -> Self:
        """Open (creating and migrating as needed) the store in ``data_dir``."""
        store = cls(Path(data_dir), thumbnail_px=thumbnail_px)
        store._prepare_dir()
        try:
            migrate(store.db)
        except sqlite3.Error as exc:
            store.close()
            raise db_error(exc, store.data_dir) from None
        except BaseException:
            store.close()
            raise
        return store

    def _prepare_dir(self) -> None:
        ensure_dir(self.data_dir, self.fs)
        if not os.access(self.data_dir, os.W_OK | os.X_OK):
            err = PermissionError(13, "Permission denied")
            raise os_error(err, "opening the dataset store", self.data_dir)

    # --- connections -----------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        """This thread's sqlite-utils Database (created on first use)."""
        if self._closed:
            raise StoreError("the dataset store is closed; open it again with DatasetStore.open()")
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
        return db

    def _connect(self) -> Database:
        try:
            # NOTE: isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT),
            # never opened behind our back by the sqlite3 module.
            conn = sqlite3.connect(
                self.db_path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.db_path} could not switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise db_error(exc, self.data_dir) from None
        with self._all_lock:
            self._all.append(conn)
        return Database(conn)

    def close(self) -> None:
        """Close every thread's connection; idempotent."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- statements ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise db_error(exc, self.data_dir) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise db_error(exc, self.data_dir) from None
            raise

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows as dicts (no JSON decoding), with sqlite errors mapped to StoreError."""
        try:
            return list(self.db.query(sql, params))
        except sqlite3.Error as exc:
            raise db_error(exc, self.data_dir) from None

    def scalar(self, sql: str, params: Any = ()) -> Any:
        try:
            row = self.db.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise db_error(exc, self.data_dir) from None
        return None if row is None else row[0]

    def path_of(self, relpath: str) -> Path:
        """The absolute path of a stored file."""
        return self.data_dir / relpath


class Repository:
    """One area of the store (shots, runs, models ...) over the shared :class:`StoreBase`.

    Why a reference and not a copy of the connection: the connection is per thread and the
    file system object may be swapped (tests record the OS calls), so every access goes
    through the one ``StoreBase`` at call time.
    """

    def __init__(self, base: StoreBase) -> None:
        self._base = base

    @property
    def data_dir(self) -> Path:
        return self._base.data_dir

    @property
    def db_path(self) -> Path:
        return self._base.db_path

    @property
    def fs(self) -> FileSystem:
        return self._base.fs

    @property
    def thumbnail_px(self) -> int:
        return self._base.thumbnail_px

    @property
    def db(self) -> Database:
        return self._base.db

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._base.transaction()

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return self._base.query(sql, params)

    def scalar(self, sql: str, params: Any = ()) -> Any:
        return self._base.scalar(sql, params)
