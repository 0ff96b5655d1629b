"""vid2vid render / VideoRenderer: streaming label-to-video rendering with tiny random-weight exports on a tiny
synthetic dataset. The video model's frames equal temporal.unroll run in memory; bad inputs exit 2."""

import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from vid2vid import cli
from vid2vid.checkpoint import export_generator, load_generator
from vid2vid.config import Size, load_config
from vid2vid.data.encoding import semantic_input
from vid2vid.eval.metrics import psnr
from vid2vid.imaging import to_uint8
from vid2vid.models.build import build_generator
from vid2vid.render import VideoRenderer
from vid2vid.temporal import start_history, unroll
from vid2vid.video_io import image_files, read_image

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 8


def _export(config: str, out: Path, seed: int) -> Path:
    cfg = load_config(ROOT / "configs" / config)
    torch.manual_seed(seed)
    return export_generator(build_generator(cfg).state_dict(), cfg, out)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """1 train + 2 test sequences of 8 frames, 64x64, with labels, instances and real frames."""
    from vid2vid.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("render") / "street", sequences=1, test_sequences=2,
                              frames=FRAMES, size=Size(64, 64), seed=0)


@pytest.fixture(scope="module")
def video_export(tmp_path_factory) -> Path:
    """configs/tiny_video.yaml (n_frames_G 3, instances, first_frame real) with random weights."""
    return _export("tiny_video.yaml", tmp_path_factory.mktemp("video") / "export", seed=0)


@pytest.fixture(scope="module")
def image_export(tmp_path_factory) -> Path:
    """configs/tiny.yaml (pix2pixHD) with random weights."""
    return _export("tiny.yaml", tmp_path_factory.mktemp("image") / "export", seed=1)


@pytest.fixture(scope="module")
def frames_dir(data, video_export, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "frames"
    assert cli.main(["render", str(data / "test_A" / "seq_0000"), str(out), "-m", str(video_export),
                     "--frames-dir"]) == 0
    return out


def _ids(folder: Path) -> np.ndarray:
    return np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in image_files(folder)]).astype(np.int64)


def _pngs(folder: Path) -> np.ndarray:
    return np.stack([read_image(p) for p in image_files(folder)])  # [T,H,W,3] uint8


def _decode(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def _psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the luma (BT.601 Y) of uint8 RGB frames [T,H,W,3], in dB: the codec's quality. (RGB PSNR of a
    random-weight model's output is ~23 dB: its pixel-level colour noise does not survive yuv420p's half-resolution
    chroma, whatever the crf.)"""
    weights = np.array([0.299, 0.587, 0.114])
    mse = np.mean((a.astype(np.float64) @ weights - b.astype(np.float64) @ weights) ** 2)
    return 10 * np.log10(255.0**2 / mse)


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def test_frames_dir_equals_unroll_in_memory(data, video_export, frames_dir):
    """The first n_frames_G-1 frames are the real frames; the rest equal temporal.unroll exactly (uint8)."""
    seq = "seq_0000"
    G, cfg = load_generator(video_export)
    labels = torch.from_numpy(_ids(data / "test_A" / seq))[None]  # [1,T,H,W]
    inst = torch.from_numpy(_ids(data / "test_inst" / seq))[None]
    real_u8 = _pngs(data / "test_B" / seq)  # [T,H,W,3]
    real = torch.from_numpy(real_u8).permute(0, 3, 1, 2)[None].float() / 127.5 - 1  # [1,T,3,H,W]
    sem = semantic_input(labels, inst, cfg.data.label_nc, cfg.data.use_instance)  # [1,T,C,H,W]
    n = cfg.model.n_frames_G - 1
    with torch.no_grad():
        out, _ = unroll(G, start_history("real", sem[:, :n], real[:, :n]), sem[:, n:])
    got = _pngs(frames_dir)
    assert [p.name for p in image_files(frames_dir)] == [f"{i:05d}.png" for i in range(FRAMES)]
    assert np.array_equal(got[:n], real_u8[:n])
    assert np.array_equal(got[n:], to_uint8(out.final[0]))


def test_mp4_frames_size_fps_and_quality(data, video_export, frames_dir, tmp_path):
    out = tmp_path / "out.mp4"
    assert cli.main(["render", str(data / "test_A" / "seq_0000"), str(out), "-m", str(video_export),
                     "--fps", "12", "--crf", "18"]) == 0
    frames, fps = _decode(out)
    assert frames.shape == (FRAMES, 64, 64, 3) and fps == pytest.approx(12)
    assert _psnr_y(frames, _pngs(frames_dir)) >= 30
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


def test_renderer_step_equals_cli(data, video_export, frames_dir):
    seq = "seq_0000"
    renderer = VideoRenderer(video_export, first_frame=f"real:{data / 'test_B' / seq}", device="cpu")
    labels, inst = _ids(data / "test_A" / seq), _ids(data / "test_inst" / seq)
    expected = _pngs(frames_dir)
    for _ in range(2):  # reset() starts the same video again
        got = np.stack([renderer.step(lab, torch.from_numpy(ins)) for lab, ins in zip(labels, inst)])
        assert got.dtype == np.uint8 and np.array_equal(got, expected)
        renderer.reset()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 frames a against b (vid2vid.eval.metrics.psnr)."""
    return psnr(torch.from_numpy(a), torch.from_numpy(b), (0, 255))


