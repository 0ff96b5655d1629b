"""Make original-code fixtures: run NVIDIA's own pix2pixHD / SPADE / vid2vid code once, with random weights, and
write what it gives in the `original-code-fixture-v1` layout (shared/fixtures/README_originals.md) that
tools/check_original_parity.py reads.

    python tools/make_original_fixtures.py --originals /tmp/orig --out tests/fixtures/originals [--only NAME ...]

--originals is a folder with checkouts of the original repositories: pix2pixHD/, SPADE/, vid2vid/ and
Synchronized-BatchNorm-PyTorch/ (SPADE imports its sync_batchnorm package as models.networks.sync_batchnorm; a
SPADE checkout set up as its README says, with SPADE/models/networks/sync_batchnorm, works too). This script only
imports and runs that code; it ships none of it. The originals are from ~2019: a few run-time shims (shims())
let them run on current torch, on CPU, without editing them.

Each fixture is made in its own Python process (the three repositories share the top-level package names
models, options, util and data), with 2 threads and fixed seeds: a second run gives bit-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "original-code-fixture-v1"
REPOS = {"pix2pixHD": ("https://github.com/NVIDIA/pix2pixHD", "pix2pixHD"),
         "SPADE": ("https://github.com/NVlabs/SPADE", "SPADE"),
         "vid2vid": ("https://github.com/NVIDIA/vid2vid", "vid2vid")}
SYNC_BN_DIR = "Synchronized-BatchNorm-PyTorch"


@dataclass(frozen=True)
class Spec:
    """One fixture: the original project, the argv given to its TestOptions, the seed and the frame size."""
    project: str
    argv: tuple[str, ...]
    seed: int
    size: tuple[int, int]  # H, W of the label maps
    notes: str = ""
    dontcare: bool = False  # draw a patch of label 255 (SPADE's don't-care id) into the label map
    frames: int = 1
    extra_meta: dict = field(default_factory=dict)


SPECS: dict[str, Spec] = {
    "pix2pixhd_noinst": Spec(
        "pix2pixHD", ("--name", "pix2pixhd_noinst", "--label_nc", "20", "--no_instance", "--netG", "global",
                      "--ngf", "8", "--n_downsample_global", "2", "--n_blocks_global", "2", "--norm", "instance",
                      "--resize_or_crop", "none", "--loadSize", "64", "--gpu_ids", "-1"),
        seed=401, size=(32, 64), notes="no instance map: the input is the 20 one-hot channels alone"),
    "spade_noinst_more_dontcare": Spec(
        "SPADE", ("--name", "spade_noinst_more_dontcare", "--dataset_mode", "custom", "--label_dir",
                  "/nonexistent/label", "--image_dir", "/nonexistent/image", "--label_nc", "6",
                  "--contain_dontcare_label", "--no_instance", "--ngf", "2", "--crop_size", "128", "--load_size",
                  "128", "--aspect_ratio", "2.0", "--num_upsampling_layers", "more", "--init_type", "xavier",
                  "--init_variance", "0.5", "--gpu_ids", "-1"),
        seed=501, size=(64, 128), dontcare=True,
        notes="semantic_nc = 6 labels + 1 don't-care, no instance channel; 'more': sw = 128 // 2**6 = 2, "
              "sh = round(2 / 2.0) = 1, output 64x128. ngf 2: SPADE's hidden width is fixed at 128, so ngf 4 would "
              "make a ~7 MB file"),
    "vid2vid_G0_nofg_noinst": Spec(
        "vid2vid", ("--name", "vid2vid_nofg_noinst", "--label_nc", "6", "--n_frames_G", "2", "--ngf", "4",
                    "--n_downsample_G", "2", "--n_blocks", "2", "--norm", "batch", "--n_scales_spatial", "1",
                    "--use_real_img", "--loadSize", "64", "--dataroot", "/nonexistent", "--gpu_ids", "-1"),
        seed=601, size=(32, 64), frames=2,
        notes="use_instance off (no edge channel, no inst_ids), fg off (no mask, no fg branch: the forward returns "
              "img_fg_feat None, so outputs have no img_fg_feat), n_frames_G 2, n_downsample_G 2, label_nc 6"),
    "vid2vid_G0_edge2face": Spec(
        "vid2vid", ("--name", "edge2face_small", "--dataset_mode", "face", "--label_nc", "0", "--input_nc", "15",
                    "--ngf", "8", "--n_scales_spatial", "1", "--use_real_img", "--loadSize", "64",
                    "--dataroot", "/nonexistent/face", "--gpu_ids", "-1"),
        seed=701, size=(64, 64), frames=3,
        notes="edge2face_512's options (dataset_mode face, label_nc 0, input_nc 15, n_frames_G 3, n_downsample_G 3, "
              "n_blocks 9, batch norm, no fg, no instance edges) at ngf 8 and 64x64: A is 15 real-valued face-input "
              "channels per frame (fixture face_input_maps), inst the 7 part labels (pool_map only)"),
    "vid2vid_single_edge2face": Spec(
        "vid2vid", ("--name", "edge2face_single_small", "--dataset_mode", "face", "--label_nc", "0", "--input_nc",
                    "15", "--n_blocks", "2", "--loadSize", "48", "--dataroot", "/nonexistent/face", "--gpu_ids", "-1"),
        seed=801, size=(48, 48),
        notes="edge2face's single-frame generator as load_single_G builds it (define_G(15, 3, 0, ngf, "
              "'global_with_features', 3, 'instance') with opt.feat_num 16; E = define_G(3, 16, 0, nef, 'encoder', 4, "
              "'instance')) at ngf 8 / nef 4 instead of 64 / 16 (options single_ngf, single_nef: ours), n_blocks 2, "
              "48x48. features: 5 training images (part 2 has 2 extra rows, never read), image 3 near the real "
              "frame's encoding. inst = the 7 part labels (all present)"),
}
SINGLE_FACE_WIDTHS = {"single_ngf": 8, "single_nef": 4}  # the widths the fixture builds with (64 / 16 released)
SINGLE_FACE_IMAGES, SINGLE_FACE_NEAREST = 5, 3


# ---------------------------------------------------------------------------------------------- synthetic inputs


def make_scene(h: int, w: int, t: int, label_nc: int, dontcare: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A street-like frame -> (labels [H,W], instance ids [H,W]), float with integer values as the originals'
    loaders give them. Stuff: labels 0 .. label_nc-3 as horizontal bands; things: two overlapping ellipses of
    label label_nc-2 and one of label_nc-1 (ids label*1000+k), moving 2*t px right; optionally a 255 patch."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    n_stuff = label_nc - 2
    labels = (ys * n_stuff / h).floor().clamp(max=n_stuff - 1)
    inst = labels.clone()
    things = [(label_nc - 2, 0.30, 0.60, 0.18, 0.14), (label_nc - 2, 0.42, 0.68, 0.16, 0.12),
              (label_nc - 1, 0.75, 0.45, 0.12, 0.20)]  # (label, centre x, centre y, radius x, radius y) as fractions
    for k, (label, cx, cy, rx, ry) in enumerate(things):
        inside = ((xs - cx * w - 2 * t) / (rx * w)) ** 2 + ((ys - cy * h) / (ry * h)) ** 2 <= 1
        labels[inside] = label
        inst[inside] = label * 1000 + k
    if dontcare:
        labels[: h // 8, w - w // 6:] = 255
        inst[: h // 8, w - w // 6:] = 255
    return labels, inst


def real_frames(h: int, w: int, n: int, seed: int) -> torch.Tensor:
    """n smooth random RGB frames in [-1,1] -> [n,3,H,W]; frame t is frame 0 rolled 2*t px to the right."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, max(h // 8, 2), max(w // 8, 2), generator=g)
    image = torch.tanh(1.5 * F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False))[0]
    return torch.stack([torch.roll(image, 2 * t, dims=-1) for t in range(n)])


