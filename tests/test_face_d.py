"""The face discriminator (discriminator.face, issue 30; the original's add_face_disc): the pose clips' face box from
the OpenPose face points (BODY_25 head points as fallback) in the network's view, the crop rule and the crops
(what is inside the box, gradients), frames without a face contributing nothing, the config rules, and a tiny pose
run with the face D: it trains, resumes exactly and runs in 2 processes as in 1."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import one_thread
from safetensors.torch import load_file
from test_poses import SMALL, H, W, make_poses, pose_config
from test_train_video import assert_close, assert_logs_equal, step_rows

from vid2vid.config import load_config
from vid2vid.data.openpose import Person, read_openpose, write_openpose
from vid2vid.data.pose_input import central_columns
from vid2vid.data.poses import face_box
from vid2vid.data.sequences import build_dataset
from vid2vid.errors import ConfigError
from vid2vid.losses import GANLoss
from vid2vid.models.build import build_face_discriminator, discriminator_input_channels
from vid2vid.models.discriminators import face_crops, square_face_boxes
from vid2vid.train import train
from vid2vid.train.video import VideoTrainer

REPO = Path(__file__).resolve().parents[1]
DEMO_POSE = REPO / "configs" / "demo_pose.yaml"
NO_FACE = {("train", 0, 1), ("train", 0, 2), ("train", 1, 3)}  # (phase, sequence, frame): no face points
NETWORKS = ("G", "D", "D_temporal0", "D_temporal1", "D_face")


def drop_faces(root: Path, frames=NO_FACE) -> Path:
    """Remove the face points and the head points of some frames' people (no face box there)."""
    for phase, s, t in frames:
        path = root / f"{phase}_openpose" / f"seq_{s:04d}" / f"{t:05d}.json"
        person = read_openpose(path)[0]
        pose = person.pose.copy()
        pose[[0, 15, 16, 17, 18]] = 0
        write_openpose(path, [Person(pose=pose, face=np.zeros((70, 3)), hand_left=person.hand_left,
                                     hand_right=person.hand_right)])
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return drop_faces(make_poses(tmp_path_factory.mktemp("faces") / "poses", densepose=False))


# ----------------------------------------------------------------------------------------------
# The face box, the crop rule, the crops
# ----------------------------------------------------------------------------------------------


def test_the_clips_carry_the_face_box_in_the_view(faces):
    """face_box: the tight box of the face points in the central columns' pixels (edges: a point at pixel centre x
    is the edge x + 0.5), face_valid false on the frames without face points."""
    cfg = pose_config(faces, "data.pose.openpose_only=true", "data.n_frames=4")
    item = build_dataset(cfg.data, phase="train", seed=0)[0]
    assert item["face_box"].shape == (4, 4) and item["face_box"].dtype == torch.float32
    assert item["face_valid"].dtype == torch.bool
    seq = faces / "train_openpose" / item["sequence"]
    left = central_columns(W).start
    for t in range(4):
        frame = item["start"] + t * item["step"]
        person = read_openpose(seq / f"{frame:05d}.json")[0]
        has_face = person.face[:, 2].max() > 0
        assert bool(item["face_valid"][t]) == has_face
        if not has_face:
            assert item["face_box"][t].abs().max() == 0
            continue
        lo, hi = person.face[:, :2].min(0), person.face[:, :2].max(0)
        expected = [lo[0] + 0.5 - left, lo[1] + 0.5, hi[0] + 0.5 - left, hi[1] + 0.5]
        np.testing.assert_allclose(item["face_box"][t].numpy(), expected, atol=1e-4)
    assert not item["face_valid"].all() and item["face_valid"].any()  # seq 0 frames 1, 2 have none


def test_face_box_falls_back_to_the_head_points():
    pose = np.zeros((25, 3))
    pose[[0, 15, 16, 17, 18]] = [(10, 20, 1), (8, 18, 1), (12, 18, 1), (6, 19, 1), (14, 19, 1)]
    box, valid = face_box([Person(), Person(pose=pose)])  # the first person has no point at all
    assert valid and box.tolist() == [6.5, 18.5, 14.5, 20.5]
    pose[[15, 16, 17, 18]] = 0  # a nose alone is no box
    assert face_box([Person(pose=pose)]) == (pytest.approx(np.zeros(4)), False)


