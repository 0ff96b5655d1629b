"""The one place that maps config sections to module keyword arguments.

Inputs of the image models (what the trainer builds per frame):
    semantics = [one-hot labels (label_nc), instance edges (1, if data.use_instance), features (model.feat_num)]
    generator:      G(semantics [B, generator_input_channels(cfg), H, W]) -> frames [B,3,H,W] in [-1,1]
                    (SPADE with model.use_vae: G(semantics, z) with z = reparameterize(*E(real frame)))
    discriminator:  D(cat([one-hot labels + edges, frame]) [B, discriminator_input_channels(cfg), H, W])
                    -> per scale (PatchGAN) or per branch (U-Net D: encoder, decoder), a list of features
                    whose last entry is the prediction
    build_encoder:  SPADE's VAE encoder E(frame) -> (mu, logvar), or None without model.use_vae
    build_feature_encoder: pix2pixHD's E(frame, inst) -> features [B,feat_num,H,W], or None when feat_num = 0
                    (the generator's input is then cat([semantics, E(real frame, inst)]) in training)
    build_image_encoder: whichever of the two the model trains with G (network "E"), or None
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from vid2vid.config import Config, input_size
from vid2vid.data.encoding import semantic_channels as data_semantic_channels
from vid2vid.families import FAMILIES, Family, family
from vid2vid.losses import ImageLosses, VideoLosses
from vid2vid.models.discriminators import MultiscaleDiscriminator, temporal_input_nc
from vid2vid.models.discriminators import build_temporal_discriminators as temporal_discriminators
from vid2vid.models.image import (
    FeatureBank,
    FeatureEncoder,
    GlobalGenerator,
    GlobalGeneratorWithFeatures,
    LocalEnhancer,
    SPADEGenerator,
    UnetGenerator,
    VAEEncoder,
    use_batch_stats_at_inference,
)
from vid2vid.models.unet_discriminator import UNetDiscriminator
from vid2vid.models.video import build_video_generator
from vid2vid.models.video_spade import build_spade_video_generator
from vid2vid.reference_flow import build_reference_flow as reference_flow

VAE_IMAGE_SIZE = 256  # SPADE's encoder always sees the frame resized to 256x256


def semantic_channels(cfg: Config) -> int:
    """One-hot labels (plus SPADE's don't-care channel) plus the instance-boundary channel, or the face input's
    channels (vid2vid.data.encoding.semantic_channels)."""
    return data_semantic_channels(cfg.data)


def generator_input_channels(cfg: Config) -> int:
    """Channels of the generator's semantic input (per frame for the image models; the video generator
    takes model.n_frames_G such maps)."""
    return semantic_channels(cfg) + cfg.model.feat_num


def discriminator_input_channels(cfg: Config) -> int:
    return semantic_channels(cfg) + 3


# ----------------------------------------------------------------------------------------------
# The model registry: one row per model family (vid2vid.families) and its builder
# ----------------------------------------------------------------------------------------------


def _build_pix2pix(cfg: Config) -> nn.Module:
    m = cfg.model
    return UnetGenerator(generator_input_channels(cfg), 3, num_downs=m.unet_downs, ngf=m.ngf, norm=m.norm,
                         dropout=m.dropout)


def _build_pix2pixhd(cfg: Config) -> nn.Module:
    m, in_nc = cfg.model, generator_input_channels(cfg)
    if m.feat_join == "every_level":  # input: cat([semantics, features]) as with the input join
        return GlobalGeneratorWithFeatures(semantic_channels(cfg), m.feat_num, 3, ngf=m.ngf,
                                           n_downsample=m.n_downsample, n_blocks=m.n_blocks, norm=m.norm)
    if m.n_local_enhancers == 0:
        return GlobalGenerator(in_nc, 3, ngf=m.ngf, n_downsample=m.n_downsample, n_blocks=m.n_blocks, norm=m.norm)
    return LocalEnhancer(in_nc, 3, ngf=m.ngf, n_downsample_global=m.n_downsample, n_blocks_global=m.n_blocks,
                         n_local_enhancers=m.n_local_enhancers, n_blocks_local=m.n_blocks_local, norm=m.norm)


def _build_spade(cfg: Config) -> nn.Module:
    m, crop = cfg.model, input_size(cfg.data)  # the pose input's central columns: narrower than the crop
    return SPADEGenerator(generator_input_channels(cfg), ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
                          size=(crop.h, crop.w), use_vae=m.use_vae, z_dim=m.z_dim, norm=m.norm)


def _build_vid2vid(cfg: Config) -> nn.Module:
    if cfg.model.backbone == "spade":
        return build_spade_video_generator(cfg)
    return build_video_generator(cfg)


@dataclass(frozen=True)
class GeneratorSpec:
    """One model family (vid2vid.families: stride, sequential, encoders, config rules) with its builder."""

    family: Family
    build: Callable[[Config], nn.Module]  # the generator itself ("G")

    @property
    def sequential(self) -> bool:
        return self.family.sequential

    @property
    def stride(self) -> Callable:
        return self.family.stride

    @property
    def encoders(self) -> tuple[str, ...]:
        return self.family.encoders


BUILDERS: dict[str, Callable[[Config], nn.Module]] = {
    "pix2pix": _build_pix2pix, "pix2pixhd": _build_pix2pixhd, "spade": _build_spade, "vid2vid": _build_vid2vid}
REGISTRY: dict[str, GeneratorSpec] = {name: GeneratorSpec(FAMILIES[name], BUILDERS[name]) for name in FAMILIES}


def spec(cfg_or_name: Config | str) -> GeneratorSpec:
    return REGISTRY[family(cfg_or_name).name]


def build_generator(cfg: Config) -> nn.Module:
    """The generator of cfg; with model.norm_at_inference batch_stats its BatchNorms use batch statistics in eval
    mode too."""
    return use_batch_stats_at_inference(spec(cfg).build(cfg), cfg.model.norm_at_inference == "batch_stats")


def build_discriminator(cfg: Config) -> nn.Module:
    """The image D (discriminator.type): the multi-scale PatchGAN or U-Net GAN's discriminator; both return a
    list of branches, each a list of features whose last entry is a prediction."""
    d = cfg.discriminator
    if d.type == "unet":
        return UNetDiscriminator(discriminator_input_channels(cfg), ndf=d.ndf, depth=d.depth, norm=d.norm,
                                 self_attention=d.self_attention)
    return MultiscaleDiscriminator(discriminator_input_channels(cfg), ndf=d.ndf, n_layers=d.n_layers,
                                   num_D=d.num_D, norm=d.norm, self_attention=d.self_attention)


def build_encoder(cfg: Config) -> VAEEncoder | None:
    """SPADE's VAE encoder (width model.ngf, z model.z_dim; spectral + instance norm, or model.norm when it
    is spectralbatch) when model.use_vae, else None. Training: mu, logvar = E(real frame);
    fake = G(semantics, reparameterize(mu, logvar)); KL via ImageLosses.generator(mu=mu, logvar=logvar)."""
    m = cfg.model
    if not m.use_vae:
        return None
    norm = m.norm if m.norm.startswith("spectral") else "spectralinstance"
    return VAEEncoder(3, ndf=m.ngf, z_dim=m.z_dim, image_size=VAE_IMAGE_SIZE, norm=norm)


def build_feature_encoder(cfg: Config) -> FeatureEncoder | None:
    """pix2pixHD's instance-wise feature encoder when model.feat_num > 0, else None."""
    m = cfg.model
    if m.feat_num == 0:
        return None
    return FeatureEncoder(3, m.feat_num, ngf=m.nef, n_downsample=m.n_downsample_E, norm=m.norm)