def test_precision_channels_last_and_compile(data, video_export, frames_dir):
    """The speed options render the same video: channels-last and torch.compile within fp32
    rounding of the eager frames; bf16 really runs the generator's convolutions in bf16 and stays close. (This
    random-weight recurrence amplifies any rounding difference from frame to frame: a wrong layout or dtype gives
    < 15 dB.)"""
    seq = "seq_0000"
    labels, inst = _ids(data / "test_A" / seq), _ids(data / "test_inst" / seq)
    expected = _pngs(frames_dir)  # eager fp32

    def render(**options) -> tuple[np.ndarray, set]:
        renderer = VideoRenderer(video_export, first_frame=f"real:{data / 'test_B' / seq}", device="cpu", **options)
        generator = getattr(renderer.export.generator, "_orig_mod", renderer.export.generator)
        dtypes = set()
        generator.scales[0].label_encoder[1].register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
        return np.stack([renderer.step(lab, ins) for lab, ins in zip(labels, inst)]), dtypes

    channels_last, dtypes = render(channels_last=True)
    assert _psnr(channels_last, expected) > 35 and dtypes == {torch.float32}  # 41 dB seen
    bf16, dtypes = render(precision="bf16")
    assert dtypes == {torch.bfloat16} and not np.array_equal(bf16, expected)
    assert _psnr(bf16, expected) > 20  # 24.8 dB seen: random weights are a worst case (BENCHMARKS: trained ones)
    compiled, _ = render(compile=True, channels_last=True)
    assert _psnr(compiled, expected) > 30  # 35.6 dB seen


def test_image_model_export_and_image_model_first_frames(data, image_export, video_export, tmp_path):
    seq = data / "test_A" / "seq_0000"
    assert cli.main(["render", str(seq), str(tmp_path / "image.mp4"), "-m", str(image_export)]) == 0
    assert _decode(tmp_path / "image.mp4")[0].shape == (FRAMES, 64, 64, 3)
    out = tmp_path / "first"
    assert cli.main(["render", str(seq), str(out), "-m", str(video_export), "--frames-dir",
                     "--first-frame", f"image-model:{image_export}"]) == 0
    image_frames = VideoRenderer(image_export, device="cpu", seed=0)
    first = image_frames.step(_ids(seq)[0], _ids(data / "test_inst" / "seq_0000")[0])
    assert np.array_equal(_pngs(out)[0], first)


def test_options_size_padding_side_by_side_start_zeros(data, video_export, tmp_path):
    seq = str(data / "test_A" / "seq_0000")
    out = tmp_path / "odd"
    assert cli.main(["render", seq, str(out), "-m", str(video_export), "--frames-dir", "--size", "49x63",
                     "--first-frame", "zeros", "--start", "2", "--max-frames", "4"]) == 0
    frames = _pngs(out)
    assert frames.shape == (4, 49, 63, 3) and np.all(frames[:2] == 128)  # zeros seed frames: mid-grey
    assert cli.main(["render", seq, str(tmp_path / "odd.mp4"), "-m", str(video_export), "--size", "49x63",
                     "--first-frame", "zeros", "--side-by-side"]) == 0
    assert _decode(tmp_path / "odd.mp4")[0].shape == (FRAMES, 50, 126, 3)  # odd sizes padded by one pixel


