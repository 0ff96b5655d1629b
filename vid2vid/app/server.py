"""The web server of `vid2vid app`: one static page and a small JSON API (Starlette on uvicorn).

    GET  /                         the page (every asset from vid2vid/app/static: nothing from elsewhere)
    GET  /api/exports              the exports found: id, kind, model, input, labels, steps, size, palette, sequences
    POST /api/jobs                 multipart: export (an id), video (a file) or sequence (a listed name), options
                                   (labels, landmarks, first_frame, precision, size, max_frames) -> {"id": job id}
    GET  /api/jobs/{id}            state, frames done, total, frames/s, error line
    GET  /api/jobs/{id}/video      the rendered mp4 (output only)
    GET  /api/jobs/{id}/player     input | labels | output in one mp4
    GET  /api/jobs/{id}/metrics    E_warp of the output and of the input, per frame pair and mean
    POST /api/paint                JSON: export, a painted label map, a camera move -> {"id": job id}
    WS   /api/live                 live mode (vid2vid.app.live)

Requests name exports, jobs and static files by id or by name in a fixed list; a path in a request is never
opened, so `..`, absolute or URL-encoded paths get 4xx. Uploads are limited in size and written into the app's
temporary folder (removed on exit). POSTs and the WebSocket from pages of another origin are refused (403).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from vid2vid.app.exports import ExportInfo
from vid2vid.app.jobs import PRECISIONS, Job, Jobs, user_line
from vid2vid.app.live import live_socket
from vid2vid.app.paint import MOVES, paint_clip
from vid2vid.config import parse_size
from vid2vid.errors import UserError
from vid2vid.render import RenderOptions
from vid2vid.video_io import probe

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
JOB_ID = re.compile(r"[0-9a-f]{16}")
FORM_OPTIONS = ("labels", "landmarks", "first_frame", "precision", "size", "max_frames")
LANDMARKS = ("dlib", "mediapipe")
CHUNK = 1 << 20
DRAIN = 4  # an oversize body up to this many times the limit is read (and dropped) before the 413


class Refused(Exception):
    """A request the server answers with a 4xx status and a one-line error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(request: Request, exc: Exception) -> JSONResponse:
    """Every refusal as the page reads it: {"error": one line}; Starlette's own (a malformed form: 400, an unknown
    route: 404) too."""
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": f"{request.url.path}: {exc.detail}"}, status_code=exc.status_code)
    status = exc.status if isinstance(exc, Refused) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


