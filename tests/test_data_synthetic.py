"""The synthetic street dataset: layout, determinism, label/instance/frame consistency, exact flow,
and generation on first use by exactly one of several processes."""

import filecmp
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flow.io import read_flo
from flow.warp import backward_warp, valid_mask
from vid2vid.config import Size, from_dict
from vid2vid.data import synthetic
from vid2vid.data.synthetic import ensure_dataset, generate_synthetic
from vid2vid.errors import DataError

STUFF = {synthetic.ROAD, synthetic.SIDEWALK, synthetic.BUILDING, synthetic.POLE, synthetic.VEGETATION,
         synthetic.SKY}
THINGS = {synthetic.PERSON, synthetic.CAR}


def _frames(root: Path, phase: str, seq: str):
    """labels [T,H,W] uint8, inst [T,H,W] uint16, rgb [T,H,W,3] uint8 (RGB)."""
    read = {kind: sorted((root / f"{phase}_{kind}" / seq).glob("*.png")) for kind in ("A", "B", "inst")}
    labels = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in read["A"]])
    inst = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in read["inst"]])
    rgb = np.stack([cv2.imread(str(p))[..., ::-1] for p in read["B"]])
    return labels, inst, rgb


def _flows(root: Path, phase: str, seq: str, t: int):
    folder = root / f"{phase}_flow" / seq
    return read_flo(folder / f"fw_{t:05d}.flo"), read_flo(folder / f"bw_{t:05d}.flo")


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()


