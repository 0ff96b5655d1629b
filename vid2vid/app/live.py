"""Live mode of `vid2vid app`: camera frames from the page -> labels -> VideoRenderer.step -> frames back.

Protocol on the WebSocket /api/live: the page sends one JSON text message {"export": id, "labels": spec or "",
"size": "HxW" or ""}; the server answers {"ready": true, "size": [h, w], "labels": spec} (or {"error": line} and
closes). Then the page sends frames as JPEG bytes, numbered 0, 1, 2, ... in the order sent; for each frame it
renders, the server sends {"seq": n, "fps": achieved frames/s, "dropped": frames skipped, "step_ms": ...} and then
the JPEG of labels | output. Frames that arrive while one renders replace each other: only the newest waits, so the
latency stays one frame at most, whatever the camera's rate (the page sees the dropped count).

Label models only (edges, k-means, label maps by k-means): face and pose models detect landmarks / people per frame,
which live mode does not do. A video model's first frames: its model.first_frame (an image model's), or mid-grey
(zeros) where that is real.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from vid2vid.app.exports import ExportInfo
from vid2vid.config import parse_size
from vid2vid.data.prepare import FrameLabeller, fit_colour_clusters, load_labeller, parse_labels, resized
from vid2vid.errors import UserError
from vid2vid.imaging import label_palette
from vid2vid.render import VideoRenderer

JPEG_QUALITY = 85


@dataclass
class Mailbox:
    """The newest frame not yet rendered (one slot: a newer frame replaces it and counts as dropped)."""

    frame: tuple[int, bytes] | None = None
    dropped: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, seq: int, data: bytes) -> None:
        self.dropped += self.frame is not None
        self.frame = (seq, data)
        self.ready.set()

    async def take(self) -> tuple[int, bytes]:
        await self.ready.wait()
        self.ready.clear()
        frame, self.frame = self.frame, None
        return frame


class LiveSession:
    """One page's live stream: its own renderer and labeller."""

    def __init__(self, export: ExportInfo, labels: str, size: str):
        if export.cfg.data.condition != "labels":
            raise UserError(f"{export.id}: a {export.cfg.data.condition} model; live mode takes label models (edges, "
                            "k-means, label maps), not face or pose models")
        self.export, self.spec = export, labels or export.default_labels
        self.size = parse_size(size, "size") if size else export.cfg.data.load_size
        parse_labels(self.spec)  # the CLI's error for a bad spec
        self.labeller: FrameLabeller | None = None
        self.renderer = VideoRenderer(export.path, device="auto", precision=None,
                                      first_frame=export.first_frame_without_real)
        self.palette = label_palette(export.cfg.data.label_nc)
        self.frames, self.began = 0, time.perf_counter()

    def make_labeller(self, rgb: np.ndarray) -> FrameLabeller:
        """edges, or kmeans with the dataset's centres, else centres fitted on the first frame."""
        if self.export.centres is not None and self.spec.startswith("kmeans"):
            return load_labeller(self.export.centres, self.spec, self.size)
        if self.spec.startswith("kmeans"):
            return FrameLabeller(self.spec, self.size, fit_colour_clusters([resized(rgb, self.size)],
                                                                           parse_labels(self.spec)[1]))
        return FrameLabeller(self.spec, self.size)

    def step(self, jpeg: bytes) -> tuple[bytes, float]:
        """A camera JPEG -> (the JPEG of labels | output, the milliseconds of VideoRenderer.step)."""
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError("live: a frame that is not a JPEG or PNG image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.labeller = self.labeller or self.make_labeller(rgb)
        ids = self.labeller(rgb)[1].astype(np.int64)
        began = time.perf_counter()
        out = self.renderer.step(ids, None)  # uint8 [H,W,3]
        step_ms = (time.perf_counter() - began) * 1e3
        self.frames += 1
        picture = np.concatenate([self.palette[ids], out], axis=1)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return encoded.tobytes(), step_ms

    @property
    def fps(self) -> float:
        return self.frames / max(time.perf_counter() - self.began, 1e-9)


async def open_session(socket: WebSocket, exports: dict[str, ExportInfo]) -> LiveSession | None:
    """The first message -> a LiveSession, or the error line sent and the socket closed."""
    try:
        request = json.loads(await socket.receive_text())
        export_id = request.get("export") if isinstance(request, dict) else None
        if not isinstance(export_id, str) or export_id not in exports:
            raise UserError(f"export {export_id!r}: no such export id; GET /api/exports lists them")
        session = await run_in_threadpool(LiveSession, exports[export_id], str(request.get("labels") or ""),
                                          str(request.get("size") or ""))
    except (UserError, ValueError, KeyError) as e:
        await socket.send_json({"error": str(e)})
        await socket.close(code=1008)
        return None
    await socket.send_json({"ready": True, "size": list(session.size), "labels": session.spec})
    return session


async def live_socket(socket: WebSocket, exports: dict[str, ExportInfo]) -> None:
    await socket.accept()
    session = await open_session(socket, exports)
    if session is None:
        return
    mailbox = Mailbox()

    async def receive() -> None:
        seq = 0
        while True:
            mailbox.put(seq, await socket.receive_bytes())
            seq += 1

    receiver = asyncio.create_task(receive())
    try:
        while not receiver.done():
            take = asyncio.create_task(mailbox.take())
            await asyncio.wait({take, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not take.done():
                take.cancel()
                break
            seq, jpeg = take.result()
            picture, step_ms = await run_in_threadpool(session.step, jpeg)
            await socket.send_json({"seq": seq, "fps": round(session.fps, 3), "dropped": mailbox.dropped,
                                    "step_ms": round(step_ms, 2)})
            await socket.send_bytes(picture)
    except UserError as e:
        await socket.send_json({"error": str(e)})
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()
        if receiver.done() and not receiver.cancelled():
            receiver.exception()  # the page went away (WebSocketDisconnect): retrieved, not logged
