"""SQLite (or any SQLAlchemy URL) metadata store: images keyed by content hash, their files, skipped files.

The ``images`` table is the source of truth, raw vectors included, so the FAISS index can always be
rebuilt from it; vectors and rows are committed in the same transaction.
"""
from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from lookalike.errors import LookalikeError

from .scan import is_below
from .signature import SIGNATURE_BYTES, pack_signature, unpack_signatures

__all__ = ["rows_of", "Base", "ImageRow", "FileRow", "SkippedRow", "RootRow", "MetaRow", "MetadataStore", "StoreError", "NewImage",
           "FileState", "SkippedState", "ImageInfo", "SCHEMA_VERSION", "count_rows", "sqlite_url", "sqlite_uri"]


class StoreError(LookalikeError, RuntimeError):
    """The metadata database cannot be opened or is damaged."""


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    """One distinct image content (sha256); its id is the vector id in FAISS."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    lowfreq: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # schema 3; NULL: filled by the next index run
    added_at: Mapped[float] = mapped_column()
    files: Mapped[list["FileRow"]] = relationship(back_populates="image", cascade="all, delete-orphan")


class FileRow(Base):
    """A path on disk whose content is ``image``; several paths may share one image (duplicates)."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True, index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # schema 2; NULL: re-hash once
    ino: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    image: Mapped[ImageRow] = relationship(back_populates="files")


class SkippedRow(Base):
    """A file that could not be indexed and why."""

    __tablename__ = "skipped"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    seen_at: Mapped[float] = mapped_column()


class RootRow(Base):
    """A folder (or file) the user asked to index."""

    __tablename__ = "roots"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    added_at: Mapped[float] = mapped_column()


