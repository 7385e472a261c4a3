"""The HTTP API of ``lookalike serve``: search, images, status and index updates over one warm engine (FastAPI).

    app = create_app("my-index", allow_write=True, token="...")   # uvicorn.run(app, host="127.0.0.1", port=8000)

Every error is a JSON body ``{"detail": "one line naming the reason"}`` with a 4xx status; an unexpected fault is a
500 with the exception's type only (the traceback goes to the server log).
"""
from __future__ import annotations

import dataclasses
import hmac
import logging
import mimetypes
import os
from dataclasses import MISSING
from typing import Any, Literal, Mapping, Sequence, get_type_hints

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from lookalike.retrieval.denoise import METHODS as DENOISE_METHODS
from lookalike.retrieval.denoise import DenoiseError
from lookalike.indexer.loading import ImageLoadError
from lookalike.retrieval.engine import EngineError, IndexStatus, SearchResult
from lookalike.retrieval.searcher import DenoiseJSON, SearchJSON

from .safety import DEFAULT_MAX_UPLOAD_MB, FileGone, UnsafePathError, UploadTooLarge, check_upload
from .jobs import RUNNER, IndexJob, JobBusy, JobState
from .service import IndexGone, NotIndexed, QueryError, WarmEngine, image_file, indexed_file, thumbnail_jpeg

__all__ = ["create_app", "MAX_K"]

MAX_K = 1000
MAX_ID = 2**63 - 1  # image ids are 64-bit: a larger number is a 422, never an overflow
FORM_OVERHEAD = 64 * 1024  # multipart headers and the small form fields, on top of the image cap
DENOISE = Literal[(*DENOISE_METHODS, "none")]  # type: ignore[valid-type]  # built from the methods at import time


# ---------------------------------------------------------------------------------- schemas
class SearchOptions(BaseModel):
    """How many neighbours, the lowest score kept, and an optional clean-up of a noisy image query."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="drop results below this cosine similarity")
    denoise: DENOISE | None = Field(None, description="clean a noisy image query first (not for vectors)")
    copies_only: bool = Field(False, description="only results the calibrated copy score calls a copy")


class SearchBody(SearchOptions):
    """A JSON query: an indexed image by its path, or an embedding vector."""

    path: str | None = Field(None, description="path of an indexed file, as search results give it")
    vector: list[float] | None = Field(None, description="an embedding of the index's dimension (normalised here)")

    @model_validator(mode="after")
    def _one_query(self):
        if (self.path is None) == (self.vector is None):
            raise ValueError("give exactly one of 'path' and 'vector' (or send the image as multipart field 'image')")
        return self


def _model_of(cls, name: str, exclude: tuple[str, ...] = (), **extra) -> type[BaseModel]:
    """A response schema with the fields of the dataclass ``cls`` (less ``exclude``) plus ``extra`` ones."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {f.name: (hints[f.name], ... if f.default is MISSING else f.default)
              for f in dataclasses.fields(cls) if f.name not in exclude}
    return create_model(name, **fields, **extra)


# (the response models below are built at import time: type checkers see them as BaseModel classes, not as types)
Hit = _model_of(SearchResult, "Hit")  # what `search --json` prints: the id and every path of the image included


_denoise_fields: dict[str, Any] = {k: (t, ...) for k, t in get_type_hints(DenoiseJSON).items()}
DenoiseInfo = create_model("DenoiseInfo", __doc__="How the query was denoised (``searcher.DenoiseJSON``).",
                           **_denoise_fields)


class SearchResponse(BaseModel):
    """What ``POST /search`` answers and ``lookalike search --json`` prints (``searcher.SearchJSON``)."""

    results: list[Hit]  # type: ignore[valid-type]
    denoise: DenoiseInfo | None = Field(description="null unless denoising was asked for")  # type: ignore[valid-type]


Status = _model_of(
    IndexStatus, "Status",
    read_only=(bool, Field(description="true unless the service was started with --allow-write")),
    index_job=(JobState, Field(description="the last index update (POST /index)")),
    reload_error=(str | None, Field(None, description="why the last reopen of a changed index failed (the old one serves)")))


class Health(BaseModel):
    status: Literal["ok"]


class Error(BaseModel):
    detail: str


def _errors(*codes: int) -> dict:
    return {c: {"model": Error} for c in codes}