def face_input_maps(h: int, w: int, n: int, channels: int, seed: int) -> torch.Tensor:
    """n frames of an edge2face-like input in [0, 1] -> [1,n,channels,H,W]: channel 0 a sparse binary edge map,
    the others smooth maps (distance-transform-like), each frame rolled 2*t px to the right."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(h // 8, 2), max(w // 8, 2), generator=g)
    maps = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    maps[0] = (torch.rand(h, w, generator=g) > 0.9).float()
    return torch.stack([torch.roll(maps, 2 * t, dims=-1) for t in range(n)])[None]


# ---------------------------------------------------------------------------------------------- running the originals


def shims() -> list[tuple[object, str, object]]:
    """(object, attribute, replacement) for the originals on current torch and CPU: Tensor.cuda/Module.cuda are the
    identity, torch.cuda.FloatTensor/ByteTensor the CPU types; vid2vid's grid_sample gets align_corners=True (the
    geometry of torch <= 1.2, which it was written for) when it gives none."""
    grid_sample = F.grid_sample

    def aligned_grid_sample(*args, **kwargs):
        kwargs.setdefault("align_corners", True)
        return grid_sample(*args, **kwargs)

    return [(torch.Tensor, "cuda", lambda self, *a, **k: self), (nn.Module, "cuda", lambda self, *a, **k: self),
            (torch.cuda, "FloatTensor", torch.FloatTensor), (torch.cuda, "ByteTensor", torch.ByteTensor),
            (F, "grid_sample", aligned_grid_sample)]


@contextlib.contextmanager
def patched(changes: list[tuple[object, str, object]]) -> Iterator[None]:
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in changes]
    for obj, name, value in changes:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


@contextlib.contextmanager
def original_code(root: Path, argv: list[str]) -> Iterator[None]:
    """Import from the original checkout `root`, in a temporary working folder (its options write checkpoints/),
    with sys.argv = argv (its option parsers read sys.argv) and the run-time shims."""
    if not root.is_dir():
        raise SystemExit(f"make_original_fixtures.py: error: {root}: no such checkout of the original code")
    sys.modules.setdefault("dill", pickle)  # SPADE's util imports dill only as a pickle replacement
    old_cwd, old_argv = os.getcwd(), sys.argv
    with tempfile.TemporaryDirectory() as work, patched(shims()):
        sys.path.insert(0, str(root))
        os.chdir(work)
        sys.argv = argv
        try:
            yield
        finally:
            os.chdir(old_cwd)
            sys.argv = old_argv


def register_sync_batchnorm(originals: Path) -> None:
    """SPADE imports models.networks.sync_batchnorm (a git submodule): load it from the separate checkout."""
    if (originals / "SPADE" / "models" / "networks" / "sync_batchnorm").is_dir():
        return
    package = originals / SYNC_BN_DIR / "sync_batchnorm"
    spec = importlib.util.spec_from_file_location("models.networks.sync_batchnorm", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    if spec is None or spec.loader is None:
        raise SystemExit(f"make_original_fixtures.py: error: {package}: no sync_batchnorm package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


@contextlib.contextmanager
def recorded_calls(module: nn.Module) -> Iterator[list[tuple[tuple, object]]]:
    """Record (args, result) of every forward of `module`, whether it is called or its .forward is (the originals
    do both)."""
    calls: list[tuple[tuple, object]] = []
    forward = module.forward

    def recording(*args, **kwargs):
        result = forward(*args, **kwargs)
        calls.append((args, result))
        return result

    module.forward = recording
    try:
        yield calls
    finally:
        del module.forward


def saved_state_dict(save: Callable[[], None], path: Path) -> dict:
    """Run the original's save function (it writes `path`) -> what it wrote, read back with weights_only=True."""
    save()
    return torch.load(path, map_location="cpu", weights_only=True)