class MetaRow(Base):
    """Key/value facts about the store (schema version, model)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# 2: files.ctime_ns and files.ino (a file rewritten with its old mtime is seen as changed)
# 3: images.lowfreq, the low-frequency signature (indexer.signature) that noisy and low-detail queries fuse
SCHEMA_VERSION = "3"


class FileState(NamedTuple):
    """What the store knows of an indexed file, to tell whether it changed."""

    size: int
    mtime_ns: int
    image_id: int
    ctime_ns: int | None = None
    ino: int | None = None


class SkippedState(NamedTuple):
    """A skipped file as recorded: unchanged files are not retried."""

    size: int
    mtime_ns: int
    reason: str


class ImageInfo(NamedTuple):
    """An indexed image content: its hash, pixel size and every path that holds it (sorted)."""

    sha256: str
    width: int
    height: int
    paths: list[str]


@dataclass
class NewImage:
    """An embedded image ready to store, with every path that holds its content."""

    sha256: str
    width: int
    height: int
    vector: np.ndarray
    files: list[tuple]  # (path, size, mtime_ns[, ctime_ns, ino])
    lowfreq: np.ndarray | None = None  # indexer.signature.lowfreq_signature of the image


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def sqlite_url(path: str | os.PathLike) -> URL:
    """SQLAlchemy URL for a SQLite file; any character in its path (``?``, ``#``, ``%xx``, spaces) names that file."""
    return URL.create("sqlite", database=os.path.abspath(os.fspath(path)))


def sqlite_uri(path: str | os.PathLike, **params: str) -> str:
    """A SQLite ``file:`` URI naming exactly ``path`` (``?``, ``#``, ``%`` escaped), with query ``params``."""
    quoted = urllib.parse.quote(os.path.abspath(os.fspath(path)), safe="/")
    return f"file:{quoted}" + (f"?{urllib.parse.urlencode(params)}" if params else "")


class MetadataStore:
    """Typed access to the metadata database; every write is one transaction."""

    def __init__(self, url: str | URL, dim: int | None = None, read_only: bool = False, repair: bool = False) -> None:
        """Open (a new database: create) the store at ``url``. A database that lost tables is refused (StoreError)
        and never altered; ``repair`` (``lookalike rebuild``) recreates the ones that only list skipped files and
        roots."""
        try:
            sa_url = make_url(url)
        except (ArgumentError, TypeError, ValueError):
            raise StoreError(f"{url!r}: not a database URL (e.g. sqlite:///path or postgresql://host/db)") from None
        sqlite = sa_url.get_backend_name() == "sqlite"
        # messages name the database file (SQLite) or the URL without its password
        self.url = (sa_url.database or "") if sqlite else sa_url.render_as_string(hide_password=True)
        self.is_sqlite = sqlite
        self.dim = dim
        self.read_only = read_only
        try:
            if sqlite and read_only:
                # a read-only folder (mount, share): nobody can write it. Without a write-ahead log it is read
                # as an immutable file; with one (a writer was killed before it checkpointed) the committed
                # rows are partly in the log, so it is read through the log, never past it.
                path = sa_url.database or ""
                wal = f"{path}-wal"
                in_log = os.path.exists(wal) and os.path.getsize(wal) > 0
                uri = sqlite_uri(path, mode="ro", **({} if in_log else {"immutable": "1"}))
                self.engine: SAEngine = create_engine(
                    "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
                self._check_readable(path, in_log)
            elif sqlite:
                self.engine = create_engine(sa_url, connect_args={"timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(sa_url, pool_pre_ping=True)
            if sqlite:
                # check before anything is written: a damaged database is reported, never modified
                with self.engine.connect() as c:
                    ok = c.execute(text("PRAGMA quick_check")).scalar()
                if ok != "ok":
                    detail = " ".join(str(ok).replace("*** in database main ***", "").split())[:200]
                    raise StoreError(f"{url}: database is corrupted ({detail}); it was left untouched")
            self._check_tables(repair)
            for attempt in range(6):  # another process (a reader opening a new index) may be creating it too
                try:
                    if not read_only and self._fresh():
                        Base.metadata.create_all(self.engine)  # only a new database: an old one is never altered
                    with self.session() as s:
                        row = s.get(MetaRow, "schema_version")
                        if row is None and not read_only:
                            s.add(MetaRow(key="schema_version", value=SCHEMA_VERSION))
                            s.commit()
                    break
                except DatabaseError as exc:
                    msg = str(getattr(exc, "orig", exc)).lower()
                    if attempt == 5 or not any(w in msg for w in ("already exists", "unique", "duplicate", "locked")):
                        raise
                    time.sleep(0.05 * (attempt + 1))
            self.schema = row.value if row is not None else SCHEMA_VERSION
            self._check_schema(row.value if row is not None else None)
            if row is not None and row.value in ("1", "2") and not read_only:
                self._migrate(row.value)
        except (DatabaseError, OperationalError) as exc:
            reason = " ".join(str(exc.orig if hasattr(exc, "orig") else exc).split())[:300]  # one line
            if "not a database" in str(reason) or "malformed" in str(reason):
                raise StoreError(f"{url}: database is corrupted ({reason}); it was left untouched") from None
            raise StoreError(f"{url}: cannot open metadata database ({reason})") from None

    def _tables(self) -> set[str]:
        from sqlalchemy import inspect

        return set(inspect(self.engine).get_table_names())

    def _fresh(self) -> bool:
        """No lookalike table yet: a new database, created here."""
        return not (self._tables() & set(Base.metadata.tables))

    def _check_tables(self, repair: bool) -> None:
        """A database with some of its tables gone is damaged: say which and what can be done, alter nothing."""
        have = self._tables()
        ours = set(Base.metadata.tables)
        if not have & ours:
            return  # new (or, read-only, unfinished: reported by _check_readable)
        missing = sorted(ours - have)
        if not missing:
            return
        rebuildable = {"skipped", "roots"}  # they only list skipped files and the indexed folders
        if repair and set(missing) <= rebuildable and not self.read_only:
            Base.metadata.create_all(self.engine, tables=[Base.metadata.tables[t] for t in missing])
            return
        lost = ", ".join(missing)
        if set(missing) <= rebuildable:
            fix = ("run 'lookalike rebuild' to recreate it (it only lists " +
                   ("skipped files" if missing == ["skipped"] else "the indexed folders and skipped files") +
                   "; the next 'lookalike index' fills it again)")
        else:
            fix = ("'lookalike rebuild' cannot restore it: the vectors and hashes of the images live in that table "
                   "(vectors.faiss has no hashes or paths); keep a copy of the index folder and index the folders "
                   "again into a new --db folder")
            if "roots" in have:
                try:
                    with self.engine.connect() as c:
                        roots = [r[0] for r in c.execute(text("SELECT path FROM roots ORDER BY path"))]
                    if roots:
                        fix += f" (its indexed folders: {', '.join(roots[:5])}{' ...' if len(roots) > 5 else ''})"
                except DatabaseError:
                    pass
        raise StoreError(f"{self.url}: the metadata database is damaged: it has lost its table{'s' if len(missing) > 1 else ''} "
                         f"{lost}; it was left untouched; {fix}")

    def _check_readable(self, path: str, in_log: bool) -> None:
        """A read-only database must show every committed row, or say in one line why it cannot."""
        hint = ("it was not closed cleanly (a write-ahead log is left); open the index once where it can be "
                "written (any lookalike command) to finish it")
        try:
            with self.engine.connect() as c:
                tables = {r[0] for r in c.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        except (DatabaseError, OperationalError) as exc:
            reason = " ".join(str(getattr(exc, "orig", exc)).split())[:160]
            raise StoreError(f"{path}: cannot read the metadata database read-only ({reason}); "
                             + (hint if in_log else "check that the file is readable")) from None
        if not tables & set(Base.metadata.tables):  # some tables but not all: damaged (_check_tables says so)
            raise StoreError(f"{path}: the metadata database has no tables yet; "
                             + (hint if in_log else "the index was never completed: index a folder into it first"))

    def _check_schema(self, found: str | None) -> None:
        """Refuse a database written by a newer lookalike (its tables may mean something else)."""
        try:
            newer = found is not None and int(found) > int(SCHEMA_VERSION)
        except ValueError:
            raise StoreError(f"{self.url}: unreadable schema version '{found}'; it was left untouched") from None
        if newer:
            raise StoreError(f"{self.url}: database schema version {found} is newer than this lookalike reads "
                             f"({SCHEMA_VERSION}); upgrade lookalike to use this index")

    def _migrate(self, found: str) -> None:
        """Schema 1 -> 2: the files table gains ctime_ns and ino (NULL: those files are hashed once more).
        2 -> 3: the images table gains lowfreq (NULL: the next index run computes it)."""
        columns = ([("files", "ctime_ns", "BIGINT"), ("files", "ino", "BIGINT")] if found == "1" else []) \
            + [("images", "lowfreq", "BLOB" if self.is_sqlite else "BYTEA")]
        with self.engine.begin() as c:
            for table, col, kind in columns:
                try:
                    c.execute(text(f"ALTER TABLE {table} ADD COLUMN {col} {kind}"))
                except DatabaseError as exc:
                    if "duplicate" not in str(exc).lower() and "already exists" not in str(exc).lower():
                        raise
            c.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": SCHEMA_VERSION})
        self.schema = SCHEMA_VERSION

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ reads
    def file_states(self, under: Sequence[str] | None = None) -> dict[str, FileState]:
        """path -> :class:`FileState` for every indexed file (optionally only below ``under``)."""
        cols = [FileRow.path, FileRow.size, FileRow.mtime_ns, FileRow.image_id]
        if self.schema != "1":  # a schema-1 database opened read-only has no ctime/inode columns
            cols += [FileRow.ctime_ns, FileRow.ino]
        with self.session() as s:
            rows = s.execute(select(*cols)).all()
        out = {r[0]: FileState(*r[1:]) for r in rows}
        if under is not None:
            out = {p: v for p, v in out.items() if any(is_below(p, u) for u in under)}
        return out

    def file_sizes(self) -> set[int]:
        """The sizes of every indexed file (content of another size cannot be indexed already)."""
        with self.session() as s:
            return set(s.execute(select(FileRow.size).distinct()).scalars().all())

    def skipped_states(self) -> dict[str, SkippedState]:
        """path -> :class:`SkippedState` for skipped files."""
        with self.session() as s:
            rows = s.execute(select(SkippedRow.path, SkippedRow.size, SkippedRow.mtime_ns, SkippedRow.reason)).all()
        return {p: SkippedState(sz, mt, r) for p, sz, mt, r in rows}

    def ids_by_sha(self, shas: Iterable[str]) -> dict[str, int]:
        """sha256 -> image id for the given hashes that are already stored."""
        shas = list(set(shas))
        out: dict[str, int] = {}
        with self.session() as s:
            for i in range(0, len(shas), 500):
                part = shas[i : i + 500]
                out.update(dict(s.execute(select(ImageRow.sha256, ImageRow.id).where(ImageRow.sha256.in_(part))).all()))
        return out

    def image_ids(self) -> np.ndarray:
        """All stored image ids (int64, sorted)."""
        with self.session() as s:
            ids = s.execute(select(ImageRow.id).order_by(ImageRow.id)).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def iter_vectors(self, ids: Sequence[int] | None = None, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) chunks of stored vectors (all, or the given ids)."""
        with self.session() as s:
            if ids is None:
                last = -1
                while True:
                    rows = s.execute(
                        select(ImageRow.id, ImageRow.vector).where(ImageRow.id > last).order_by(ImageRow.id).limit(batch)
                    ).all()
                    if not rows:
                        return
                    last = rows[-1][0]
                    yield self._unpack(rows)
            else:
                ids = [int(i) for i in ids]
                for i in range(0, len(ids), 500):
                    rows = s.execute(select(ImageRow.id, ImageRow.vector).where(ImageRow.id.in_(ids[i : i + 500]))).all()
                    if rows:
                        yield self._unpack(rows)

    def _unpack(self, rows) -> tuple[np.ndarray, np.ndarray]:
        want = self.dim * 4 if self.dim else len(rows[0][1])
        bad = [int(r[0]) for r in rows if r[1] is None or len(r[1]) != want or want % 4]
        if bad:
            raise self._damaged(bad)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        return ids, vecs

    def _damaged(self, ids: list[int]) -> StoreError:
        """One line naming a damaged stored vector's image and the fix."""
        info = self.lookup(ids[:1]).get(ids[0])
        where = f" ({info.paths[0]})" if info is not None and info.paths else ""
        more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        return StoreError(f"{self.url}: the stored vector of image {ids[0]}{where}{more} is damaged (not "
                          f"{self.dim or '?'} float32 values); run 'lookalike rebuild' to embed it again")

    def damaged_vectors(self) -> list[int]:
        """Ids of images whose stored vector is not ``dim`` float32 values (a damaged blob)."""
        if not self.dim:
            return []
        with self.session() as s:
            rows = s.execute(select(ImageRow.id).where((ImageRow.vector.is_(None))
                                                       | (func.length(ImageRow.vector) != self.dim * 4))).scalars()
            return sorted(int(i) for i in rows)

    def set_vectors(self, pairs: Sequence[tuple[int, np.ndarray]]) -> None:
        """Replace the stored vectors of existing images, in one transaction."""
        if not pairs:
            return
        with self.session() as s, s.begin():
            for iid, vec in pairs:
                vec = np.ascontiguousarray(vec, dtype=np.float32)
                if self.dim is not None and vec.shape != (self.dim,):
                    raise StoreError(f"vector of shape {vec.shape} does not fit a store of dimension {self.dim}")
                s.execute(update(ImageRow).where(ImageRow.id == int(iid)).values(vector=vec.tobytes()))

    @property
    def has_signatures(self) -> bool:
        """Whether this database has the low-frequency signature column (schema 3; a schema-2 database opened
        read-only does not)."""
        return self.schema not in ("1", "2")

    def signatures(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (N, 63) float32) of every image whose low-frequency signature is stored."""
        if not self.has_signatures:
            return np.zeros(0, np.int64), unpack_signatures([])
        with self.session() as s:
            rows = s.execute(select(ImageRow.id, ImageRow.lowfreq).where(ImageRow.lowfreq.is_not(None))
                             .order_by(ImageRow.id)).all()
        rows = [r for r in rows if len(r[1]) == SIGNATURE_BYTES]  # a damaged value counts as missing
        return np.asarray([r[0] for r in rows], np.int64), unpack_signatures([r[1] for r in rows])

    def image_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, long side in px) of every stored image."""
        with self.session() as s:
            rows = s.execute(select(ImageRow.id, ImageRow.width, ImageRow.height).order_by(ImageRow.id)).all()
        return (np.asarray([r[0] for r in rows], np.int64),
                np.asarray([max(r[1] or 0, r[2] or 0) for r in rows], np.float64))

    def max_image_id(self) -> int:
        """The highest image id (0 when empty); it grows with every image added."""
        with self.session() as s:
            return int(s.execute(select(func.max(ImageRow.id))).scalar() or 0)

    def missing_signatures(self) -> list[tuple[int, list[str]]]:
        """(id, its paths) of every image stored without a low-frequency signature (indexed before schema 3)."""
        if not self.has_signatures:
            return []
        with self.session() as s:
            rows = s.execute(select(FileRow.image_id, FileRow.path).join(ImageRow, ImageRow.id == FileRow.image_id)
                             .where(ImageRow.lowfreq.is_(None)).order_by(FileRow.image_id, FileRow.path)).all()
        out: dict[int, list[str]] = {}
        for iid, path in rows:
            out.setdefault(int(iid), []).append(path)
        return list(out.items())

    def set_signatures(self, pairs: Sequence[tuple[int, np.ndarray]]) -> None:
        """Store low-frequency signatures of existing images, in one transaction."""
        if not pairs:
            return
        with self.session() as s, s.begin():
            for iid, sig in pairs:
                s.execute(update(ImageRow).where(ImageRow.id == int(iid)).values(lowfreq=pack_signature(sig)))

    def lookup(self, ids: Sequence[int]) -> dict[int, ImageInfo]:
        """id -> :class:`ImageInfo` (sha256, width, height, sorted paths) for the ids still stored."""
        ids = [int(i) for i in ids]
        out: dict[int, ImageInfo] = {}
        if not ids:
            return out
        # one read on a plain connection: every search calls this, and an ORM session cost ~2x the queries
        with self.engine.connect() as c:
            rows = c.execute(select(ImageRow.id, ImageRow.sha256, ImageRow.width, ImageRow.height,
                                    FileRow.path).join(FileRow, FileRow.image_id == ImageRow.id, isouter=True)
                             .where(ImageRow.id.in_(ids))).all()
        by_id: dict[int, list[str]] = {}
        for iid, sha, w, h, p in rows:
            paths = by_id.setdefault(iid, [])
            if p is not None:
                paths.append(p)
            if iid not in out:
                out[iid] = ImageInfo(sha, w, h, paths)
        for paths in by_id.values():
            paths.sort()
        return out

    def id_for_path(self, path: str) -> int | None:
        with self.session() as s:
            return s.execute(select(FileRow.image_id).where(FileRow.path == path)).scalar()

    def id_for_sha(self, sha: str) -> int | None:
        with self.session() as s:
            return s.execute(select(ImageRow.id).where(ImageRow.sha256 == sha)).scalar()

    def counts(self) -> dict[str, int]:
        """images, files, duplicate files (paths beyond the first per image), skipped."""
        with self.session() as s:
            n_images = s.execute(select(func.count()).select_from(ImageRow)).scalar() or 0
            n_files = s.execute(select(func.count()).select_from(FileRow)).scalar() or 0
            n_skipped = s.execute(select(func.count()).select_from(SkippedRow)).scalar() or 0
        return {"images": n_images, "files": n_files, "duplicates": n_files - n_images, "skipped": n_skipped}

    def skipped(self) -> list[SkippedRow]:
        with self.session() as s:
            return list(s.execute(select(SkippedRow).order_by(SkippedRow.path)).scalars().all())

    def skipped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.skipped():
            key = row.reason.split(" (")[0]
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table (None when absent)."""
        with self.session() as s:
            return s.execute(select(MetaRow.value).where(MetaRow.key == key)).scalar()

    def set_meta(self, **values: str) -> None:
        """Set ``meta`` values in one transaction."""
        with self.session() as s, s.begin():
            for key, value in values.items():
                s.merge(MetaRow(key=key, value=value))

    def roots(self) -> list[str]:
        with self.session() as s:
            return list(s.execute(select(RootRow.path).order_by(RootRow.path)).scalars().all())

    # ------------------------------------------------------------------ writes
    def add_roots(self, roots: Iterable[str]) -> None:
        """Record folders the user indexed; a root inside another is kept once, as the outer one."""
        with self.session() as s, s.begin():
            have = list(s.execute(select(RootRow.path)).scalars().all())
            for r in roots:
                if any(is_below(r, h) for h in have):
                    continue
                inner = [h for h in have if is_below(h, r)]
                if inner:
                    s.execute(delete(RootRow).where(RootRow.path.in_(inner)))
                s.add(RootRow(path=r, added_at=time.time()))
                have = [h for h in have if h not in inner] + [r]

    def remove_roots(self, under: Iterable[str]) -> None:
        """Forget the roots at or below these paths."""
        under = list(under)
        with self.session() as s, s.begin():
            gone = [r for r in s.execute(select(RootRow.path)).scalars().all() if any(is_below(r, u) for u in under)]
            if gone:
                s.execute(delete(RootRow).where(RootRow.path.in_(gone)))

    def commit_chunk(self, new_images: Sequence[NewImage], links: Sequence[tuple[str, int, int, int] | tuple[str, int, int, int, int, int]],
                     skipped: Sequence[tuple[str, str, int, int]]) -> list[int]:
        """In one transaction: insert images (+ their files), point ``links`` (path, size, mtime, image_id[,
        ctime_ns, ino]) at existing images, record ``skipped`` (path, reason, size, mtime). Returns the new image ids."""
        now = time.time()
        rows = []
        for im in new_images:
            vec = np.ascontiguousarray(im.vector, dtype=np.float32)
            if self.dim is not None and vec.shape[0] != self.dim:
                raise StoreError(f"vector of dimension {vec.shape[0]} does not fit a store of dimension {self.dim}")
            rows.append({"sha256": im.sha256, "width": int(im.width), "height": int(im.height),
                         "vector": vec.tobytes(), "added_at": now,
                         "lowfreq": None if im.lowfreq is None else pack_signature(im.lowfreq)})
        with self.session() as s, s.begin():
            new_ids: list[int] = []
            if rows:  # one multi-row INSERT ... RETURNING, ids in parameter order
                result = s.execute(insert(ImageRow).returning(ImageRow.id, sort_by_parameter_order=True), rows)
                new_ids = [int(r[0]) for r in result]
            files = [(f[0], iid, *f[1:]) for im, iid in zip(new_images, new_ids) for f in im.files]
            files += [(link[0], link[3], link[1], link[2], *link[4:]) for link in links]
            bad = [path for path, *_ in skipped]
            touched = [f[0] for f in files] + bad
            for i in range(0, len(touched), 500):  # a path is either indexed or skipped, never both
                part = touched[i : i + 500]
                s.execute(delete(FileRow).where(FileRow.path.in_(part)))
                s.execute(delete(SkippedRow).where(SkippedRow.path.in_(part)))
            if files:
                s.execute(insert(FileRow), [{"path": f[0], "image_id": f[1], "size": f[2], "mtime_ns": f[3],
                                             "ctime_ns": f[4] if len(f) > 4 else None, "ino": f[5] if len(f) > 5 else None}
                                            for f in files])
            if skipped:
                s.execute(insert(SkippedRow), [{"path": p_, "reason": r, "size": sz, "mtime_ns": mt, "seen_at": now}
                                               for p_, r, sz, mt in skipped])
        return new_ids

    def remove_orphans(self) -> list[int]:
        """Delete images that no file points at any more; returns their ids."""
        with self.session() as s, s.begin():
            ids = list(s.execute(select(ImageRow.id).where(~ImageRow.id.in_(select(FileRow.image_id)))).scalars().all())
            for i in range(0, len(ids), 500):
                s.execute(delete(ImageRow).where(ImageRow.id.in_(ids[i : i + 500])))
        return sorted(int(i) for i in ids)

    def remove_paths(self, paths: Iterable[str]) -> list[int]:
        """Forget files (and skipped entries) at ``paths``; returns ids of images left with no file (deleted too)."""
        paths = list(paths)
        orphan_ids: list[int] = []
        with self.session() as s, s.begin():
            touched: set[int] = set()
            for i in range(0, len(paths), 500):
                part = paths[i : i + 500]
                touched.update(s.execute(select(FileRow.image_id).where(FileRow.path.in_(part))).scalars().all())
                s.execute(delete(FileRow).where(FileRow.path.in_(part)))
                s.execute(delete(SkippedRow).where(SkippedRow.path.in_(part)))
            if touched:
                still = set(s.execute(select(FileRow.image_id).where(FileRow.image_id.in_(list(touched)))).scalars().all())
                orphan_ids = sorted(touched - still)
                for i in range(0, len(orphan_ids), 500):
                    s.execute(delete(ImageRow).where(ImageRow.id.in_(orphan_ids[i : i + 500])))
        return orphan_ids

    def remove_skipped(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        with self.session() as s, s.begin():
            for i in range(0, len(paths), 500):
                s.execute(delete(SkippedRow).where(SkippedRow.path.in_(paths[i : i + 500])))


def rows_of(sorted_ids: np.ndarray, wanted: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the sorted id array ``sorted_ids`` (as the store returns them) holding each ``wanted`` id, and
    whether it is there; a missing id's row is some valid row (or 0 when ``sorted_ids`` is empty): mask with it."""
    wanted = np.asarray(wanted, np.int64)
    if not len(sorted_ids):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    rows = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    return rows, sorted_ids[rows] == wanted


def count_rows(db_path: str | os.PathLike, table: str = "images") -> int:
    """Rows committed in a SQLite metadata file, read without locking a writer out (0 if unreadable)."""
    if table not in ("images", "files", "skipped"):
        raise ValueError(f"unknown table {table}")
    try:
        con = sqlite3.connect(sqlite_uri(db_path, mode="ro"), uri=True, timeout=1)
        try:
            return int(con.execute(f"select count(*) from {table}").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0
