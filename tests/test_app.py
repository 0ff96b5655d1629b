"""vid2vid app: the page driven in a real headless Chromium (Playwright with the system's chromium) against the
server started as `vid2vid app` would be, with a tiny trained export: your video, paint, live (Chromium's fake
camera), the API's refusals (paths, bad uploads, sizes) while another job completes, several tabs at once.

Without a browser these tests skip (saying why); under CI=true a missing browser fails them. Every request the
page makes must go to this machine (loopback): a test fails otherwise. With VID2VID_SCREENSHOTS=DIR the tests save
the pictures of the modes the README shows (docs/app_*.png).
"""

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest

from vid2vid import cli
from vid2vid.app.browser import app_server, find_chromium, launch, write_y4m
from vid2vid.config import load_config
from vid2vid.video_io import VideoWriter, probe

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 10  # of the uploaded video
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SCREENSHOTS = os.environ.get("VID2VID_SCREENSHOTS")


def _no_browser(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}: .ci/run installs chromium (apt-get install chromium)")
    pytest.skip(reason)


def moving_frames(n: int, h: int = 64, w: int = 64) -> list[np.ndarray]:
    """Colour stripes moving 2 px per frame to the right (RGB uint8)."""
    y, x = np.mgrid[:h, :w]
    return [np.stack([(x - 2 * t) % 32 * 8, y * 4, ((x - 2 * t) // 16 % 2) * 200 + 40], -1).astype(np.uint8)
            for t in range(n)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """runs/street/export: configs/tiny_video.yaml trained for 2 steps on its synthetic dataset (generated)."""
    from vid2vid.train import train

    tmp = tmp_path_factory.mktemp("app")
    train(load_config(ROOT / "configs" / "tiny_video.yaml",
                      [f"data.root={tmp / 'data'}", f"train.out_dir={tmp / 'runs' / 'street'}", "train.max_steps=2",
                       "train.checkpoint_every=2", "train.sample_every=100"]))
    return tmp / "runs"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A short synthetic video, a y4m of it for the fake camera, a text file and an empty one named .mp4, and a
    file over the upload limit."""
    tmp = tmp_path_factory.mktemp("inputs")
    frames = moving_frames(FRAMES)
    with VideoWriter(tmp / "stripes.mp4", fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    write_y4m(tmp / "camera.y4m", frames)
    (tmp / "notes.mp4").write_text("not a video\n")
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "huge.mp4").write_bytes(b"\0" * (2 << 20))
    return {p.stem: p for p in tmp.iterdir()}


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    """`vid2vid app --exports RUNS --port 0 --max-upload-mb 1` in its own process -> its URL. At the end it stops on
    SIGINT (Ctrl-C: exit status 130, as every vid2vid command) and its temporary folder (under TMPDIR) is gone."""
    tmpdir = tmp_path_factory.mktemp("tmpdir")
    with app_server(["--exports", str(runs), "--max-upload-mb", "1"],
                    {"OMP_NUM_THREADS": "1", "TMPDIR": str(tmpdir)}) as (url, proc):
        assert url.startswith("http://127.0.0.1:")
        assert any(tmpdir.iterdir()), "the uploads' temporary folder"
        yield url
    assert proc.returncode == 130, proc.stderr.read()
    assert not any(tmpdir.iterdir()), f"left behind: {list(tmpdir.iterdir())}"


@pytest.fixture(scope="module")
def browser(files):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -e '.[test]')")
    if find_chromium() is None:
        _no_browser("no chromium on PATH (apt-get install chromium)")
    with sync_playwright() as p:
        browser = launch(p, files["camera"])
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, server):
    """open_page() -> a new tab on the app; after the test, every request the tabs made went to loopback."""
    requests: list[str] = []
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.on("request", lambda r: requests.append(r.url))
        context.route("**/*", lambda route: route.continue_() if _local(route.request.url) else route.abort())
        page = context.new_page()
        page.on("websocket", lambda ws: requests.append(ws.url))
        page.goto(server)
        page.wait_for_selector("#export option", state="attached")
        contexts.append(context)
        return page

    yield open_page
    for context in contexts:
        context.close()
    outside = [u for u in requests if not _local(u)]
    assert not outside, f"the page made requests outside this machine: {outside}"
    assert requests, "no requests seen: the check would pass vacuously"


def _local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("blob", "data") or parsed.hostname in LOOPBACK


def _shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"app_{name}.png"), full_page=True)


def _job_id(page) -> str:
    return page.get_attribute("#download", "href").split("/")[3]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _post(url: str, fields: dict[str, str], file: Path | None = None) -> tuple[int, dict]:
    """A multipart POST (the page's FormData)."""
    boundary = "vid2vidtestboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{file.name}"\r\n'
                     "Content-Type: video/mp4\r\n\r\n".encode() + file.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    status, data = _get_request(request)
    return status, json.loads(data)


def _get_request(request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(server: str, job: str, seconds: float = 120) -> dict:
    """The job's status once it is done or failed."""
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        status = json.loads(_get(f"{server}/api/jobs/{job}")[1])
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job} not finished in {seconds} s: {status}")


def _frames_of(server: str, job: str, what: str, tmp_path: Path) -> int:
    status, data = _get(f"{server}/api/jobs/{job}/{what}")
    assert status == 200
    (tmp_path / f"{what}.mp4").write_bytes(data)
    return probe(tmp_path / f"{what}.mp4").n_frames


def test_video_mode_renders_an_upload_into_the_player_with_e_warp(open_page, server, files, tmp_path):
    page = open_page()
    info = page.text_content("#export-info")
    assert "video model" in info and "35 labels" in info and "2 training steps" in info, info
    page.set_input_files("#video-file", str(files["stripes"]))
    page.click("#render")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.text_content("#player-frames") == f"{FRAMES} frames"
    assert page.text_content("#panels") == "input | labels | output"
    e_warp = page.text_content("#ewarp")
    assert e_warp.startswith("E_warp ×1e3: output ") and "(DIS flow on the input)" in e_warp, e_warp
    assert float(page.get_attribute("#ewarp", "data-output")) > 0
    assert "frames/s" in page.text_content("#progress-text")
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=30_000)
    assert abs(page.evaluate("document.getElementById('player').duration") - FRAMES / 10) < 0.2  # plays, 10 fps
    job = _job_id(page)
    assert _frames_of(server, job, "player", tmp_path) == FRAMES
    assert _frames_of(server, job, "video", tmp_path) == FRAMES
    width = probe(tmp_path / "player.mp4").width
    assert width == 3 * probe(tmp_path / "video.mp4").width  # input | labels | output
    status, metrics = _get(f"{server}/api/jobs/{job}/metrics")
    assert status == 200 and len(json.loads(metrics)["pairs_output"]) == FRAMES - 1
    page.click("#play")
    _shot(page, "video")


def test_paint_mode_turns_a_painted_map_into_a_clip(open_page):
    page = open_page()
    page.click("#tab-paint")
    page.click("#swatch-7")
    page.click("#tool-fill")
    page.click("#paint-canvas", position={"x": 10, "y": 10})
    page.click("#swatch-26")
    page.click("#tool-brush")
    box = page.locator("#paint-canvas").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 250)
    page.mouse.down()
    page.mouse.move(box["x"] + 250, box["y"] + 200, steps=8)
    page.mouse.up()
    painted = page.evaluate("Array.from(new Set(paint.ids)).sort((a, b) => a - b)")
    assert painted == [7, 26]
    page.select_option("#move", "zoom")
    page.fill("#paint-frames", "6")
    page.click("#paint-render")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.text_content("#player-frames") == "6 frames"
    assert page.text_content("#panels") == "labels | output"
    _shot(page, "paint")


def test_live_mode_with_the_fake_camera_and_a_video_file_returns_frames(open_page, files):
    page = open_page()
    page.click("#tab-live")
    page.click("#live-start")
    page.wait_for_function("Number(document.getElementById('live-stats').dataset.frames || 0) >= 5", timeout=60_000)
    stats = page.text_content("#live-stats")
    assert "frames/s" in stats and "latency" in stats, stats
    assert page.evaluate("document.getElementById('live-output').naturalWidth") == 128  # labels | output, 64 each
    _shot(page, "live")
    page.click("#live-stop")
    page.select_option("#live-source", "file")  # a chosen video playing in real time instead of the camera
    page.set_input_files("#live-file", str(files["stripes"]))
    page.click("#live-start")
    page.wait_for_function("live.received >= 3", timeout=60_000)
    assert page.evaluate("document.getElementById('live-input').currentSrc").startswith("blob:")
    page.click("#live-stop")


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/static/%2Fetc%2Fpasswd",
    "/static/%2e%2e%2fserver.py", "/%2e%2e/%2e%2e/etc/passwd", "/api/jobs/..%2F..%2Fetc%2Fpasswd/video",
    "/api/jobs/%2Fetc%2Fpasswd", "/api/jobs/0123456789abcdef/video", "/static/exports.py", "//etc/passwd"])
def test_paths_in_requests_are_refused(server, path):
    status, body = _get(server + path)
    assert 400 <= status < 500 and b"root:" not in body


def test_refusals_while_another_job_completes(server, runs, files, open_page):
    """A job renders a dataset sequence while: traversal names of exports and sequences, a text file, an empty
    file and a file over the upload limit are refused with the CLI's one-line messages; then the job is done."""
    export = "street-export"
    status, job = _post(f"{server}/api/jobs", {"export": export, "sequence": "test_A/seq_0000"})
    assert status == 201, job
    for fields in ({"export": "../../etc", "sequence": "test_A/seq_0000"}, {"export": str(runs / "street" / "export")},
                   {"export": export, "sequence": "../../../etc"}, {"export": export, "sequence": "/etc/passwd"},
                   {"export": export, "sequence": "test_A%2F..%2F..%2Fconfig.yaml"}):
        status, body = _post(f"{server}/api/jobs", fields)
        assert 400 <= status < 500 and "error" in body, (fields, body)
    for name in ("notes", "empty"):
        status, body = _post(f"{server}/api/jobs", {"export": export}, files[name])
        assert status == 400 and body["error"].startswith(f"{name}.mp4: cannot open the video"), body
    status, body = _post(f"{server}/api/jobs", {"export": export}, files["huge"])
    assert status == 413 and "upload limit of 1 MB" in body["error"]
    playlist = files["stripes"].parent / "playlist.m3u8"  # FFmpeg would read the local file it names
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{files['stripes']}\n#EXT-X-ENDLIST\n")
    status, body = _post(f"{server}/api/jobs", {"export": export}, playlist)
    assert status == 400 and body["error"].startswith("playlist.m3u8: not a video file name"), body
    page = open_page()  # the page shows the one line, and the server keeps serving
    page.set_input_files("#video-file", str(files["notes"]))
    page.click("#render")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert page.text_content("#error").startswith("notes.mp4: cannot open the video")
    _shot(page, "error")
    status = _wait(server, job["id"])
    assert status["state"] == "done" and status["frames"] == 8, status  # the dataset's test sequence


def test_two_tabs_render_at_once_without_mixing(open_page, files):
    first, second = open_page(), open_page()
    first.set_input_files("#video-file", str(files["stripes"]))
    first.fill("#max-frames", "7")
    second.select_option("#sequence", "test_A/seq_0000")
    first.click("#render")
    second.click("#render")
    for page in (first, second):
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert first.text_content("#player-frames") == "7 frames"
    assert second.text_content("#player-frames") == "8 frames"
    assert _job_id(first) != _job_id(second)


def test_app_command_line_errors(tmp_path, capsys):
    assert cli.main(["app", "--exports", str(tmp_path / "nothing")]) == 2
    assert "--exports" in capsys.readouterr().err
    assert cli.main(["app", "--exports", str(tmp_path)]) == 2
    assert "no exported model" in capsys.readouterr().err


def test_another_host_warns(runs):
    with app_server(["--exports", str(runs), "--host", "0.0.0.0"], {"OMP_NUM_THREADS": "1"}) as (url, proc):
        assert url.startswith("http://0.0.0.0:")
    warning = proc.stderr.read()
    assert "warning: --host 0.0.0.0" in warning and "localhost or https" in warning, warning


def test_live_socket_keeps_only_the_newest_frame(server):
    """Six frames sent at once: the server renders the newest whenever it is free (the first one or two, when it
    took them before the others arrived, then the last) and drops the rest (no queue); an unknown export gets its
    one-line error."""
    from websockets.sync.client import connect

    url = server.replace("http://", "ws://") + "/api/live"
    with connect(url) as socket:
        socket.send(json.dumps({"export": "../street"}))
        assert json.loads(socket.recv())["error"].startswith("export '../street': no such export id")
    frames = [cv2.imencode(".jpg", f)[1].tobytes() for f in moving_frames(6)]
    with connect(url) as socket:
        socket.send(json.dumps({"export": "street-export"}))
        assert json.loads(socket.recv()) == {"ready": True, "size": [64, 64], "labels": "kmeans:8"}
        for frame in frames:
            socket.send(frame)
        shown = []
        while not shown or shown[-1]["seq"] < 5:
            shown.append(json.loads(socket.recv()))
            assert cv2.imdecode(np.frombuffer(socket.recv(), np.uint8), cv2.IMREAD_COLOR).shape == (64, 128, 3)
    seqs = [s["seq"] for s in shown]  # e.g. [0, 5], [1, 5] or [5]: what was newest when the renderer was free
    assert seqs == sorted(set(seqs)) and seqs[-1] == 5 and len(seqs) < 6, shown
    assert shown[-1]["dropped"] == 6 - len(seqs), shown


@pytest.mark.parametrize("labels, move, expected", [
    ({"height": 64, "width": 64, "data": "AAAA"}, "pan", "labels.data: 3 ids for 64x64"),
    ({"height": 8, "width": 8, "data": base64.b64encode(bytes([40] * 64)).decode()}, "pan", "labels: id 40, but"),
    ({"height": 8, "width": 8, "data": base64.b64encode(bytes(64)).decode()}, "../../etc", "move '../../etc'"),
    ("/etc/passwd", "pan", "labels: send {height, width"),
])
def test_paint_refuses_bad_paintings(server, labels, move, expected):
    body = json.dumps({"export": "street-export", "labels": labels, "move": move, "frames": 4}).encode()
    status, data = _get_request(urllib.request.Request(f"{server}/api/paint", body,
                                                       {"Content-Type": "application/json"}))
    assert status == 400 and json.loads(data)["error"].startswith(expected), data


def test_other_origins_cannot_post_or_open_the_socket(server):
    """A page elsewhere on the web cannot use this local server: its POSTs and WebSockets carry its Origin."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    body = json.dumps({"export": "street-export"}).encode()
    status, data = _get_request(urllib.request.Request(f"{server}/api/paint", body, {
        "Content-Type": "application/json", "Origin": "http://evil.example"}))
    assert status == 403 and b"evil.example" in data
    with pytest.raises(InvalidStatus):
        connect(server.replace("http://", "ws://") + "/api/live", origin="http://evil.example")


def test_a_rebound_domain_cannot_read_the_loopback_server(server):
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends Host (and Origin)
    evil.example; a loopback server refuses every request naming another host, GETs and the socket too."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port = urlparse(server).port
    for path in ("/api/exports", "/"):
        status, data = _get_request(urllib.request.Request(f"{server}{path}", headers={"Host": f"evil.example:{port}"}))
        assert status == 403 and b"evil.example" in data
    with pytest.raises(InvalidStatus, match="403"):  # the socket named evil.example, connected to this server
        connect(f"ws://evil.example:{port}/api/live", sock=socket.create_connection(("127.0.0.1", port)))
    assert _get(f"{server.replace('127.0.0.1', 'localhost')}/api/exports")[0] == 200


def test_malformed_requests_get_one_json_line(server):
    """What the page reads on any refusal: {"error": ...}, for a body that is no JSON, an unknown route and a
    max_frames that is not a plain number."""
    status, data = _get_request(urllib.request.Request(f"{server}/api/paint", b"{not json", {
        "Content-Type": "application/json"}))
    assert status == 400 and json.loads(data)["error"].startswith("send a JSON object"), data
    status, data = _get(f"{server}/api/nothing")
    assert status == 404 and "/api/nothing" in json.loads(data)["error"], data
    status, body = _post(f"{server}/api/jobs", {"export": "street-export", "sequence": "test_A/seq_0000",
                                                 "max_frames": "\u00b2"})
    assert status == 400 and "max_frames" in body["error"], body
