"""U-Net GAN's discriminator and CutMix: output structure and shapes, gradients of both heads, the GAN loss as the
sum of the encoder and decoder terms for every mode, the CutMix masks and targets, the consistency term, the
draw's determinism over resumes and processes, the warm-up, and the config keys."""

import pytest
import torch
from torch import nn

from vid2vid.config import from_dict
from vid2vid.errors import ConfigError
from vid2vid.losses import (
    GAN_MODES,
    GANLoss,
    ImageLosses,
    cutmix_masks,
    cutmix_probability,
    cutmix_terms,
    draw_cutmix,
    feature_matching,
    gradient_penalty,
    mix,
)
from vid2vid.models import MultiscaleDiscriminator
from vid2vid.models.build import build_discriminator, build_temporal_discriminators, discriminator_input_channels
from vid2vid.models.unet_discriminator import UNetDiscriminator


def unet(norm="instance", depth=3, **kw) -> UNetDiscriminator:
    torch.manual_seed(0)
    return UNetDiscriminator(5, ndf=4, depth=depth, norm=norm, **kw)


@pytest.mark.parametrize("size", [(32, 48), (40, 36)])  # 36 and 40 are not divisible by 2^3
@pytest.mark.parametrize("norm", ["instance", "spectralinstance", "batch", "none"])
def test_outputs_global_and_per_pixel_logits_with_features(size, norm):
    h, w = size
    encoder, decoder = unet(norm)(torch.randn(2, 5, h, w))
    assert encoder[-1].shape == (2,)  # the global logit
    assert decoder[-1].shape == (2, 1, h, w)  # a logit per pixel
    assert [f.shape[1:] for f in encoder[:-1]] == [(4, h // 2, w // 2), (8, h // 4, w // 4), (16, h // 8, w // 8)]
    assert [f.shape[1:] for f in decoder[:-1]] == [(8, h // 4, w // 4), (4, h // 2, w // 2), (4, h, w)]


def test_both_heads_train_every_parameter_and_stay_apart():
    d = unet(self_attention=True)
    with torch.no_grad():
        d.attention.gamma.fill_(0.5)  # (it starts at 0, which blocks the attention convs' gradients)
    encoder, decoder = d(torch.randn(2, 5, 32, 32))
    GANLoss("ls").discriminator([encoder, decoder], [encoder, decoder])["total"].backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name
    d.zero_grad()
    encoder, decoder = d(torch.randn(2, 5, 32, 32))
    encoder[-1].sum().backward()  # the global logit never depends on the decoder
    assert all(p.grad is None or not p.grad.any() for p in [*d.up.parameters(), *d.pixel_head.parameters()])


def by_hand(mode: str, pred: torch.Tensor, real: bool, for_d: bool) -> torch.Tensor:
    """The GANLoss table, written out."""
    sign = 1.0 if real else -1.0
    if mode == "ls":
        return ((pred - float(real)) ** 2).mean()
    if mode == "bce":
        return nn.functional.softplus(-sign * pred).mean()
    if mode == "hinge" and for_d:
        return torch.relu(1 - sign * pred).mean()
    return -sign * pred.mean()


@pytest.mark.parametrize("mode", GAN_MODES)
def test_gan_loss_is_the_sum_of_encoder_and_decoder_terms(mode):
    d = unet()
    real_out, fake_out = d(torch.randn(2, 5, 32, 32)), d(torch.randn(2, 5, 32, 32))
    gan = GANLoss(mode)
    parts = gan.discriminator(real_out, fake_out)
    for key, outs, real in (("real", real_out, True), ("fake", fake_out, False)):
        expected = by_hand(mode, outs[0][-1], real, True) + by_hand(mode, outs[1][-1], real, True)
        assert torch.allclose(parts[key], expected, atol=1e-6), (mode, key)
    expected = by_hand(mode, fake_out[0][-1], True, False) + by_hand(mode, fake_out[1][-1], True, False)
    assert torch.allclose(gan.generator(fake_out), expected, atol=1e-6)
    # feature matching covers both branches: 4 / depth * 1 / 2 per feature
    fm = feature_matching(real_out, fake_out)
    manual = sum(4 / 3 / 2 * (f - r).abs().mean() for branch in (0, 1)
                 for f, r in zip(fake_out[branch][:-1], real_out[branch][:-1]))
    assert torch.allclose(fm, manual, atol=1e-6)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_per_pixel_target_is_the_real_row_where_the_mask_is_one(mode):
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 1, 8, 8, generator=g) * 2
    mask = cutmix_masks(2, (8, 8), g)
    assert 0 < mask.sum() < mask.numel()
    gan, ones = GANLoss(mode), mask.bool()
    per_pixel = gan.target_term(pred, mask) * mask.numel()
    split = by_hand(mode, pred[ones], True, True) * ones.sum() + by_hand(mode, pred[~ones], False, True) * (~ones).sum()
    assert torch.allclose(per_pixel, split, atol=1e-5), mode
    assert torch.allclose(gan.target_term(pred, torch.tensor(1.0)), by_hand(mode, pred, True, True), atol=1e-6)


def test_cutmix_masks_are_boxes_of_real_or_of_fake_pixels():
    masks = cutmix_masks(300, (12, 20), torch.Generator().manual_seed(0))[:, 0]
    assert masks.shape == (300, 12, 20) and set(masks.unique().tolist()) <= {0.0, 1.0}
    inverted = 0
    for m in masks:
        for value in (0.0, 1.0):  # one of the two regions is an axis-aligned box (or empty)
            rows, cols = (m == value).any(1).nonzero(), (m == value).any(0).nonzero()
            if len(rows) and (m[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == value).all():
                break
        else:
            raise AssertionError(f"no box in\n{m}")
        inverted += value == 1.0 and m.mean() < 1  # a box of real pixels pasted into a fake
    assert 100 < inverted < 200  # about half the masks put the real pixels in the box
    assert 0.3 < masks.mean() < 0.7
    again = cutmix_masks(300, (12, 20), torch.Generator().manual_seed(0))[:, 0]
    assert torch.equal(masks, again)


def test_mixed_image_and_target_agree():
    """A box of real pixels in a fake image: the mixed image is real exactly where the target is 1, and a D that
    tells every pixel apart (and calls the whole image fake) has a CutMix loss of 0; with the mask inverted, not."""
    real, fake = torch.ones(1, 3, 8, 8), -torch.ones(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 3:7] = 1
    mixed = mix(real, fake, mask)
    assert torch.equal(mixed[:, :1] > 0, mask > 0)

    def pixel_d(x):  # logits 50 * frame value: sure that real pixels are real and fake ones fake
        return [[torch.full((len(x),), -50.0)], [50 * x[:, :1]]]

    gan = GANLoss("bce")
    terms = cutmix_terms(gan, pixel_d(mixed), pixel_d(real), pixel_d(fake), mask)
    assert terms["cutmix"] < 1e-9
    assert cutmix_terms(gan, pixel_d(mixed), pixel_d(real), pixel_d(fake), 1 - mask)["cutmix"] > 10


def test_consistency_is_zero_for_a_per_pixel_discriminator_and_not_for_the_unet():
    torch.manual_seed(0)
    per_pixel = nn.Sequential(nn.Conv2d(5, 8, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 1))

    def pixel_d(x):  # a per-pixel (non-linear) function of its input, in the U-Net D's output structure
        return [[x.mean(dim=(1, 2, 3))], [per_pixel(x)]]

    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(3, 5, 16, 16, generator=g), torch.randn(3, 5, 16, 16, generator=g)
    mask = cutmix_masks(3, (16, 16), g)
    mixed = mix(real, fake, mask)
    gan = GANLoss("hinge")
    assert cutmix_terms(gan, pixel_d(mixed), pixel_d(real), pixel_d(fake), mask)["cons"] < 1e-12
    d = unet()
    assert cutmix_terms(gan, d(mixed), d(real), d(fake), mask)["cons"] > 1e-4


def test_image_losses_add_the_weighted_cutmix_terms():
    d = unet()
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(2, 5, 16, 16, generator=g), torch.randn(2, 5, 16, 16, generator=g)
    mask = cutmix_masks(2, (16, 16), g)
    outs = [d(real), d(fake), d(mix(real, fake, mask))]
    losses = ImageLosses(gan_mode="ls", vgg=0, cutmix=3.0)
    parts = losses.discriminator(real_outputs=outs[0], fake_outputs=outs[1], mixed_outputs=outs[2], mask=mask)
    terms = cutmix_terms(losses.gan_loss, outs[2], outs[0], outs[1], mask)
    assert torch.allclose(parts["cons"], 3 * terms["cons"]) and torch.allclose(parts["cutmix"], terms["cutmix"])
    assert torch.allclose(parts["total"], 0.5 * (parts["real"] + parts["fake"]) + terms["cutmix"] + 3 * terms["cons"])
    assert "cutmix" not in losses.discriminator(real_outputs=outs[0], fake_outputs=outs[1])


def test_gradient_penalty_takes_the_global_logit():
    d = unet(norm="none")
    penalty = gradient_penalty(d, torch.randn(2, 5, 16, 16), torch.randn(2, 5, 16, 16))
    assert penalty.ndim == 0 and torch.isfinite(penalty) and penalty.requires_grad


def test_draw_is_a_function_of_its_key_and_splits_the_global_batch():
    first = draw_cutmix(1.0, 4, (8, 8), key=(0, 5, 1))
    assert first.shape == (4, 1, 8, 8) and torch.equal(first, draw_cutmix(1.0, 4, (8, 8), key=(0, 5, 1)))
    assert not torch.equal(first, draw_cutmix(1.0, 4, (8, 8), key=(0, 5, 2)))
    assert draw_cutmix(0.0, 4, (8, 8), key=(0, 5, 1)) is None
    halves = [draw_cutmix(1.0, 2, (8, 8), key=(0, 5, 1), rank=r, world=2) for r in (0, 1)]
    assert torch.equal(torch.cat(halves), first)  # 2 processes x 2 rows == 1 process x 4 rows
    drawn = [draw_cutmix(0.3, 1, (8, 8), key=(0, s, 1)) is not None for s in range(400)]
    assert 80 < sum(drawn) < 160


def test_cutmix_probability_warms_up_linearly():
    assert [cutmix_probability(t, 0.5, 0.5) for t in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([0, 0.25, 0.5, 0.5])
    assert cutmix_probability(0.0, 0.5, 0.0) == 0.5


def test_config_and_build():
    cfg = from_dict({"discriminator": {"type": "unet", "ndf": 4, "depth": 3}, "data": {"crop_size": "64x128",
                     "load_size": "64x128"}, "loss": {"cutmix": 1.0}})
    d = build_discriminator(cfg)
    assert isinstance(d, UNetDiscriminator) and d.down[0].shortcut.in_channels == discriminator_input_channels(cfg)
    # the video model's temporal Ds stay PatchGANs
    assert all(isinstance(t, MultiscaleDiscriminator) for t in build_temporal_discriminators(cfg).values())
    assert isinstance(build_discriminator(from_dict({})), MultiscaleDiscriminator)
    assert from_dict({}).discriminator.type == "patchgan" and from_dict({}).loss.cutmix == 0
    bad = {"loss.cutmix": ({"loss": {"cutmix": 1.0}}, "discriminator.type: unet"),
           "loss.cutmix_p": ({"discriminator": {"type": "unet"}, "loss": {"cutmix_p": 1.5}}, "[0, 1]"),
           "discriminator.depth": ({"discriminator": {"type": "unet", "depth": 6},
                                    "data": {"crop_size": "64x64", "load_size": "64x64"}}, "depth <= 5"),
           "discriminator.type": ({"discriminator": {"type": "unet2"}}, "did you mean unet")}
    for key, (tree, words) in bad.items():
        with pytest.raises(ConfigError) as e:
            from_dict(tree)
        assert key in str(e.value) and words in str(e.value), str(e.value)
