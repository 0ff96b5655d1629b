"""vid2vid's single-frame (first-frame) generators, edge2face's G0 and label id 255 at render time.

The original layouts are rebuilt here as small torch modules written from the key layouts in
shared/fixtures/README_originals.md (vid2vid's 'instance' norm is InstanceNorm2d(track_running_stats=True)),
without vid2vid.interop.originals: their state dicts are what the original saves, and their train-mode forward is
what the original's test.py computes (it never calls .eval()).
Released sizes are checked on the meta device; numbers on small ones."""

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vid2vid import cli
from vid2vid.checkpoint import export_generator, load_export, load_generator
from vid2vid.config import from_dict
from vid2vid.errors import ConfigError
from vid2vid.interop.import_originals import import_config, original_options
from vid2vid.interop.originals import convert_state_dict, vid2vid_g0_kwargs
from vid2vid.models.build import build_generator
from vid2vid.models.image import FeatureEncoder, LocalEnhancer
from vid2vid.models.video import VideoGenerator

# ---------------------------------------------------------------------------------------------- original layouts


def tracked_instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=True)


class OriginalResBlock(nn.Module):
    """conv_block: 0 pad, 1 conv3, 2 norm, 3 ReLU, 4 pad, 5 conv3, 6 norm; x + conv_block(x)."""

    def __init__(self, dim: int, norm):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(),
                                        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim))

    def forward(self, x):
        return x + self.conv_block(x)


def original_global_layers(input_nc: int, output_nc: int, ngf: int, depth: int, blocks: int, norm) -> list:
    """GlobalGenerator.model: pad, conv7, norm, ReLU; depth x (conv3 s2, norm, ReLU); blocks; depth x (ConvT, norm,
    ReLU); pad, conv7, tanh."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU()]
    for i in range(depth):
        layers += [nn.Conv2d(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, 1), norm(ngf * 2 ** (i + 1)), nn.ReLU()]
    layers += [OriginalResBlock(ngf * 2**depth, norm) for _ in range(blocks)]
    for i in range(depth, 0, -1):
        layers += [nn.ConvTranspose2d(ngf * 2**i, ngf * 2 ** (i - 1), 3, 2, 1, output_padding=1),
                   norm(ngf * 2 ** (i - 1)), nn.ReLU()]
    return layers + [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]


class OriginalGlobal(nn.Module):
    def __init__(self, input_nc, ngf, depth, blocks, output_nc=3, norm=tracked_instance_norm):
        super().__init__()
        self.model = nn.Sequential(*original_global_layers(input_nc, output_nc, ngf, depth, blocks, norm))

    def forward(self, x):
        return self.model(x)


class OriginalLocal(nn.Module):
    """One enhancer: model = GlobalGenerator(2 ngf) without its last 3 layers on the half-size input; model1_1 =
    pad, conv7, norm, ReLU, conv3 s2, norm, ReLU; model1_2 = local blocks, ConvT, norm, ReLU, pad, conv7, tanh."""

    def __init__(self, input_nc, ngf, depth, blocks, local_blocks, norm=tracked_instance_norm):
        super().__init__()
        self.model = nn.Sequential(*original_global_layers(input_nc, 3, 2 * ngf, depth, blocks, norm)[:-3])
        self.model1_1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(),
                                      nn.Conv2d(ngf, 2 * ngf, 3, 2, 1), norm(2 * ngf), nn.ReLU())
        self.model1_2 = nn.Sequential(*[OriginalResBlock(2 * ngf, norm) for _ in range(local_blocks)],
                                      nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1), norm(ngf),
                                      nn.ReLU(), nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())

    def forward(self, x):
        half = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return self.model1_2(self.model1_1(x) + self.model(half))


class OriginalCompositeNoFg(nn.Module):
    """vid2vid's CompositeGenerator without the fg branch (edge2face G0), BatchNorm: the module layout only."""

    def __init__(self, input_nc, prev_nc, ngf, depth, blocks):
        super().__init__()
        bn, top = nn.BatchNorm2d, ngf * 2**depth
        down = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), bn(ngf), nn.ReLU()]
        for i in range(depth):
            down += [nn.Conv2d(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, 1), bn(ngf * 2 ** (i + 1)), nn.ReLU()]
        down += [OriginalResBlock(top, bn) for _ in range(blocks - blocks // 2)]
        ups = []
        for i in range(depth, 0, -1):
            ups += [nn.ConvTranspose2d(ngf * 2**i, ngf * 2 ** (i - 1), 3, 2, 1, output_padding=1),
                    bn(ngf * 2 ** (i - 1)), nn.ReLU()]
        self.model_down_seg = nn.Sequential(*down)
        self.model_down_img = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(prev_nc, ngf, 7), bn(ngf), nn.ReLU(),
                                            *copy.deepcopy(down[4:]))
        self.model_res_img = nn.Sequential(*[OriginalResBlock(top, bn) for _ in range(blocks // 2)])
        self.model_up_img = nn.Sequential(*ups)
        self.model_final_img = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())
        self.model_res_flow = copy.deepcopy(self.model_res_img)
        self.model_up_flow = copy.deepcopy(self.model_up_img)
        self.model_final_flow = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 2, 7))
        self.model_final_w = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Sigmoid())


