"""Losses: signs, targets and zero points of every GAN mode, feature matching weights, the gradient
penalty against hand-computed cases, KL, VGG19 (error without weights; random weights from a file),
and the weighted ImageLosses dicts."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from vid2vid.config import from_dict
from vid2vid.errors import UserError
from vid2vid.losses import (
    GANLoss,
    ImageLosses,
    VGGLoss,
    feature_matching,
    gradient_penalty,
    kl_divergence,
    predictions,
)
from vid2vid.models import MultiscaleDiscriminator
from vid2vid.models.build import build_losses


def full(value: float) -> torch.Tensor:
    return torch.full((2, 1, 3, 3), value)


def test_predictions_accepts_tensors_lists_and_feature_lists():
    a, b = full(1.0), full(2.0)
    assert predictions(a)[0] is a
    assert predictions([a, b]) == [a, b]
    assert predictions([[b, a], [a, b]]) == [a, b]


def test_least_squares_targets():
    gan = GANLoss("ls")
    d = gan.discriminator(full(1.0), full(0.0))
    assert d["real"] == 0 and d["fake"] == 0 and d["total"] == 0
    d = gan.discriminator(full(0.5), full(0.5))
    assert torch.isclose(d["real"], torch.tensor(0.25)) and torch.isclose(d["total"], torch.tensor(0.25))
    assert gan.generator(full(1.0)) == 0
    assert torch.isclose(gan.generator(full(-1.0)), torch.tensor(4.0))


def test_hinge_margins_and_signs():
    gan = GANLoss("hinge")
    d = gan.discriminator(full(1.5), full(-1.2))
    assert d["real"] == 0 and d["fake"] == 0  # beyond the margins
    d = gan.discriminator(full(0.0), full(0.0))
    assert d["real"] == 1 and d["fake"] == 1 and d["total"] == 1
    d = gan.discriminator(full(-2.0), full(3.0))
    assert d["real"] == 3 and d["fake"] == 4
    assert gan.generator(full(2.0)) == -2  # G raises D(fake), no margin


def test_bce_matches_torch():
    gan = GANLoss("bce")
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    bce = torch.nn.BCEWithLogitsLoss()
    d = gan.discriminator(real, fake)
    assert torch.isclose(d["real"], bce(real, torch.ones_like(real)))
    assert torch.isclose(d["fake"], bce(fake, torch.zeros_like(fake)))
    assert torch.isclose(gan.generator(fake), bce(fake, torch.ones_like(fake)))  # non-saturating


def test_wgan_signs():
    gan = GANLoss("wgan-gp")
    d = gan.discriminator(full(3.0), full(-1.0))
    assert d["real"] == -3 and d["fake"] == -1 and d["total"] == -2
    assert gan.generator(full(3.0)) == -3


def test_multiscale_terms_are_summed_over_scales():
    gan = GANLoss("ls")
    outputs = [[full(9.0), full(0.0)], [full(9.0), full(2.0)]]  # features then prediction
    assert torch.isclose(gan.generator(outputs), torch.tensor(1.0 + 1.0))


def test_unknown_mode():
    with pytest.raises(ValueError, match="hinge"):
        GANLoss("wgan")


def test_feature_matching_zero_for_identical_and_weighted():
    g = torch.Generator().manual_seed(0)
    feats = [[torch.randn(2, 4, 5, 5, generator=g) for _ in range(5)] for _ in range(2)]
    assert feature_matching(feats, feats) == 0
    # one scale of n_layers = 1: features [f0, f1, pred] -> weight 4 / (1 + 1) per layer, 1 / num_D per scale
    real = [[torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.zeros(1, 1, 2, 2)]] * 2
    fake = [[torch.ones(1, 2, 3, 3), torch.full((1, 2, 3, 3), 3.0), torch.full((1, 1, 2, 2), 100.0)]] * 2
    expected = 2 * (1 / 2) * (4 / 2) * (1.0 + 3.0)  # scales * 1/num_D * layer weight * (L1 of f0 + L1 of f1)
    assert torch.isclose(feature_matching(real, fake), torch.tensor(expected))


def test_feature_matching_does_not_push_real_features():
    real = [[torch.zeros(1, 2, 3, 3, requires_grad=True), torch.zeros(1, 1, 2, 2)]]
    fake = [[torch.ones(1, 2, 3, 3, requires_grad=True), torch.zeros(1, 1, 2, 2)]]
    feature_matching(real, fake).backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_gradient_penalty_linear_critic():
    w = torch.tensor([[[[3.0, 0.0], [0.0, 4.0]]]])  # ||w|| = 5

    def critic(x):  # one scale, one prediction per sample: <w, x>
        return [[(x * w).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1)]]

    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    assert torch.isclose(gradient_penalty(critic, real, fake), torch.tensor((5.0 - 1.0) ** 2))


def test_gradient_penalty_quadratic_critic_and_mean_over_the_map():
    def critic(x):  # a constant prediction map [B,1,2,2] of value sum(x^2): its mean is sum(x^2)
        return [(x**2).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)]

    x = torch.tensor([[[[1.0, 2.0], [2.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.5]]]])  # ||x|| = 3 and 0.5
    # real == fake: the interpolate is x whatever alpha; grad sum(x^2) = 2x, norm 2||x||
    expected = ((2 * 3.0 - 1) ** 2 + (2 * 0.5 - 1) ** 2) / 2
    gp = gradient_penalty(critic, x, x.clone())
    assert torch.isclose(gp, torch.tensor(expected))


def test_gradient_penalty_trains_the_discriminator():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(4, ndf=4, n_layers=1, num_D=2, norm="none")
    gp = gradient_penalty(d, torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16))
    gp.backward()  # every weight gets a gradient (biases do not change the input gradient)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in d.named_parameters() if "weight" in n)


def test_kl_divergence():
    assert kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8)) == 0
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    expected = 0.5 * 1.0 + (-0.5 * (1 + math.log(2.0) - 2.0))
    assert torch.isclose(kl_divergence(mu, logvar), torch.tensor(expected))
    assert kl_divergence(torch.randn(4, 8), torch.randn(4, 8)) > 0


def test_vgg_missing_weights_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError) as info:
        VGGLoss()
    message = str(info.value)
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "loss.vgg: 0" in message and "loss.vgg_weights" in message
    with pytest.raises(UserError, match="nothing.pth"):
        VGGLoss(tmp_path / "nothing.pth")
    cfg = from_dict({"loss": {"vgg": 10.0, "vgg_weights": str(tmp_path / "nothing.pth")}})
    with pytest.raises(UserError, match="loss.vgg: 0"):
        build_losses(cfg)
    build_losses(from_dict({"loss": {"vgg": 0}}))  # disabled: never looks for the file


def test_vgg_rejects_a_wrong_file(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="vgg19"):
        VGGLoss(bad)


@pytest.fixture(scope="module")
def random_vgg19(tmp_path_factory):
    """Random-weight torchvision vgg19 features, saved like torchvision's checkpoint (features.* keys)."""
    torch.manual_seed(0)
    features = make_layers(cfgs["E"])
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def test_vgg_loss_with_weights_from_a_file(random_vgg19):
    loss = VGGLoss(random_vgg19)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    b = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert loss(a, a) == 0
    fake = b.clone().requires_grad_(True)
    value = loss(fake, a)
    assert value > 0
    value.backward()
    assert fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())  # frozen
    loss.train()
    assert not loss.training


