"""Acting on duplicate groups, safely: the files not kept are moved to a folder or to the system trash, each step
written to an undo log before it is taken, and the index forgets the files that left. Nothing is ever deleted.

    plan = plan_actions(report, "move", dest="/photos-dupes")          # what would happen (a dry run prints it)
    done = apply_plan(engine, plan, log="/photos-dupes/undo.jsonl")    # move, log, update the index
    undo(engine, "/photos-dupes/undo.jsonl")                            # every file back where it was, re-indexed

The undo log is JSON lines: a header (action, index, destination), then one line per file written (and fsynced)
before that file is moved, so that a run killed at any point can still be undone: undo looks at where each file
actually is. Moves never overwrite: a name taken at the destination gets a ``-1``, ``-2``... suffix. A move across
file systems copies to a ``.partial`` file, fsyncs it, renames it into place and only then removes the original.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from lookalike.errors import LookalikeError
from lookalike.indexer.scan import is_below

__all__ = ["ActionError", "PlanItem", "Plan", "ApplyResult", "plan_actions", "apply_plan", "undo", "plan_script",
           "default_log"]

LOG_VERSION = 1
Action = Literal["move", "trash"]


class ActionError(LookalikeError):
    """A plan that cannot be carried out or undone (bad destination, damaged log); the message is one line."""


@dataclass
class PlanItem:
    """One file not kept: where it is, where it goes (``dst`` None for the trash), and the file it duplicates."""

    src: str
    dst: str | None
    size: int
    sha256: str
    group: int
    keeper: str
    exact: bool = False


@dataclass
class Plan:
    """What to do with the files not kept: ``move`` them below ``dest``, or send them to the ``trash``."""

    action: str
    dest: str | None
    items: list[PlanItem] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.items)

    def to_dict(self) -> dict:
        return {"action": self.action, "dest": self.dest, "files": len(self.items), "bytes": self.bytes,
                "items": [asdict(i) for i in self.items]}


@dataclass
class ApplyResult:
    """What :func:`apply_plan` or :func:`undo` did: files handled, files left as they were (with the reason)."""

    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    log: str | None = None
    forgotten: int = 0   # files the index no longer lists (moved away)
    reindexed: int = 0   # files indexed again (brought back by undo)


def _relative_dest(src: str, roots: list[str], dest: str) -> str:
    """``dest/<root name>/<path below the root>``: the layout of the library, kept under the destination."""
    for r in sorted(roots, key=len, reverse=True):
        if is_below(src, r):
            return os.path.join(dest, os.path.basename(r.rstrip(os.sep)) or "root", os.path.relpath(src, r))
    return os.path.join(dest, src.lstrip(os.sep))


def plan_actions(report, action: Action, dest: str | os.PathLike | None = None, roots: list[str] | None = None,
                 keep: dict[str, bool] | None = None) -> Plan:
    """The plan for ``report``'s files not kept (``keep``: path -> keep marks overriding the suggestion).

    A group where no file would be kept is left out whole: the plan never takes the last copy of a picture.
    ``dest`` (for ``move``) must not lie inside an indexed folder (the next index run would bring the copies back).
    """
    if action not in ("move", "trash"):
        raise ActionError(f"unknown action {action!r}: use 'move' or 'trash'")
    roots = list(roots or [])
    if action == "move":
        if not dest:
            raise ActionError("a move needs a destination folder")
        dest = os.path.realpath(os.path.expanduser(os.fspath(dest)))
        inside = [r for r in roots if is_below(dest, os.path.realpath(r))]
        if inside:
            raise ActionError(f"{dest}: inside the indexed folder {inside[0]}; choose a folder outside the library "
                              "(the next index run would bring the copies back)")
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise ActionError(f"{dest}: exists and is not a folder")
    plan = Plan(action=action, dest=os.fspath(dest) if dest else None)
    for g in report.groups:
        marks = {f.path: (keep.get(f.path, f.keep) if keep else f.keep) for f in g.files}
        if not any(marks.values()):
            continue  # never the last copy
        kept = next((f.path for f in g.files if marks[f.path]), g.keep)
        for f in g.files:
            if not marks[f.path]:
                dst = _relative_dest(f.path, roots, plan.dest) if action == "move" else None
                plan.items.append(PlanItem(src=f.path, dst=dst, size=int(f.size), sha256=f.sha256, group=g.id,
                                           keeper=kept, exact=bool(f.exact)))
    return plan


def plan_script(plan: Plan) -> str:
    """The plan as a POSIX shell script that a user may read, edit and run (``mv -n`` never overwrites)."""
    lines = ["#!/bin/sh", f"# lookalike duplicates: {plan.action} {len(plan.items)} files not kept "
                          f"({plan.bytes} bytes); nothing here deletes a file", "set -e"]
    for i in plan.items:
        lines.append(f"# group {i.group}: a copy of {shlex.quote(i.keeper)}" + (" (identical bytes)" if i.exact else ""))
        if plan.action == "move":
            lines.append(f"mkdir -p {shlex.quote(os.path.dirname(i.dst))} && mv -n -- {shlex.quote(i.src)} "
                         f"{shlex.quote(i.dst)}")
        else:
            lines.append(f"gio trash -- {shlex.quote(i.src)}")
    return "\n".join(lines) + "\n"


def default_log(db: str | os.PathLike, action: str) -> Path:
    """Where an applied plan's undo log goes by default: ``<index>/undo/<action>-<time>.jsonl``."""
    return Path(db) / "undo" / f"{action}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"