def options_dict(opt) -> dict:
    """The original's parsed option namespace -> a plain dict (every option, as parsed; all are str, int, float,
    bool, None or lists of them, which torch.load(weights_only=True) reads)."""
    options = dict(vars(opt))
    plain = (str, int, float, bool, type(None), list)
    odd = [name for name, value in options.items() if not isinstance(value, plain)]
    if odd:
        raise TypeError(f"options {odd} are not plain values")
    return options


# ---------------------------------------------------------------------------------------------- pix2pixHD


def make_pix2pixhd(spec: Spec) -> tuple[dict, nn.Module]:
    """pix2pixHD: TestOptions().parse(), create_model(opt) (its InferenceModel, with load_network a no-op: the
    weights are weights_init's under the seed), BaseModel.save_network, then InferenceModel.inference(label, inst)
    with the netG call recorded."""
    from models.base_model import BaseModel
    from models.models import create_model
    from options.test_options import TestOptions

    opt = TestOptions().parse(save=False)
    with patched([(BaseModel, "load_network", lambda self, network, *args: None)]):
        torch.manual_seed(spec.seed)
        model = create_model(opt)
    net = model.netG
    state_dict = saved_state_dict(lambda: model.save_network(net, "G", "latest", []),
                                  Path(model.save_dir) / "latest_net_G.pth")
    labels, inst = (x[None, None] for x in make_scene(*spec.size, 0, opt.label_nc))  # [1,1,H,W]
    given_inst = torch.zeros(1) if opt.no_instance else inst  # the dataset's inst is 0 with --no_instance
    with recorded_calls(net) as calls, torch.no_grad():
        fake = model.inference(labels, given_inst)
    inputs = {"label_map": labels, **({} if opt.no_instance else {"inst_map": inst}), "input_label": calls[0][0][0]}
    instance = "" if opt.no_instance else ", then cat get_edges(inst_map)"
    return {
        "meta": {"generator_class": f"models.networks.{type(net).__name__}",
                 "built_with": f"create_model(opt) (InferenceModel.initialize -> networks.define_G, weights_init) "
                               f"with BaseModel.load_network made a no-op; torch.manual_seed({spec.seed}) before",
                 "state_dict_source": "BaseModel.save_network(netG, 'G', 'latest', []) -> torch.load(weights_only="
                                      "True); stored unchanged",
                 "input_construction": f"Pix2PixHDModel.encode_input(label_map, inst, infer=True): one-hot of "
                                       f"label_map.long() over label_nc={opt.label_nc}{instance}",
                 "forward_call": "fake_image = netG(input_label)   # recorded inside "
                                 "InferenceModel.inference(label_map, inst)",
                 "mode": "as test.py: no .eval() (InstanceNorm2d without running stats, no dropout)"},
        "options": options_dict(opt), "state_dict": state_dict, "inputs": inputs,
        "outputs": {"fake_image": fake.detach().clone()},
    }, net