def _search_body_schema() -> dict:
    form = SearchOptions.model_json_schema()
    form["properties"] = {"image": {"type": "string", "format": "binary", "description": "the query image"},
                          **form["properties"]}
    form["required"] = ["image"]
    return {"required": True, "content": {"application/json": {"schema": SearchBody.model_json_schema()},
                                          "multipart/form-data": {"schema": form}}}


def _one_line(errors: Sequence[Mapping[str, Any]], sourced: bool = False) -> str:
    """Validation errors as one line, each led by its field; ``sourced``: FastAPI's locations, whose first part
    says where the value came from (body, query, path), not which field it is."""
    parts = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if sourced and loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]
        where = ".".join(str(x) for x in loc)
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts).replace("Value error, ", "")


class _BodyTooLarge(Exception):
    pass


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes: by Content-Length up front, else while they stream in."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await JSONResponse({"detail": "bad Content-Length header"}, 400)(scope, receive, send)
            if int(length) > self.limit:
                return await self._too_large(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge()
            return msg

        await self.app(scope, limited, send)

    async def _too_large(self, scope, receive, send):
        await JSONResponse({"detail": _too_large_text(self.limit)}, 413)(scope, receive, send)


def _too_large_text(limit: int) -> str:
    return f"request body is over the {(limit - FORM_OVERHEAD) / 1024 / 1024:.3g} MB upload limit"


# ---------------------------------------------------------------------------------- docs
DOCS_ASSETS = "/docs-assets"


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from assets the server ships (the ``fastapi-offline`` package's files): the
    pages load nothing from any other host (FastAPI's own pages fetch scripts, styles and fonts from CDNs)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    try:
        static = files("fastapi_offline") / "static"
    except ModuleNotFoundError:  # never a CDN instead: the pages say what is missing
        def missing() -> HTMLResponse:
            return HTMLResponse("<!DOCTYPE html><title>lookalike API</title><p>The API documentation pages need the "
                                "<code>fastapi-offline</code> package (<code>pip install 'lookalike[serve]'</code>). "
                                "The schema is at <a href='openapi.json'>/openapi.json</a>.</p>", 503)

        for path in ("/docs", "/redoc"):
            app.add_api_route(path, missing, include_in_schema=False)
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    icon = f"{DOCS_ASSETS}/favicon.png"

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url=root + "/docs/oauth2-redirect",
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=root + icon,
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from a validator host

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    redoc_js: list[bytes] = []

    @app.get("/redoc.js", include_in_schema=False)
    def redoc_script() -> Response:
        """ReDoc's bundle with its one remote image (the "API docs by Redocly" logo) pointed at the local icon."""
        if not redoc_js:
            text = (static / "redoc.standalone.js").read_text(encoding="utf-8")
            redoc_js.append(text.replace("https://cdn.redoc.ly/redoc/logo-mini.svg", icon).encode())
        return Response(redoc_js[0], media_type="application/javascript", headers={"Cache-Control": "max-age=3600"})

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}/redoc.js", redoc_favicon_url=root + icon,
                              with_google_fonts=False)


# ---------------------------------------------------------------------------------- app
@dataclasses.dataclass(frozen=True)
class _Service:
    """What the routers share: the warm engine, its indexing job, the write switch and the upload limit."""

    warm: WarmEngine
    job: IndexJob
    allow_write: bool
    max_bytes: int


def _error_handlers(app: FastAPI, max_bytes: int) -> None:
    """Every error answers one line of JSON (a traceback only in the server log)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc.errors(), sourced=True)}, 422)

    @app.exception_handler(_BodyTooLarge)
    async def _too_big(request: Request, exc: _BodyTooLarge):
        return JSONResponse({"detail": _too_large_text(max_bytes + FORM_OVERHEAD)}, 413)

    @app.exception_handler(IndexGone)
    async def _gone_index(request: Request, exc: IndexGone):
        return JSONResponse({"detail": str(exc)}, 503)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):  # an aborted upload: one log line, no traceback
        client = request.client.host if request.client else "a client"
        logging.getLogger("uvicorn.error").warning("%s %s: %s disconnected before the request was read",
                                                   request.method, request.url.path, client)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception):  # the server logs the traceback
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server log"}, 500)


def _search_router(svc: _Service, guarded: list) -> APIRouter:
    """POST /search: an uploaded image, an indexed file or a vector."""
    router = APIRouter()
    warm, max_bytes = svc.warm, svc.max_bytes

    def run_search(query, opts: SearchOptions) -> SearchJSON:
        eng = warm.get()
        try:
            if isinstance(query, list):
                if opts.denoise not in (None, "none"):
                    raise QueryError("denoise applies to image queries, not to a vector")
                try:
                    return eng.search_vector(query, opts.k, opts.min_score).to_json()
                except EngineError as exc:
                    raise QueryError(str(exc)) from None
            if isinstance(query, str):
                query = str(indexed_file(eng, query))
            return eng.search(query, k=opts.k, min_score=opts.min_score, denoise=opts.denoise,
                              copies_only=opts.copies_only).to_json()
        except (NotIndexed, FileGone) as exc:
            raise HTTPException(404, str(exc)) from None
        except UnsafePathError as exc:
            raise HTTPException(403, str(exc)) from None
        except QueryError as exc:
            raise HTTPException(422, str(exc)) from None
        except (EngineError, DenoiseError) as exc:
            raise HTTPException(400, str(exc)) from None

    @router.post("/search", response_model=SearchResponse, dependencies=guarded,
              openapi_extra={"requestBody": _search_body_schema()}, responses=_errors(400, 401, 403, 404, 413, 415, 422),
              summary="Find indexed images like an uploaded image, an indexed file, or an embedding vector")
    async def search(request: Request):
        """Send the image as multipart field ``image`` (with form fields ``k``, ``min_score``, ``denoise``), or a
        JSON body ``{"path": ...}`` / ``{"vector": [...]}`` with the same options. The answer is what
        ``lookalike search --json`` prints: ``{"results": [...], "denoise": null}`` (how the query was denoised in
        place of null when it was), each hit with its image ``id``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        query: bytes | str | list[float] | None
        opts: SearchOptions
        try:
            if ctype == "multipart/form-data":
                form = await request.form(max_files=1, max_fields=8)
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "multipart body needs the image in a file field named 'image'")
                try:
                    data = check_upload(await upload.read(), upload.filename or "upload", max_bytes)
                except UploadTooLarge as exc:
                    raise HTTPException(413, str(exc)) from None
                except ValueError as exc:
                    raise HTTPException(400, str(exc)) from None
                opts = SearchOptions.model_validate({k: v for k, v in form.items() if k != "image"})
                query = data
            elif ctype == "application/json":
                body = SearchBody.model_validate_json(await request.body())
                opts, query = body, body.path if body.path is not None else body.vector
            else:
                raise HTTPException(415, f"send the image as multipart/form-data (field 'image') or a JSON body "
                                         f"with 'path' or 'vector', not {ctype or 'no content type'}")
        except ValidationError as exc:
            raise HTTPException(422, _one_line(exc.errors())) from None
        return JSONResponse(await run_in_threadpool(run_search, query, opts))
    return router