def _append(fh, record: dict) -> None:
    fh.write(json.dumps(record) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _free_name(path: str) -> str:
    if not os.path.lexists(path) and not os.path.lexists(path + ".partial"):
        return path
    stem, ext = os.path.splitext(path)
    for n in range(1, 100_000):
        cand = f"{stem}-{n}{ext}"
        if not os.path.lexists(cand) and not os.path.lexists(cand + ".partial"):
            return cand
    raise ActionError(f"{path}: no free name at the destination")


def _move(src: str, dst: str) -> None:
    """Move without overwriting: a rename on one file system; across file systems a copy that is fsynced and
    renamed into place before the original goes."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        raise FileExistsError(dst)
    try:
        os.link(src, dst, follow_symlinks=False)  # atomic, and fails rather than replace an existing name
        os.unlink(src)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):  # else: no hard link; copy
            raise
    part = dst + ".partial"
    shutil.copy2(src, part)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    if os.path.getsize(part) != os.path.getsize(src):
        os.unlink(part)
        raise OSError(f"copy of {src} is incomplete")
    os.rename(part, dst)
    os.unlink(src)


def _trash_dirs(path: str) -> list[Path]:
    """Freedesktop trash folders that may hold ``path`` once trashed: the home trash, then its volume's."""
    try:  # where send2trash puts it (its setting is read once, when it is imported)
        from send2trash.plat_other import HOMETRASH
        home = Path(HOMETRASH)
    except ImportError:
        home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "Trash"
    out = [home]
    mount = Path(path).resolve().parent
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    out += [mount / ".Trash" / str(os.getuid()), mount / f".Trash-{os.getuid()}"]
    return out


def _find_trashed(path: str, since: float) -> str | None:
    """The trashed copy of ``path`` (its newest entry, deleted at ``since`` or later), where the trash is on disk."""
    best: tuple[float, str] | None = None
    for t in _trash_dirs(path):
        info = t / "info"
        if not info.is_dir():
            continue
        for ti in info.glob("*.trashinfo"):
            try:
                text = ti.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
            p = urllib.parse.unquote(fields.get("Path", ""))
            if not os.path.isabs(p):
                p = os.path.join(str(t.parent.parent), p) if t.name.startswith(".Trash") else os.path.join("/", p)
            if os.path.abspath(p) != os.path.abspath(path):
                continue
            stamp = ti.stat().st_mtime
            if stamp + 2 >= since and (best is None or stamp > best[0]):
                best = (stamp, str(t / "files" / ti.name[: -len(".trashinfo")]))
    return best[1] if best else None


def apply_plan(engine, plan: Plan, log: str | os.PathLike | None = None) -> ApplyResult:
    """Carry out ``plan``, writing the undo log ``log`` (default :func:`default_log`); the index forgets the files
    that left. A file that changed since it was grouped (size) or is gone is left alone, with the reason."""
    log = Path(log) if log else default_log(engine.root, plan.action)
    log.parent.mkdir(parents=True, exist_ok=True)
    if plan.action == "trash":
        try:
            from send2trash import send2trash
        except ImportError:
            raise ActionError("moving to the trash needs the send2trash package (pip install send2trash)") from None
    res = ApplyResult(log=str(log))
    with open(log, "x", encoding="utf-8") as fh:  # never reuse a log: each one undoes one run
        _append(fh, {"lookalike": "duplicates-undo", "version": LOG_VERSION, "action": plan.action,
                     "dest": plan.dest, "index": str(engine.root), "created": time.time()})
        for item in plan.items:
            try:
                st = os.stat(item.src)
            except OSError as exc:
                res.skipped.append((item.src, exc.strerror or "cannot be read"))
                continue
            if st.st_size != item.size:
                res.skipped.append((item.src, "changed since the duplicates were found; find them again"))
                continue
            entry = asdict(item)
            if plan.action == "move":
                entry["dst"] = _free_name(item.dst)
            entry["at"] = time.time()
            _append(fh, entry)  # before the move: undo can always tell where the file went
            try:
                if plan.action == "move":
                    _move(item.src, entry["dst"])
                else:
                    send2trash(item.src)
                    trashed = _find_trashed(item.src, entry["at"])
                    _append(fh, {"src": item.src, "trashed": trashed})
            except Exception as exc:  # noqa: BLE001 - this file stays; the run goes on
                res.skipped.append((item.src, getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]))
                continue
            res.done.append(item.src)
        _append(fh, {"finished": time.time(), "done": len(res.done)})
    if res.done:
        res.forgotten = engine.remove(res.done)
    return res


