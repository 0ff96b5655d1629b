"""Live mode's speed: frames/s and latency of `vid2vid app`'s live mode through the real page (headless Chromium,
its fake camera playing a 128x256 clip) against VideoRenderer.step alone in the same run, for the demo models.

    python tools/bench.py app [--exports DIR] [--seconds 20] [--threads 2]

The models: configs/demo.yaml (vid2vid) and configs/demo_image.yaml (pix2pixHD) with random weights (speed does not
depend on the weights), or the label-model exports under --exports (e.g. runs/demo/20min). Both sides label the
camera frames the same way (the model's default: k-means colour clusters fitted on the first frame) at the model's
load size (128x256). Step alone: median frames/s of VideoRenderer.step over the frames after 3 warm-up steps, in
this process. Live: frames shown by the page per second over --seconds after 3 frames of warm-up; latency: the
page's time from sending a frame to showing its result (median, 90th percentile); the server renders the newest
frame and drops the others (the page sends up to 30 frames/s). The page's overhead is step-alone frames/s over
live frames/s. Server, browser and this process share the CPU, as they would on a user's machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench import figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vid2vid.app.browser import app_server, find_chromium, launch, write_y4m  # noqa: E402
from vid2vid.app.exports import ExportInfo, find_exports  # noqa: E402
from vid2vid.app.live import LiveSession  # noqa: E402
from vid2vid.checkpoint import export_generator  # noqa: E402
from vid2vid.config import load_config  # noqa: E402
from vid2vid.models.build import build_generator  # noqa: E402

CONFIGS = {"demo_video": "configs/demo.yaml", "demo_image": "configs/demo_image.yaml"}


def camera_frames(n: int = 60, h: int = 128, w: int = 256) -> list[np.ndarray]:
    """A street-like moving picture: sky, buildings of a few colours sliding left, a road (RGB uint8)."""
    y, x = np.mgrid[:h, :w]
    frames = []
    for t in range(n):
        block = ((x + 4 * t) // 40) % 4
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:] = (120, 170, 230)
        colours = np.array([(150, 120, 100), (90, 90, 110), (170, 160, 140), (60, 120, 60)], np.uint8)
        building = (y > 20 + 10 * (block % 2)) & (y < 90)
        rgb[building] = colours[block[building]]
        rgb[y >= 90] = (80, 80, 85)
        frames.append(rgb)
    return frames


def random_exports(folder: Path) -> Path:
    for name, config in CONFIGS.items():
        cfg = load_config(ROOT / config)
        torch.manual_seed(0)
        export_generator(build_generator(cfg).state_dict(), cfg, folder / name / "export")
    return folder


def step_alone(export: ExportInfo, frames: list[np.ndarray], warm: int = 3) -> dict:
    """VideoRenderer.step alone on the frames' labels (made by live mode's own labeller): frames/s and ms."""
    session = LiveSession(export, "", "")
    session.labeller = session.make_labeller(frames[0])
    labels = [session.labeller(f)[1].astype(np.int64) for f in frames]
    times = []
    for i, ids in enumerate(labels):
        began = time.perf_counter()
        session.renderer.step(ids, None)
        if i >= warm:
            times.append(time.perf_counter() - began)
    return {"fps": 1 / statistics.median(times), "ms": 1e3 * statistics.median(times)}


def live_through_page(url: str, export_id: str, camera: Path, seconds: float) -> dict:
    """Frames/s and latency of live mode, measured by the page itself."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, camera)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#export option", state="attached")
        page.select_option("#export", export_id)
        page.click("#tab-live")
        page.click("#live-start")
        page.wait_for_function("live.received >= 3", timeout=120_000)
        first, began = page.evaluate("[live.received, live.latencies.length]"), time.perf_counter()
        time.sleep(seconds)
        last, elapsed = page.evaluate("[live.received, live.latencies]"), time.perf_counter() - began
        dropped = page.text_content("#live-stats")
        browser.close()
    latencies = sorted(last[1][first[1]:])
    return {"fps": (last[0] - first[0]) / elapsed, "latency_ms": statistics.median(latencies),
            "latency_p90_ms": latencies[int(0.9 * (len(latencies) - 1))], "stats": dropped}


def measure(exports_dir: Path, seconds: float, threads: int) -> dict:
    torch.set_num_threads(threads)
    exports = {k: e for k, e in find_exports([exports_dir]).items() if e.cfg.data.condition == "labels"}
    frames = camera_frames()
    results: dict = {"reference": "VideoRenderer.step alone, same frames and labels, this process",
                     "threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        camera = write_y4m(Path(tmp) / "camera.y4m", frames, fps=30)
        alone = {k: step_alone(e, frames) for k, e in exports.items()}
        with app_server(["--exports", str(exports_dir)], {"OMP_NUM_THREADS": str(threads)}) as (url, _):
            for key, export in exports.items():
                live = live_through_page(url, key, camera, seconds)
                size = f"{export.cfg.data.load_size[0]}x{export.cfg.data.load_size[1]}"
                results[f"{key} ({export.cfg.model.name}, {size})"] = {
                    "live": figure(round(live["fps"], 2), "frames/s", round(alone[key]["fps"], 2),
                                   "VideoRenderer.step alone"),
                    "latency median": figure(round(live["latency_ms"]), "ms"),
                    "latency p90": figure(round(live["latency_p90_ms"]), "ms"),
                    "step alone": figure(round(alone[key]["ms"], 1), "ms per frame"),
                    "page": live["stats"]}
    return results


def run(quick: bool = True) -> dict:
    if find_chromium() is None:
        return {"error": "no chromium on PATH (apt-get install chromium)"}
    with tempfile.TemporaryDirectory() as tmp:
        return measure(random_exports(Path(tmp)), 5 if quick else 20, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.py app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", default=None, help="a folder of exports (default: the demo configs, random "
                        "weights)")
    parser.add_argument("--seconds", type=float, default=20.0, help="live-mode measuring time per model")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.exports) if args.exports else random_exports(Path(tmp))
        for key, value in measure(folder, args.seconds, args.threads).items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