def build_image_encoder(cfg: Config) -> nn.Module | None:
    """The encoder trained with the generator as network "E" (the registry row's `encoders`): pix2pixHD's
    feature encoder (model.feat_num > 0) or SPADE's VAE encoder (model.use_vae); None without one."""
    feature_encoder = build_feature_encoder(cfg)
    return feature_encoder if feature_encoder is not None else build_encoder(cfg)


def build_feature_bank(cfg: Config) -> FeatureBank | None:
    """An empty per-class feature bank (fill with FeatureBank.fit) when model.feat_num > 0."""
    m = cfg.model
    return FeatureBank(cfg.data.label_nc, m.feat_num, k=m.n_clusters) if m.feat_num else None


def build_losses(cfg: Config) -> ImageLosses:
    loss = cfg.loss
    return ImageLosses(gan_mode=loss.gan_mode, gan=loss.gan, feat=loss.feat, vgg=loss.vgg,
                       vgg_weights=loss.vgg_weights, l1=loss.l1, kl=loss.kl, gp=loss.gp, cutmix=loss.cutmix)


# ----------------------------------------------------------------------------------------------
# The video model's extra pieces
# ----------------------------------------------------------------------------------------------


def build_temporal_discriminators(cfg: Config) -> dict[str, nn.Module]:
    """One multi-scale PatchGAN per temporal scale, named D_temporal0, D_temporal1, ... (the D group)."""
    d = cfg.discriminator
    nets = temporal_discriminators(temporal_input_nc(d.n_frames_D), d.ndf, d.n_layers, d.num_D, d.norm,
                                   d.temporal_scales)
    return {f"D_temporal{s}": net for s, net in enumerate(nets)}


def build_face_discriminator(cfg: Config) -> dict[str, nn.Module]:
    """{"D_face": a multi-scale PatchGAN on (semantics, frame) face crops} with discriminator.face, else {}."""
    d = cfg.discriminator
    if not d.face:
        return {}
    return {"D_face": MultiscaleDiscriminator(discriminator_input_channels(cfg), ndf=d.ndf, n_layers=d.n_layers,
                                              num_D=d.num_D, norm=d.norm)}


def build_video_losses(cfg: Config):
    loss = cfg.loss
    return VideoLosses(flow=loss.flow, warp=loss.warp, warp_output=loss.warp_output, mask=loss.mask)


def build_reference_flow(cfg: Config, device):
    """callable(frames [B,T,3,H,W], flow_bw | None) -> (flow [B,T-1,2,H,W], confidence [B,T-1,1,H,W])."""
    f = cfg.flow
    return reference_flow(f.model, f.weights, f.corr, f.iters, device,
                          flow_folder=f"{cfg.data.root}/{cfg.data.phase}_flow")
