"""Configuration: nested dataclasses loaded strictly from YAML, with `--set a.b=value` overrides.

Every key is checked: unknown keys name the closest valid key, wrong types and broken rules name
the key, the value and the rule. Modules never receive a Config; builders unpack its fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml

from vid2vid.errors import ConfigError
from vid2vid.families import family, fg_labels_problem


class Size(NamedTuple):
    """A size written "HxW" (height first) in YAML."""

    h: int
    w: int

    def __str__(self) -> str:
        return f"{self.h}x{self.w}"


def parse_size(text: str | Size | list | tuple, key: str = "size") -> Size:
    """'256x512' (or [256, 512]) -> Size(256, 512); a clear error otherwise (also for a side of 0)."""
    size = None
    if isinstance(text, (list, tuple)) and len(text) == 2 and all(_is_int(v) for v in text):
        size = Size(int(text[0]), int(text[1]))
    elif isinstance(text, str):
        parts = text.lower().replace(" ", "").split("x")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            size = Size(int(parts[0]), int(parts[1]))
    if size is None or min(size) < 1:
        raise ConfigError(f"{key}: expected a size written HxW (height first, both >= 1), e.g. 256x512; got {text!r}")
    return size


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass
class SyntheticConfig:
    """The procedural street dataset generated into data.root on first use (data.source: synthetic)."""

    sequences: int = 8
    test_sequences: int = 2
    frames: int = 30
    size: Size = Size(128, 256)
    seed: int = 0


@dataclass
class FaceConfig:
    """The face input's options (data.condition: face), named as the original's."""

    no_dist_map: bool = False  # the edge map alone (1 channel) instead of edges + 14 distance maps (15)
    no_canny_edge: bool = False  # no Canny edges of the real frame outside the face


@dataclass
class PoseConfig:
    """The pose input's options (data.condition: pose), named as the original's (vid2vid.data.pose_input.PoseOptions).
    The generator's input per frame: DensePose IUV (3, from <phase>_densepose) unless openpose_only, the OpenPose
    rendering (3, drawn from <phase>_openpose), then the body mask (1, from <phase>_mask) with mask, all in [-1,1].
    (The original's densepose_only is not offered: the layout's sequences are those of <phase>_openpose.)"""

    openpose_only: bool = False  # no DensePose: the OpenPose rendering alone (3 channels; + the mask with mask)
    remove_face_labels: bool = False  # training: DensePose's head parts removed, the head's points jittered
    basic_point_only: bool = False  # the body's limbs only: no head limbs, hands or face
    random_drop_prob: float = 0.05  # training: the chance each limb, hand, the face and each DensePose part is left out
    # one more channel, the body mask (<phase>_mask/<seq>/*.png, 0/255 -> -1/1; `vid2vid prepare video X OUT --labels
    # pose` writes it): a stand-in for DensePose's silhouette where DensePose (detectron2) is not at hand
    mask: bool = False
    # keep only the central 2 * (W // 4 // 32 * 32) columns of data.crop_size's width W, as the original always does
    # (its pose clips are crops of full-width frames; the person stands in the middle). Widths below 128 keep none
    central_columns: bool = True


@dataclass
class DataConfig:
    root: str = "data/synthetic"
    # what conditions the generator: labels (<phase>_A label maps: one-hot + instance boundaries) or face (the
    # original's face layout, <phase>_keypoints/<seq>/*.txt with 68 `x,y` lines + <phase>_img: the face input drawn
    # from the landmarks, data.face; load_size is the size the face crop is resized to, crop_size equals it unless
    # set, label_nc is the 7 part labels, which are the instance map and never a generator channel) or pose (the
    # original's pose layout, <phase>_openpose/<seq>/*.json + <phase>_img, optional <phase>_densepose and
    # <phase>_mask: the pose input drawn per frame, data.pose; label_nc is 25, the DensePose part ids 0..24, which
    # are the instance map and the sample pictures, never a generator channel)
    condition: Literal["labels", "face", "pose"] = "labels"
    face: FaceConfig = field(default_factory=FaceConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    source: Literal["folder", "synthetic"] = "folder"  # synthetic: generate into root when absent
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    phase: str = "train"
    label_nc: int = 35
    use_instance: bool = True  # adds one instance-boundary channel when <phase>_inst exists
    contain_dontcare_label: bool = False  # SPADE's COCO/ADE20K: label id 255 becomes one-hot channel label_nc
    fg_labels: list[int] = field(default_factory=lambda: list(range(24, 34)))
    load_size: Size = Size(256, 512)  # every frame is resized to this first
    crop_size: Size = Size(256, 512)  # then one random crop of this size per clip
    max_zoom: float = 1.0  # random extra zoom in [1, max_zoom] per clip before the crop
    flip: bool = True  # random horizontal flip per clip
    n_frames: int = 6  # frames per training clip (T); with train.clip_double_every, the starting length
    max_frames: int = 0  # video model: the length clips double up to (train.clip_double_every); 0 = n_frames
    max_t_step: int = 1  # random temporal stride in [1, max_t_step] per clip
    batch_size: int = 1
    num_workers: int = 0
    # colour-coded label maps (vid2vid render): the [R, G, B] colour (ints 0..255, all distinct) of each label id,
    # id = position, at most label_nc entries; null: label maps are single-channel id PNGs only. Inline, not a
    # path, so an export carries it. A render --palette FILE overrides it.
    palette: list[list[int]] | None = None


@dataclass
class ModelConfig:
    name: Literal["pix2pix", "pix2pixhd", "spade", "vid2vid"] = "vid2vid"
    ngf: int = 64
    n_downsample: int = 3
    n_blocks: int = 9
    # spectral*: spectral norm on the normed convs; for spade the norm is SPADE's parameter-free norm
    norm: Literal["instance", "batch", "spectralinstance", "spectralbatch", "none"] = "instance"
    n_frames_G: int = 3  # label maps seen per generated frame (vid2vid)
    use_fg: bool = True  # vid2vid foreground branch over data.fg_labels
    # vid2vid's first n_frames_G-1 frames: real (the clip's own real frames; the training default; refused with
    # data.condition pose, whose default is zeros), image-model:PATH (an exported per-frame model generates them) or
    # zeros (raw-only output until the history fills)
    first_frame: str = "real"
    # vid2vid: start the image branch (label encoder, image decoder) from an exported per-frame pix2pixhd model of
    # the same ngf / n_downsample / n_blocks / norm (vid2vid.train.warm_start); read at a fresh start, not on resume
    init_from: str = ""
    # vid2vid: the blend weight w of the hallucinated frame at a fresh start, the same at every pixel (the weight
    # head's conv starts at zero, its bias at logit(w)); null: PyTorch's default init (w ~ 0.5, the reference's).
    # A small w starts the model trusting the warped previous frame, whose detail the blend then keeps
    blend_init: float | None = None
    # how the video model warps its previous output: bicubic (ours) keeps long renders sharp; repeated
    # bilinear resampling (the reference's) low-passes the picture a little more every frame; nearest copies whole
    # pixels, so a static scene's texture survives any number of frames (sub-pixel flows of a still camera blur
    # bicubic too over 30 frames: BENCHMARKS.md, issue 25); no gradient reaches the flow through it
    warp_mode: Literal["bilinear", "bicubic", "nearest"] = "bicubic"
    # vid2vid: also warp the previous frame's decoder features with the predicted flow (off = the original)
    warp_features: bool = True
    # vid2vid: which losses train the flow head. all (the reference's): the flow and warp terms plus every image
    # term, through the warp of the previous generated frame; flow_terms: only the flow and warp terms (the
    # composition warps with the flow detached). Through the warp of generated frames the image terms are noise
    # the size of the signal: in 300 CPU steps the flow head learned nothing with all (BENCHMARKS.md, issue 25)
    flow_trained_by: Literal["all", "flow_terms"] = "all"
    # vid2vid: what the flow head's output is added to. none (the reference's): the head predicts the whole flow;
    # labels: OpenCV DIS flow between grey renderings of frame t's and t-1's input channels (computed in the
    # forward, train and render alike), the head a correction; edges: the same on the first input channel alone (an
    # edge map: the face input's). In a CPU budget the head learns no motion from the
    # labels (its flow was no better than zero flow after 300 steps); DIS on the label maps halves that error
    # (BENCHMARKS.md, issue 25)
    flow_prior: Literal["none", "labels", "edges"] = "none"
    # vid2vid: where the warped previous frame may be used. none (the reference's): wherever the weight head says;
    # labels: only where frame t-1's input channels, warped by the flow, agree with frame t's (elsewhere the flow
    # is wrong or the content new, and the hallucinated frame, which follows the labels, is used); shown: the same
    # against the semantics the previous output shows (carried with it, w * labels + (1 - w) * the previous ones): a
    # region the blend updated only in part keeps disagreeing until it shows frame t's content, where the labels gate
    # sees frames t-1 and t agree and lets the lag grow (BENCHMARKS.md, issue 25, session 12)
    warp_gate: Literal["none", "labels", "shown"] = "none"
    # vid2vid: the gate compares the label maps box-filtered over this many pixels (odd). 1: per pixel (clean label
    # maps: any misplaced boundary counts); 5: a displaced region counts, a pixel's class noise does not (labels of a
    # noisy real clip flicker pixel by pixel, and a per-pixel gate passes that flicker on; BENCHMARKS.md, issue 25)
    warp_gate_window: int = 1
    # vid2vid: > 0 makes the gate hard: the warped previous frame only where the label maps agree exactly at every
    # pixel within this many px (a boundary's partly agreeing pixels carry the other class's colour, which a region
    # that keeps agreeing, a road, then drags along frame after frame: the streaks behind cars). Measured
    # (BENCHMARKS.md, issue 25): it helps a model with the foreground branch; without it, it adds no mIoU and costs
    # detail: 0 here
    warp_gate_margin: int = 0
    # vid2vid: the gate's windowed agreement is divided by 1 - this (at most 1): from 1 - this up it counts as full,
    # so a few noisy label pixels in a window leave the warped frame whole. 0: as it is (a single flipped pixel
    # mixes 2 / window^2 of the hallucinated frame into its whole window, every frame: on a noisy clip that fades
    # the carried texture; BENCHMARKS.md, issue 25, session 12)
    warp_gate_tolerance: float = 0.0
    # vid2vid: > 0 makes the gate hard over parts this many px wide: where the maps disagree in a part at least
    # this wide (a morphological opening of the per-pixel disagreement) the frame is re-drawn whole, fine texture
    # included; a noisy pixel passes nothing. With warp_gate: shown, a thinner change keeps disagreeing until it
    # has grown this wide. Needs warp_gate_window 1. 0: off (the soft windowed gate, whose partial weights leave a
    # moving region's old texture behind it for many frames under blend two_band: BENCHMARKS.md, issue 25,
    # session 13)
    warp_gate_opening: int = 0
    # vid2vid: flow vectors shorter than this many pixels are taken as zero where the previous frame (and features)
    # are warped and gated: a still camera's background then is carried as an exact copy, where DIS on noisy labels
    # moves it by a tenth of a pixel every frame and the resampling blurs it frame after frame (BENCHMARKS.md, issue
    # 25, the real clip). 0: every flow as it is
    flow_deadzone: float = 0.0
    # vid2vid (pix2pixhd backbone): scale 0's frame encoder (the previous outputs) joins the label encoder through a
    # 1x1 conv that starts at zero, so the model starts as its image branch alone: with model.init_from its
    # hallucinated frame is exactly the per-frame model's, where summing a fresh frame encoder's output (false: the
    # original) starts it ~21 dB away; on the real clip its raw frame kept more detail after 300 steps (BENCHMARKS.md,
    # issue 25, session 12). The previous frames reach the raw frame as training moves the conv
    zero_init_frames: bool = False
    # vid2vid (pix2pixhd backbone): how the hallucinated frame (weight w) and the warped previous one are blended.
    # linear (the original): w * raw + (1 - w) * warped. two_band: the coarse band at w, the fine band (what a
    # Gaussian of sigma 1.5 px removes) at w^blend_fine_power (w: after the label gate): a small w every frame lets
    # colour in without averaging two textures, which fades the carried one frame after frame (BENCHMARKS.md,
    # issue 25, session 12)
    blend: Literal["linear", "two_band"] = "linear"
    blend_fine_power: float = 4.0
    # vid2vid's decoder: pix2pixhd (the original's residual/transposed-conv heads) or spade (SPADE residual blocks
    # conditioned on the current labels, the warped previous frame and the weight; vid2vid.models.video_spade)
    backbone: Literal["pix2pixhd", "spade"] = "pix2pixhd"
    n_local_enhancers: int = 0  # pix2pixHD local enhancers (each doubles the resolution)
    n_blocks_local: int = 3  # residual blocks of a pix2pixHD local enhancer and of a finer vid2vid scale
    # vid2vid spatial scales, coarse to fine: scale s (width ngf / 2^s) doubles the resolution of scale s-1
    n_scales_spatial: int = 1
    num_upsampling_layers: Literal["normal", "more", "most"] = "normal"  # SPADE
    use_vae: bool = False  # SPADE VAE encoder for multimodal output
    z_dim: int = 256
    feat_num: int = 0  # pix2pixHD instance-wise feature channels (0 = off)
    nef: int = 16  # pix2pixHD feature encoder width
    n_downsample_E: int = 4  # pix2pixHD feature encoder depth
    n_clusters: int = 10  # rows per class in the feature bank: k-means centres, or training images (feature_bank)
    # pix2pixhd with feat_num > 0: where the features join the generator: input (pix2pixHD: concatenated with the
    # semantics) or every_level (vid2vid's edge2face single-frame generator, Global_with_z: also before the residual
    # blocks, the first upsampling layer and the output conv; global generator only)
    feat_join: Literal["input", "every_level"] = "input"
    # what the feature bank holds: kmeans (per-class k-means centres; a random or --feature-cluster centre per
    # instance) or images (one row per training image, vid2vid's edge2face features.npy: a real frame picks the
    # nearest image over all its classes and every class takes that image's features; without one, image
    # --feature-cluster K, default 0)
    feature_bank: Literal["kmeans", "images"] = "kmeans"
    unet_downs: int = 8  # pix2pix U-Net depth
    dropout: bool = False
    # BatchNorm at inference: the checkpoint's running statistics, or each frame's batch statistics (what the
    # original vid2vid's test.py does: it never calls .eval())
    norm_at_inference: Literal["running_stats", "batch_stats"] = "running_stats"


@dataclass
class DiscriminatorConfig:
    # the image D: patchgan (pix2pixHD's multi-scale PatchGAN: ndf, n_layers, num_D) or unet (U-Net GAN: a global
    # and a per-pixel real/fake output; ndf, depth). norm and self_attention apply to both; the video model's
    # temporal Ds are PatchGANs either way
    type: Literal["patchgan", "unet"] = "patchgan"
    depth: int = 4  # unet: residual down (and up) blocks; its bottleneck is at data.crop_size / 2^depth
    ndf: int = 64
    n_layers: int = 3
    num_D: int = 2
    # spectral*: spectral norm and no bias on the normed convs (SPADE); instance/batch keep biases (pix2pixHD)
    norm: Literal["instance", "batch", "spectralinstance", "spectralbatch", "none"] = "instance"
    self_attention: bool = False  # SAGAN block after the last stride-2 layer of each PatchGAN
    n_frames_D: int = 3  # frames per temporal-discriminator window
    temporal_scales: int = 2
    # the face discriminator (the original's add_face_disc; video model with data.condition pose only, where it is on
    # unless set): a multi-scale PatchGAN (ndf, n_layers, num_D, norm above) on (semantics, frame) cropped around the
    # face: the face points' box of the conditioning keypoints, made square with side face_scale x its longer side
    # (at least 4 px), resized to face_size x face_size. Frames without face points contribute nothing
    face: bool = False
    face_size: int = 96
    face_scale: float = 1.5


@dataclass
class LossConfig:
    gan_mode: Literal["ls", "hinge", "bce", "wgan-gp"] = "ls"
    gan: float = 1.0
    feat: float = 10.0  # feature matching
    vgg: float = 10.0  # 0 disables the VGG19 perceptual loss
    vgg_weights: str | None = None  # path to vgg19-dcbb9e9d.pth (default: torch hub cache)
    l1: float = 0.0  # pix2pix L1 reconstruction
    kl: float = 0.05  # SPADE VAE
    gp: float = 10.0  # WGAN-GP gradient penalty
    flow: float = 10.0
    warp: float = 10.0
    warp_output: float = 10.0  # L1(final_t, warp(final_{t-1}, reference flow)), confidence-masked
    mask: float = 1.0
    # the video model's L1 weight on its final (composed) frame; null: loss.l1 (its raw frame always has loss.l1).
    # L1 rewards averaging the hallucinated and the warped frame, whose textures do not line up: a blur
    l1_final: float | None = None
    # the mask term applies when model.first_frame is zeros (the reference's rule) or whatever it is ("any")
    mask_first_frame: Literal["zeros", "any"] = "zeros"
    # L1(raw frame, the frame of the per-frame model model.init_from on the same labels): the video model's
    # hallucination keeps the per-frame model's detail (0 = off; training needs model.init_from)
    teacher: float = 0.0
    temporal_gan: float = 1.0  # per temporal discriminator scale
    temporal_feat: float = 10.0
    face_gan: float | None = None  # the face D's GAN term in G's loss; null: loss.gan
    face_feat: float | None = None  # its feature matching; null: loss.feat
    # U-Net GAN's CutMix (discriminator.type: unet): the weight of its consistency term; 0 = no CutMix
    cutmix: float = 0.0
    cutmix_p: float = 0.5  # probability of a CutMix D loss once warmed up (the paper's 0.5)
    cutmix_warmup: float = 0.5  # share of training over which that probability rises linearly from 0 (0 = none)


@dataclass
class OptimConfig:
    lr: float = 2e-4
    lr_D: float | None = None  # default: lr (or 2 * lr with ttur)
    beta1: float = 0.5
    beta2: float = 0.999
    ttur: bool = False  # G lr / 2, D lr * 2, betas (0, 0.9)
    decay_start: float = 0.5  # fraction of train.max_steps after which every lr decays linearly to 0
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    ema: float = 0.0  # generator EMA decay (e.g. 0.999); 0 = off
    grad_accum: int = 1


@dataclass
class FlowConfig:
    model: Literal["dis", "farneback", "raft_small", "raft_large", "gt"] = "dis"  # gt: dataset's flow
    weights: str | None = None
    iters: int = 12
    corr: Literal["all_pairs", "on_demand"] = "all_pairs"  # RAFT correlation (on_demand: no full volume)


@dataclass
class TrainConfig:
    out_dir: str = "runs/demo"
    max_steps: int = 1000
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 500
    keep_last: int = 3
    tracker: Literal["none", "tensorboard"] = "none"
    detach_every: int = 4  # video model: the history is detached every k generated frames (truncated BPTT)
    clip_double_every: int = 0  # video model: data.n_frames doubles every k steps up to data.max_frames; 0 = off
    max_minutes: float = 0.0  # stop after this much training time (summed over resumes); 0 = run max_steps
    max_bad_steps: int = 5  # a step with a NaN / Inf loss or gradient is skipped; this many in a row stop the run
    # vid2vid with model.n_scales_spatial > 1: start with the coarsest scale (at 1/2^(S-1) of data.crop_size) and
    # add the next finer scale every k steps (0 = all scales from the start)
    add_scale_every: int = 0
    fix_coarse_steps: int = 0  # after each growth, only the new scale trains for this many steps (coarser detached)


@dataclass
class RenderConfig:
    """`vid2vid render`'s defaults (its --fps, --crf, --precision override them)."""

    fps: float = 10.0
    crf: int = 18  # H.264 quality: 0 = lossless, 18 = visually lossless, 23 = libx264's default
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16 on a CPU without AVX512-BF16/AMX is emulated (slow)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


