"""model.init_from: the video generator's image branch starts from an exported per-frame pix2pixHD model.

The copied branch computes exactly the per-frame generator from the current frame's labels; the parts without
a counterpart start fresh; a mismatched export is a ConfigError naming model.init_from; training reads the file
at a fresh start only (a resume does not need it)."""

from pathlib import Path

import pytest
import torch

from vid2vid.checkpoint import export_generator
from vid2vid.config import load_config
from vid2vid.errors import ConfigError
from vid2vid.models.build import build_generator
from vid2vid.train.warm_start import warm_start

REPO = Path(__file__).resolve().parents[1]
TINY_VIDEO = REPO / "configs" / "tiny_video.yaml"


def per_frame_export(folder: Path, *overrides: str) -> tuple[torch.nn.Module, Path]:
    """A randomly initialised pix2pixHD generator of tiny_video.yaml's layout, exported to `folder`."""
    cfg = load_config(TINY_VIDEO, ["model.name=pix2pixhd", *overrides])
    torch.manual_seed(1)
    G = build_generator(cfg).eval()
    with torch.no_grad():  # instance norm makes biases before it invisible: move them anyway, to see them copied
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return G, export_generator(G.state_dict(), cfg, folder)


def video_cfg(export: Path, *overrides: str):
    return load_config(TINY_VIDEO, [f"model.init_from={export}", *overrides])