def counts(module: nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in module.parameters()), len(module.state_dict())


def single_options(preset: str | None, *options: str) -> dict:
    return original_options("vid2vid-single", preset=preset, options=list(options))


# ---------------------------------------------------------------------------------------------- released layouts


@pytest.mark.parametrize(("preset", "original", "params", "tensors"), [
    ("label2city_2048", lambda: OriginalLocal(35, 32, 4, 9, 3), 182_852_355, 182),
    ("label2city_1024_g1", lambda: OriginalGlobal(35, 64, 4, 9), 182_543_619, 137)])
def test_released_single_generators_convert_strictly(preset, original, params, tensors):
    """The README's sizes, of the original layout and of ours; every original key used, every one of ours set."""
    with torch.device("meta"):
        theirs = original()
        ours = build_generator(import_config("vid2vid-single", single_options(preset)))
    assert counts(theirs) == (params, tensors)
    assert counts(ours)[0] == params
    converted = convert_state_dict("vid2vid_single", theirs.state_dict(), ours)
    assert converted.keys() == ours.state_dict().keys()


def test_edge2face_encoder_is_our_feature_encoder():
    """edge2face's E: Encoder(3 -> 16, ngf 16, d 4): the global layout without blocks, 799,008 / 47."""
    with torch.device("meta"):
        theirs = OriginalGlobal(3, 16, 4, 0, output_nc=16)
        ours = FeatureEncoder(3, 16, ngf=16, n_downsample=4)
    assert counts(theirs) == (799_008, 47) and counts(ours)[0] == 799_008
    assert convert_state_dict("vid2vid_single", theirs.state_dict(), ours).keys() == ours.state_dict().keys()


