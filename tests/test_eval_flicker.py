"""tools/eval_flicker.py: analytic cases through exact flow (gt:DIR), options, outputs, real footage."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from flow.io import read_flo, write_flo

ROOT = Path(__file__).resolve().parents[1]
VTEST = ROOT.parent / "shared" / "data" / "vtest.avi"
_spec = importlib.util.spec_from_file_location("eval_flicker", ROOT / "tools" / "eval_flicker.py")
eval_flicker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_flicker)


def write_frames(folder: Path, frames) -> Path:
    """Frames [T,H,W,3] float in [0, 1] (or uint8) -> lossless PNGs 00000.png ..."""
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        image = frame if frame.dtype == np.uint8 else np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def write_constant_flows(folder: Path, pairs: int, h: int, w: int, fw=(0.0, 0.0), bw=None) -> Path:
    folder.mkdir(parents=True)
    bw = tuple(-v for v in fw) if bw is None else bw
    for t in range(pairs):
        write_flo(folder / f"fw_{t:05d}.flo", np.broadcast_to(np.float32(fw), (h, w, 2)))
        write_flo(folder / f"bw_{t:05d}.flo", np.broadcast_to(np.float32(bw), (h, w, 2)))
    return folder


def texture(h, w, seed=0):
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    image = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return (image - image.min()) / (image.max() - image.min()) * 0.8 + 0.1


def translating(t_frames, h, w, dx, dy, seed=0):
    """Content at x in frame t is at x + (dx, dy) in frame t+1."""
    m = 2 + t_frames * max(abs(dx), abs(dy))
    big = texture(h + 2 * m, w + 2 * m, seed)
    return np.stack([big[m - t * dy : m - t * dy + h, m - t * dx : m - t * dx + w] for t in range(t_frames)])


def run(argv, capsys):
    code = eval_flicker.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def measure(tmp_path, capsys, frames, flows, *extra):
    video = write_frames(tmp_path / "video", frames)
    code, out, err = run([video, "--flow", f"gt:{flows}", "--json", tmp_path / "r.json", *extra], capsys)
    assert code == 0, err
    return json.loads((tmp_path / "r.json").read_text())["videos"][0]


H, W, T = 96, 128, 6
RNG = np.random.default_rng(7)


def test_identical_frames_zero_flow_is_zero(tmp_path, capsys):
    frames = np.repeat(texture(H, W)[None], T, 0)
    flows = write_constant_flows(tmp_path / "flow", T - 1, H, W)
    video = measure(tmp_path, capsys, frames, flows)
    assert video["warping_error"] < 1e-12 and video["pairs"] == T - 1 and video["valid_fraction"] == 1.0


def test_alternating_offset_gives_2d_squared(tmp_path, capsys):
    base = np.round(texture(H, W) * 255).astype(np.int32)
    frames = np.stack([base + (10 if t % 2 else -10) for t in range(T)]).astype(np.uint8)  # d = 10/255
    flows = write_constant_flows(tmp_path / "flow", T - 1, H, W)
    video = measure(tmp_path, capsys, frames, flows)
    assert video["warping_error"] == pytest.approx((20 / 255) ** 2, rel=0.01)


def test_iid_noise_gives_2_sigma_squared(tmp_path, capsys):
    sigma = 0.05
    frames = texture(H, W)[None] + RNG.normal(0, sigma, (T, H, W, 3))
    flows = write_constant_flows(tmp_path / "flow", T - 1, H, W)
    video = measure(tmp_path, capsys, frames, flows)
    assert video["warping_error"] == pytest.approx(2 * sigma**2, rel=0.01)


def test_integer_translation_is_zero_with_the_out_of_frame_mask(tmp_path, capsys):
    frames = translating(T, H, W, 3, -2)
    flows = write_constant_flows(tmp_path / "flow", T - 1, H, W, fw=(3, -2))
    video = measure(tmp_path, capsys, frames, flows)
    assert video["warping_error"] < 1e-10 and video["valid_fraction"] == pytest.approx((H - 2) * (W - 3) / (H * W))
    code, out, _ = run([tmp_path / "video", "--flow", f"gt:{flows}", "--no-oob-mask", "--json", tmp_path / "o.json"],
                       capsys)
    kept = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and kept["videos"][0]["warping_error"] > 1e-4 and kept["settings"]["out_of_frame_masked"] is False
    assert "out-of-frame pixels kept" in out


@pytest.mark.parametrize("a, b", [(0.3, 0.6), (0.5, 0.25)])
def test_sub_pixel_shift_on_grey_noise_matches_the_formula(tmp_path, capsys, a, b):
    sigma = 0.05
    frames = 0.5 + RNG.normal(0, sigma, (T, H, W, 3))
    flows = write_constant_flows(tmp_path / "flow", T - 1, H, W, fw=(1 + a, b))
    video = measure(tmp_path, capsys, frames, flows)
    expected = sigma**2 * (1 + ((1 - a) ** 2 + a**2) * ((1 - b) ** 2 + b**2))
    assert video["warping_error"] == pytest.approx(expected, rel=0.01)


def test_flipped_flow_sign_or_swapped_frames_raise_the_error_sharply(tmp_path, capsys):
    frames = translating(T, H, W, 2, 1)
    right = write_constant_flows(tmp_path / "right", T - 1, H, W, fw=(2, 1))
    flipped = write_constant_flows(tmp_path / "flipped", T - 1, H, W, fw=(-2, -1))
    write_frames(tmp_path / "video", frames)
    write_frames(tmp_path / "swapped", frames[::-1])
    values = {}
    for name, video, flows in [("right", "video", right), ("flipped", "video", flipped), ("swapped", "swapped", right)]:
        code, _, err = run([tmp_path / video, "--flow", f"gt:{flows}", "--json", tmp_path / f"{name}.json"], capsys)
        assert code == 0, err
        values[name] = json.loads((tmp_path / f"{name}.json").read_text())["videos"][0]["warping_error"]
    assert values["right"] < 1e-10
    assert values["flipped"] > 1e-3 and values["swapped"] > 1e-3


def test_outputs_reference_mode_tof_frames_range_and_size(tmp_path, capsys):
    frames = translating(8, 64, 96, 2, 2)
    ref = write_frames(tmp_path / "ref", frames)
    noisy = write_frames(tmp_path / "noisy", frames + RNG.normal(0, 0.03, frames.shape))
    short = write_frames(tmp_path / "short", frames[:6])
    paths = {k: tmp_path / k for k in ("r.json", "r.csv", "r.png")}
    code, out, err = run([ref, noisy, short, "--reference", ref, "--frames", "1:", "--json", paths["r.json"],
                          "--csv", paths["r.csv"], "--plot", paths["r.png"], "--batch", "3"], capsys)
    assert code == 0, err
    report = json.loads(paths["r.json"].read_text())
    s = report["settings"]
    assert s["flow"] == "dis" and s["reference"] == str(ref) and s["flow_computed_on"] == f"reference {ref}"
    assert s["frames"] == "1:" and "common prefix of 5 frames" in s["notes"][0] and "common prefix" in err
    assert [v["path"] for v in report["videos"]] == [str(ref), str(noisy), str(short)]
    clean, noisy_r = report["videos"][0], report["videos"][1]
    assert all(v["pairs"] == 4 and v["first_frame"] == 1 for v in report["videos"])
    assert clean["tof"] == 0.0 and noisy_r["tof"] > 0
    assert noisy_r["warping_error"] > clean["warping_error"] + 0.001
    assert len(noisy_r["per_pair_warping_error"]) == 4 and 0.5 < noisy_r["valid_fraction"] <= 1
    assert "E_warp x1e3" in out and "tOF" in out and str(noisy) in out
    rows = paths["r.csv"].read_text().splitlines()
    assert rows[0] == "video,pair,frame,warping_error,valid_fraction,tof" and len(rows) == 1 + 3 * 4
    assert rows[1].startswith(f"{ref},0,1,")
    plot = cv2.imread(str(paths["r.png"]))
    assert plot.shape == (480, 960, 3) and (plot != 255).any()

    # --size: exact flow rescaled with the frames; a shift of 2 px at full size is 1 px at half size.
    flows = write_constant_flows(tmp_path / "flow", 7, 64, 96, fw=(2, 2))
    code, _, err = run([ref, "--flow", f"gt:{flows}", "--size", "32x48", "--json", paths["r.json"]], capsys)
    assert code == 0, err
    assert json.loads(paths["r.json"].read_text())["videos"][0]["warping_error"] < 1e-10


def test_bad_input_exits_2_naming_the_file_and_sizes(tmp_path, capsys):
    small = write_frames(tmp_path / "small", np.repeat(texture(32, 48)[None], 3, 0))
    big = write_frames(tmp_path / "big", np.repeat(texture(40, 48)[None], 3, 0))
    code, _, err = run([small, "--reference", big], capsys)
    assert code == 2 and str(small) in err and "32x48" in err and "40x48" in err and "--size" in err
    code, _, err = run([small, "--reference", big, "--size", "32x48", "--json", tmp_path / "ok.json"], capsys)
    assert code == 0, err
    code, _, err = run([small, "--flow", f"gt:{tmp_path / 'nowhere'}"], capsys)
    assert code == 2 and "nowhere" in err
    flows = write_constant_flows(tmp_path / "flows", 1, 32, 48)
    code, _, err = run([small, "--flow", f"gt:{flows}"], capsys)
    assert code == 2 and "fw_00001.flo" in err
    code, _, err = run([small, "--flow", "flownet2"], capsys)
    assert code == 2 and "flownet2" in err
    code, _, err = run([small, "--frames", "2:3"], capsys)
    assert code == 2 and "--frames" in err
    code, _, err = run([tmp_path / "missing.mp4"], capsys)
    assert code == 2 and "missing.mp4" in err
    assert not (tmp_path / "ok.json.tmp").exists()


def test_flow_cache_is_written_and_read(tmp_path, capsys):
    frames = translating(4, 48, 64, 1, 0)
    video = write_frames(tmp_path / "video", frames)
    cache = tmp_path / "cache"
    code, _, err = run([video, "--cache", cache, "--json", tmp_path / "a.json"], capsys)
    assert code == 0, err
    (entry,) = cache.iterdir()
    assert sorted(p.name for p in entry.glob("*.flo"))[:2] == ["bw_00000.flo", "bw_00001.flo"]
    assert len(list(entry.glob("*.flo"))) == 6
    np.testing.assert_allclose(np.median(read_flo(entry / "fw_00000.flo")[..., 0]), 1.0, atol=0.2)
    for flo in entry.glob("*.flo"):  # replace the cached flows: the second run must use them
        write_flo(flo, np.zeros((48, 64, 2), np.float32))
    code, _, err = run([video, "--cache", cache, "--json", tmp_path / "b.json"], capsys)
    first, second = (json.loads((tmp_path / n).read_text())["videos"][0] for n in ("a.json", "b.json"))
    assert code == 0 and second["warping_error"] > 10 * first["warping_error"]


def test_runs_as_a_script_from_the_repo_root(tmp_path):
    video = write_frames(tmp_path / "v", np.repeat(texture(24, 32)[None], 3, 0))
    done = subprocess.run([sys.executable, "tools/eval_flicker.py", str(video), "--flow", "farneback"],
                          cwd=ROOT, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert "E_warp x1e3" in done.stdout and "farneback" in done.stdout


@pytest.mark.skipif(not VTEST.is_file(), reason="shared/data/vtest.avi not present")
def test_real_footage_clean_noise_and_brightness_flicker(tmp_path, capsys):
    """vtest.avi, first 40 frames as lossless PNGs: clean ~2.4e-4 with DIS on itself; noise sigma 0.02
    measured on the clean clip's flow adds 2 sigma^2 (within 15%); brightening every other frame by 0.05
    multiplies the clean value by >= 5."""
    from vid2vid.video_io import iter_frames

    clean = np.stack([f for _, f in zip(range(40), iter_frames(VTEST))]).astype(np.float32) / 255
    paths = {"clean": write_frames(tmp_path / "clean", clean)}
    paths["noisy"] = write_frames(tmp_path / "noisy", clean + np.random.default_rng(3).normal(0, 0.02, clean.shape))
    bright = clean.copy()
    bright[1::2] += 0.05
    paths["bright"] = write_frames(tmp_path / "bright", bright)
    code, _, err = run([paths["clean"], "--json", tmp_path / "self.json"], capsys)
    assert code == 0, err
    own = json.loads((tmp_path / "self.json").read_text())["videos"][0]["warping_error"]
    assert 1.5e-4 < own < 3.5e-4
    code, out, err = run([paths["clean"], paths["noisy"], paths["bright"], "--reference", paths["clean"],
                          "--no-tof", "--json", tmp_path / "ref.json"], capsys)
    assert "tOF" not in out
    assert code == 0, err
    values = [v["warping_error"] for v in json.loads((tmp_path / "ref.json").read_text())["videos"]]
    assert values[0] == pytest.approx(own)
    assert values[1] - values[0] == pytest.approx(2 * 0.02**2, rel=0.15)
    assert values[2] >= 5 * values[0]


def test_raft_flow_with_weights_and_iters(tmp_path, capsys):
    import torch

    import flow

    torch.manual_seed(0)
    torch.save(flow.raft_small().state_dict(), tmp_path / "small.pth")
    video = write_frames(tmp_path / "v", translating(3, 40, 56, 1, 0))
    code, out, err = run([video, "--flow", "raft_small", "--weights", tmp_path / "small.pth", "--iters", "2",
                          "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["iters"] == 2 and report["settings"]["weights"] == str(tmp_path / "small.pth")
    assert report["videos"][0]["pairs"] == 2 and np.isfinite(report["videos"][0]["warping_error"])


def test_dis_on_parallel_workers_gives_the_same_numbers_for_any_batch_and_restores_threads(tmp_path, capsys):
    """OpenCV flow runs one task per pair on worker threads with OpenCV (and torch) single-threaded: the
    per-pair values must not depend on how pairs are grouped, and the thread counts come back afterwards."""
    import torch

    video = write_frames(tmp_path / "v", translating(9, 48, 64, 2, 1) + RNG.normal(0, 0.02, (9, 48, 64, 3)))
    before = cv2.getNumThreads(), torch.get_num_threads()
    values = []
    for batch in (1, 3, 8):
        code, _, err = run([video, "--batch", batch, "--json", tmp_path / f"{batch}.json"], capsys)
        assert code == 0, err
        values.append(json.loads((tmp_path / f"{batch}.json").read_text())["videos"][0]["per_pair_warping_error"])
    assert values[0] == values[1] == values[2] and len(values[0]) == 8
    assert (cv2.getNumThreads(), torch.get_num_threads()) == before