def branch_output(G: torch.nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """The video generator's scale-0 image branch alone (no frame encoder): labels [B,N,C,H,W] -> [B,3,H,W]."""
    scale = G.scales[0]
    with torch.no_grad():
        return scale.to_image(scale.image_decoder(scale.label_encoder(labels.flatten(1, 2)))[-1])


def random_labels(G: torch.nn.Module) -> torch.Tensor:
    """[1,N,C,32,32]: C from the first conv [ngf, N*C, 7, 7]."""
    torch.manual_seed(3)
    n = G.n_frames_G
    return torch.rand(1, n, G.scales[0].label_encoder[1].in_channels // n, 32, 32)


def test_the_copied_branch_is_the_per_frame_generator(tmp_path):
    image_G, export = per_frame_export(tmp_path / "export")
    cfg = video_cfg(export)
    torch.manual_seed(2)
    G = build_generator(cfg).eval()
    fresh = {k: v.clone() for k, v in G.state_dict().items()}
    assert warm_start(G, cfg) > 0

    labels = random_labels(G)
    with torch.no_grad():
        expected = image_G(labels[:, -1])
    torch.testing.assert_close(branch_output(G, labels), expected, atol=1e-5, rtol=1e-4)

    after = G.state_dict()
    first = after["scales.0.label_encoder.1.weight"]  # [ngf, N*C, 7, 7]: the older frames' channels are zero
    assert first[:, :-labels.shape[2]].abs().max() == 0 and first[:, -labels.shape[2]:].abs().max() > 0
    for key in fresh:  # everything outside the image branch is untouched
        inside = key.startswith(("scales.0.label_encoder.", "scales.0.image_decoder.", "scales.0.to_image."))
        assert torch.equal(after[key], fresh[key]) != inside, key


@pytest.mark.parametrize("override, named", [("model.ngf=16", "model.ngf 16"), ("model.n_blocks=3", "n_blocks 3"),
                                             ("model.n_local_enhancers=1", "n_local_enhancers 1"),
                                             ("data.use_instance=false", "semantic channels")])
def test_a_mismatched_export_is_a_config_error(tmp_path, override, named):
    _, export = per_frame_export(tmp_path / "export", override)
    cfg = video_cfg(export)
    with pytest.raises(ConfigError, match="model.init_from") as error:
        warm_start(build_generator(cfg), cfg)
    assert named in str(error.value)


def test_only_the_pix2pixhd_video_backbone_takes_it():
    for overrides in (["model.name=pix2pixhd"], ["model.backbone=spade"]):
        with pytest.raises(ConfigError, match="model.init_from"):
            video_cfg(Path("anything"), *overrides)


def test_training_starts_from_it_and_resumes_without_it(tmp_path, tiny_data):
    from vid2vid.checkpoint import load_generator
    from vid2vid.train import train

    image_G, export = per_frame_export(tmp_path / "export")
    cfg = video_cfg(export, f"train.out_dir={tmp_path / 'run'}", f"data.root={tiny_data}", "train.max_steps=2",
                    "train.checkpoint_every=1", "train.sample_every=100", "optim.lr=1e-12", "optim.ema=0")
    train(cfg, stop_at=1)
    G, _ = load_generator(tmp_path / "run" / "export")  # one step at a negligible LR: still the per-frame model
    labels = random_labels(G)
    with torch.no_grad():
        expected = image_G(labels[:, -1])
    torch.testing.assert_close(branch_output(G, labels), expected, atol=1e-4, rtol=1e-4)

    for f in export.iterdir():  # the export is gone: a resume must not need it
        f.unlink()
    train(cfg, resume="latest")
    with pytest.raises(Exception, match="no such exported model|missing"):
        train(video_cfg(export, f"train.out_dir={tmp_path / 'other'}", f"data.root={tiny_data}",
                        "train.max_steps=1"))


def test_the_teacher_frames_are_the_per_frame_models(tmp_path):
    """loss.teacher's frames: what the exported per-frame model (model.init_from) makes of each frame's labels."""
    from einops import rearrange

    from vid2vid.checkpoint import build_teacher
    from vid2vid.data.encoding import semantic_input

    image_G, export = per_frame_export(tmp_path / "export")
    cfg = video_cfg(export, "loss.teacher=1")
    torch.manual_seed(4)
    labels = torch.randint(0, cfg.data.label_nc, (2, 3, 32, 32))  # [B,T,H,W]
    inst = torch.randint(0, 3, (2, 3, 32, 32))
    frames = build_teacher(cfg, "cpu")(labels, inst)  # [B,T,3,H,W]
    sem = semantic_input(rearrange(labels, "b t h w -> (b t) h w"), rearrange(inst, "b t h w -> (b t) h w"),
                         cfg.data.label_nc, cfg.data.use_instance)
    with torch.no_grad():
        expected = rearrange(image_G(sem), "(b t) c h w -> b t c h w", b=2)
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=1e-5)
    assert build_teacher(video_cfg(export), "cpu") is None  # loss.teacher 0: no teacher model is loaded


def test_teacher_and_mask_terms_join_the_generator_loss(tmp_path, tiny_data):
    """loss.teacher w adds G/teacher = w * L1(raw, the teacher's frames) (doubling w doubles it on the same first
    step); loss.mask_first_frame: any adds the mask term although the first frames are real; neither by default;
    loss.teacher without model.init_from is refused before training, naming the key."""
    import json

    from vid2vid.train import train

    _, export = per_frame_export(tmp_path / "export")

    def first_step(name: str, *overrides: str) -> dict:
        train(video_cfg(export, f"train.out_dir={tmp_path / name}", f"data.root={tiny_data}", "train.max_steps=1",
                        "train.sample_every=100", "train.checkpoint_every=100", *overrides))
        return json.loads((tmp_path / name / "log.jsonl").read_text().splitlines()[0])

    plain = first_step("plain")
    assert "G/teacher" not in plain and "G/mask" not in plain
    one, two = first_step("one", "loss.teacher=1", "loss.mask_first_frame=any"), first_step("two", "loss.teacher=2")
    assert one["G/teacher"] > 0 and one["G/mask"] > 0
    assert two["G/teacher"] == pytest.approx(2 * one["G/teacher"], rel=1e-5)
    # loss.l1_final: the final frame's own L1 weight (0: none); the raw frame keeps loss.l1
    l1 = first_step("l1", "loss.l1=10")
    no_final = first_step("no_final", "loss.l1=10", "loss.l1_final=0")
    half = first_step("half", "loss.l1=10", "loss.l1_final=5")
    assert l1["G/l1"] > 0 and "G/l1" not in no_final and no_final["G/l1_raw"] == pytest.approx(l1["G/l1_raw"], rel=1e-5)
    assert half["G/l1"] == pytest.approx(l1["G/l1"] / 2, rel=1e-5)
    from vid2vid.train.checks import check_trainable

    with pytest.raises(ConfigError, match="loss.teacher: 1.0 needs model.init_from"):
        check_trainable(load_config(TINY_VIDEO, ["loss.teacher=1"]))


def test_with_zero_init_frames_the_whole_model_starts_as_the_per_frame_model(tmp_path):
    """model.zero_init_frames: the frame encoder joins through a conv1x1 started at zero, so the warm-started
    video generator's raw frame (the full forward, previous frames and all) is the per-frame model's; one step of
    training moves the conv, and then the previous frames change the raw frame."""
    image_G, export = per_frame_export(tmp_path / "export")
    cfg = video_cfg(export, "model.zero_init_frames=true", "model.use_fg=false")  # no fresh foreground branch
    torch.manual_seed(2)
    G = build_generator(cfg)
    warm_start(G, cfg)
    labels = random_labels(G)
    n, (h, w) = G.n_frames_G, labels.shape[-2:]
    prev_a, prev_b = torch.rand(2, 1, n - 1, 3, h, w) * 2 - 1
    with torch.no_grad():
        expected = image_G.eval()(labels[:, -1])
        for prev in (prev_a, prev_b):
            torch.testing.assert_close(G.eval()(labels, prev).raw, expected, atol=1e-5, rtol=1e-4)

    G.train()
    opt = torch.optim.Adam(G.parameters(), lr=1e-3)
    G(labels, prev_a).raw.square().mean().backward()
    opt.step()
    with torch.no_grad():
        moved = (G.eval()(labels, prev_a).raw - G(labels, prev_b).raw).abs().max()
    assert moved > 1e-4

    plain = build_generator(video_cfg(export, "model.use_fg=false"))  # off: the original's layout, no extra conv
    assert len(plain.scales[0].frame_encoder) == len(G.scales[0].frame_encoder) - 1
    with pytest.raises(ConfigError, match="model.zero_init_frames"):
        load_config(TINY_VIDEO, ["model.zero_init_frames=true", "model.backbone=spade"])