def test_render_all_and_overwrite(data, video_export, tmp_path, capsys):
    out = tmp_path / "all"
    assert cli.main(["render", "--all", str(data / "test_A"), str(out), "-m", str(video_export)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seq_0000.mp4", "seq_0001.mp4"]
    printed = capsys.readouterr().out
    assert printed.count("8 frames in") == 2 and "frames/s" in printed
    assert cli.main(["render", "--all", str(data / "test_A"), str(out), "-m", str(video_export)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["render", "--all", str(data / "test_A"), str(out), "-m", str(video_export),
                     "--overwrite"]) == 0


def test_memory_is_bounded_by_the_queues():
    """The reader runs ahead of the model by at most the queue size (no whole-video buffering)."""
    from vid2vid.render.streaming import QUEUE_FRAMES, Reader

    produced = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    reader = Reader(items())
    reader.start()
    first = next(iter(reader))
    time.sleep(0.3)
    assert first == 0 and len(produced) <= QUEUE_FRAMES + 2
    reader.close()


# ----------------------------------------------------------------------------------------------
# Bad input: exit 2, a message naming the file, no output left behind
# ----------------------------------------------------------------------------------------------


def _labels_dir(folder: Path, n: int = 4, size=(64, 64)) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full(size, 7, np.uint8))
    return folder


def _bad_input(case: str, tmp: Path, image_export: Path, video_export: Path) -> tuple[list[str], str]:
    """(render arguments, a string the error must contain) for one kind of bad input."""
    labels = _labels_dir(tmp / "labels")
    ok = [str(labels), str(tmp / "out.mp4"), "-m", str(video_export), "--first-frame", "zeros"]
    if case == "empty":
        (tmp / "empty").mkdir()
        return [str(tmp / "empty"), *ok[1:]], "no PNG label maps"
    if case == "truncated":
        data = (labels / "002.png").read_bytes()
        (labels / "002.png").write_bytes(data[: len(data) // 2])
        return ok, "002.png"
    if case == "mixed_sizes":
        cv2.imwrite(str(labels / "003.png"), np.zeros((32, 64), np.uint8))
        return ok, "003.png"
    if case == "label_id":
        cv2.imwrite(str(labels / "001.png"), np.full((64, 64), 40, np.uint8))
        return ok, "label id 40"
    if case == "colour":
        cv2.imwrite(str(labels / "000.png"), np.zeros((64, 64, 3), np.uint8))
        return ok, "000.png: a colour image"
    if case == "missing_checkpoint":
        return [*ok[:3], str(tmp / "nope"), *ok[4:]], "nope"
    if case == "corrupt_checkpoint":
        bad = tmp / "corrupt"
        bad.mkdir()
        (bad / "config.yaml").write_text((video_export / "config.yaml").read_text())
        (bad / "generator.safetensors").write_bytes(b"not a safetensors file")
        return [*ok[:3], str(bad), *ok[4:]], "generator.safetensors"
    if case == "other_architecture":
        bad = tmp / "other"
        bad.mkdir()
        (bad / "config.yaml").write_text((image_export / "config.yaml").read_text())
        (bad / "generator.safetensors").write_bytes((video_export / "generator.safetensors").read_bytes())
        return [*ok[:3], str(bad), *ok[4:]], "do not match"
    if case == "missing_output_dir":
        return [str(labels), str(tmp / "no" / "out.mp4"), *ok[2:]], "does not exist"
    if case == "unknown_container":
        return [str(labels), str(tmp / "out.xyz"), *ok[2:]], "unknown video container"
    if case == "few_real_frames":
        real = tmp / "real"
        real.mkdir()
        cv2.imwrite(str(real / "0.png"), np.zeros((64, 64, 3), np.uint8))
        return [*ok[:5], f"real:{real}"], "1 frames"
    if case == "needs_first_frame":
        return ok[:4], "--first-frame"
    if case == "existing_output":
        (tmp / "out.mp4").write_bytes(b"keep")
        return ok, "--overwrite"
    raise ValueError(case)


BAD = ["empty", "truncated", "mixed_sizes", "label_id", "colour", "missing_checkpoint", "corrupt_checkpoint",
       "other_architecture", "missing_output_dir", "unknown_container", "few_real_frames", "needs_first_frame",
       "existing_output"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_naming_the_problem(case, tmp_path, capsys, image_export, video_export):
    args, expected = _bad_input(case, tmp_path, image_export, video_export)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(["render", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vid2vid: error: ") and err.count("\n") == 1 and expected in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left
    if case == "existing_output":
        assert (tmp_path / "out.mp4").read_bytes() == b"keep"


def test_renderer_api_checks_ids_and_sizes(video_export):
    renderer = VideoRenderer(video_export, first_frame="zeros", device="cpu")
    with pytest.raises(Exception, match="outside 0..34"):
        renderer.step(np.full((64, 64), 35))
    renderer.step(np.zeros((64, 64), np.int64))
    with pytest.raises(Exception, match="same size"):
        renderer.step(np.zeros((32, 64), np.int64))
    with pytest.raises(Exception, match="integer ids"):
        renderer.step(np.zeros((64, 64), np.float32))


def test_compare_models_renders_through_the_renderer_and_measures_both(data, image_export, video_export, tmp_path):
    """tools/compare_models.py: both models through VideoRenderer (the video model's first frames from the
    per-frame model), the two baselines made from the per-frame frames (blurred to vid2vid's detail; recursively
    filtered), every video written, E_warp from eval_flicker on the exact flow over the frames after the seed
    frames, PSNR and detail against the real frames, and E_warp(vid2vid) / E_warp(row) raw and at matched
    detail on the same flow and masks as eval_flicker; the real frames' PSNR is not reported, their tOF against
    themselves is 0 and their detail 1."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from compare_models import ROWS, compare, format_table, parse_args, to_uint8_frames

    from vid2vid.eval.postprocess import recursive_filter

    result = compare(parse_args(["--image", str(image_export), "--video", str(video_export), "--data", str(data),
                                 "--out", str(tmp_path / "cmp"), "--max-frames", "6"]))
    rows = result["rows"]
    assert list(rows) == list(ROWS) and all(len(r) == 2 for r in rows.values())
    assert result["skip"] == 2  # tiny_video.yaml: n_frames_G 3
    seq = tmp_path / "cmp" / "seq_0000"
    renderer = VideoRenderer(video_export, first_frame=f"image-model:{image_export}", device="cpu", seed=0)
    labels = _ids(data / "test_A" / "seq_0000")[:6]
    inst = _ids(data / "test_inst" / "seq_0000")[:6]
    expected = np.stack([renderer.step(lab, ins) for lab, ins in zip(labels, inst)])
    assert np.array_equal(_pngs(seq / "vid2vid"), expected)
    per_frame = _pngs(seq / "per-frame")
    assert np.array_equal(_pngs(seq / "vid2vid")[:2], per_frame[:2])  # both start equal
    filtered = to_uint8_frames(recursive_filter(torch.from_numpy(per_frame).permute(0, 3, 1, 2) / 255, 0.3))
    assert np.array_equal(_pngs(seq / "per-frame_filtered"), filtered)
    for row in rows["real frames"]:
        assert row["psnr"] is None and row["tof"] == 0 and row["e_warp"] >= 0
        assert row["detail"] == pytest.approx(1) and row["detail_aligned"] == pytest.approx(1)
    for label in ROWS:
        for row in rows[label]:
            assert row["frames"] == 4 and (row["psnr"] is None or np.isfinite(row["psnr"]))
            assert row["e_warp"] > 0 and Path(row["mp4"]).is_file()
    for blurred, vid, sigma in zip(rows["per-frame + blur"], rows["vid2vid"], result["baselines"]):
        if sigma["blur_sigma"] > 0:  # brought down to vid2vid's detail
            assert blurred["detail"] == pytest.approx(vid["detail"], rel=0.02)
        for label in ROWS:
            if label == "vid2vid":
                continue
            m = rows[label][0]["vs_vid2vid"]
            assert m["e_warp_a"] == pytest.approx(rows["vid2vid"][0]["e_warp"], rel=1e-5)  # eval_flicker's E_warp
            assert m["e_warp_b"] == pytest.approx(rows[label][0]["e_warp"], rel=1e-5)
            if m["blurred"]:
                other = m["detail_b"] if m["blurred"] == "vid2vid" else m["detail_a"]
                assert m["matched_detail"] == pytest.approx(other, rel=0.02) and m["sigma"] > 0
    shares = {row["moving_share"] for label in ROWS for row in rows[label][:1]}
    assert len(shares) == 1 and 0 < shares.pop() < 1  # every row on the same flows and masks: the same pixels
    for label in ROWS:  # E_warp split by motion: the pixel-weighted parts of the same squared errors
        for row in rows[label]:
            assert row["e_warp_moving"] >= 0 and row["e_warp_still"] >= 0
    table = format_table(result)
    assert "E_warp(vid2vid) / E_warp(per-frame)" in table and "at matched detail" in table
    assert "moving / still x1e3" in table and "% of the measured ones" in table
    assert all(f"\n{label} |" in table for label in ROWS)


def test_compare_models_measures_a_clip_without_exact_flow_on_dis(data, image_export, video_export, tmp_path):
    """A dataset without <phase>_flow (a real clip made by `vid2vid prepare video`): eval_flicker and the matched
    comparison both measure on OpenCV DIS between the real frames, and agree with each other."""
    import shutil
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from compare_models import compare, parse_args

    root = tmp_path / "no_flow"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns("*_flow"))
    result = compare(parse_args(["--image", str(image_export), "--video", str(video_export), "--data", str(root),
                                 "--out", str(tmp_path / "cmp"), "--max-frames", "6"]))
    for row in result["rows"]["per-frame"]:
        m = row["vs_vid2vid"]
        assert m["e_warp_b"] == pytest.approx(row["e_warp"], rel=1e-5)  # eval_flicker --flow dis, same flows
    flicker = (tmp_path / "cmp" / "seq_0000" / "flicker.json").read_text()
    assert '"dis' in flicker.lower()
