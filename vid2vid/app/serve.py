"""serve(): what `vid2vid app` runs."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn

from vid2vid.app.exports import find_exports
from vid2vid.app.server import LOOPBACK_NAMES, App, build_app
from vid2vid.errors import UserError

log = logging.getLogger("vid2vid")


class Server(uvicorn.Server):
    """uvicorn's server, remembering the first signal that stopped it: uvicorn raises it again on its way out, but
    asyncio.run can swallow that (then the exit status was 0, not Ctrl-C's 130)."""

    signum = 0

    def handle_exit(self, sig: int, frame) -> None:
        self.signum = self.signum or sig
        super().handle_exit(sig, frame)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), or a UserError naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror}); choose another "
                        "--port (0: any free one)") from None
    sock.listen(64)
    return sock


def serve(exports: list[str], host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = 200,
          workers: int = 2) -> None:
    """Find the exports, listen, print the URL and serve until Ctrl-C; the uploads' temporary folder goes at exit."""
    folders = [Path(f) for f in exports]
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"--exports {folder}: no such folder; pass a folder holding exported models (such as "
                            "runs/, where vid2vid train writes <train.out_dir>/export)")
    found = find_exports(folders)
    if not found:
        raise UserError(f"--exports {' '.join(exports)}: no exported model (config.yaml + generator.safetensors) "
                        "inside; train one (vid2vid train) or pass the folder that holds one")
    if max_upload_mb < 1:
        raise UserError(f"--max-upload-mb {max_upload_mb}: must be >= 1")
    if not is_loopback(host):
        print(f"vid2vid app: warning: --host {host}: anyone who can reach this address can use the models and upload "
              "files; browsers give the camera (live mode) only to localhost or https pages, so live mode's webcam "
              "works only in a browser on this machine at http://127.0.0.1", file=sys.stderr, flush=True)
    sock = bind(host, port)
    with tempfile.TemporaryDirectory(prefix="vid2vid-app-", ignore_cleanup_errors=True) as workdir:
        state = App(found, Path(workdir), max_upload_mb << 20, workers)
        name = f"[{host}]" if ":" in host else host
        print(f"vid2vid app: {len(found)} exports; serving http://{name}:{sock.getsockname()[1]}/ (Ctrl-C stops)",
              flush=True)
        try:
            app = build_app(state, LOOPBACK_NAMES if is_loopback(host) else None)
            server = Server(uvicorn.Config(app, log_level="warning"))
            server.run(sockets=[sock])
        finally:
            state.jobs.close()
            sock.close()
    if server.signum == signal.SIGINT:  # uvicorn re-raises it, but asyncio may swallow that on its way out
        raise KeyboardInterrupt
    if server.signum:
        raise SystemExit(128 + server.signum)