def test_image_losses_dicts(random_vgg19):
    cfg = from_dict({"loss": {"gan_mode": "hinge", "vgg": 10.0, "vgg_weights": str(random_vgg19), "l1": 100.0}})
    losses = build_losses(cfg)
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(6, ndf=4, n_layers=2, num_D=2)
    real, fake = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    sem = torch.rand(1, 3, 32, 32)
    real_out, fake_out = d(torch.cat([sem, real], 1)), d(torch.cat([sem, fake], 1))
    mu, logvar = torch.randn(1, 8), torch.randn(1, 8)
    parts = losses.generator(fake_outputs=fake_out, real_outputs=real_out, fake=fake, real=real, mu=mu,
                             logvar=logvar)
    assert set(parts) == {"gan", "feat", "vgg", "l1", "kl", "total"}
    assert torch.isclose(parts["total"], sum(v for k, v in parts.items() if k != "total"))
    assert torch.isclose(parts["l1"], 100 * F.l1_loss(fake, real))
    assert torch.isclose(parts["kl"], 0.05 * kl_divergence(mu, logvar))
    assert torch.isclose(parts["feat"], 10 * feature_matching(real_out, fake_out))
    same = losses.generator(fake_outputs=real_out, real_outputs=real_out, fake=real, real=real)
    assert same["feat"] == 0 and same["vgg"] == 0 and same["l1"] == 0

    dparts = losses.discriminator(real_outputs=real_out, fake_outputs=fake_out)
    assert set(dparts) == {"real", "fake", "total"}
    assert torch.isclose(dparts["total"], 0.5 * (dparts["real"] + dparts["fake"]))


def test_wgan_gp_discriminator_side_adds_the_penalty():
    losses = ImageLosses(gan_mode="wgan-gp", vgg=0, gp=10.0)
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(4, ndf=4, n_layers=1, num_D=1, norm="none")
    real, fake = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    with pytest.raises(ValueError, match="gradient penalty"):
        losses.discriminator(real_outputs=d(real), fake_outputs=d(fake))
    parts = losses.discriminator(real_outputs=d(real), fake_outputs=d(fake), discriminator=d, real_input=real,
                                 fake_input=fake)
    assert parts["gp"] > 0
    assert torch.isclose(parts["total"], 0.5 * (parts["real"] + parts["fake"]) + parts["gp"])