def test_layout_and_file_formats(synthetic_root):
    root = synthetic_root
    for phase, n in (("train", 2), ("test", 1)):
        for kind in ("A", "B", "inst", "flow"):
            assert sorted(p.name for p in (root / f"{phase}_{kind}").iterdir()) == [f"seq_{i:04d}" for i in range(n)]
    assert len(list((root / "train_A" / "seq_0000").glob("*.png"))) == 10
    assert len(list((root / "train_flow" / "seq_0000").glob("fw_*.flo"))) == 9
    assert len(list((root / "train_flow" / "seq_0000").glob("bw_*.flo"))) == 9
    label = cv2.imread(str(root / "train_A/seq_0000/00000.png"), cv2.IMREAD_UNCHANGED)
    inst = cv2.imread(str(root / "train_inst/seq_0000/00000.png"), cv2.IMREAD_UNCHANGED)
    rgb = cv2.imread(str(root / "train_B/seq_0000/00000.png"), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.shape == (128, 256)
    assert inst.dtype == np.uint16 and inst.shape == (128, 256)
    assert rgb.dtype == np.uint8 and rgb.shape == (128, 256, 3)
    fw = cv2.readOpticalFlow(str(root / "train_flow/seq_0000/fw_00000.flo"))  # OpenCV reads our .flo
    assert fw.shape == (128, 256, 2)


def test_deterministic_per_seed(tmp_path):
    kw = dict(sequences=1, test_sequences=1, frames=3, size=Size(48, 80))
    a = generate_synthetic(tmp_path / "a", seed=5, **kw)
    b = generate_synthetic(tmp_path / "b", seed=5, **kw)
    c = generate_synthetic(tmp_path / "c", seed=6, **kw)
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * (3 * 3 + 2 * 2) + 1
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(a / "train_B/seq_0000/00000.png", c / "train_B/seq_0000/00000.png", shallow=False)
    # train and test sequences are different scenes
    assert not filecmp.cmp(a / "train_B/seq_0000/00000.png", a / "test_B/seq_0000/00000.png", shallow=False)


def test_labels_instances_and_frames_agree(synthetic_root):
    labels, inst, rgb = _frames(synthetic_root, "train", "seq_0000")
    assert set(np.unique(labels)) <= STUFF | THINGS
    assert {synthetic.ROAD, synthetic.SKY, synthetic.BUILDING, synthetic.CAR} <= set(np.unique(labels))
    stuff = np.isin(labels, list(STUFF))
    assert (inst[stuff] == labels[stuff]).all()  # stuff: instance id = label id
    assert (inst[~stuff] // 1000 == labels[~stuff]).all()  # things: id * 1000 + k
    cars = {int(i) for i in np.unique(inst) if i // 1000 == synthetic.CAR}
    assert len(cars) >= 2  # separate instances
    sky, road = rgb[labels == synthetic.SKY].mean(0), rgb[labels == synthetic.ROAD].mean(0)
    assert sky[2] > sky[0] + 30  # blue sky
    assert abs(road[0] - road[2]) < 20 and road.mean() < sky.mean()  # grey, darker road
    # the texture moves with the scene: consecutive frames differ, and not only at object edges
    assert np.abs(rgb[1].astype(int) - rgb[0]).mean() > 2


def _pair_errors(root, phase, seq, t, rgb, sign=1.0):
    fw, bw = _flows(root, phase, seq, t)
    fw_t, bw_t = sign * _nchw(fw), sign * _nchw(bw)
    a, b = _nchw(rgb[t]) / 255, _nchw(rgb[t + 1]) / 255
    valid = valid_mask(fw_t, bw_t)[0, 0]  # [H,W] forward-backward consistent, inside the frame
    warped = backward_warp(b, fw_t)  # frame t+1 brought to frame t
    err = (warped - a).abs().mean(1)[0][valid].mean().item()
    raw = (b - a).abs().mean().item()
    return err, raw, valid.float().mean().item()


def test_stored_flow_is_exact(synthetic_root):
    """Acceptance: over valid pixels, |warp(frame t+1, fw_t) - frame t| < 0.05 and < half the raw
    |frame t+1 - frame t| (> 0.01), with more than half the pixels valid."""
    for phase, seq in (("train", "seq_0000"), ("train", "seq_0001"), ("test", "seq_0000")):
        rgb = _frames(synthetic_root, phase, seq)[2]
        for t in range(9):
            err, raw, valid = _pair_errors(synthetic_root, phase, seq, t, rgb)
            assert raw > 0.01, (phase, seq, t, raw)
            assert err < 0.05 and err < raw / 2, (phase, seq, t, err, raw)
            assert valid > 0.5, (phase, seq, t, valid)


def test_wrong_flow_fails_the_same_check(synthetic_root):
    rgb = _frames(synthetic_root, "train", "seq_0000")[2]
    err, raw, _ = _pair_errors(synthetic_root, "train", "seq_0000", 3, rgb, sign=-1.0)
    assert err > raw / 2


def test_flow_carries_labels(synthetic_root):
    """Labels of frame t+1 sampled at x + fw(x) give frame t's labels wherever fw is valid."""
    labels, _, _ = _frames(synthetic_root, "train", "seq_0001")
    fw, bw = _flows(synthetic_root, "train", "seq_0001", 4)
    h, w = labels.shape[1:]
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    xs = np.clip(np.rint(x + fw[..., 0]), 0, w - 1).astype(int)
    ys = np.clip(np.rint(y + fw[..., 1]), 0, h - 1).astype(int)
    valid = valid_mask(_nchw(fw), _nchw(bw))[0, 0].numpy()
    agree = labels[5][ys, xs] == labels[4]
    assert agree[valid].mean() > 0.97
    # the backward flow is the forward flow's inverse where both are visible
    fw_at = cv2.remap(bw, (x + fw[..., 0]).astype(np.float32), (y + fw[..., 1]).astype(np.float32),
                      cv2.INTER_LINEAR)
    assert np.median(np.abs(fw + fw_at)[valid]) < 0.01


def test_zoom_per_frame_is_gentle(synthetic_root):
    """Forward motion keeps the motion-boundary test quiet on the road (zoom <= ~1% per frame)."""
    fw, _ = _flows(synthetic_root, "train", "seq_0000", 0)
    du = np.diff(fw[..., 0], axis=1)
    assert np.median(np.abs(du)) <= 0.01


def test_generate_refuses_an_existing_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="already exists"):
        generate_synthetic(tmp_path / "x", sequences=1, test_sequences=0, frames=2, size=Size(32, 32), seed=0)


def _data_cfg(root, **synthetic_kw):
    syn = {"sequences": 1, "test_sequences": 0, "frames": 3, "size": "32x48", "seed": 0, **synthetic_kw}
    return from_dict({"data": {"root": str(root), "source": "synthetic", "synthetic": syn, "n_frames": 2},
                      "model": {"n_frames_G": 2}}).data


def test_ensure_dataset_two_processes_generate_once(tmp_path):
    root = tmp_path / "shared" / "street"
    code = textwrap.dedent(f"""
        from vid2vid.config import from_dict
        from vid2vid.data.synthetic import ensure_dataset
        cfg = from_dict({{"data": {{"root": {str(root)!r}, "source": "synthetic",
                          "synthetic": {{"sequences": 2, "test_sequences": 1, "frames": 6, "size": "64x96"}}}}}})
        print(ensure_dataset(cfg.data))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert [out.strip() for out, _ in results] == [str(root)] * 2
    assert sum("generating the synthetic dataset" in err for _, err in results) == 1
    assert sorted(p.name for p in root.parent.iterdir()) == ["street"]  # no lock, no temporary folder left
    assert len(list((root / "test_B" / "seq_0000").glob("*.png"))) == 6


def test_ensure_dataset_reuses_checks_and_recovers(tmp_path, capsys):
    root = tmp_path / "street"
    assert ensure_dataset(_data_cfg(root)) == root
    first = (root / "train_B/seq_0000/00000.png").stat().st_mtime_ns
    assert ensure_dataset(_data_cfg(root)) == root  # present: not regenerated
    assert (root / "train_B/seq_0000/00000.png").stat().st_mtime_ns == first
    with pytest.raises(DataError, match="frames: 3 on disk vs 4 in the config"):
        ensure_dataset(_data_cfg(root, frames=4))
    # a lock left behind by a dead process is taken over
    other = tmp_path / "other"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".other.lock").write_text(f"{socket.gethostname()}:{dead.stdout.strip()}")
    assert ensure_dataset(_data_cfg(other), timeout=30) == other
    assert not (tmp_path / ".other.lock").exists()
    # a live owner that never finishes: a clear timeout error naming the lock
    (tmp_path / ".third.lock").write_text(f"{socket.gethostname()}:{os.getpid()}")
    with pytest.raises(DataError, match=r"\.third\.lock"):
        ensure_dataset(_data_cfg(tmp_path / "third"), timeout=0.5)
    # a process id from another host (a shared filesystem) is never taken for dead
    (tmp_path / ".fourth.lock").write_text(f"another-host:{dead.stdout.strip()}")
    with pytest.raises(DataError, match=r"\.fourth\.lock"):
        ensure_dataset(_data_cfg(tmp_path / "fourth"), timeout=0.5)


@pytest.mark.parametrize("overrides, key", [
    (["data.synthetic.frames=1"], "data.synthetic.frames"),
    (["data.synthetic.size=8x64"], "data.synthetic.size"),
    (["data.source=synthetic", "data.synthetic.frames=8", "data.n_frames=9"], "data.n_frames"),
])
def test_synthetic_config_rules(overrides, key):
    from vid2vid.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{key}: "):
        from_dict({}, overrides)
