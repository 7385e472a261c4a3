"""Indexing jobs owned by the server process, not by a browser page: they go on while the user navigates, reloads
or opens a second tab, and every page (and the HTTP API) can follow or cancel them by id.

    job = RUNNER.start("my-index", ["/photos"])      # a JobState, state "running", with job.id
    RUNNER.get(job.id).to_dict()                     # phase, done / total, rate, ETA
    RUNNER.cancel(job.id)                            # stops after the current batch; what was committed is kept

One job per index folder runs at a time (:class:`JobBusy` otherwise). Finished jobs are kept (the last
:data:`KEEP_FINISHED`) so that a page opened later still sees how the last run ended. A job's folders are recorded
as unfinished in the index until a run over them ends (``Engine.unfinished_roots``), so a cancelled, failed or
killed run shows on the Index page and in ``GET /status``.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Callable

from .service import QueryError, run_indexing

__all__ = ["JobBusy", "JobState", "JobRunner", "IndexJob", "RUNNER", "KEEP_FINISHED", "MAX_LISTED_SKIPS"]

KEEP_FINISHED = 20  # finished jobs remembered per process
MAX_LISTED_SKIPS = 100  # skipped files listed in a job's state (all of them: GET /status counts, `lookalike errors`)
RUNNING = ("running", "cancelling")


class JobBusy(RuntimeError):
    """An index update of that index is already running."""


@dataclass
class JobState:
    """Progress of one indexing job (``state`` idle only for the placeholder of a server that ran none)."""

    state: str = "idle"  # idle | running | cancelling | done | cancelled | failed
    id: str | None = None
    db: str | None = None
    phase: str | None = None  # scanning | hashing | embedding | signatures
    done: int = 0
    total: int | None = None
    roots: list[str] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    rate: float | None = None  # items per second in the current phase
    eta_s: float | None = None  # seconds left in the current phase at that rate (None until it can be told)
    summary: str | None = None
    skipped: list[dict] | None = None  # files skipped in this run with the reason (the first MAX_LISTED_SKIPS)
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    def to_dict(self) -> dict:
        return asdict(self)


class JobRunner:
    """A registry of indexing jobs, each on its own thread of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}

    @staticmethod
    def _key(db: str | os.PathLike) -> str:
        return os.path.realpath(os.fspath(db))

    def start(self, db: str | os.PathLike, roots: list[str], *, model: str | None = None, create: bool = False,
              runtime: str = "auto", precision: str | None = None, workers: int | None = None,
              on_end: Callable[[JobState], None] | None = None) -> JobState:
        """Start indexing ``roots`` into ``db`` in the background; :class:`JobBusy` while a job on ``db`` runs.

        ``on_end`` is called on the job's thread with its final state (e.g. to reopen a served engine)."""
        key = self._key(db)
        with self._lock:
            busy = self.active(db)
            if busy is not None:
                raise JobBusy(f"an index update is already running (job {busy.id}); follow it on GET /jobs/{busy.id}")
            job = JobState(state="running", id=uuid.uuid4().hex[:12], db=key, roots=list(roots), started_at=time.time())
            job._phase_t0 = time.monotonic()  # when the current phase began (not part of the reported state)
            stop = threading.Event()
            self._jobs[job.id], self._stops[job.id] = job, stop
            t = threading.Thread(target=self._run, args=(job, stop, model, create, runtime, precision, workers, on_end),
                                 name=f"lookalike-index-{job.id}", daemon=True)
            self._threads[job.id] = t
            self._forget_old()
        t.start()
        return job

    def get(self, job_id: str) -> JobState | None:
        """The job with this id (None when unknown or long forgotten)."""
        return self._jobs.get(job_id)

    def active(self, db: str | os.PathLike) -> JobState | None:
        """The running job on ``db``, if any."""
        key = self._key(db)
        return next((j for j in list(self._jobs.values()) if j.db == key and j.running), None)

    def latest(self, db: str | os.PathLike) -> JobState | None:
        """The running job on ``db``, else the last one that ended (None when none ran in this process)."""
        key = self._key(db)
        mine = [j for j in list(self._jobs.values()) if j.db == key]
        return next((j for j in mine if j.running), None) or (max(mine, key=lambda j: j.started_at or 0) if mine else None)

    def cancel(self, job_id: str) -> JobState:
        """Ask a job to stop after its current batch (QueryError for an unknown id); returns its state."""
        job = self._jobs.get(job_id)
        if job is None:
            raise QueryError(f"job {job_id}: no such job")
        if job.state == "running":
            job.state = "cancelling"
            self._stops[job_id].set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> JobState | None:
        """Block until the job ends (or ``timeout`` seconds); returns its state."""
        t = self._threads.get(job_id)
        if t is not None:
            t.join(timeout)
        return self._jobs.get(job_id)

    def _forget_old(self) -> None:
        ended = sorted((j for j in self._jobs.values() if not j.running), key=lambda j: j.finished_at or 0)
        for j in ended[:max(0, len(ended) - KEEP_FINISHED)]:
            for d in (self._jobs, self._stops, self._threads):
                d.pop(j.id, None)

    @staticmethod
    def progress_for(job: JobState) -> Callable[[str, int, int | None], None]:
        def report(phase: str, done: int, total: int | None) -> None:
            now = time.monotonic()
            if phase != job.phase:
                job.phase, job._phase_t0, job.rate, job.eta_s = phase, now, None, None
            job.done, job.total = int(done), total
            dt = now - job._phase_t0
            if done > 0 and dt > 0.5:
                job.rate = done / dt
                job.eta_s = (total - done) / job.rate if total else None
        return report

    def _run(self, job: JobState, stop: threading.Event, model: str | None, create: bool, runtime: str,
             precision: str | None, workers: int | None, on_end: Callable[[JobState], None] | None) -> None:
        from lookalike.retrieval.engine import EngineError

        final = "failed"
        try:
            report = run_indexing(job.db, job.roots, model, self.progress_for(job), workers=workers, create=create,
                                  runtime=runtime, precision=precision, stop=stop.is_set)
            job.summary = report.summary()
            job.skipped = [{"path": p, "reason": r} for p, r in report.problems[:MAX_LISTED_SKIPS]]
            final = "cancelled" if report.cancelled else "done"
        except EngineError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the server keeps running and reports it on the job
            job.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        finally:
            job.finished_at, job.eta_s = time.time(), None
            if on_end is not None:
                try:
                    on_end(dataclasses.replace(job, state=final))
                except Exception:  # noqa: BLE001 - a failed reopen is reported by the engine's own state
                    pass
            # the end is seen only once on_end is done: a search after "done" runs on the reopened engine
            job.state = final