def test_edge2face_g0_converts_strictly():
    """15 real-valued channels per frame x 3 frames = 45, one scale, no fg, no instance: 364,996,230 / 356. The
    original layout's weights map onto our VideoGenerator key for key (its import: tests/test_originals_faces.py)."""
    options = original_options("vid2vid", preset="edge2face_512")
    kwargs = vid2vid_g0_kwargs(options)
    assert kwargs["label_nc_per_frame"] == 15 and not kwargs["use_fg"]
    with torch.device("meta"):
        theirs = OriginalCompositeNoFg(45, 6, 128, 3, 9)
        ours = VideoGenerator(**kwargs)
    assert counts(theirs) == (364_996_230, 356) and counts(ours) == (364_996_230, 356)
    assert convert_state_dict("vid2vid_G0", theirs.state_dict(), ours).keys() == ours.state_dict().keys()


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "edge2face_512"], "pass --features edge2face_single/features.npy"),
    (["--preset", "coco"], "is a spade checkpoint"),
    (["--option", "label_nc=35", "loadSize=768"], "loadSize 768"),
    (["--option", "label_nc=20", "loadSize=1024"], "label_nc 20"),
    (["--option", "ngf=32"], "ngf: not an option the vid2vid-single conversion reads"),
])
def test_unsupported_single_generators_are_refused(tmp_path, capsys, args, message):
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "G.pth")
    status = cli.main(["import", "vid2vid-single", str(tmp_path / "G.pth"), str(tmp_path / "export"), *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- strictness


def small_global_options() -> list[str]:
    """loadSize 512: GlobalGenerator(35, ngf 64, d 3); no residual blocks keeps it at 3.2 M parameters."""
    return ["label_nc=35", "loadSize=512", "n_blocks=0"]


def test_running_statistics_are_checked_not_ignored():
    ours = build_generator(import_config("vid2vid-single", single_options(None, *small_global_options())))
    state = OriginalGlobal(35, 64, 3, 0).state_dict()
    assert convert_state_dict("vid2vid_single", state, ours)  # the complete layout converts

    plain = {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    with pytest.raises(ConfigError) as error:  # a checkpoint without the statistics: not vid2vid's layout
        convert_state_dict("vid2vid_single", plain, ours, source="G.pth")
    assert "our instance norm model.2 [64] has no running_mean in the checkpoint" in str(error.value)

    bad = dict(state) | {"model.1.running_mean": torch.zeros(64), "model.5.running_var": torch.zeros(7)}
    with pytest.raises(ConfigError) as error:
        convert_state_dict("vid2vid_single", bad, ours, source="G.pth")
    message = str(error.value)
    assert "model.1.running_mean [64] is a running statistic, but model.1 is not an instance norm" in message
    assert "model.5.running_var [7]: our instance norm model.5 needs [128]" in message


# ---------------------------------------------------------------------------------------------- numbers


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and running statistics (which the original's inference does not use)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.1 if name.endswith("weight") else 0.05)
    return module


def one_hot(labels: torch.Tensor, n: int) -> torch.Tensor:
    """[B,H,W] ids -> [B,n,H,W], written here without vid2vid.data.encoding."""
    return torch.zeros(labels.shape[0], n, *labels.shape[1:]).scatter_(1, labels[:, None], 1.0)


def street_labels(n: int, size=(64, 64), label_nc: int = 35, *, seed: int = 0) -> torch.Tensor:
    """[n,H,W] blocky label maps with a moving block."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, label_nc, (1, 1, size[0] // 16, size[1] // 16), generator=g).float()
    base = F.interpolate(coarse, size=size, mode="nearest")[0, 0].long()
    frames = []
    for t in range(n):
        frame = base.clone()
        frame[20:40, 4 + 3 * t: 24 + 3 * t] = 26
        frames.append(frame)
    return torch.stack(frames)


def write_label_pngs(folder: Path, labels: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(labels):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame.numpy().astype(np.uint8))
    return folder


def read_frames(folder: Path) -> torch.Tensor:
    """PNG frames -> [N,3,H,W] uint8 as int64 (RGB)."""
    images = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).long()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    return ((frames.clamp(-1, 1) * 0.5 + 0.5) * 255 + 0.5).floor().long()


def test_import_then_render_gives_the_originals_first_frames(tmp_path, capsys):
    """A random checkpoint in the original GlobalGenerator layout -> vid2vid import vid2vid-single -> vid2vid
    render: the frames are the original module's train-mode output (what test.py computes) to 1/255."""
    original = randomised(OriginalGlobal(35, 64, 3, 0), seed=1)
    torch.save(original.state_dict(), tmp_path / "latest_net_G_512.pth")
    export = tmp_path / "single"
    assert cli.main(["import", "vid2vid-single", str(tmp_path / "latest_net_G_512.pth"), str(export),
                     "--option", *small_global_options()]) == 0
    assert f"--first-frame image-model:{export}" in capsys.readouterr().out
    labels = street_labels(2)
    assert cli.main(["render", str(write_label_pngs(tmp_path / "labels", labels)), str(tmp_path / "out"),
                     "-m", str(export), "--frames-dir"]) == 0
    with torch.no_grad():
        expected = to_uint8(original.train()(one_hot(labels, 35)))
        assert not torch.allclose(original.eval()(one_hot(labels, 35)), original.train()(one_hot(labels, 35)),
                                  atol=1e-2)  # eval mode (running statistics) is another picture
    assert (read_frames(tmp_path / "out") - expected).abs().max() <= 1


def test_local_enhancer_layout_loads_with_the_originals_numbers():
    """The LocalEnhancer layout (label2city_2048's, small): our model after the strict conversion equals the
    original module's train-mode forward."""
    original = randomised(OriginalLocal(35, 4, 2, 1, 1), seed=2)
    ours = LocalEnhancer(35, ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1, n_blocks_local=1)
    ours.load_state_dict(convert_state_dict("vid2vid_single", original.state_dict(), ours))
    x = one_hot(street_labels(1, (32, 32)), 35)
    with torch.no_grad():
        assert (ours.eval()(x) - original.train()(x)).abs().max() <= 1e-5


def video_export(folder: Path, first_frame: str, **data) -> Path:
    """A small random vid2vid export on the street labels (35 ids + instance edges), seeded by `first_frame`."""
    cfg = from_dict({"data": {"label_nc": 35, "use_instance": True, "fg_labels": [26], "load_size": "64x64",
                              "crop_size": "64x64", **data},
                     "model": {"name": "vid2vid", "ngf": 4, "n_downsample": 2, "n_blocks": 1, "norm": "batch",
                               "first_frame": first_frame, "norm_at_inference": "batch_stats"}})
    torch.manual_seed(3)
    return export_generator(build_generator(cfg).state_dict(), cfg, folder)


def test_an_imported_single_generator_makes_a_video_models_first_frames(tmp_path):
    """model.first_frame image-model:PATH (and --first-frame) with the imported export: the first n_frames_G - 1 = 2
    frames are the single generator's, the rest the video model's."""
    original = randomised(OriginalGlobal(35, 64, 3, 0), seed=4)
    torch.save(original.state_dict(), tmp_path / "G.pth")
    single = tmp_path / "single"
    assert cli.main(["import", "vid2vid-single", str(tmp_path / "G.pth"), str(single), "--option",
                     *small_global_options()]) == 0
    labels = street_labels(4)
    inputs = write_label_pngs(tmp_path / "labels", labels)
    video = video_export(tmp_path / "video", f"image-model:{single}")
    assert cli.main(["render", str(inputs), str(tmp_path / "out"), "-m", str(video), "--frames-dir"]) == 0
    frames = read_frames(tmp_path / "out")
    with torch.no_grad():
        expected = to_uint8(original.train()(one_hot(labels[:2], 35)))
    assert len(frames) == 4 and (frames[:2] - expected).abs().max() <= 1
    assert (frames[2] - frames[1]).abs().float().mean() > 1  # the video model's own frame follows
    plain = video_export(tmp_path / "video_zeros", "zeros")
    assert cli.main(["render", str(inputs), str(tmp_path / "out2"), "-m", str(plain), "--frames-dir",
                     "--first-frame", f"image-model:{single}"]) == 0
    assert torch.equal(read_frames(tmp_path / "out2")[:2], frames[:2])


# ---------------------------------------------------------------------------------------------- label id 255


def dontcare_export(folder: Path, dontcare: bool) -> Path:
    """A small random pix2pixHD export with 3 labels (+ SPADE's don't-care channel when dontcare)."""
    cfg = from_dict({"data": {"label_nc": 3, "contain_dontcare_label": dontcare, "use_instance": False, "fg_labels": [],
                              "load_size": "32x32", "crop_size": "32x32"},
                     "model": {"name": "pix2pixhd", "ngf": 4, "n_downsample": 2, "n_blocks": 1}})
    torch.manual_seed(5)
    return export_generator(randomised(build_generator(cfg), 5).state_dict(), cfg, folder)


def test_render_takes_dontcare_label_255(tmp_path, capsys):
    """data.contain_dontcare_label: id 255 is one-hot channel label_nc (3 here), through the CLI; a model without it
    refuses 255 naming the key, and so does a video model (which has no don't-care channel)."""
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[:, :, 10:20] = 255
    labels[:, 20:, :] = 2
    inputs = write_label_pngs(tmp_path / "labels", labels)
    export = dontcare_export(tmp_path / "dontcare", True)
    assert cli.main(["render", str(inputs), str(tmp_path / "out"), "-m", str(export), "--frames-dir",
                     "--side-by-side"]) == 0
    g, _ = load_generator(export)
    with torch.no_grad():
        expected = to_uint8(g(one_hot(torch.where(labels == 255, 3, labels), 4)))
    frames = read_frames(tmp_path / "out")
    assert frames.shape[-1] == 64 and (frames[..., 32:] - expected).abs().max() <= 1
    assert load_export(export).generate(labels).shape == (2, 3, 32, 32)

    plain = dontcare_export(tmp_path / "plain", False)
    video = video_export(tmp_path / "video", "zeros")  # (a video model cannot have data.contain_dontcare_label)
    for i, model in enumerate((plain, video)):
        status = cli.main(["render", str(inputs), str(tmp_path / f"out{i}"), "-m", str(model), "--frames-dir"])
        err = capsys.readouterr().err
        assert status == 2 and "label id 255" in err and "data.contain_dontcare_label" in err
        assert "Traceback" not in err