def _image_router(svc: _Service, guarded: list) -> APIRouter:
    """GET /images/{id} and its thumbnail, only from inside the indexed folders."""
    router = APIRouter()
    warm = svc.warm

    def served_file(image_id: int):
        try:
            return image_file(warm.get(), image_id)
        except (QueryError, FileGone) as exc:
            raise HTTPException(404, str(exc)) from None
        except UnsafePathError as exc:
            raise HTTPException(403, str(exc)) from None

    @router.get("/images/{image_id}", dependencies=guarded, response_class=FileResponse, responses=_errors(401, 403, 404),
             summary="The original file of an indexed image (only from inside the indexed folders)")
    def image(image_id: int = Path(ge=0, le=MAX_ID)):
        path = served_file(image_id)
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @router.get("/images/{image_id}/thumbnail", dependencies=guarded, responses={200: {"content": {"image/jpeg": {}}},
             **_errors(401, 403, 404, 422)}, response_class=Response, summary="A JPEG thumbnail of an indexed image")
    def thumbnail(image_id: int = Path(ge=0, le=MAX_ID), size: int = Query(256, ge=16, le=1024, description="longer side, px")):
        path = served_file(image_id)
        try:
            return Response(thumbnail_jpeg(path, size), media_type="image/jpeg")
        except ImageLoadError as exc:
            raise HTTPException(422, f"image {image_id}: {exc.reason}") from None
        except OSError as exc:
            raise HTTPException(404, f"image {image_id}: {exc.strerror or exc}") from None
    return router