class App:
    """The state one server holds: the exports, the jobs, the upload limit."""

    def __init__(self, exports: dict[str, ExportInfo], workdir: Path, max_upload: int, workers: int = 2):
        self.exports, self.workdir, self.max_upload = exports, workdir, max_upload
        self.jobs = Jobs(workdir, workers)

    def export(self, export_id: object) -> ExportInfo:
        if not isinstance(export_id, str) or export_id not in self.exports:
            raise Refused(404, f"export {export_id!r}: no such export id; GET /api/exports lists them")
        return self.exports[export_id]

    def job(self, request: Request) -> Job:
        job_id = request.path_params["job"]
        job = self.jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise Refused(404, f"job {job_id!r}: no such job")
        return job

    def options(self, form, export: ExportInfo, inputs: Path) -> RenderOptions:
        """RenderOptions from the form's fields, as vid2vid render's flags take them."""
        text = {k: str(form.get(k) or "").strip() for k in FORM_OPTIONS}
        if text["precision"] and text["precision"] not in PRECISIONS:
            raise Refused(400, f"precision {text['precision']!r}: one of {', '.join(PRECISIONS)}")
        if text["landmarks"] and text["landmarks"] not in LANDMARKS:
            raise Refused(400, f"landmarks {text['landmarks']!r}: one of {', '.join(LANDMARKS)} (a face model's video)")
        if text["max_frames"] and not (text["max_frames"].isascii() and text["max_frames"].isdecimal()):
            raise Refused(400, f"max_frames {text['max_frames']!r}: a whole number of frames")
        video = inputs.is_file()
        return RenderOptions.of(
            labels=(text["labels"] or export.default_labels) if video else None,
            landmarks=text["landmarks"] or None if video and export.input_kind == "face" else None,
            centres=export.centres if video and export.input_kind == "kmeans" else None,
            size=parse_size(text["size"], "size") if text["size"] else None,
            first_frame=self.first_frame(text["first_frame"], inputs),
            precision=text["precision"] or None, max_frames=int(text["max_frames"]) if text["max_frames"] else None,
            frames_dir=True, side_by_side=True, progress=False, overwrite=True)

    def first_frame(self, choice: str, inputs: Path) -> str | None:
        """'' (the model's model.first_frame), zeros, real (the input's own frames) or image-model:<export id>."""
        if choice in ("", "zeros"):
            return choice or None
        if choice == "real":
            return f"real:{inputs}" if inputs.is_file() else None  # a sequence: its <phase>_B frames by default
        if choice.startswith("image-model:"):
            return f"image-model:{self.export(choice.removeprefix('image-model:')).path}"
        raise Refused(400, f"first_frame {choice!r}: leave it empty (the model's default), or zeros, real or "
                      "image-model:<export id>")

    async def save_upload(self, upload: UploadFile, folder: Path) -> Path:
        """The upload, under its own (sanitised) name in folder/upload/, refused past the size limit and unless its
        name is a video file's (VIDEO_SUFFIXES)."""
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(upload.filename or "video").name).lstrip(".") or "video"
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            raise Refused(400, f"{name}: not a video file name; upload one of {', '.join(sorted(VIDEO_SUFFIXES))}")
        path = folder / "upload" / name
        path.parent.mkdir()
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > self.max_upload:
                    raise Refused(413, f"{name}: larger than the upload limit of {self.max_upload >> 20} MB; "
                                  "cut the video or start vid2vid app with a larger --max-upload-mb")
                out.write(chunk)
        return path

    def start(self, job_id: str, folder: Path, export: ExportInfo, inputs: Path, name: str,
              options: RenderOptions) -> Job:
        """Count the input's frames (a file that is no video: the CLI's one-line error) and queue the job."""
        try:
            n = probe(inputs).n_frames
        except UserError as e:
            raise UserError(user_line(e, folder)) from None
        total = min(n - options.start, options.max_frames or n)
        return self.jobs.submit(Job(job_id, export, inputs, name, options, folder, total))

    async def create_job(self, request: Request) -> JSONResponse:
        await self.check_length(request)
        async with request.form(max_files=1, max_fields=16) as form:
            export = self.export(form.get("export"))
            job_id, folder = self.jobs.folder()
            try:
                inputs, name = await self.job_input(form, export, folder)
                options = self.options(form, export, inputs)
                job = await run_in_threadpool(self.start, job_id, folder, export, inputs, name, options)
            except BaseException:  # a refusal, or the client gone mid-upload
                shutil.rmtree(folder, ignore_errors=True)  # a refused job leaves nothing behind
                raise
        return JSONResponse({"id": job.id}, status_code=201)

    async def job_input(self, form, export: ExportInfo, folder: Path) -> tuple[Path, str]:
        """(the input, its name for the user): the uploaded video, or a sequence of the export's dataset."""
        upload, sequence = form.get("video"), form.get("sequence")
        if isinstance(upload, UploadFile):
            path = await self.save_upload(upload, folder)
            return path, path.name
        if isinstance(sequence, str) and sequence:
            return export.sequence_path(sequence), sequence
        raise Refused(400, "give a video file (field video) or a dataset sequence (field sequence)")

    async def check_length(self, request: Request) -> None:
        """A request without a Content-Length, or over the upload limit, refused before its body is read. A body of up
        to DRAIN x the limit is read and dropped first: a server that closes with the body unread resets the
        connection, and the client may then lose the 413 with it."""
        length = request.headers.get("content-length")
        if length is None or not (length.isascii() and length.isdecimal()):
            raise Refused(411, "send the upload with a Content-Length")
        if int(length) > self.max_upload + CHUNK:
            if int(length) <= DRAIN * (self.max_upload + CHUNK):
                async for _ in request.stream():
                    pass
            raise Refused(413, f"the request ({int(length) >> 20} MB) is larger than the upload limit of "
                          f"{self.max_upload >> 20} MB; cut the video or start vid2vid app with a larger "
                          "--max-upload-mb")

    async def create_paint_job(self, request: Request) -> JSONResponse:
        await self.check_length(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Refused(400, "send a JSON object: export, labels, move, frames")
        export = self.export(body.get("export"))
        move = body.get("move", "pan")
        if move not in MOVES:
            raise Refused(400, f"move {move!r}: one of {', '.join(MOVES)}")
        job_id, folder = self.jobs.folder()
        try:
            inputs = await run_in_threadpool(paint_clip, body.get("labels"), export, move, body.get("frames", 16),
                                             folder)
            options = RenderOptions.of(first_frame=export.first_frame_without_real, frames_dir=True,
                                       side_by_side=True, progress=False, overwrite=True)
            job = await run_in_threadpool(self.start, job_id, folder, export, inputs, "painting", options)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return JSONResponse({"id": job.id}, status_code=201)

    async def list_exports(self, request: Request) -> JSONResponse:
        return JSONResponse([e.describe() for e in self.exports.values()])

    async def job_status(self, request: Request) -> JSONResponse:
        return JSONResponse(self.job(request).status())

    async def job_metrics(self, request: Request) -> JSONResponse:
        job = self.job(request)
        if job.state != "done":
            raise Refused(409, f"job {job.id} is {job.state}; metrics come when it is done")
        return JSONResponse(job.metrics)

    def job_file(self, request: Request, name: str, download: str | None = None) -> FileResponse:
        job = self.job(request)
        if job.state != "done":
            raise Refused(409, f"job {job.id} is {job.state}; its video comes when it is done")
        return FileResponse(job.file(name), media_type="video/mp4", filename=download)

    async def job_video(self, request: Request) -> FileResponse:
        return self.job_file(request, "output.mp4", f"{Path(self.job(request).name).stem}_vid2vid.mp4")

    async def job_player(self, request: Request) -> FileResponse:
        return self.job_file(request, "player.mp4")

    async def static(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in STATIC_TYPES:
            raise Refused(404, f"{name!r}: no such page")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[name],
                        headers={"Cache-Control": "no-store"})


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}
# what an upload may be called: FFmpeg picks its demuxer by the name too, and some (HLS .m3u8, concat) read other
# files of this machine named inside the upload
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".y4m"}


