"""Thumbnails on demand: ``GET /thumb`` serves a signed thumbnail URL, so pages list their pictures as lazily loaded
``<img>`` tags and the browser asks only for those it shows (``lookalike ui`` mounts the route; see
:mod:`lookalike.ui.server`).

A URL names the file, the size and the file's mtime, signed with a key made when the server starts: the route
serves only what a page of this server showed, and a changed file gets a new URL (so answers are cached for good).
Run as ``streamlit run app.py`` (no route), the pages draw thumbnails inline as before.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
from urllib.parse import urlencode

__all__ = ["ROUTE", "routes", "served", "sign", "thumbnail_url", "img_tag"]

ROUTE = "/thumb"
_KEY = secrets.token_bytes(32)
_served = False


def sign(path: str, px: int, version: int) -> str:
    """The signature of one thumbnail URL (this server's key)."""
    msg = f"{path}\0{int(px)}\0{int(version)}".encode("utf-8", "surrogateescape")
    return hmac.new(_KEY, msg, hashlib.sha256).hexdigest()[:32]


def served() -> bool:
    """Whether this process serves :data:`ROUTE` (started by ``lookalike ui``)."""
    return _served


def thumbnail_url(path: str, px: int) -> str | None:
    """A relative, signed URL of ``path``'s thumbnail (None when the file is gone)."""
    try:
        version = os.stat(path).st_mtime_ns
    except OSError:
        return None
    query = urlencode({"p": path, "px": int(px), "v": version, "s": sign(path, px, version)},
                      encoding="utf-8", errors="surrogateescape")
    return "." + ROUTE + "?" + query


def img_tag(url: str, width: int, height: int, px: int, alt: str, lazy: bool = True) -> str:
    """An ``<img>`` that keeps its box (the thumbnail's aspect ratio) before it arrives; ``lazy``: loaded only
    when it nears the screen."""
    scale = min(1.0, px / max(1, width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return (f'<img src="{html.escape(url)}" loading="{"lazy" if lazy else "eager"}" decoding="async" width="{w}" height="{h}" '
            f'alt="{html.escape(alt)}" style="width:100%;height:auto;display:block;border-radius:0.5rem">')


async def _endpoint(request):  # starlette's Request -> Response
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    q = request.query_params
    path, px, version, sig = q.get("p", ""), q.get("px", ""), q.get("v", ""), q.get("s", "")
    if not (path and px.isdigit() and version.isdigit() and 16 <= int(px) <= 1024
            and hmac.compare_digest(sig, sign(path, int(px), int(version)))):
        return Response("not a thumbnail of this server", status_code=404, media_type="text/plain")
    from .service import thumbnail_jpeg

    try:
        data = await run_in_threadpool(thumbnail_jpeg, path, int(px))
    except Exception as exc:  # noqa: BLE001 - gone or undecodable since the page was drawn
        return Response(f"cannot read the file: {type(exc).__name__}", status_code=404, media_type="text/plain")
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


def routes() -> list:
    """The Starlette routes ``lookalike ui`` adds to the app (and, from then on, :func:`served` is True)."""
    global _served
    from starlette.routing import Route

    _served = True
    return [Route(ROUTE, _endpoint, methods=["GET"])]
