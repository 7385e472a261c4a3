"""An index folder on disk: its file layout, its typed and versioned ``lookalike.json``, and the writer lock.

    folder/
      lookalike.json   IndexConfig: model, dimension, index type, tuned search knobs (format version checked on open)
      metadata.db      the metadata store (the source of truth, raw vectors included)
      vectors.faiss    the FAISS index, a cache re-synced with the store on open
      .lock            the writer lock (POSIX record lock)
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.errors import EngineError  # defined in lookalike.errors; importable from here as before
from lookalike.fsutil import atomic_write_text
from lookalike.log import logger
from lookalike.settings import PRECISIONS

__all__ = ["EngineError", "IndexConfig", "IndexFolder", "WriterLock", "CONFIG_NAME", "DB_NAME", "INDEX_NAME",
           "FORMAT_VERSION"]

_log = logger(__name__)

CONFIG_NAME = "lookalike.json"
DB_NAME = "metadata.db"
INDEX_NAME = "vectors.faiss"
LOCK_NAME = ".lock"
FORMAT_VERSION = 1


@dataclass
class IndexConfig:
    """The settings an index folder was built with (``lookalike.json``)."""

    model: str
    dim: int
    preprocess: dict = field(default_factory=dict)
    precision: str = "fp32"           # inference precision of the vectors; queries use the same (retrieval/runtime.py)
    index_type: str = "auto"          # what the user asked for: "auto" or a FAISS factory string
    factory: str | None = None        # the type actually built
    index_written: bool = False       # a FAISS file has been saved once (a missing one is then an error)
    db_url: str | None = None         # a non-SQLite metadata database
    max_memory: int | None = None     # RAM budget that ``auto`` chooses within
    on_disk: bool = False             # search IVF lists memory-mapped from disk
    search: dict | None = None        # knobs tuned on the collection (retrieval/tune.py TuneResult + factory)
    hnsw_missed_target: bool = False  # HNSW measured below the recall target here: auto avoids it
    recall_target: float | None = None
    format: int = FORMAT_VERSION
    lookalike_version: str = ""
    created_at: str = ""
    extra: dict = field(default_factory=dict)  # keys written by other versions, kept as they are
    repaired = False  # (not saved) invalid settings were replaced by defaults when read

    @classmethod
    def new(cls, described: dict, index_type: str | None, db_url: str | None, precision: str = "fp32") -> "IndexConfig":
        """The config of a new index for an embedder's ``describe()``."""
        return cls(model=described["model"], dim=int(described["dim"]), preprocess=described.get("preprocess") or {},
                   precision=precision,
                   index_type=index_type or "auto", db_url=db_url if db_url and not db_url.startswith("sqlite") else None,
                   lookalike_version=__import__("lookalike").__version__,
                   created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @classmethod
    def from_dict(cls, d: Any, source: str = CONFIG_NAME) -> "IndexConfig":
        """Validate a parsed ``lookalike.json``; EngineError names what is wrong."""
        if not isinstance(d, dict):
            raise EngineError(f"{source}: not an index configuration (a JSON object was expected)")
        fmt = d.get("format", 1)
        if not isinstance(fmt, int) or fmt < 1:
            raise EngineError(f"{source}: unreadable format version {fmt!r}")
        if fmt > FORMAT_VERSION:
            raise EngineError(f"{source}: index format {fmt} is newer than this lookalike reads ({FORMAT_VERSION}); "
                              f"upgrade lookalike to use this index")
        for key, kind in (("model", str), ("dim", int)):
            if not isinstance(d.get(key), kind) or isinstance(d.get(key), bool) or (key == "dim" and d[key] <= 0):
                raise EngineError(f"{source}: '{key}' is missing or invalid; the index configuration is damaged "
                                  f"(rebuild the index in a new --db folder)")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        if known.get("precision", "fp32") not in PRECISIONS:
            raise EngineError(f"{source}: unknown 'precision' {known['precision']!r}; the index configuration is damaged")
        url = known.get("db_url")
        if url is not None and (not isinstance(url, str) or "://" not in url
                                or (url.startswith("sqlite") and url.split("://", 1)[1].strip("/") in ("", ":memory:"))):
            raise EngineError(f"{source}: 'db_url' is not a database URL ({known['db_url']!r}); the index "
                              f"configuration is damaged")
        if not isinstance(known.get("index_type", "auto"), str):
            raise EngineError(f"{source}: 'index_type' is not a string; run 'lookalike rebuild --index-type TYPE'")
        bad = _bad_settings(known)
        if bad:  # settings with a safe default: fall back to it with a note, never fail every open
            _log.warning(f"{source}: invalid setting{'s' if len(bad) > 1 else ''} "
                         + "; ".join(f"'{k}': {known[k]!r}" for k in bad)[:300]
                         + " ignored (defaults used; the next index run or rebuild writes valid ones)")
            fields = {f.name: f for f in dataclasses.fields(cls)}
            for k in bad:
                f = fields[k]
                known[k] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out = cls(**known, extra=extra)
        out.repaired = bool(bad)  # the next write saves the defaults in place of the invalid values
        return out

    def to_dict(self) -> dict:
        """The JSON object written to ``lookalike.json``."""
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        return {**extra, **d}


def _count(v: Any, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _tuned_ok(t: Any) -> bool:
    """Tuned search knobs as retrieval/tune.py writes them (None: never tuned)."""
    if t is None:
        return True
    if not isinstance(t, dict) or not isinstance(t.get("factory"), str):
        return False
    return (all(t.get(k) is None or _count(t[k]) for k in ("ef_search", "nprobe", "refine_factor"))
            and all(t.get(k) is None or _number(t[k]) for k in ("recall_at_k", "target"))
            and all(t.get(k) is None or _count(t[k], 0) for k in ("queries", "vectors"))
            and isinstance(t.get("reached", False), bool))


# lookalike.json settings that fall back to their default when invalid (the rest are refused: see from_dict)
_SETTING_CHECKS = {
    "search": _tuned_ok,
    "max_memory": lambda v: v is None or _count(v),
    "on_disk": lambda v: isinstance(v, bool),
    "recall_target": lambda v: v is None or (_number(v) and 0 < v <= 1),
    "hnsw_missed_target": lambda v: isinstance(v, bool),
    "factory": lambda v: v is None or isinstance(v, str),
    "preprocess": lambda v: isinstance(v, dict),
    "lookalike_version": lambda v: isinstance(v, str),
    "created_at": lambda v: isinstance(v, str),
}


def _bad_settings(known: dict) -> list[str]:
    """The keys of ``known`` whose values the checks above refuse."""
    return [k for k, ok in _SETTING_CHECKS.items() if k in known and not ok(known[k])]


class WriterLock:
    """An exclusive advisory lock on the index folder for the duration of a write."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.fh = None

    def __enter__(self) -> "WriterLock":
        import fcntl

        try:
            self.fh = open(self.path, "a+")
        except OSError as exc:
            raise EngineError(f"{self.path.parent}: cannot write to the index folder ({exc.strerror or exc})") from None
        try:
            # POSIX record lock: held by this process only, not inherited by forked decoding workers,
            # so a SIGKILLed writer never leaves a lock behind.
            fcntl.lockf(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise EngineError(f"{self.path.parent}: another lookalike process is writing this index; "
                              f"try again when it ends") from None
        # temp files left by a writer that was killed mid-save (only a lock holder writes them)
        folder = self.path.parent
        for stale in [*folder.glob(f".{INDEX_NAME}-*.tmp"), *folder.glob(f".{CONFIG_NAME}-*.tmp"),
                      *folder.glob(".vectors-*.faiss.tmp")]:
            try:
                stale.unlink()
            except OSError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self.fh:
            fcntl.lockf(self.fh.fileno(), fcntl.LOCK_UN)
            self.fh.close()


class IndexFolder:
    """The paths of an index folder and the reading and writing of its config."""

    def __init__(self, path: str | os.PathLike) -> None:
        if not os.fspath(path):
            raise EngineError("the index folder path is empty; give --db a folder name")
        self.root = Path(os.path.abspath(Path(path).expanduser()))  # '..' resolved, symlinks kept

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def exists(self) -> bool:
        """Whether this folder holds an index (its config)."""
        return self.config_path.exists()

    def writable(self) -> bool:
        return os.access(self.root, os.W_OK)

    def create(self) -> None:
        """Make the folder (a missing parent too); EngineError when that is impossible."""
        if self.root.exists() and not self.root.is_dir():
            raise EngineError(f"{self.root}: exists and is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"{self.root}: cannot create index folder ({exc.strerror})") from None

    def read_config(self) -> IndexConfig:
        """The validated config; EngineError for a missing, unreadable or damaged one."""
        try:
            text = self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EngineError(f"{self.root}: not a lookalike index (no {CONFIG_NAME}); build one with "
                              f"'lookalike index DIR --db {self.root}'") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EngineError(f"{self.config_path}: unreadable index configuration ({exc})") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EngineError(f"{self.config_path}: unreadable index configuration ({exc})") from None
        return IndexConfig.from_dict(data, source=str(self.config_path))

    def write_config(self, config: IndexConfig) -> None:
        """Replace ``lookalike.json`` atomically."""
        try:
            atomic_write_text(self.config_path, json.dumps(config.to_dict(), indent=2))
        except OSError as exc:
            raise EngineError(f"{self.config_path}: cannot write ({exc.strerror})") from None

    def writer_lock(self) -> WriterLock:
        """The exclusive lock every write holds."""
        return WriterLock(self.root)

    def size_on_disk(self) -> int:
        """Bytes of the files in the folder (a temp file a writer renames meanwhile is left out, not an error)."""
        total = 0
        for f in self.root.iterdir():
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
        return total
