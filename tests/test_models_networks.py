"""Every generator, encoder and discriminator at small widths: output shapes, a gradient for every
parameter, no NaN, determinism under a seed, state-dict save/load round trip."""

import io

import pytest
import torch

from vid2vid.models import (
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    SPADEGenerator,
    UnetGenerator,
    VAEEncoder,
)
from vid2vid.models.layers import SelfAttention

C_IN = 5


def _inputs(name: str, seed: int = 1) -> tuple:
    g = torch.Generator().manual_seed(seed)
    if name.startswith("spade_most"):
        return (torch.randn(2, C_IN, 128, 256, generator=g),)
    if name.startswith("spade_more"):
        return (torch.randn(2, C_IN, 64, 64, generator=g),)
    if name == "feature_encoder":
        inst = torch.randint(0, 6, (2, 32, 32), generator=g)
        return torch.randn(2, 3, 32, 32, generator=g), inst
    if name.startswith("vae_encoder"):
        return (torch.randn(2, 3, 48, 40, generator=g),)
    if name == "spade_vae":
        return torch.randn(2, C_IN, 32, 64, generator=g), torch.randn(2, 8, generator=g)
    if name.startswith("D_"):
        return (torch.randn(2, C_IN + 3, 32, 48, generator=g),)
    return (torch.randn(2, C_IN, 32, 64, generator=g),)


BUILDERS = {
    "unet": lambda: UnetGenerator(C_IN, 3, num_downs=5, ngf=4, norm="batch"),
    "unet_dropout_instance": lambda: UnetGenerator(C_IN, 3, num_downs=5, ngf=2, norm="instance", dropout=True),
    "global": lambda: GlobalGenerator(C_IN, 3, ngf=4, n_downsample=2, n_blocks=2),
    "global_spectralbatch": lambda: GlobalGenerator(C_IN, 3, ngf=4, n_downsample=2, n_blocks=1,
                                                    norm="spectralbatch"),
    "local_1": lambda: LocalEnhancer(C_IN, 3, ngf=2, n_downsample_global=2, n_blocks_global=1,
                                     n_local_enhancers=1, n_blocks_local=1),
    "local_2": lambda: LocalEnhancer(C_IN, 3, ngf=2, n_downsample_global=1, n_blocks_global=1,
                                     n_local_enhancers=2, n_blocks_local=1),
    "spade_normal": lambda: SPADEGenerator(C_IN, ngf=2, num_upsampling_layers="normal", hidden=8),
    "spade_more_batch": lambda: SPADEGenerator(C_IN, ngf=2, num_upsampling_layers="more", hidden=8, norm="batch"),
    "spade_most": lambda: SPADEGenerator(C_IN, ngf=2, num_upsampling_layers="most", hidden=8),
    "spade_vae": lambda: SPADEGenerator(C_IN, ngf=2, num_upsampling_layers="normal", size=(32, 64), use_vae=True,
                                        z_dim=8, hidden=8),
    "vae_encoder": lambda: VAEEncoder(3, ndf=4, z_dim=8, image_size=32),
    "vae_encoder_none": lambda: VAEEncoder(3, ndf=4, z_dim=8, image_size=16, norm="none"),
    "feature_encoder": lambda: FeatureEncoder(3, 3, ngf=4, n_downsample=2),
    "D_instance": lambda: MultiscaleDiscriminator(C_IN + 3, ndf=4, n_layers=3, num_D=2),
    "D_batch": lambda: MultiscaleDiscriminator(C_IN + 3, ndf=4, n_layers=2, num_D=3, norm="batch"),
    "D_spectral_attention": lambda: MultiscaleDiscriminator(C_IN + 3, ndf=4, n_layers=3, num_D=2,
                                                            norm="spectralinstance", self_attention=True),
    "D_none_1layer": lambda: MultiscaleDiscriminator(C_IN + 3, ndf=4, n_layers=1, num_D=1, norm="none"),
}


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = BUILDERS[name]()
    for m in model.modules():  # SAGAN's gamma starts at 0, which would zero the attention's gradients
        if isinstance(m, SelfAttention):
            torch.nn.init.constant_(m.gamma, 0.5)
    return model


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _tensors(o)]


