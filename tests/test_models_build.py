"""Exact parameter counts of the reference implementations (built on the meta device, so free), both
from the module constructors and through the config builders; the config -> builder mapping."""

from pathlib import Path

import pytest
import torch
from torch import nn

from vid2vid.config import from_dict, load_config
from vid2vid.errors import ConfigError
from vid2vid.models import (
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    SPADEGenerator,
    UnetGenerator,
    VAEEncoder,
)
from vid2vid.models.build import (
    build_discriminator,
    build_encoder,
    build_feature_bank,
    build_feature_encoder,
    build_generator,
    build_losses,
    discriminator_input_channels,
    generator_input_channels,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


REFERENCE = {  # image_backbones.md and vid2vid.md
    "pix2pixHD global": (lambda: GlobalGenerator(36, ngf=64, n_downsample=4, n_blocks=9), 182_546_755),
    "pix2pixHD local": (lambda: LocalEnhancer(36, ngf=32, n_downsample_global=4, n_blocks_global=9,
                                              n_local_enhancers=1, n_blocks_local=3), 182_857_059),
    "pix2pixHD D num_D 2": (lambda: MultiscaleDiscriminator(39, ndf=64, n_layers=3, num_D=2), 5_603_202),
    "pix2pixHD D num_D 3": (lambda: MultiscaleDiscriminator(39, ndf=64, n_layers=3, num_D=3), 8_404_803),
    "pix2pixHD encoder": (lambda: FeatureEncoder(3, 3, ngf=16, n_downsample=4), 788_803),
    # spectral norm does not change the count (weight -> weight_orig) but is slow to build on meta:
    # the spectral variants are counted through the config builders below
    "SPADE G normal": (lambda: SPADEGenerator(36, ngf=64, num_upsampling_layers="normal", size=(256, 512),
                                              norm="instance"), 93_048_003),
    "SPADE G more": (lambda: SPADEGenerator(36, ngf=64, num_upsampling_layers="more", size=(256, 512),
                                            norm="batch"), 93_048_003),
    "SPADE G most": (lambda: SPADEGenerator(36, ngf=64, num_upsampling_layers="most", size=(256, 512),
                                            norm="instance"), 93_570_659),
    "SPADE G more VAE": (lambda: SPADEGenerator(36, ngf=64, num_upsampling_layers="more", size=(256, 512),
                                                use_vae=True, z_dim=256, norm="instance"), 101_136_579),
    "SPADE D": (lambda: MultiscaleDiscriminator(39, ndf=64, n_layers=3, num_D=2, norm="spectralinstance"),
                5_601_410),
    "SPADE VAE encoder": (lambda: VAEEncoder(3, ndf=64, z_dim=256, image_size=256, norm="instance"), 10_463_424),
    "vid2vid image D (batch)": (lambda: MultiscaleDiscriminator(39, ndf=64, n_layers=3, num_D=2, norm="batch"),
                                5_606_786),
    "vid2vid temporal D (batch)": (lambda: MultiscaleDiscriminator(13, ndf=64, n_layers=3, num_D=2, norm="batch"),
                                   5_553_538),
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_parameter_counts(name):
    build, expected = REFERENCE[name]
    with torch.device("meta"):
        assert count(build()) == expected


def test_unet_256_parameter_count():
    # pix2pix unet_256 (8 downs, ngf 64, batch norm: no bias before a norm): 54.41 M
    with torch.device("meta"):
        assert count(UnetGenerator(3, 3, num_downs=8, ngf=64, norm="batch")) == 54_413_955


def _cfg(**sections):
    return from_dict({"data": {"label_nc": 35, "use_instance": True, "crop_size": "256x512"}, **sections})


@pytest.mark.parametrize("model, expected", [
    ({"name": "pix2pixhd", "ngf": 64, "n_downsample": 4, "n_blocks": 9}, 182_546_755),
    ({"name": "pix2pixhd", "ngf": 32, "n_downsample": 4, "n_blocks": 9, "n_local_enhancers": 1}, 182_857_059),
    ({"name": "spade", "ngf": 64, "num_upsampling_layers": "more", "norm": "spectralinstance"}, 93_048_003),
    ({"name": "spade", "ngf": 64, "num_upsampling_layers": "most", "norm": "spectralbatch"}, 93_570_659),
    ({"name": "spade", "ngf": 64, "num_upsampling_layers": "more", "use_vae": True, "norm": "batch"}, 101_136_579),
])
def test_builders_reach_reference_counts(model, expected):
    cfg = _cfg(model=model)
    assert generator_input_channels(cfg) == 36
    with torch.device("meta"):
        assert count(build_generator(cfg)) == expected


def test_discriminator_and_encoders_from_config():
    cfg = _cfg(model={"name": "spade", "ngf": 64, "use_vae": True, "num_upsampling_layers": "more"},
               discriminator={"norm": "spectralinstance", "n_layers": 3, "num_D": 2})
    assert discriminator_input_channels(cfg) == 39
    with torch.device("meta"):
        assert count(build_discriminator(cfg)) == 5_601_410
        assert count(build_encoder(cfg)) == 10_463_424
    assert build_feature_encoder(cfg) is None and build_feature_bank(cfg) is None

    cfg = _cfg(model={"name": "pix2pixhd", "feat_num": 3, "nef": 16, "n_downsample_E": 4})
    assert generator_input_channels(cfg) == 36 + 3
    assert discriminator_input_channels(cfg) == 39  # D sees labels + frame, not the features
    with torch.device("meta"):
        assert count(build_feature_encoder(cfg)) == 788_803
    assert build_encoder(cfg) is None
    bank = build_feature_bank(cfg)
    assert bank.centers.shape == (35, 10, 3)


def test_input_channels_without_instances():
    data = {"label_nc": 7, "fg_labels": [], "use_instance": False, "crop_size": "64x64", "load_size": "64x64"}
    cfg = from_dict({"data": data, "model": {"name": "pix2pix", "unet_downs": 6, "ngf": 4}})
    assert generator_input_channels(cfg) == 7
    assert discriminator_input_channels(cfg) == 10
    g = build_generator(cfg)
    assert g(torch.zeros(1, 7, 64, 64)).shape == (1, 3, 64, 64)


def test_tiny_config_builds_a_training_pair():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
    g, d, losses = build_generator(cfg), build_discriminator(cfg), build_losses(cfg)
    h, w = cfg.data.crop_size
    semantics = torch.zeros(1, generator_input_channels(cfg), h, w)
    fake = g(semantics)
    outputs = d(torch.cat([semantics[:, : discriminator_input_channels(cfg) - 3], fake], 1))
    parts = losses.generator(fake_outputs=outputs, real_outputs=outputs, fake=fake, real=fake)
    assert set(parts) == {"gan", "feat", "total"}  # tiny.yaml: vgg 0, l1 0


def test_registry_rows_and_unknown_name():
    from vid2vid.models.build import REGISTRY, spec

    assert set(REGISTRY) == {"pix2pix", "pix2pixhd", "spade", "vid2vid"}
    assert spec("vid2vid").sequential and not spec("pix2pixhd").sequential
    with pytest.raises(ConfigError, match="model.name.*pix2pixhd"):
        spec("pix2pixHD")


@pytest.mark.parametrize("overrides, key", [
    (["model.name=spade", "model.norm=none"], "model.norm"),
    (["model.name=pix2pixhd", "model.feat_num=3", "model.n_downsample_E=9"], "data.crop_size"),
    (["model.name=spade", "model.num_upsampling_layers=most", "data.crop_size=64x128",
      "data.load_size=64x128"], "data.crop_size"),
    (["model.nef=0"], "model.nef"),
])
def test_config_rules(overrides, key):
    with pytest.raises(ConfigError, match=key):
        from_dict({}, overrides)


def test_layer_groups_reproduce_the_vid2vid_generator_counts():
    """The shared layer groups are enough for the video generator (vid2vid.md, BatchNorm, fg branch)."""
    from vid2vid.models.layers import (
        ResnetBlock,
        down_layers,
        encoder_decoder_layers,
        front_layers,
        image_layers,
        up_layers,
    )

    def n(layers):
        return sum(p.numel() for layer in layers for p in layer.parameters())

    norm, labels_in, frames_in = "batch", 36 * 3, 3 * 2
    with torch.device("meta"):
        for n_down, expected in ((3, 411_335_241), (2, 137_792_649)):  # scale 0, ngf 128, 9 blocks
            ngf, top = 128, 128 * 2**n_down
            encoder = [n(front_layers(c, ngf, norm)) + sum(n(down_layers(ngf * 2**i, ngf * 2 ** (i + 1), norm))
                                                          for i in range(n_down)) for c in (labels_in, frames_in)]
            head = n([ResnetBlock(top, norm) for _ in range(4)]) + sum(
                n(up_layers(ngf * 2**i, ngf * 2 ** (i - 1), norm)) for i in range(n_down, 0, -1))
            total = sum(encoder) + 5 * 2 * n([ResnetBlock(top, norm)]) + 2 * head
            total += n(image_layers(ngf, 3)) + n([nn.Conv2d(ngf, 2, 7), nn.Conv2d(ngf, 1, 7)])
            total += n(encoder_decoder_layers(labels_in, 3, ngf // 2 if n_down > 2 else ngf, n_down, 9, norm))
            assert total == expected
        for width, expected in ((64, 2_880_489), (32, 859_641)):  # finer scales: two heads, fg at half width
            def short(c, w):
                return n(front_layers(c, w, norm) + down_layers(w, 2 * w, norm))

            def local_head(w):
                return n([ResnetBlock(2 * w, norm) for _ in range(3)] + up_layers(2 * w, w, norm))

            total = short(labels_in, width) + short(frames_in, width) + 2 * local_head(width)
            total += n(image_layers(width, 3)) + n([nn.Conv2d(width, 2, 7), nn.Conv2d(width, 1, 7)])
            total += short(labels_in, width // 2) + local_head(width // 2) + n(image_layers(width // 2, 3))
            assert total == expected