# Paths that resolve against the current directory at load time.
PATH_KEYS = ("data.root", "loss.vgg_weights", "flow.weights", "train.out_dir", "model.init_from")

# Keys renamed since configs were first written: old key -> (new key, old value -> new value). Exports written
# before the rename (render.dtype) still load.
RENAMED_KEYS = {
    "render.dtype": ("render.precision", {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}),
}


def _rename_old_keys(tree: dict) -> None:
    """Rewrite RENAMED_KEYS in a YAML tree in place (the new key wins when both are given)."""
    for old, (new, values) in RENAMED_KEYS.items():
        *sections, leaf = old.split(".")
        node = tree
        for name in sections:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            value = node.pop(leaf)
            node.setdefault(new.rpartition(".")[2], values.get(value, value) if isinstance(value, str) else value)


# ----------------------------------------------------------------------------------------------
# Rules (impossible values)
# ----------------------------------------------------------------------------------------------


def _rule(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed: {rule}")


def model_stride(model: ModelConfig) -> int:
    """What the crop size must be divisible by for this generator (its family's rule)."""
    return family(model.name).stride(model)


def check(cfg: Config) -> None:
    """Rules no type can express: those of every config, then those of the model's family
    (vid2vid.families). Raises ConfigError naming the key and the rule."""
    _check_signs(cfg)
    _check_data(cfg)
    _check_training(cfg)
    for problem in family(cfg.model.name).rules(cfg):
        _rule(False, *problem)
    _check_progressive(cfg.train)
    _check_unet_discriminator(cfg)
    _check_face_discriminator(cfg)
    _check_features(cfg)


def _check_features(cfg: Config) -> None:
    """model.feat_join / model.feature_bank: pix2pixHD's instance-wise features (feat_num > 0); every_level is the
    global generator's layout only."""
    m = cfg.model
    for key, value, default in (("model.feat_join", m.feat_join, "input"),
                                ("model.feature_bank", m.feature_bank, "kmeans")):
        if value == default:
            continue
        _rule(m.name == "pix2pixhd", key, value, f"applies to model.name pix2pixhd, not {m.name}; set {key}={default}")
        _rule(m.feat_num > 0, key, value, f"needs instance-wise features (model.feat_num > 0); set model.feat_num "
              f"(e.g. 16) or {key}={default}")
    _rule(m.feat_join != "every_level" or m.n_local_enhancers == 0, "model.feat_join", m.feat_join,
          f"is the global generator's layout (Global_with_z); set model.n_local_enhancers=0 (it is "
          f"{m.n_local_enhancers}) or model.feat_join=input")


def _check_face_discriminator(cfg: Config) -> None:
    """discriminator.face: the video model on pose clips (the face box comes from their OpenPose keypoints)."""
    d = cfg.discriminator
    if not d.face:
        return
    _rule(cfg.data.condition == "pose", "discriminator.face", True, "needs data.condition pose (the face box comes "
          f"from the OpenPose face keypoints), not {cfg.data.condition}; set discriminator.face=false")
    _rule(family(cfg.model).sequential, "discriminator.face", True, "is the video model's (model.name vid2vid), not "
          f"{cfg.model.name}'s; set discriminator.face=false")
    _rule(d.face_size >= 8, "discriminator.face_size", d.face_size, "must be >= 8 (pixels of the face crop's side)")
    _rule(d.face_scale > 0, "discriminator.face_scale", d.face_scale, "must be > 0")


def _check_signs(cfg: Config) -> None:
    """Counts and sizes that must be > 0, weights and switches that must be >= 0."""
    positive = ("data.label_nc", "data.n_frames", "data.max_t_step", "data.batch_size", "data.synthetic.sequences",
                "data.synthetic.frames", "model.ngf", "model.n_frames_G", "model.n_scales_spatial", "model.z_dim",
                "model.unet_downs", "model.nef", "model.n_clusters", "discriminator.ndf", "discriminator.n_layers",
                "discriminator.num_D", "discriminator.n_frames_D", "discriminator.depth", "flow.iters",
                "train.max_steps", "train.log_every", "train.sample_every", "train.checkpoint_every",
                "train.keep_last", "train.max_bad_steps", "optim.lr", "optim.grad_accum", "train.detach_every",
                "render.fps")
    for key in positive:
        _rule(_get(cfg, key) > 0, key, _get(cfg, key), "must be > 0")
    non_negative = ["data.synthetic.test_sequences", "data.num_workers", "model.n_downsample", "model.n_blocks",
                    "model.n_local_enhancers", "model.n_blocks_local", "model.feat_num", "model.n_downsample_E",
                    "discriminator.temporal_scales", "optim.grad_clip", "render.crf", "train.max_minutes",
                    "data.max_frames", "train.clip_double_every", "train.add_scale_every", "train.fix_coarse_steps"]
    non_negative += [f"loss.{f.name}" for f in dataclasses.fields(cfg.loss) if isinstance(getattr(cfg.loss, f.name),
                                                                                          float)]
    for key in non_negative:
        _rule(_get(cfg, key) >= 0, key, _get(cfg, key), "must be >= 0")
    for key in ("data.load_size", "data.crop_size", "data.synthetic.size"):
        size = _get(cfg, key)
        _rule(size.h > 0 and size.w > 0, key, str(size), "height and width must be > 0")


def _check_data(cfg: Config) -> None:
    """data.*: the crop against the load size and the model's stride, the synthetic dataset, clip lengths, ids."""
    load, crop = cfg.data.load_size, cfg.data.crop_size
    _rule(crop.h <= load.h and crop.w <= load.w, "data.crop_size", str(crop),
          f"must fit inside data.load_size ({load})")
    stride = model_stride(cfg.model)
    if cfg.data.condition == "pose":
        _check_pose_data(cfg.data, stride, cfg.model.n_scales_spatial if family(cfg.model).sequential else 1)
    else:
        _rule(crop.h % stride == 0 and crop.w % stride == 0, "data.crop_size", str(crop),
              f"height and width must be divisible by {stride} for model.name={cfg.model.name} (2^downsampling "
              f"layers); e.g. {crop.h // stride * stride or stride}x{crop.w // stride * stride or stride}")
    _rule(cfg.data.max_zoom >= 1.0, "data.max_zoom", cfg.data.max_zoom, "must be >= 1 (1 = no zoom)")
    syn = cfg.data.synthetic
    _rule(syn.frames >= 2, "data.synthetic.frames", syn.frames, "must be >= 2 (flow needs frame pairs)")
    _rule(min(syn.size) >= 16, "data.synthetic.size", str(syn.size), "height and width must be >= 16")
    _rule(cfg.data.max_frames == 0 or cfg.data.max_frames >= cfg.data.n_frames, "data.max_frames",
          cfg.data.max_frames, f"must be 0 (= data.n_frames) or >= data.n_frames ({cfg.data.n_frames})")
    _rule(cfg.data.source != "synthetic" or cfg.data.n_frames <= syn.frames, "data.n_frames", cfg.data.n_frames,
          f"must be <= data.synthetic.frames ({syn.frames}): a clip cannot be longer than a sequence")
    if cfg.data.condition == "face":
        _check_face_data(cfg.data)
        return
    if cfg.data.condition == "pose":
        return
    problem = fg_labels_problem(cfg.data.fg_labels, cfg.data.label_nc, required=False)
    _rule(problem is None, "data.fg_labels", cfg.data.fg_labels, str(problem))
    _check_palette(cfg.data.palette, cfg.data.label_nc)


FACE_PART_LABELS = 7  # vid2vid.data.face_input.N_PART_LABELS (the part label ids 0..6)


def _check_part_labels(data: DataConfig, n: int, what: str) -> None:
    """A dense condition (face, pose) whose `what` (ids 0..n-1) are the label ids and the instance map, never a
    generator channel."""
    why = f"with data.condition {data.condition}"
    _rule(data.label_nc == n, "data.label_nc", data.label_nc,
          f"must be {n} {why} (the {what} 0..{n - 1}); set data.label_nc={n}")
    _rule(not data.use_instance, "data.use_instance", data.use_instance,
          f"must be false {why}: the {what} are the instance map, not a generator channel")
    _rule(not data.contain_dontcare_label, "data.contain_dontcare_label", data.contain_dontcare_label,
          f"must be false {why}")


def _check_face_data(data: DataConfig) -> None:
    """data.condition face: the part labels are the label ids (7) and the instance map, never a generator channel."""
    _check_part_labels(data, FACE_PART_LABELS, "face part labels")


POSE_PART_LABELS = 25  # vid2vid.data.pose_input.DENSEPOSE_PARTS + 1 (the DensePose part ids 0..24)


def central_width(w: int) -> int:
    """The width the original's pose dataset keeps of a W-wide input: its central 2 * (W // 4 // 32 * 32) columns
    (vid2vid.data.pose_input.central_columns, which the dataset crops with, takes them from here)."""
    return 2 * (w // 4 // 32 * 32)


def input_size(data: DataConfig) -> Size:
    """The size of what the networks see in training: data.crop_size, or with data.condition pose and
    data.pose.central_columns its central columns."""
    crop = data.crop_size
    if data.condition == "pose" and data.pose.central_columns:
        return Size(crop.h, central_width(crop.w))
    return Size(*crop)


def _check_pose_data(data: DataConfig, stride: int, n_scales: int = 1) -> None:
    """data.condition pose: the DensePose part ids are the label ids (25) and the instance map, never a generator
    channel; a folder dataset; no flip (the original never flips a pose clip: the picture's right arm would be drawn
    in the left arm's colours and DensePose ids); the networks' size (the central columns) fits the model's stride,
    and at every coarser spatial scale the central columns are half those of the finer one (an export made while
    scales grow is a model of the coarser crop)."""
    why, pose, crop = "with data.condition pose", data.pose, data.crop_size
    _rule(data.source == "folder", "data.source", data.source,
          f"must be folder {why}: there is no synthetic pose dataset; make one from a video with `vid2vid prepare "
          "video IN OUT --labels pose`")
    _check_part_labels(data, POSE_PART_LABELS, "DensePose part ids")
    _rule(0.0 <= pose.random_drop_prob <= 1.0, "data.pose.random_drop_prob", pose.random_drop_prob,
          "must be in [0, 1] (the original's default: 0.05)")
    _rule(not data.flip, "data.flip", data.flip,
          f"must be false {why}: the original never flips a pose clip (a mirrored picture draws the right arm in "
          "the left arm's colours and DensePose part ids); set data.flip=false")
    if pose.central_columns:
        _rule(central_width(crop.w) > 0, "data.crop_size", str(crop),
              "is narrower than 128: data.pose.central_columns keeps the central 2 * (W // 4 // 32 * 32) columns, "
              "none below 128; widen the crop or set data.pose.central_columns=false")
        full = central_width(crop.w)
        for k in range(1, n_scales):
            _rule(central_width(crop.w >> k) << k == full, "data.crop_size", str(crop),
                  f"with model.n_scales_spatial {n_scales} the central columns of the crop at 1/{2 ** k} "
                  f"({central_width(crop.w >> k)}) must be 1/{2 ** k} of the full crop's ({full}); use a crop width "
                  f"that is a multiple of {128 << (n_scales - 1)}")
    size = input_size(data)
    what = "its central columns (data.pose.central_columns) " if pose.central_columns else ""
    _rule(size.h % stride == 0 and size.w % stride == 0, "data.crop_size", str(crop),
          f"the size the networks see, {what}{size}, must have a height and width divisible by {stride} "
          f"(2^downsampling layers)")


def _check_training(cfg: Config) -> None:
    """optim.* ranges and model.first_frame's form."""
    _rule(0.0 <= cfg.optim.decay_start <= 1.0, "optim.decay_start", cfg.optim.decay_start, "must be in [0, 1]")
    _rule(0.0 <= cfg.optim.ema < 1.0, "optim.ema", cfg.optim.ema, "must be in [0, 1) (0 = off)")
    _rule(cfg.optim.lr_D is None or cfg.optim.lr_D > 0, "optim.lr_D", cfg.optim.lr_D, "must be > 0 or null")
    ff = cfg.model.first_frame
    _rule(ff in ("real", "zeros") or (ff.startswith("image-model:") and len(ff) > len("image-model:")),
          "model.first_frame", ff, "must be real, zeros or image-model:PATH (an exported per-frame model)")
    _rule(cfg.data.condition != "pose" or ff != "real", "model.first_frame", ff,
          "must be zeros (the original's --no_first_img) or image-model:PATH with data.condition pose: a pose model "
          "transfers motion, and the pose source's own frames must never seed it")
    _rule(cfg.model.warp_gate_window >= 1 and cfg.model.warp_gate_window % 2 == 1, "model.warp_gate_window",
          cfg.model.warp_gate_window, "must be an odd number of pixels >= 1 (1: per pixel)")
    _rule(cfg.model.warp_gate_margin >= 0, "model.warp_gate_margin", cfg.model.warp_gate_margin,
          "must be >= 0 pixels (0: the gate is as soft as the warped labels' agreement)")
    _rule(cfg.model.blend_fine_power >= 1, "model.blend_fine_power", cfg.model.blend_fine_power,
          "must be >= 1 (1: the fine band follows w as the coarse one does)")
    _rule(0 <= cfg.model.warp_gate_tolerance < 0.5, "model.warp_gate_tolerance", cfg.model.warp_gate_tolerance,
          "must be in [0, 0.5) (0: the agreement as it is)")
    _rule(cfg.model.warp_gate_tolerance == 0 or cfg.model.warp_gate != "none", "model.warp_gate_tolerance",
          cfg.model.warp_gate_tolerance, "applies with a model.warp_gate only; set it to 0 or set the gate")
    _rule(cfg.model.warp_gate_opening >= 0, "model.warp_gate_opening", cfg.model.warp_gate_opening,
          "must be >= 0 pixels (0: the soft gate)")
    _rule(cfg.model.warp_gate_opening == 0 or (cfg.model.warp_gate != "none" and cfg.model.warp_gate_window == 1
                                               and cfg.model.warp_gate_margin == 0
                                               and cfg.model.warp_gate_tolerance == 0),
          "model.warp_gate_opening", cfg.model.warp_gate_opening, "needs a model.warp_gate with warp_gate_window 1, "
          "warp_gate_margin 0 and warp_gate_tolerance 0 (the opening replaces them); set it to 0 or set those")
    _rule(cfg.model.warp_gate != "shown" or cfg.model.n_scales_spatial == 1, "model.warp_gate", cfg.model.warp_gate,
          "shown works with model.n_scales_spatial 1 only; use labels with finer spatial scales")
    _rule(cfg.model.flow_deadzone >= 0, "model.flow_deadzone", cfg.model.flow_deadzone,
          "must be >= 0 pixels (0: every flow vector as it is)")
    _rule(cfg.model.blend_init is None or 0 < cfg.model.blend_init < 1, "model.blend_init", cfg.model.blend_init,
          "must be in (0, 1) (the starting weight of the hallucinated frame), or null for the default init")


def _check_unet_discriminator(cfg: Config) -> None:
    """discriminator.type: unet and loss.cutmix*."""
    d, loss, crop = cfg.discriminator, cfg.loss, input_size(cfg.data)
    _rule(d.type == "unet" or loss.cutmix == 0, "loss.cutmix", loss.cutmix,
          "CutMix needs the U-Net discriminator's per-pixel output: set discriminator.type: unet or loss.cutmix: 0")
    for key in ("cutmix_p", "cutmix_warmup"):
        _rule(0.0 <= getattr(loss, key) <= 1.0, f"loss.{key}", getattr(loss, key), "must be in [0, 1]")
    _rule(d.type != "unet" or min(crop) >> d.depth >= 2, "discriminator.depth", d.depth,
          f"too deep for data.crop_size {crop}: the U-Net D's bottleneck (crop_size / 2^depth) needs >= 2 pixels a "
          f"side; use depth <= {max(min(crop).bit_length() - 2, 1)} or a larger crop")


def _check_progressive(t: TrainConfig) -> None:
    """The progressive schedule of the spatial scales (train.add_scale_every, train.fix_coarse_steps)."""
    _rule(t.fix_coarse_steps == 0 or t.add_scale_every > 0, "train.fix_coarse_steps", t.fix_coarse_steps,
          "needs train.add_scale_every > 0 (it counts the steps after each growth); set it to 0")
    _rule(t.fix_coarse_steps <= t.add_scale_every or t.add_scale_every == 0, "train.fix_coarse_steps",
          t.fix_coarse_steps, f"must be <= train.add_scale_every ({t.add_scale_every}): the next scale comes then")


def palette_problem(palette: Any) -> str | None:
    """What is wrong with a label palette, or None: a non-empty list of one [R, G, B] per label id (id =
    position), each 3 integers in 0..255, no colour twice. The one rule of data.palette and render --palette."""
    if not isinstance(palette, list) or not palette:
        return ("expected a non-empty list of one [R, G, B] colour per label id (id = position), "
                f"e.g. [[0, 0, 0], [255, 0, 0]]; got {palette!r:.60}")
    first_index: dict[tuple, int] = {}
    for i, colour in enumerate(palette):
        if not (isinstance(colour, (list, tuple)) and len(colour) == 3
                and all(_is_int(c) and 0 <= c <= 255 for c in colour)):
            return f"entry {i} ({colour!r:.40}) is not [R, G, B] with 3 integers in 0..255"
        if tuple(colour) in first_index:
            return (f"entries {first_index[tuple(colour)]} and {i} have the same colour {list(colour)}; "
                    "each label id needs its own colour")
        first_index[tuple(colour)] = i
    return None


def _check_palette(palette: list | None, label_nc: int) -> None:
    if palette is None:
        return
    problem = palette_problem(palette)
    if problem is not None:
        raise ConfigError(f"data.palette: {problem}")
    _rule(len(palette) <= label_nc, "data.palette", f"{len(palette)} colours",
          f"at most data.label_nc={label_nc} (one colour per label id 0..{label_nc - 1})")


# ----------------------------------------------------------------------------------------------
# Strict loading
# ----------------------------------------------------------------------------------------------


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of a config class, sections included."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}{name}"
        keys.append(key)
        if dataclasses.is_dataclass(tp):
            keys += all_keys(tp, key + ".")
    return keys


def _unknown(key: str) -> ConfigError:
    """An unknown-key error naming the closest valid key: a sibling with a similar name first, then the
    same name in another section, then anything similar."""
    keys = all_keys()
    section, _, leaf = key.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == section]
    close = [f"{section}.{m}" if section else m for m in difflib.get_close_matches(
        leaf, [k.rpartition(".")[2] for k in siblings], n=1, cutoff=0.6)]
    close = close or [k for k in keys if k.rpartition(".")[2] == leaf]
    close = close or difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; valid top-level keys: {', '.join(all_keys_top())}"
    return ConfigError(f"{key}: unknown key{hint}")


def all_keys_top() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently convert) one YAML value against a field's type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key + ".")
    if tp is Size:
        return parse_size(value, key)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off/yes/on as a boolean
            value = next((a for a in args if str(a) in (("yes", "on", "true") if value else ("no", "off", "false"))),
                         value)
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}{hint}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if not _is_int(value):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported config type {_type_name(tp)}")  # a bug in this file


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    for name in values:
        if name not in hints:
            raise _unknown(f"{prefix}{name}")
    return cls(**{name: _coerce(v, hints[name], f"{prefix}{name}") for name, v in values.items()})