def _run(model: torch.nn.Module, name: str, seed: int = 1):
    torch.manual_seed(123)  # dropout / VAE noise
    return model(*_inputs(name, seed))


def _expected_shapes(name: str) -> list[tuple]:
    if name.startswith("vae_encoder"):
        return [(2, 8), (2, 8)]
    if name == "feature_encoder":
        return [(2, 3, 32, 32)]
    if name.startswith("spade_most"):
        return [(2, 3, 128, 256)]
    if name.startswith("spade_more"):
        return [(2, 3, 64, 64)]
    if name.startswith("D_"):
        return []  # checked in _check_discriminator_shapes
    return [(2, 3, 32, 64)]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_shapes_gradients_no_nan(name):
    model = _build(name).train()
    outs = _tensors(_run(model, name))
    if not name.startswith("D_"):
        assert [tuple(o.shape) for o in outs] == _expected_shapes(name)
    for o in outs:
        assert torch.isfinite(o).all()
    if not name.startswith(("D_", "vae")):
        assert outs[0].abs().max() <= 1.0  # tanh output
    sum(o.square().mean() for o in outs).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", ["D_instance", "D_batch", "D_none_1layer"])
def test_discriminator_features(name):
    model = _build(name)
    (x,) = _inputs(name)
    outs = model(x)
    num_d, n_layers = len(model.discriminators), model.n_layers
    assert len(outs) == num_d
    for scale, feats in enumerate(outs):
        assert len(feats) == n_layers + 2
        assert feats[-1].shape[:2] == (2, 1)  # prediction map
        h = x.shape[-2]
        for _ in range(scale):
            h = (h + 1) // 2  # avg-pool 3, stride 2, pad 1
        assert feats[0].shape[-2] == h // 2 + 1  # conv4, stride 2, padding 2


@pytest.mark.parametrize("name", list(BUILDERS))
def test_determinism_and_state_dict_round_trip(name):
    a, b = _build(name, seed=0), _build(name, seed=0)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    a.train()
    b.train()
    for oa, ob in zip(_tensors(_run(a, name)), _tensors(_run(b, name))):
        assert torch.equal(oa, ob)

    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    c = _build(name, seed=7)  # different initial weights
    c.load_state_dict(torch.load(buffer, weights_only=True))
    a.eval()
    c.eval()
    for oa, oc in zip(_tensors(_run(a, name)), _tensors(_run(c, name))):
        assert torch.equal(oa, oc)
    d = _build(name, seed=7).eval()
    assert any(not torch.equal(oa, od) for oa, od in zip(_tensors(_run(a, name)), _tensors(_run(d, name))))


def test_unet_dropout_is_noise_in_train_mode_only():
    model = _build("unet_dropout_instance").train()
    (x,) = _inputs("unet_dropout_instance")
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 0  # 5 levels: no 8*ngf middle
    deep = UnetGenerator(C_IN, 3, num_downs=7, ngf=1, dropout=True)
    assert sum(isinstance(m, torch.nn.Dropout) for m in deep.modules()) == 7 - 5
    x = torch.randn(1, C_IN, 128, 128)
    deep.train()
    assert not torch.equal(deep(x), deep(x))
    deep.eval()
    assert torch.equal(deep(x), deep(x))


def test_self_attention_starts_as_identity_and_mixes_positions():
    torch.manual_seed(0)
    sa = SelfAttention(16)
    x = torch.randn(1, 16, 5, 6)
    assert torch.equal(sa(x), x)  # gamma = 0
    torch.nn.init.constant_(sa.gamma, 1.0)
    y = sa(x)
    x2 = x.clone()
    x2[..., 0, 0] += 1.0  # one position changes -> every position's output changes
    assert ((sa(x2) - y)[..., 1:, :].abs() > 0).all()


@pytest.mark.parametrize("size", [(32, 64), (64, 32)])
def test_vae_encoder_accepts_any_frame_size(size):
    enc = _build("vae_encoder")
    mu, logvar = enc(torch.randn(1, 3, *size))
    assert mu.shape == logvar.shape == (1, 8)


def test_spade_vae_rejects_other_sizes():
    model = _build("spade_vae")
    with pytest.raises(ValueError, match="built for 32x64"):
        model(torch.randn(1, C_IN, 64, 64))
