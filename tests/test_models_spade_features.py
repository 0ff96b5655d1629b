"""SPADE: the label map modulates the output where it changes; the VAE's z controls the output.
pix2pixHD feature encoder: instance-wise average pooling, and the per-class k-means feature bank."""

import torch
import torch.nn.functional as F

from vid2vid.models import FeatureBank, FeatureEncoder, SPADEGenerator, VAEEncoder, reparameterize
from vid2vid.models.image import kmeans
from vid2vid.models.layers import SPADE, instance_average


def _one_hot(labels: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(labels, n).permute(0, 3, 1, 2).float()


def test_spade_norm_is_local_to_the_changed_labels():
    torch.manual_seed(0)
    spade = SPADE(6, label_nc=4, hidden=8)
    x = torch.randn(1, 6, 32, 32)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    changed = labels.clone()
    changed[:, 12:20, 12:20] = 3
    diff = (spade(x, _one_hot(changed, 4)) - spade(x, _one_hot(labels, 4))).abs().amax(1)[0]  # [H,W]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[12:20, 12:20] = True
    near = torch.zeros(32, 32, dtype=torch.bool)
    near[10:22, 10:22] = True  # two conv3 layers: the influence reaches 2 pixels out
    assert (diff[inside] > 0).all()
    assert (diff[~near] == 0).all()


def test_spade_generator_output_follows_a_region_label_change():
    torch.manual_seed(0)
    g = SPADEGenerator(4, ngf=4, num_upsampling_layers="normal", hidden=16, norm="instance").eval()
    labels = torch.zeros(1, 64, 64, dtype=torch.long)
    labels[:, :, 32:] = 1
    changed = labels.clone()
    changed[:, 8:24, 8:24] = 2
    with torch.no_grad():
        diff = (g(_one_hot(changed, 4)) - g(_one_hot(labels, 4))).abs().mean(1)[0]  # [H,W]
    region = diff[8:24, 8:24]
    assert (region > 1e-4).float().mean() > 0.9  # the region's pixels change
    assert region.mean() > 2 * diff[40:, 40:].mean()  # more than far away


def test_vae_z_controls_the_output():
    torch.manual_seed(0)
    g = SPADEGenerator(3, ngf=2, size=(32, 64), use_vae=True, z_dim=8, hidden=8).eval()
    seg = _one_hot(torch.randint(0, 3, (2, 32, 64)), 3)
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(g(seg, z1), g(seg, z1))
        assert (g(seg, z1) - g(seg, z2)).abs().mean() > 1e-3
        torch.manual_seed(5)
        a = g(seg)  # z ~ N(0, I)
        torch.manual_seed(5)
        assert torch.equal(a, g(seg))


def test_vae_encoder_feeds_the_generator_with_gradients():
    torch.manual_seed(0)
    enc = VAEEncoder(3, ndf=4, z_dim=8, image_size=16)
    g = SPADEGenerator(3, ngf=2, size=(32, 64), use_vae=True, z_dim=8, hidden=8)
    image = torch.rand(2, 3, 32, 64) * 2 - 1
    mu, logvar = enc(image)
    gen = torch.Generator().manual_seed(0)
    z = reparameterize(mu, logvar, gen)
    assert torch.allclose(z, mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen.manual_seed(0)))
    g(_one_hot(torch.zeros(2, 32, 64, dtype=torch.long), 3), z).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())


def _direct_instance_average(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(features)
    for b in range(features.shape[0]):
        for i in inst[b].unique():
            mask = inst[b] == i
            out[b][:, mask] = features[b][:, mask].mean(dim=1, keepdim=True)
    return out


def test_instance_average_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 4, 20, 30, generator=g)
    inst = torch.randint(0, 9, (3, 20, 30), generator=g) * 1000 + torch.randint(0, 3, (3, 20, 30), generator=g)
    inst[1] = 7  # an image that is one instance
    out = instance_average(features, inst)
    assert torch.allclose(out, _direct_instance_average(features, inst), atol=1e-6)


def test_instance_average_in_bfloat16_sums_in_float32():
    features = torch.full((1, 1, 64, 64), 1.0)
    features[..., 0, 0] = 257.0  # a bfloat16 running sum would lose the +256
    out = instance_average(features.bfloat16(), torch.zeros(1, 64, 64, dtype=torch.long))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), torch.full_like(features, 1.0 + 256 / 4096), rtol=1e-2)


def test_instance_average_keeps_images_apart_and_passes_gradients():
    features = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]).requires_grad_(True)
    inst = torch.zeros(2, 4, 4, dtype=torch.long)  # the same id in both images
    out = instance_average(features, inst)
    assert torch.equal(out.detach(), features.detach())
    out.sum().backward()
    assert torch.allclose(features.grad, torch.ones_like(features))