def test_the_crop_rule():
    """Squares about the box's centre, side 1.5 x the longer side, at least 4 pixels."""
    boxes = torch.tensor([[10.0, 10, 14, 12], [5, 5, 6, 5]])
    square = square_face_boxes(boxes, 1.5)
    assert square.tolist() == [[9.0, 8.0, 15.0, 14.0], [3.5, 3.0, 7.5, 7.0]]


def test_the_crop_holds_the_painted_face_region_and_passes_gradients():
    """A frame painted red inside its face box: the crop is red (all of it, the box lying inside the paint); the
    crop of a box elsewhere holds none of it; gradients reach exactly the pixels the crop sampled."""
    x = torch.zeros(2, 3, 32, 32)
    x[:, 0, 6:26, 4:28] = 1.0  # red where the face is
    boxes = torch.tensor([[8.0, 10, 24, 22], [0, 0, 3, 3]])
    x.requires_grad_(True)
    crops = face_crops(x, boxes, 16)
    assert crops.shape == (2, 3, 16, 16)
    assert torch.equal(crops[0, 0], torch.ones(16, 16)) and crops[0, 1:].abs().max() == 0
    assert crops[1].abs().max() == 0
    crops.sum().backward()
    grad = x.grad[0, 0]
    assert grad[10:22, 8:24].min() > 0 and grad.sum() == pytest.approx(256.0)  # each output pixel: weights sum to 1
    assert grad[:9].abs().max() == 0 and grad[:, 25:].abs().max() == 0


def test_a_frame_without_a_face_contributes_nothing():
    """face_inputs crops only the frames with a face (their share of the chunk's frames weighs the terms): the
    generated frame of a faceless frame gets no gradient from the face D, and a chunk with no face gives no term."""
    cfg = load_config(None, ["data.condition=pose", "data.label_nc=25", "data.use_instance=false",
                             "data.fg_labels=[]", "model.name=vid2vid", "model.use_fg=false",
                             "discriminator.face_size=16", "discriminator.ndf=8", "discriminator.num_D=2"])
    assert cfg.discriminator.face  # on by default for the video pose model
    host = SimpleNamespace(cfg=cfg)
    boxes = torch.tensor([[[4.0, 4, 20, 20], [0, 0, 0, 0], [8, 8, 16, 16]]])  # [B=1,T=3,4]
    valid = torch.tensor([[True, False, True]])
    sem = torch.rand(3, discriminator_input_channels(cfg) - 3, 32, 32) * 2 - 1
    fake = (torch.rand(3, 3, 32, 32) * 2 - 1).requires_grad_(True)
    real = torch.rand(3, 3, 32, 32) * 2 - 1
    fake_f, real_f, share = VideoTrainer.face_inputs(host, SimpleNamespace(faces=(boxes, valid)), sem, fake, real)
    assert fake_f.shape == real_f.shape == (2, discriminator_input_channels(cfg), 16, 16) and share == 2 / 3
    D = build_face_discriminator(cfg)["D_face"]
    GANLoss("ls").generator(D(fake_f)).backward()
    per_frame = fake.grad.abs().flatten(1).sum(1)
    assert per_frame[0] > 0 and per_frame[2] > 0 and per_frame[1] == 0
    none = (boxes, torch.zeros_like(valid))
    assert VideoTrainer.face_inputs(host, SimpleNamespace(faces=none), sem, fake, real) is None
    assert VideoTrainer.face_inputs(host, SimpleNamespace(faces=None), sem, fake, real) is None