RUNNER = JobRunner()  # the process's jobs: shared by every Streamlit session and the HTTP API


class IndexJob:
    """The index updates of one served :class:`~lookalike.ui.service.WarmEngine` (``lookalike serve``), as jobs of
    :data:`RUNNER`; ``state`` is the last job (an idle placeholder before the first)."""

    def __init__(self, warm, runner: JobRunner = RUNNER) -> None:
        self.warm, self.runner = warm, runner
        self._last: str | None = None

    @property
    def state(self) -> JobState:
        job = self.runner.get(self._last) if self._last else None
        return job or JobState()

    def start(self) -> JobState:
        """Start an update of every indexed root; :class:`JobBusy` while one runs, :class:`QueryError` without roots."""
        roots = self.warm.get().store.roots()
        if not roots:
            raise QueryError(f"{self.warm.path}: the index has no folders; add one with "
                             f"'lookalike index DIR --db {self.warm.path}'")
        job = self.runner.start(self.warm.path, roots, runtime=self.warm.runtime, on_end=self._ended)
        self._last = job.id
        return job

    def _ended(self, job: JobState) -> None:
        # a failed or cancelled run committed rows the FAISS file on disk may not hold: the reopened engine adds them
        self.warm.reload(force=job.state != "done")

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the current run ends (or ``timeout`` seconds); returns the state."""
        if self._last:
            self.runner.wait(self._last, timeout)
        return self.state