def parse_override(text: str) -> tuple[str, Any]:
    """'model.ngf=32' -> ('model.ngf', 32); the value is read as YAML (so true, 1e-4, [1, 2] work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.max_steps=100")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({e})") from None
    return key, value


def _apply_override(tree: dict, key: str, value: Any) -> None:
    if key not in all_keys():
        raise _unknown(key)
    *sections, leaf = key.split(".")
    node = tree
    for i, name in enumerate(sections):
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(sections[: i + 1])}: expected a mapping, got {child!r}")
        node = child
    node[leaf] = value


def _get(cfg: Any, key: str) -> Any:
    for name in key.split("."):
        cfg = getattr(cfg, name)
    return cfg


def _set(cfg: Any, key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    setattr(_get(cfg, ".".join(sections)) if sections else cfg, leaf, value)


def from_dict(tree: dict | None, overrides: list[str] = (), base_dir: str | Path | None = None) -> Config:
    """Build and check a Config from a YAML tree plus `a.b=value` overrides."""
    if not isinstance(tree or {}, dict):
        raise ConfigError(f"config: expected a mapping of config sections at the top level, got {tree!r}")
    tree = yaml.safe_load(yaml.safe_dump(dict(tree or {})))  # deep copy
    _rename_old_keys(tree)
    for text in overrides:
        _apply_override(tree, *parse_override(text))
    cfg = _build(Config, tree)
    if cfg.data.condition == "face" and "crop_size" not in (tree.get("data") or {}):
        cfg.data.crop_size = cfg.data.load_size  # face crops are resized to load_size; crop_size follows unless set
    if cfg.data.condition == "pose":  # the original's pose defaults where the config leaves them out
        if "flip" not in (tree.get("data") or {}):
            cfg.data.flip = False  # the original never flips a pose clip (data.flip's rule says why)
        if "first_frame" not in (tree.get("model") or {}):
            cfg.model.first_frame = "zeros"  # --no_first_img (model.first_frame's rule says why)
        if "face" not in (tree.get("discriminator") or {}) and family(cfg.model).sequential:
            cfg.discriminator.face = True  # the original's add_face_disc for pose
    resolve_paths(cfg, base_dir)
    check(cfg)
    return cfg


def resolve_paths(cfg: Config, base_dir: str | Path | None = None) -> None:
    """Relative paths resolve against the current directory (or base_dir) and become absolute."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for key in PATH_KEYS:
        value = _get(cfg, key)
        if value is not None and value != "":
            _set(cfg, key, str((base / os.path.expanduser(value)).resolve()))
    prefix, _, model_path = cfg.model.first_frame.partition(":")
    if prefix == "image-model" and model_path:
        cfg.model.first_frame = f"image-model:{(base / os.path.expanduser(model_path)).resolve()}"


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config file (or the defaults when path is None) and apply overrides."""
    tree: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file, e.g. configs/demo.yaml")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a text file ({e}); pass a YAML config, e.g. configs/demo.yaml") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
    try:
        return from_dict(tree, overrides)
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None


def to_dict(cfg: Any) -> dict:
    """Plain YAML-able dict; sizes written HxW."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, Size):
            value = str(value)
        elif isinstance(value, list):
            value = list(value)
        out[f.name] = value
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (readers never see a partial file)."""
    from flow import atomic_path  # here, not at the top: importing flow imports torch

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
