"""The one place that maps config sections to module keyword arguments.

Inputs of the image models (what the trainer builds per frame):
    semantics = [one-hot labels (label_nc), instance edges (1, if data.use_instance), features (model.feat_num)]
    generator:      G(semantics [B, generator_input_channels(cfg), H, W]) -> frames [B,3,H,W] in [-1,1]
                    (SPADE with model.use_vae: G(semantics, z) with z = reparameterize(*E(real frame)))
    discriminator:  D(cat([one-hot labels + edges, frame]) [B, discriminator_input_channels(cfg), H, W])
                    -> per scale, a list of features whose last entry is the prediction map
    build_encoder:  SPADE's VAE encoder E(frame) -> (mu, logvar), or None without model.use_vae
    build_feature_encoder: pix2pixHD's E(frame, inst) -> features [B,feat_num,H,W], or None when feat_num = 0
"""

from __future__ import annotations

from torch import nn

from vid2vid.config import Config
from vid2vid.errors import ConfigError
from vid2vid.losses import ImageLosses
from vid2vid.models.discriminators import MultiscaleDiscriminator
from vid2vid.models.image import (
    FeatureBank,
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    SPADEGenerator,
    UnetGenerator,
    VAEEncoder,
)

VAE_IMAGE_SIZE = 256  # SPADE's encoder always sees the frame resized to 256x256


def semantic_channels(cfg: Config) -> int:
    """One-hot labels plus the instance-boundary channel."""
    return cfg.data.label_nc + (1 if cfg.data.use_instance else 0)


def generator_input_channels(cfg: Config) -> int:
    return semantic_channels(cfg) + cfg.model.feat_num


def discriminator_input_channels(cfg: Config) -> int:
    return semantic_channels(cfg) + 3


def build_generator(cfg: Config) -> nn.Module:
    m = cfg.model
    in_nc = generator_input_channels(cfg)
    if m.name == "pix2pix":
        return UnetGenerator(in_nc, 3, num_downs=m.unet_downs, ngf=m.ngf, norm=m.norm, dropout=m.dropout)
    if m.name == "pix2pixhd":
        if m.n_local_enhancers == 0:
            return GlobalGenerator(in_nc, 3, ngf=m.ngf, n_downsample=m.n_downsample, n_blocks=m.n_blocks,
                                   norm=m.norm)
        return LocalEnhancer(in_nc, 3, ngf=m.ngf, n_downsample_global=m.n_downsample, n_blocks_global=m.n_blocks,
                             n_local_enhancers=m.n_local_enhancers, n_blocks_local=m.n_blocks_local, norm=m.norm)
    if m.name == "spade":
        crop = cfg.data.crop_size
        return SPADEGenerator(in_nc, ngf=m.ngf, num_upsampling_layers=m.num_upsampling_layers,
                              size=(crop.h, crop.w), use_vae=m.use_vae, z_dim=m.z_dim, norm=m.norm)
    raise ConfigError(f"model.name: {m.name!r} is not a per-frame generator; build_generator makes "
                      "pix2pix, pix2pixhd or spade")


def build_discriminator(cfg: Config) -> nn.Module:
    d = cfg.discriminator
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


def build_feature_bank(cfg: Config) -> FeatureBank | None:
    """An empty per-class feature bank (fill with FeatureBank.fit) when model.feat_num > 0."""
    m = cfg.model
    return FeatureBank(cfg.data.label_nc, m.feat_num, k=m.n_clusters) if m.feat_num else None


def build_losses(cfg: Config) -> ImageLosses:
    loss = cfg.loss
    return ImageLosses(gan_mode=loss.gan_mode, gan=loss.gan, feat=loss.feat, vgg=loss.vgg,
                       vgg_weights=loss.vgg_weights, l1=loss.l1, kl=loss.kl, gp=loss.gp)