# ---------------------------------------------------------------------------------------------- weights


VAR_FLOOR = 0.1  # of the layer's mean running variance


def calibrate_and_perturb_stats(net: nn.Module, forward: Callable[[], object], seed: int) -> None:
    """Batch-norm running stats from one train-mode forward (momentum 1.0), then perturbed per channel
    (mean += 0.25*std*N(0,1), var *= exp(U(-0.5,0.5))), so that running and batch statistics differ, and the
    variance floored at VAR_FLOOR x the layer's mean: a one-frame batch at SPADE's 1x2 head gives single channels
    variances near 1e-7, whose amplification would make float32 rounding (~3e-4) the largest difference."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    net.train()
    with torch.no_grad():
        forward()
    g = torch.Generator().manual_seed(seed)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        std = m.running_var.sqrt()
        m.running_mean += 0.25 * std * torch.randn(std.shape, generator=g)
        m.running_var *= torch.exp(torch.rand(std.shape, generator=g) - 0.5)
        m.running_var.clamp_(min=VAR_FLOOR * m.running_var.mean().item())


def randomise_affine(net: nn.Module, seed: int) -> None:
    """Batch-norm weight U(0.8,1.2), bias N(0,0.1) (the code's init leaves them ~1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.copy_(0.8 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


# ---------------------------------------------------------------------------------------------- SPADE


def make_spade(spec: Spec) -> tuple[dict, nn.Module]:
    """SPADE: TestOptions().parse(), Pix2PixModel(opt) (util.load_network a no-op: define_G's init_weights under
    the seed), conv biases N(0,0.05), 30 train-mode forwards (spectral-norm u/v converge), stats calibrated and
    perturbed, util.save_network, then .eval() and model(data, mode='inference') with the netG call recorded."""
    import models.pix2pix_model as pix2pix_model
    from options.test_options import TestOptions

    opt = TestOptions().parse()
    with patched([(pix2pix_model.util, "load_network", lambda net, *args: net)]):
        torch.manual_seed(spec.seed)
        model = pix2pix_model.Pix2PixModel(opt)
    net = model.netG
    labels, inst = (x[None, None] for x in make_scene(*spec.size, 0, opt.label_nc, spec.dontcare))  # [1,1,H,W]
    loaded = labels.masked_fill(labels == 255, opt.label_nc) if opt.contain_dontcare_label else labels

    def data() -> dict:  # what the dataset gives (Pix2pixDataset: label 255 -> label_nc; instance 0 when absent)
        return {"label": loaded.clone(), "instance": torch.zeros(1) if opt.no_instance else inst.clone(),
                "image": torch.zeros(1, 3, *spec.size)}

    semantics = model.preprocess_input(data())[0]
    g = torch.Generator().manual_seed(spec.seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
        net.train()
        for _ in range(30):
            net(semantics)
    calibrate_and_perturb_stats(net, lambda: net(semantics), spec.seed + 2)
    (Path(opt.checkpoints_dir) / opt.name).mkdir(parents=True, exist_ok=True)  # test.py's options do not make it
    state_dict = saved_state_dict(lambda: pix2pix_model.util.save_network(net, "G", "latest", opt),
                                  Path(opt.checkpoints_dir) / opt.name / "latest_net_G.pth")
    model.eval()
    with recorded_calls(net) as calls:
        fake = model(data(), mode="inference")
    inputs = {"label_map": labels, **({} if opt.no_instance else {"inst_map": inst}),
              "input_semantics": calls[0][0][0]}
    return {
        "meta": {"generator_class": "models.networks.generator.SPADEGenerator",
                 "built_with": f"Pix2PixModel(opt) with util.load_network made a no-op (define_G: init_weights "
                               f"{opt.init_type}, gain {opt.init_variance}); torch.manual_seed({spec.seed}). Then "
                               "every Conv2d bias N(0,0.05); 30 train-mode forwards (spectral-norm u/v); BN running "
                               "stats calibrated (momentum 1.0) and perturbed (mean += 0.25*std*N(0,1), "
                               f"var *= exp(U(-0.5,0.5)), then var >= {VAR_FLOOR} x the layer's mean)",
                 "state_dict_source": "util.save_network(netG, 'G', 'latest', opt) -> torch.load(weights_only=True)",
                 "input_construction": "Pix2PixModel.preprocess_input(data); data['label'] = label_map with 255 -> "
                                       "label_nc (the dataset's don't-care rule) when contain_dontcare_label",
                 "forward_call": "fake_image = netG(input_semantics)   # recorded inside model(data, "
                                 "mode='inference') after model.eval()",
                 "mode": "eval"},
        "options": options_dict(opt), "state_dict": state_dict, "inputs": inputs,
        "outputs": {"fake_image": fake.detach().clone()},
    }, net


# ---------------------------------------------------------------------------------------------- vid2vid

VID2VID_OUTPUTS = ("img_final", "flow", "weight", "img_raw", "img_feat", "flow_feat", "img_fg_feat")


def vid2vid_model(spec: Spec):
    """TestOptions().parse() with test.py's overrides, then Vid2VidModelG().initialize(opt) with load_network a
    no-op (the weights are weights_init's under the seed) -> (opt, model)."""
    from models.base_model import BaseModel
    from models.vid2vid_model_G import Vid2VidModelG
    from options.test_options import TestOptions

    opt = TestOptions().parse(save=False)
    opt.nThreads, opt.batchSize, opt.serial_batches, opt.no_flip = 1, 1, True, True  # test.py's overrides
    if opt.dataset_mode == "temporal":
        opt.dataset_mode = "test"
    with patched([(BaseModel, "load_network", lambda self, network, *args: None)]):
        torch.manual_seed(spec.seed)
        model = Vid2VidModelG()
        model.initialize(opt)
    return opt, model


def vid2vid_run(model, net: nn.Module, train: bool, clip: tuple) -> tuple[tuple, dict, dict]:
    """The first call of test.py (--use_real_img) with netG0 in train or eval mode -> (netG0's recorded arguments,
    its outputs by name, extra tensors: img_warp, img_raw_background, img_fg)."""
    model.fake_B_prev = None
    net.train(train)
    fg = getattr(net, "use_fg_model", False)
    with contextlib.ExitStack() as stack:
        calls = stack.enter_context(recorded_calls(net))
        raw = stack.enter_context(recorded_calls(net.model_final_img))
        fg_calls = stack.enter_context(recorded_calls(net.indv_final)) if fg else []
        model.inference(*clip)
    args, results = calls[0]
    outputs = {name: value.clone() for name, value in zip(VID2VID_OUTPUTS, results) if value is not None}
    with torch.no_grad():
        warped = net.resample(args[1][:, -3:], outputs["flow"])  # the last previous frame, warped
    extra = {"img_raw_background": raw[0][1].clone(), "img_warp": warped,
             **({"img_fg": fg_calls[0][1].clone()} if fg else {})}
    return args, outputs, extra


def make_vid2vid(spec: Spec) -> tuple[dict, nn.Module]:
    """vid2vid scale 0: the model as test.py builds it; BN affine randomised, stats calibrated on the fixture's
    first call and perturbed; BaseModel.save_network; then Vid2VidModelG.inference(A, B, inst) in eval and in train
    mode with the netG0.forward call recorded."""
    opt, model = vid2vid_model(spec)
    net = model.netG0
    h, w = spec.size
    face = opt.dataset_mode == "face"
    scenes = [make_scene(h, w, t, 7 if face else opt.label_nc) for t in range(opt.n_frames_G)]
    labels = torch.stack([s[0] for s in scenes])[None, :, None]  # [1,tG,1,H,W]
    inst = labels.clone() if face else torch.stack([s[1] for s in scenes])[None, :, None] if opt.use_instance else None
    if face:  # label_nc 0: A is the real-valued face input, the part labels are the instance (pool) map
        labels = face_input_maps(h, w, opt.n_frames_G, opt.input_nc, spec.seed + 4)
    frames = real_frames(h, w, opt.n_frames_G, spec.seed + 1)[None]  # [1,tG,3,H,W]
    clip = (labels, frames, inst)
    randomise_affine(net, spec.seed + 2)
    calibrate_and_perturb_stats(net, lambda: vid2vid_run(model, net, True, clip), spec.seed + 3)
    state_dict = saved_state_dict(lambda: model.save_network(net, "G0", "latest", []),
                                  Path(model.save_dir) / "latest_net_G0.pth")
    args, outputs, extra = vid2vid_run(model, net, False, clip)
    _, outputs_train, extra_train = vid2vid_run(model, net, True, clip)
    model.netG0.load_state_dict(state_dict)  # a train-mode forward moves the running stats
    inputs = {("face_input_maps" if face else "A_label_ids"): labels,
              **({"inst_ids": inst} if inst is not None else {}), "B_real_frames": frames,
              "input": args[0], "img_prev": args[1], **({"mask": args[2]} if args[2] is not None else {})}
    return {
        "meta": vid2vid_meta(opt, spec), "options": options_dict(opt), "state_dict": state_dict, "inputs": inputs,
        "use_raw_only": bool(args[6]), "outputs": outputs, "extra": extra,
        "outputs_trainmode": {**outputs_train, **extra_train},
    }, net


def vid2vid_input_words(opt) -> str:
    if opt.label_nc == 0:
        return (f"A as it is (label_nc 0: inputs.face_input_maps, {opt.input_nc} real-valued channels; inst = "
                "inputs.inst_ids, the part labels, only the face pool_map)")
    return f"one-hot of A over label_nc={opt.label_nc}"


def vid2vid_meta(opt, spec: Spec) -> dict:
    edges = " + get_edges(inst) per frame" if opt.use_instance else ""
    return {
        "generator_class": "models.networks.CompositeGenerator",
        "built_with": f"Vid2VidModelG().initialize(opt) with BaseModel.load_network made a no-op (define_G, "
                      f"weights_init); torch.manual_seed({spec.seed}). Then BN weight U(0.8,1.2), bias N(0,0.1); "
                      "running stats calibrated on one train-mode first call (momentum 1.0) and perturbed "
                      f"(mean += 0.25*std*N(0,1), var *= exp(U(-0.5,0.5)), then var >= {VAR_FLOOR} x the layer's mean)",
        "state_dict_source": "BaseModel.save_network(netG0, 'G0', 'latest', []) -> torch.load(weights_only=True)",
        "input_construction": f"Vid2VidModelG.encode_input(A, B, inst): {vid2vid_input_words(opt)}{edges}; "
                              "input = real_A[0,:tG].view(1,-1,H,W) (frame-major); img_prev = "
                              "B[0,:tG-1] (first call, --use_real_img)" + (
                                  "; mask = compute_mask(real_A, tG-1)[0]" if opt.fg else "; mask None (no --fg)"),
        "forward_call": "img_final, flow, weight, img_raw, img_feat, flow_feat, img_fg_feat = netG0.forward(input, "
                        "img_prev, mask, None, None, None, use_raw_only)   # recorded inside "
                        "Vid2VidModelG.inference(A, B, inst); outputs that are None are not stored",
        "mode": "outputs: eval (model.eval()); outputs_trainmode: train mode, what test.py does (no .eval())",
        "grid_sample": "align_corners=True (torch <= 1.2 behaviour the code was written for)",
        "tensors_in_extra": "img_warp = resample(img_prev[:, -3:], flow); img_raw_background = model_final_img "
                            "output before fg compositing; img_fg = indv_final output (with --fg only)",
    }


# ---------------------------------------------------------------------------------------------- vid2vid single G


def perturb_instance_stats(net: nn.Module, seed: int) -> None:
    """Running statistics of the tracked InstanceNorm2d layers (vid2vid's 'instance' norm) set away from 0 / 1:
    mean N(0,0.5), var exp(U(-0.5,0.5)), so that an eval-mode forward (running statistics) differs from what the
    original does (no .eval(): each frame's own statistics), and a conversion that used them would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d) and m.track_running_stats:
                m.running_mean.copy_(0.5 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.exp(torch.rand(m.running_var.shape, generator=g) - 0.5))
                m.num_batches_tracked.fill_(7)


def single_face_features(pooled: torch.Tensor, inst: torch.Tensor, seed: int) -> dict[int, torch.Tensor]:
    """A tiny features.npy dict {part: [rows, 17]}: SINGLE_FACE_IMAGES random rows per part (part 2 two more), row
    SINGLE_FACE_NEAREST = the real frame's pooled encoding of that part + small noise; the last column random."""
    g = torch.Generator().manual_seed(seed)
    features = {}
    for label in range(7):
        rows = 0.5 * torch.randn(SINGLE_FACE_IMAGES + (2 if label == 2 else 0), 17, generator=g)
        where = (inst[0, 0] == label).nonzero()[0]
        rows[SINGLE_FACE_NEAREST, :16] = pooled[0, :, where[0], where[1]] + 0.05 * torch.randn(16, generator=g)
        features[label] = rows
    return features


def make_vid2vid_single_face(spec: Spec) -> tuple[dict, nn.Module]:
    """edge2face's single-frame generator and encoder (load_single_G's define_G calls at a small width), weights
    from weights_init under the seed, conv biases N(0,0.05), instance-norm running stats perturbed; then the
    original's Vid2VidModelG.get_face_features (netE in train mode, the nearest training image over the parts of a
    features.npy written to where it reads it) and netG_i.forward(input, feat_map) in train mode (what the original
    does: no .eval()) and in eval mode."""
    import numpy as np
    from models import networks
    from models.vid2vid_model_G import Vid2VidModelG
    from options.test_options import TestOptions

    opt = TestOptions().parse(save=False)
    opt.feat_num = 16  # load_single_G's
    torch.manual_seed(spec.seed)
    ngf, nef = SINGLE_FACE_WIDTHS["single_ngf"], SINGLE_FACE_WIDTHS["single_nef"]
    net = networks.define_G(15, 3, 0, ngf, "global_with_features", 3, "instance", 0, [], opt)
    net_e = networks.define_G(3, 16, 0, nef, "encoder", 4, "instance", 0, [])
    g = torch.Generator().manual_seed(spec.seed + 1)
    with torch.no_grad():
        for m in [*net.modules(), *net_e.modules()]:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
    perturb_instance_stats(net, spec.seed + 2)
    perturb_instance_stats(net_e, spec.seed + 3)
    state_dict = {k: v.clone() for k, v in net.state_dict().items()}  # what BaseModel.save_network writes
    state_dict_e = {k: v.clone() for k, v in net_e.state_dict().items()}
    h, w = spec.size
    inst = make_scene(h, w, 0, 7)[0][None, None]  # [1,1,H,W] the part labels 0..6 (pool_map)
    face_maps = face_input_maps(h, w, 1, 15, spec.seed + 4)[:, 0]  # [1,15,H,W]
    real = real_frames(h, w, 1, spec.seed + 5)  # [1,3,H,W]
    net_e.train()
    with torch.no_grad():
        pooled = net_e(real, inst)  # [1,16,H,W], train mode as the original runs it
    net_e.load_state_dict(state_dict_e)  # a train-mode forward moves the running stats
    features = single_face_features(pooled, inst, spec.seed + 6)
    folder = Path("checkpoints/edge2face_single")  # where get_face_features reads it (cwd: original_code's)
    folder.mkdir(parents=True, exist_ok=True)
    # float64: current torch takes numpy.float64 scalars (a float) into a tensor element, not numpy.float32
    np.save(folder / "features.npy", {k: v.double().numpy() for k, v in features.items()}, allow_pickle=True)
    model = Vid2VidModelG.__new__(Vid2VidModelG)  # only what get_face_features reads (initialize loads checkpoints)
    nn.Module.__init__(model)
    model.netE, model.opt, model.Tensor = net_e, opt, torch.FloatTensor
    picked = []
    dists_min = model.dists_min
    model.dists_min = lambda *a, **k: picked.append(dists_min(*a, **k)) or picked[-1]
    load = np.load
    with patched([(np, "load", lambda *a, **k: load(*a, **{**k, "allow_pickle": True}))]), torch.no_grad():
        feat_map = model.get_face_features(real, inst).clone()  # [1,16,H,W]
    net_e.load_state_dict(state_dict_e)
    net.train()
    with recorded_calls(net) as calls, torch.no_grad():
        fake = net.forward(face_maps, feat_map)
    net.load_state_dict(state_dict)
    net.eval()
    with torch.no_grad():
        fake_eval = net.forward(face_maps, feat_map)
    net.load_state_dict(state_dict)
    assert calls and int(picked[0]) == SINGLE_FACE_NEAREST, picked
    return {
        "meta": {"generator_class": "models.networks.Global_with_z", "encoder_class": "models.networks.Encoder",
                 "built_with": f"networks.define_G(15, 3, 0, {ngf}, 'global_with_features', 3, 'instance', 0, [], "
                               f"opt) with opt.feat_num 16 and networks.define_G(3, 16, 0, {nef}, 'encoder', 4, "
                               f"'instance', 0, []) (load_single_G's calls at ngf {ngf} / nef {nef}, weights_init); "
                               f"torch.manual_seed({spec.seed}). Then conv biases N(0,0.05), instance-norm running "
                               "stats mean N(0,0.5), var exp(U(-0.5,0.5))",
                 "state_dict_source": "netG_i.state_dict() / netE.state_dict() (BaseModel.save_network's content)",
                 "input_construction": "face_input_maps (15 channels), part_labels (the pool map), real_frame; "
                                       "features: np.save of {part: [rows, 17] float64} into checkpoints/"
                                       "edge2face_single/ (stored here as the float32 tensors it was made from)",
                 "forward_call": "feat_map = Vid2VidModelG.get_face_features(real_frame, part_labels); fake_image = "
                                 "netG_i.forward(face_input_maps, feat_map)",
                 "mode": "outputs: train mode (the original's inference: no .eval(); InstanceNorm2d uses each frame's "
                         "statistics); outputs_evalmode: eval (running statistics; not what the original does)"},
        "network": "vid2vid_single", "options": {**options_dict(opt), **SINGLE_FACE_WIDTHS},
        "state_dict": state_dict, "state_dict_E": state_dict_e, "features": features,
        "inputs": {"face_input_maps": face_maps, "part_labels": inst, "real_frame": real},
        "nearest_image": int(picked[0]),
        "outputs": {"fake_image": fake.clone(), "encoder_pooled": pooled, "feat_map": feat_map},
        "outputs_evalmode": {"fake_image": fake_eval.clone()},
    }, net


# ---------------------------------------------------------------------------------------------- files

MAKERS: dict[str, Callable[[Spec], tuple[dict, nn.Module]]] = {
    "pix2pixHD": make_pix2pixhd, "SPADE": make_spade, "vid2vid": make_vid2vid}
NAMED_MAKERS: dict[str, Callable[[Spec], tuple[dict, nn.Module]]] = {
    "vid2vid_single_edge2face": make_vid2vid_single_face}


def tensor_stats(tensors: dict) -> dict:
    return {name: {"shape": list(t.shape), "min": t.min().item(), "max": t.max().item(), "mean": t.mean().item(),
                   "std": t.std().item()} for name, t in tensors.items()}


def fixture_file(name: str, spec: Spec, made: dict, net: nn.Module, commit: str) -> dict:
    """The maker's tensors and notes -> the whole original-code-fixture-v1 dict."""
    state_dict = made["state_dict"]
    repo = REPOS[spec.project][0]
    meta = {"project": spec.project, "repo": repo, "commit": commit, **made.pop("meta"),
            "torch_version_used": str(torch.__version__), "notes": spec.notes,
            "made_by": f"tools/make_original_fixtures.py (vid2vid project) --only {name}; random weights, not a "
                       "trained model", "shims": "Tensor.cuda/Module.cuda identity, torch.cuda.FloatTensor/"
                       "ByteTensor -> CPU types, F.grid_sample align_corners=True by default, dill -> pickle"}
    return {
        "format": FORMAT, "meta": meta, "argv": ["test.py", *spec.argv], **made,
        "state_dict_keys": list(state_dict), "state_dict_shapes": {k: list(v.shape) for k, v in state_dict.items()},
        "state_dict_dtypes": {k: str(v.dtype) for k, v in state_dict.items()},
        "param_count": sum(p.numel() for p in net.parameters()), "num_state_dict_tensors": len(state_dict),
        "stats": tensor_stats(made["outputs"]),
    }


def git_commit(root: Path, given: str | None) -> str:
    """The checkout's commit: `given` (--commit), else git's HEAD, else 'unknown' (an archive without .git)."""
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_one(name: str, originals: Path, out: Path, commits: dict[str, str]) -> Path:
    """Make fixture `name` in this process (it imports one original project) -> its path."""
    spec = SPECS[name]
    torch.set_num_threads(2)
    root = originals / REPOS[spec.project][1]
    if spec.project == "SPADE":
        sys.path.insert(0, str(root))
        register_sync_batchnorm(originals)
    with original_code(root, ["test.py", *spec.argv]):
        made, net = NAMED_MAKERS.get(name, MAKERS[spec.project])(spec)
    fixture = fixture_file(name, spec, made, net, git_commit(root, commits.get(spec.project)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    torch.save(fixture, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=Path, required=True,
                        help="folder with the checkouts pix2pixHD/, SPADE/, vid2vid/, Synchronized-BatchNorm-PyTorch/")
    parser.add_argument("--out", type=Path, required=True, help="where the .pt files go")
    parser.add_argument("--only", nargs="+", choices=sorted(SPECS), help="make only these (default: all)")
    parser.add_argument("--commit", action="append", default=[], metavar="PROJECT=SHA",
                        help="the commit of a checkout without .git, e.g. SPADE=fecacc92... (default: git HEAD)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.only or sorted(SPECS)
    commits = dict(text.split("=", 1) for text in args.commit if "=" in text)
    if args.in_process:  # one fixture, this process
        for name in names:
            print(f"wrote {make_one(name, args.originals.resolve(), args.out.resolve(), commits)}")
        return 0
    for name in names:  # one process per fixture: the originals share top-level package names
        cmd = [sys.executable, __file__, "--originals", str(args.originals), "--out", str(args.out), "--only", name,
               "--in-process", *(f"--commit={text}" for text in args.commit)]
        status = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
        if status != 0:
            print(f"make_original_fixtures.py: error: {name} failed (exit {status}); rerun it with "
                  f"--only {name} --in-process to see the original code's output", file=sys.stderr)
            return 1
        print(f"wrote {args.out / (name + '.pt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
