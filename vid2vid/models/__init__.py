"""Networks: per-frame generators, discriminators, shared layers; `build` maps a Config to them."""

from vid2vid.models.discriminators import MultiscaleDiscriminator, NLayerDiscriminator
from vid2vid.models.image import (
    FeatureBank,
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    SPADEGenerator,
    UnetGenerator,
    VAEEncoder,
    reparameterize,
)

__all__ = [
    "FeatureBank",
    "FeatureEncoder",
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "SPADEGenerator",
    "UnetGenerator",
    "VAEEncoder",
    "reparameterize",
]
