"""The ``lookalike ui`` and ``lookalike serve`` sub-commands: the Streamlit app and the HTTP API, on 127.0.0.1 by default."""
from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

from lookalike.argtypes import add_runtime_options, fail, port, positive_float, positive_int

from lookalike.retrieval.models import DEFAULT_EMBEDDER

from .safety import DEFAULT_MAX_UPLOAD_MB

APP = Path(__file__).resolve().parent / "server.py"  # the app (app.py) and its thumbnail route
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True for addresses only this computer can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
UPLOAD_HEADROOM = 4


def build_command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line for these arguments."""
    # the browser refuses files over the server's cap with only a tooltip, so the server accepts up to 4x the cap
    # and the app refuses what is over it with the reason on the page (and clears the old results)
    mb = max(1, int(-(-args.max_upload_mb * UPLOAD_HEADROOM // 1)))
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        "--server.maxUploadSize", str(mb),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--browser.serverAddress", args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
        "--", "--db", os.path.abspath(os.path.expanduser(args.db)),
        "--max-upload-mb", str(args.max_upload_mb),
    ]
    if args.allow_write and not args.read_only:
        cmd.append("--allow-write")
    for root in args.allow_root or []:
        cmd += ["--allow-root", os.path.realpath(os.path.expanduser(root))]
    if args.model:
        cmd += ["--model", args.model]
    cmd += ["--runtime", args.runtime] + (["--precision", args.precision] if args.precision else [])
    return cmd


def cmd_ui(args: argparse.Namespace) -> int:
    if not args.db:
        return fail("--db: the index folder path is empty")
    db = Path(args.db).expanduser()
    if db.exists() and not db.is_dir():
        return fail(f"{db}: exists and is not a folder")
    for root in args.allow_root or []:
        if not os.path.isdir(root):
            return fail(f"--allow-root {root}: not an existing folder")
    writes = args.allow_write and not args.read_only
    if not is_loopback(args.host):
        print(f"lookalike ui: warning: serving on {args.host}: anyone who can reach this address can search your "
              f"indexed images{' and index the allowed folders' if writes else ''}", file=sys.stderr)
    if not (db / "lookalike.json").is_file():
        print(f"lookalike ui: {db}: no index yet; build one on the Index page", file=sys.stderr)
    env = dict(os.environ, LOOKALIKE_DB=str(db.absolute()), LOOKALIKE_MAX_UPLOAD_MB=str(args.max_upload_mb),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    print(f"lookalike ui: http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}/ "
          f"(Ctrl+C to stop)", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    cmd = build_command(args)
    if hasattr(os, "execve"):
        os.execve(cmd[0], cmd, env)  # the server becomes this process: signals reach it directly
    try:  # pragma: no cover - platforms without exec
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


def _cannot_listen(host: str, port: int) -> str | None:
    """Why a server could not bind ``host:port`` (address in use, unknown host), or None when it can."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(addr)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    if args.token and args.no_auth:
        return fail("give --token or --no-auth, not both")
    token = None if args.no_auth else (args.token or os.environ.get("LOOKALIKE_TOKEN") or None)
    if not token and not args.no_auth and not is_loopback(args.host):
        return fail(f"--host {args.host} is reachable from other computers: give a token (--token T or "
                           f"LOOKALIKE_TOKEN), or --no-auth to serve without one")
    if token and len(token) < MIN_TOKEN_CHARS:
        return fail(f"the token must have at least {MIN_TOKEN_CHARS} characters")
    if reason := _cannot_listen(args.host, args.port):
        return fail(f"cannot listen on {args.host}:{args.port} ({reason})")
    import faiss

    from lookalike.retrieval.engine import EngineError
    from lookalike.retrieval.runtime import torch_available

    try:
        import uvicorn  # noqa: F401  (the server; imported here to fail early with the extra to install)

        from .api import create_app
    except ModuleNotFoundError as exc:
        return fail(f"needs {exc.name}: pip install 'lookalike[serve]'")

    if torch_available():  # the train extra: --runtime torch and the DDPM denoisers run in this process too
        import torch

        torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    try:
        app = create_app(args.db, allow_write=args.allow_write, token=token, max_upload_mb=args.max_upload_mb,
                         runtime=args.runtime)
    except EngineError as exc:
        return fail(str(exc))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"lookalike serve: http://{shown}:{args.port}/ (API docs at /docs; "
          f"{'read-write' if args.allow_write else 'read-only'}, {'token required' if token else 'no token'}; "
          f"Ctrl+C to stop)", file=sys.stderr, flush=True)
    from .serving import run

    run(app, args.host, args.port, header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        max_connections=args.max_connections)
    return 0


def add_commands(subparsers, train_subparsers=None, bench_subparsers=None) -> None:
    p = subparsers.add_parser("ui", help="open the web app (search, index, explore, compare, duplicates)",
                              description="Start the Streamlit web app for an index folder, on 127.0.0.1 by default. "
                                          "Pages: Search, Index (background indexing jobs), Explore, Compare and "
                                          "Duplicates (groups to review; with --allow-write, moves with an undo).")
    p.add_argument("--db", required=True, help="index folder (created from the Index page if it does not exist)")
    p.add_argument("--port", type=port, default=8501, help="port (default 8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else exposes the app to the network)")
    p.add_argument("--allow-write", action="store_true",
                   help="allow building/updating the index and removing folders from the browser (default: read-only)")
    p.add_argument("--allow-root", action="append", metavar="DIR",
                   help="a folder the browser may index (repeatable; default: the folders already in the index); "
                        "checked after resolving '..' and symlinks")
    p.add_argument("--read-only", action="store_true", help="never change the index from the browser (the default)")
    p.add_argument("--max-upload-mb", type=positive_float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--model", default=None, help=f"model preselected for a new index (default {DEFAULT_EMBEDDER})")
    add_runtime_options(p)
    p.set_defaults(func=cmd_ui)

    p = subparsers.add_parser("serve", help="serve the index over HTTP (search, images, status, updates)",
                              description="An HTTP API over one warm engine (FastAPI; OpenAPI docs at /docs).")
    p.add_argument("--db", required=True, metavar="INDEX_DIR", help="index folder (built with 'lookalike index')")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs --token or --no-auth)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    p.add_argument("--allow-write", action="store_true", help="allow POST /index to update the index")
    p.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' (default: $LOOKALIKE_TOKEN; the variable keeps it out "
                        "of the process list)")
    p.add_argument("--no-auth", action="store_true", help="serve a non-loopback address without a token")
    p.add_argument("--max-upload-mb", type=positive_float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted query image in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch and FAISS threads per query (default 1: concurrent queries each get a core; more "
                        "threads per query are much slower on a busy CPU)")
    p.add_argument("--header-timeout", type=positive_float, default=10.0, metavar="S",
                   help="close a connection whose request head is not in within S seconds (default 10)")
    p.add_argument("--body-timeout", type=positive_float, default=60.0, metavar="S",
                   help="close a request whose body is not in within S seconds (default 60); idle kept-alive "
                        "connections close after 5 s")
    p.add_argument("--max-connections", type=positive_int, default=64, metavar="N",
                   help="answer 503 to new requests while N connections are open (default 64)")
    add_runtime_options(p, precision=False)
    p.set_defaults(func=cmd_serve)