def test_the_face_config_rules():
    pose = ["data.condition=pose", "data.label_nc=25", "data.use_instance=false", "data.fg_labels=[]",
            "model.use_fg=false"]
    assert load_config(None, [*pose, "model.name=vid2vid"]).discriminator.face
    assert not load_config(None, [*pose, "model.name=vid2vid", "discriminator.face=false"]).discriminator.face
    assert not load_config(None, [*pose, "model.name=pix2pixhd"]).discriminator.face  # the video model's
    assert not load_config(None, ["model.name=vid2vid"]).discriminator.face
    with pytest.raises(ConfigError, match="discriminator.face.*data.condition pose"):
        load_config(None, ["model.name=vid2vid", "discriminator.face=true"])
    with pytest.raises(ConfigError, match="discriminator.face.*video model"):
        load_config(None, [*pose, "model.name=pix2pixhd", "discriminator.face=true"])
    with pytest.raises(ConfigError, match="discriminator.face_size"):
        load_config(None, [*pose, "model.name=vid2vid", "discriminator.face_size=4"])
    for name, size in (("demo_pose", 32), ("pose", 96)):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.discriminator.face and cfg.discriminator.face_size == size


# ----------------------------------------------------------------------------------------------
# A tiny pose run with the face D: trains, resumes exactly, 2 processes = 1
# ----------------------------------------------------------------------------------------------


def pose_run(root: Path, out_dir: Path, *overrides: str):
    data = [f"data.root={root}", f"data.load_size={H}x{W}", f"data.crop_size={H}x{W}", "data.max_zoom=1",
            "data.n_frames=4", "data.max_frames=4", "data.pose.random_drop_prob=0"]
    return load_config(DEMO_POSE, [*data, *SMALL, "discriminator.face_size=16", "train.sample_every=1000",
                                   "data.batch_size=1", f"train.out_dir={out_dir}", *overrides])


def weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    files = {name: ckpt_dir / f"{name}.safetensors" for name in NETWORKS}
    files.update({f"optimizer_{g}": ckpt_dir / f"optimizer_{g}.safetensors" for g in ("G", "D")})
    return {f"{name}.{k}": v for name, f in files.items() for k, v in load_file(str(f)).items()}


def test_a_pose_run_with_the_face_d_trains_and_resumes_exactly(tmp_path, faces):
    """3 steps uninterrupted == stop at 3 after the step-2 checkpoint and resume from it: every network (D_face
    included) and both optimizers (D_face's Adam state in the D group's), and every step's losses."""
    common = ["train.max_steps=3", "train.checkpoint_every=2", "optim.decay_start=0.25"]
    full = train(pose_run(faces, tmp_path / "full", *common))
    assert "D_face" in full.networks
    rows = step_rows(tmp_path / "full")
    assert all(np.isfinite(list(r.values())).all() for r in rows)
    assert all(r["G/face_gan"] > 0 and r["G/face_feat"] > 0 and r["D/face"] > 0 for r in rows)
    cut = tmp_path / "cut"
    train(pose_run(faces, cut, *common), stop_at=3)
    resumed = train(pose_run(faces, cut, *common), resume=str(cut / "checkpoints" / "step_0000002"))
    assert resumed.step == 3
    full_w, cut_w = weights(full.checkpoint), weights(resumed.checkpoint)
    assert any(k.startswith("D_face.") for k in full_w)
    assert_close(full_w, cut_w, atol=1e-6)
    assert_logs_equal(rows, step_rows(cut), rel=1e-6)


def test_no_face_at_all_gives_no_face_loss(tmp_path):
    """Clips whose frames have no face points: zero face terms, no NaN."""
    root = make_poses(tmp_path / "poses", sequences=(("train", 1), ("test", 1)), densepose=False)
    drop_faces(root, {(phase, 0, t) for phase in ("train", "test") for t in range(6)})
    result = train(pose_run(root, tmp_path / "run", "train.max_steps=1", "train.checkpoint_every=1"))
    rows = step_rows(tmp_path / "run")
    assert all(np.isfinite(list(r.values())).all() for r in rows)
    assert all(r["G/face_gan"] == r["G/face_feat"] == r["D/face"] == 0 for r in rows)  # logged, as 0
    opt = load_file(str(result.checkpoint / "optimizer_D.safetensors"))
    assert "D_face" in result.networks and len(opt) > 0