def _read_log(log: str | os.PathLike) -> tuple[dict, list[dict]]:
    try:
        lines = Path(log).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ActionError(f"{log}: cannot read the undo log ({exc.strerror or exc})") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if n == len(lines):
                continue  # a last line cut short by a crash: the step it was about never started
            raise ActionError(f"{log}: line {n} is not JSON; not an undo log of lookalike duplicates") from None
    if not records or records[0].get("lookalike") != "duplicates-undo":
        raise ActionError(f"{log}: not an undo log of lookalike duplicates")
    if records[0].get("version") != LOG_VERSION:
        raise ActionError(f"{log}: undo log version {records[0].get('version')} is not supported by this lookalike")
    return records[0], records[1:]


def undo(engine, log: str | os.PathLike) -> ApplyResult:
    """Put every file of the undo log ``log`` back where it was (newest first) and index it again; a file whose
    place is taken again, or that cannot be found, is left with the reason."""
    head, records = _read_log(log)
    steps = [r for r in records if "src" in r and "sha256" in r]
    trashed = {r["src"]: r.get("trashed") for r in records if "trashed" in r}
    res = ApplyResult(log=str(log))
    for r in reversed(steps):
        src = r["src"]
        if os.path.lexists(src):
            res.skipped.append((src, "a file is at that path again; left as it is"))
            continue
        where = r.get("dst") if head["action"] == "move" else (trashed.get(src) or _find_trashed(src, r.get("at", 0)))
        if not where or not os.path.lexists(where):
            res.skipped.append((src, "not found " + ("at " + where if where else "in the trash")))
            continue
        try:
            _move(where, src)
        except OSError as exc:
            res.skipped.append((src, exc.strerror or str(exc)))
            continue
        if head["action"] == "trash":  # the trash's note of the file
            info = Path(where).parent.parent / "info" / (Path(where).name + ".trashinfo")
            info.unlink(missing_ok=True)
        res.done.append(src)
    if res.done:
        report = engine.add(res.done, progress=False, warn=None, workers=0, remove_missing=False)
        res.reindexed = report.indexed + report.linked + report.unchanged
    return res
