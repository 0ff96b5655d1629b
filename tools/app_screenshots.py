"""Screenshots of `vid2vid app`'s three modes from the real page (headless Chromium, as the tests drive it), for the
README: OUT/app_video.png, OUT/app_paint.png, OUT/app_live.png.

    python tools/app_screenshots.py [--exports runs/demo/20min] [--out docs]

Video: the video model renders its dataset's first test sequence. Paint: a street painted with the brush and the
fill tool (sky, buildings, road, a car) and panned. Live: the fake camera plays the sequence's real frames.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vid2vid.app.browser import app_server, launch, write_y4m  # noqa: E402
from vid2vid.app.exports import ExportInfo, find_exports  # noqa: E402
from vid2vid.video_io import iter_frames  # noqa: E402

SKY, BUILDING, ROAD, SIDEWALK, CAR = 23, 11, 7, 8, 26  # the synthetic street's label ids


def show_frame(page, index: int) -> None:
    """The player at frame `index` (through the page's slider), and the plot's marker there."""
    page.wait_for_function("document.getElementById('player').readyState >= 2")
    page.fill("#scrub", str(index))
    page.dispatch_event("#scrub", "input")
    page.wait_for_function(f"document.getElementById('frame-text').textContent.startsWith('frame {index + 1} ')")


def video_mode(page, export: ExportInfo, out: Path) -> None:
    page.select_option("#export", export.id)
    page.select_option("#sequence", export.sequences()[0])
    page.click("#render")
    page.wait_for_selector("#result:not([hidden])", timeout=600_000)
    show_frame(page, 12)
    page.screenshot(path=str(out / "app_video.png"), full_page=True)


def stroke(page, box: dict, points: list[tuple[float, float]]) -> None:
    """A brush stroke through points given as fractions of the canvas."""
    page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
    page.mouse.up()


def paint_mode(page, export: ExportInfo, out: Path) -> None:
    page.select_option("#export", export.id)
    page.click("#tab-paint")
    box = page.locator("#paint-canvas").bounding_box()
    page.click(f"#swatch-{BUILDING}")
    page.click("#tool-fill")
    page.click("#paint-canvas", position={"x": 5, "y": 5})
    page.click("#tool-brush")
    page.fill("#brush-size", "10")
    page.click(f"#swatch-{SKY}")
    for y in (0.03, 0.12):
        stroke(page, box, [(0, y), (0.3, y), (0.3, y + 0.12), (0.6, y), (1, y)])
    page.click(f"#swatch-{ROAD}")
    for y in (0.78, 0.9, 1.0):
        stroke(page, box, [(0, y), (1, y)])
    page.click(f"#swatch-{SIDEWALK}")
    stroke(page, box, [(0, 0.68), (1, 0.68)])
    page.fill("#brush-size", "7")
    page.click(f"#swatch-{CAR}")
    stroke(page, box, [(0.4, 0.82), (0.55, 0.82)])
    page.fill("#paint-frames", "12")
    page.click("#paint-render")
    page.wait_for_selector("#result:not([hidden])", timeout=600_000)
    show_frame(page, 8)
    page.screenshot(path=str(out / "app_paint.png"), full_page=True)


def live_mode(page, export: ExportInfo, out: Path) -> None:
    page.select_option("#export", export.id)
    page.click("#tab-live")
    page.click("#live-start")
    page.wait_for_function("live.received >= 4", timeout=600_000)
    page.screenshot(path=str(out / "app_live.png"), full_page=True)
    page.click("#live-stop")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", default="runs/demo/20min", help="folder with the demo's exports")
    parser.add_argument("--out", default="docs", help="where the PNGs go")
    args = parser.parse_args(argv)
    exports = find_exports([Path(args.exports)])
    video = next(e for e in exports.values() if e.kind == "video" and e.sequences())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        real = Path(video.cfg.data.root) / video.sequences()[0].replace("_A/", "_B/")
        camera = write_y4m(Path(tmp) / "camera.y4m", list(iter_frames(real)), fps=10)
        with app_server(["--exports", args.exports]) as (url, _), sync_playwright() as p:
            browser = launch(p, camera)
            for mode in (video_mode, paint_mode, live_mode):
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(url)
                page.wait_for_selector("#export option", state="attached")
                mode(page, video, out)
                page.close()
            browser.close()
    print(f"wrote {out}/app_video.png, app_paint.png, app_live.png")


if __name__ == "__main__":
    main()