def test_feature_encoder_gives_every_pixel_its_instance_mean():
    torch.manual_seed(0)
    enc = FeatureEncoder(3, 3, ngf=4, n_downsample=2)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    inst = torch.zeros(2, 32, 32, dtype=torch.long)
    inst[:, 4:20, 8:30] = 26001
    inst[0, 20:, :10] = 24000
    out = enc(image, inst)
    raw = enc.model(image)
    assert torch.allclose(out, _direct_instance_average(raw, inst), atol=1e-6)
    mask = inst[0] == 26001
    assert torch.allclose(out[0][:, mask], raw[0][:, mask].mean(1, keepdim=True).expand(-1, int(mask.sum())))


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    points = torch.cat([c + 0.1 * torch.randn(30, 2, generator=g) for c in truth])
    for seed in range(5):
        centers = kmeans(points, 3, generator=torch.Generator().manual_seed(seed))
        assert (torch.cdist(truth, centers).amin(1) < 0.1).all()
    assert kmeans(points[:2], 10).shape == (2, 2)  # fewer points than clusters
    assert kmeans(points[:1].repeat(5, 1), 3).shape == (1, 2)  # identical points: one centre


def test_feature_bank_samples_a_centre_of_each_instance_class():
    # class 1: instance features around +1 or +2; class 2: around -1; class 3 never seen
    feats = torch.tensor([[1.0], [1.01], [2.0], [2.01], [-1.0], [-1.02]])
    classes = torch.tensor([1, 1, 1, 1, 2, 2])
    bank = FeatureBank(label_nc=4, feat_num=1, k=2).fit(feats, classes, seed=0)
    assert bank.counts.tolist() == [0, 2, 2, 0]
    assert torch.allclose(bank.centers[1].sort(0).values.flatten(), torch.tensor([1.005, 2.005]), atol=1e-4)

    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :4] = 1
    labels[:, 4:, :4] = 2
    labels[:, 4:, 4:] = 3
    inst = labels * 1000
    inst[:, :4, 4:] = 1001  # two instances of class 1
    out = bank.sample(labels, inst, generator=torch.Generator().manual_seed(0))  # [1,1,8,8]
    for region in (out[0, 0, :4, :4], out[0, 0, :4, 4:]):
        assert (region == region[0, 0]).all() and region[0, 0] in bank.centers[1, :, 0]
    assert torch.allclose(out[0, 0, 4:, :4], torch.tensor(bank.centers[2, :, 0].tolist()).min(), atol=0.02)
    assert (out[0, 0, 4:, 4:] == 0).all()  # unseen class


def test_feature_bank_collects_instance_features_and_round_trips():
    features = torch.arange(16.0).view(1, 1, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[:, 2:] = 5
    feats, classes = FeatureBank.instance_features(features, labels, labels)
    assert classes.tolist() == [0, 5]
    assert feats.flatten().tolist() == [3.5, 11.5]
    bank = FeatureBank(6, 1, k=3).fit(feats, classes)
    other = FeatureBank(6, 1, k=3)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.centers, bank.centers) and torch.equal(other.counts, bank.counts)


def test_feature_bank_cluster_choice_and_seeded_draws():
    # k = 2. class 1: four instances in two groups -> two centres; class 2: one instance -> one centre (< k)
    feats = torch.tensor([[1.0], [1.01], [2.0], [2.01], [-1.0]])
    bank = FeatureBank(label_nc=3, feat_num=1, k=2).fit(feats, torch.tensor([1, 1, 1, 1, 2]), seed=0)
    assert bank.counts.tolist() == [0, 2, 1]
    labels = torch.ones(1, 4, 8, dtype=torch.long)
    labels[:, :, 6:] = 2
    inst = labels * 10
    inst[:, :, 3:6] = 11  # two instances of class 1, one of class 2
    first, second = (bank.sample(labels, inst, cluster=c) for c in (0, 1))
    assert torch.equal(first[0, 0, :, :6].unique(), bank.centers[1, 0])  # every class-1 instance: centre 0
    assert torch.equal(second[0, 0, :, :6].unique(), bank.centers[1, 1])
    assert torch.equal(first[0, 0, :, 6:], second[0, 0, :, 6:])  # class 2 has one centre: K modulo 1
    draws = [bank.sample(labels, inst, torch.Generator().manual_seed(s)) for s in range(6)]
    assert torch.equal(draws[0], bank.sample(labels, inst, torch.Generator().manual_seed(0)))
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert bank.unseen_classes(torch.tensor([[0, 1], [2, 2]])) == [0]


def test_generation_z_and_style_features():
    from vid2vid.models.image import style_features, vae_z

    torch.manual_seed(0)
    enc = VAEEncoder(3, ndf=4, z_dim=8, image_size=16).eval()
    style = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        mu, _ = enc(style)
        assert torch.equal(vae_z(enc, 3, 8, style), mu.expand(3, -1))  # the encoder's mean for each frame
        drawn = vae_z(enc, 3, 8, style, torch.Generator().manual_seed(1))
        assert torch.equal(drawn, vae_z(enc, 3, 8, style, torch.Generator().manual_seed(1)))
        assert not torch.equal(drawn, mu.expand(3, -1))
    z = vae_z(None, 2, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(z, torch.randn(2, 8, generator=torch.Generator().manual_seed(4)))

    feat_enc = FeatureEncoder(3, 3, ngf=4, n_downsample=2)
    inst = torch.zeros(2, 16, 16, dtype=torch.long)
    inst[1, 8:] = 5
    out = style_features(feat_enc, style, inst)  # resized to 16x16, pooled over each frame's instances
    resized = F.interpolate(style, size=(16, 16), mode="bilinear", align_corners=False).expand(2, -1, -1, -1)
    assert out.shape == (2, 3, 16, 16) and torch.allclose(out, feat_enc(resized, inst))
