"""The ``lookalike ui`` sub-command: start the Streamlit app on 127.0.0.1."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .safety import DEFAULT_MAX_UPLOAD_MB

APP = Path(__file__).resolve().parent / "app.py"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
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
    if args.read_only:
        cmd.append("--read-only")
    if args.model:
        cmd += ["--model", args.model]
    return cmd


def cmd_ui(args: argparse.Namespace) -> int:
    if args.port < 0 or args.port > 65535:
        print(f"lookalike ui: --port {args.port}: not a port number", file=sys.stderr)
        return 2
    if args.max_upload_mb <= 0:
        print("lookalike ui: --max-upload-mb must be positive", file=sys.stderr)
        return 2
    db = Path(args.db).expanduser()
    if db.exists() and not db.is_dir():
        print(f"lookalike ui: {db}: exists and is not a folder", file=sys.stderr)
        return 2
    if args.host not in LOCAL_HOSTS:
        print(f"lookalike ui: warning: serving on {args.host}: anyone who can reach this address can search your "
              f"indexed images{'' if args.read_only else ' and index folders of this computer (add --read-only)'}",
              file=sys.stderr)
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
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else exposes the app to the network)")
    p.add_argument("--read-only", action="store_true", help="disable building/updating the index from the browser")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--model", default=None, help="model preselected for a new index (default efficientnet_lite0)")
    p.set_defaults(func=cmd_ui)