def host_name(host: str) -> str:
    """A Host header's name without its port: 127.0.0.1:7860 -> 127.0.0.1, [::1]:7860 -> [::1]."""
    host = host.strip().lower()
    return host if host.endswith("]") else host.rsplit(":", 1)[0]


class SameOrigin:
    """Refuses what changes state (POST, the WebSocket) when a page of another origin sends it: browsers let any web
    page post forms to, or open a WebSocket on, a server on this machine, and send the page's Origin with both.
    hosts (a loopback server's names): every request whose Host header names another host is refused, so a page
    whose domain was re-pointed at 127.0.0.1 (DNS rebinding: then its Origin and Host agree) reads nothing."""

    def __init__(self, app, hosts: set[str] | None = None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket") and self.hosts is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.hosts:
                await self._refuse(scope, receive, send, f"host {host!r}: this server answers to 127.0.0.1, "
                                   "localhost or [::1] only; open it at the address it printed")
                return
        if scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] == "POST"):
            headers = dict(scope["headers"])
            origin, host = headers.get(b"origin"), headers.get(b"host", b"")
            if origin is not None and urlparse(origin.decode("latin-1")).netloc != host.decode("latin-1"):
                message = f"origin {origin.decode('latin-1')}: not this page's; use the page this server serves"
                await self._refuse(scope, receive, send, message)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await JSONResponse({"error": message}, status_code=403)(scope, receive, send)


def build_app(state: App, hosts: set[str] | None = LOOPBACK_NAMES) -> Starlette:
    """The server's routes; hosts: the Host names it answers to (None: any, for --host other than loopback)."""
    routes = [
        Route("/", state.static),
        Route("/static/{name}", state.static),
        Route("/api/exports", state.list_exports),
        Route("/api/jobs", state.create_job, methods=["POST"]),
        Route("/api/jobs/{job}", state.job_status),
        Route("/api/jobs/{job}/video", state.job_video),
        Route("/api/jobs/{job}/player", state.job_player),
        Route("/api/jobs/{job}/metrics", state.job_metrics),
        Route("/api/paint", state.create_paint_job, methods=["POST"]),
        WebSocketRoute("/api/live", lambda socket: live_socket(socket, state.exports)),
    ]
    return Starlette(routes=routes, exception_handlers={Refused: _error, UserError: _error, HTTPException: _error},
                     middleware=[Middleware(SameOrigin, hosts=hosts)])