def _index_router(svc: _Service, guarded: list) -> APIRouter:
    """GET /status, /health, GET and POST /index, and the indexing jobs."""
    router = APIRouter()
    warm, job, allow_write = svc.warm, svc.job, svc.allow_write

    @router.get("/status", response_model=Status, dependencies=guarded, responses=_errors(401),
             summary="Counts, model, index type and size of the index, and the state of the last index update")
    def status():
        return JSONResponse({**warm.get().status().to_dict(), "read_only": not allow_write,
                             "index_job": job.state.to_dict(), "reload_error": warm.reload_error})

    @router.get("/health", response_model=Health, summary="Liveness check (no token needed)")
    def health():
        return {"status": "ok"}

    @router.get("/index", response_model=JobState, dependencies=guarded, responses=_errors(401),
             summary="Progress of the last index update")
    def index_state():
        return JSONResponse(job.state.to_dict())

    @router.post("/index", response_model=JobState, status_code=202, dependencies=guarded, responses=_errors(401, 403, 409),
              summary="Re-index the indexed folders as a background job (only with --allow-write)")
    def reindex():
        """New, changed and removed files under the indexed folders are brought into the index while searches go
        on. The answer is the job (its ``id``); follow it on GET /jobs/{id} and stop it with POST
        /jobs/{id}/cancel. Searches see the new images when it ends."""
        if not allow_write:
            raise HTTPException(403, "read-only service: start it with --allow-write to update the index")
        try:
            return JSONResponse(job.start().to_dict(), 202)
        except (JobBusy, QueryError) as exc:
            raise HTTPException(409, str(exc)) from None

    def own_job(job_id: str) -> JobState:
        j = RUNNER.get(job_id)
        if j is None or j.db != os.path.realpath(warm.path):
            raise HTTPException(404, f"job {job_id}: no such job on this index")
        return j

    @router.get("/jobs/{job_id}", response_model=JobState, dependencies=guarded, responses=_errors(401, 404),
             summary="State, progress (done / total, rate, ETA) and outcome of an indexing job")
    def job_state(job_id: str = Path(max_length=64)):
        return JSONResponse(own_job(job_id).to_dict())

    @router.post("/jobs/{job_id}/cancel", response_model=JobState, status_code=202, dependencies=guarded,
              responses=_errors(401, 403, 404), summary="Stop an indexing job; what it committed is kept")
    def job_cancel(job_id: str = Path(max_length=64)):
        """The job stops after its current batch (state ``cancelling``, then ``cancelled``); its folders stay
        marked unfinished in GET /status until a later run over them ends."""
        if not allow_write:
            raise HTTPException(403, "read-only service: start it with --allow-write to change the index")
        own_job(job_id)
        return JSONResponse(RUNNER.cancel(job_id).to_dict(), 202)
    return router


def create_app(engine_path: str | os.PathLike, *, allow_write: bool = False, token: str | None = None,
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, runtime: str = "auto") -> FastAPI:
    """The API over the index folder ``engine_path`` (opened now: EngineError when it is not a usable index).

    ``token``: every endpoint but /health requires ``Authorization: Bearer TOKEN``. ``allow_write``: POST /index
    may update the index; otherwise the service only reads. ``runtime``: the inference runtime (retrieval/runtime.py).
    """
    warm = WarmEngine(engine_path, runtime=runtime)
    svc = _Service(warm, IndexJob(warm), allow_write, int(max_upload_mb * 1024 * 1024))
    app = FastAPI(title="lookalike", version=__import__("lookalike").__version__, docs_url=None, redoc_url=None,
                  description="Image similarity search over one index folder (see `lookalike serve --help`).")
    _offline_docs(app)
    app.state.warm, app.state.job = warm, svc.job
    app.add_middleware(_BodyLimit, limit=svc.max_bytes + FORM_OVERHEAD)
    bearer = HTTPBearer(auto_error=False, description="the service's token (--token or LOOKALIKE_TOKEN)")

    secret = (token or "").encode()  # checked only when there is a token (guarded below)

    def check_token(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), secret):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(check_token)] if token else []
    _error_handlers(app, svc.max_bytes)
    for router in (_search_router(svc, guarded), _image_router(svc, guarded), _index_router(svc, guarded)):
        app.include_router(router)
    return app