LAUNCHED = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    from safetensors.torch import save_file
    from test_face_d import pose_run
    from vid2vid.train import train
    from pathlib import Path

    torch.set_num_threads(1)
    result = train(pose_run(Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[5:]))
    state = {name + "." + k: v for name, net in result.networks.items() for k, v in net.state_dict().items()}
    out = os.path.join(sys.argv[4], f"rank{os.environ['RANK']}.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, out)
''')


def test_two_processes_match_one_with_the_face_d(tmp_path, faces):
    """2 processes x batch 1 == 1 process with optim.grad_accum=2 (the same arithmetic): every weight, D_face's too,
    and every step's losses; one process sees faceless frames the other does not."""
    common = ["train.max_steps=2", "train.checkpoint_every=2", "optim.decay_start=0.5"]
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(Path(__file__).parent), str(faces), str(tmp_path / "ddp"), str(tmp_path), *common]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and any(k.startswith("D_face.") for k in rank0)
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    with one_thread():
        accum = train(pose_run(faces, tmp_path / "accum", "optim.grad_accum=2", *common))
    ddp_log, accum_log = step_rows(tmp_path / "ddp"), step_rows(tmp_path / "accum")
    assert all("G/face_gan" in r for r in ddp_log)
    assert_logs_equal(ddp_log, accum_log, rel=1e-6)
    accum_state = {f"{name}.{k}": v for name, net in accum.networks.items() for k, v in net.state_dict().items()}
    assert_close(rank0, accum_state, atol=1e-6)


def test_the_face_terms_do_not_depend_on_detach_every(tmp_path, faces):
    """Each face term is its sum over the frames with a face / the clip's generated frames: step 1's losses are the
    same for chunks of 1 frame and one chunk of all 4 (faceless frames in some chunks only)."""
    common = ["train.max_steps=1", "train.checkpoint_every=1000", "data.n_frames=6", "data.max_frames=6"]
    train(pose_run(faces, tmp_path / "one", *common, "train.detach_every=1"))
    train(pose_run(faces, tmp_path / "all", *common, "train.detach_every=4"))
    one, every = step_rows(tmp_path / "one"), step_rows(tmp_path / "all")
    assert one[0]["G/face_gan"] > 0
    assert_logs_equal(one, every, rel=1e-5)


def test_the_crop_of_a_clip_frame_is_its_face(tmp_path):
    """A frame painted red about its face points (a square of 15 pixels about the nose, in the file): the clip's
    face crop (the crop rule and face_crops on the clip's frame, in the central columns' view) is red at its middle,
    where the face is, and not red at its corners."""
    from vid2vid.video_io import read_image, write_image

    root = make_poses(tmp_path / "poses", sequences=(("train", 1), ("test", 1)), densepose=False)
    path = root / "test_img" / "seq_0000" / "00000.png"
    frame = read_image(path)
    nose = read_openpose(root / "test_openpose" / "seq_0000" / "00000.json")[0].pose[0, :2].astype(int)
    frame[nose[1] - 7: nose[1] + 8, nose[0] - 7: nose[0] + 8] = (255, 0, 0)
    write_image(path, frame)
    cfg = pose_config(root, "data.pose.openpose_only=true", "data.n_frames=3")
    item = build_dataset(cfg.data, phase="test")[0]
    assert item["face_valid"].all()
    box = square_face_boxes(item["face_box"][:1], 1.5)  # the face: 6 x 4 pixels -> a square of 9
    crop = face_crops(item["frames"][:1], box, 16)[0]  # [3,16,16] in [-1,1]
    red = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    assert torch.allclose(crop[:, 4:12, 4:12], red.expand(3, 8, 8), atol=1e-5)
    other = face_crops(item["frames"][1:2], square_face_boxes(item["face_box"][1:2] + 20, 1.5), 16)[0]
    assert not torch.allclose(other[:, 8, 8], red[:, 0, 0], atol=0.1)  # elsewhere, no red
