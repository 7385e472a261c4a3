"""The ``lookalike ui`` sub-command: start the Streamlit app on 127.0.0.1."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from lookalike.argtypes import add_runtime_options, fail, port, positive_float

from .safety import DEFAULT_MAX_UPLOAD_MB

APP = Path(__file__).resolve().parent / "app.py"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def build_command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line for these arguments."""
    mb = max(1, int(round(args.max_upload_mb)))
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
        "--theme.base", "light",
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
    if args.host not in LOCAL_HOSTS:
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


def add_commands(subparsers, train_subparsers=None, bench_subparsers=None) -> None:
    p = subparsers.add_parser("ui", help="open the web app (search, index, explore, compare)",
                              description="Start the Streamlit web app for an index folder, on 127.0.0.1 by default.")
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
    p.add_argument("--model", default=None, help="model preselected for a new index (default efficientnet_lite0)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_ui)
