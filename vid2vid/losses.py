"""Losses: GAN (least squares, hinge, non-saturating BCE, WGAN-GP), feature matching, gradient penalty,
VGG19 perceptual loss, KL (VAE), L1; `ImageLosses`, the weighted objective of the image models,
whose generator and discriminator sides return their parts in a dict of named scalars; and `VideoLosses`,
the video model's flow / warp / mask terms (the temporal discriminators reuse GANLoss and feature_matching).

Discriminator outputs may be given as a prediction tensor, a list of them (one per scale), or the
multi-scale discriminator's list of feature lists (the last feature of each scale is its prediction).
Over scales the GAN terms are summed (pix2pixHD / vid2vid). The U-Net discriminator's two branches (encoder:
global logit [B]; decoder: per-pixel logits [B,1,H,W]) come in the same structure, so its encoder and decoder
terms are summed too (U-Net GAN); its CutMix terms are `cutmix_terms` (section "U-Net GAN" below).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from flow.errors import load_failure_reason
from vid2vid.errors import UserError
from vid2vid.reference_flow import warp_sequence

GAN_MODES = ("ls", "hinge", "bce", "wgan-gp")
Outputs = torch.Tensor | list


def predictions(outputs: Outputs) -> list[torch.Tensor]:
    """D outputs (tensor, list of tensors, or list of feature lists) -> list of prediction maps."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [o[-1] if isinstance(o, (list, tuple)) else o for o in outputs]


class GANLoss:
    """One adversarial objective, chosen by mode:

    | mode    | D on real          | D on fake          | G                     |
    | ls      | mean((D - 1)^2)    | mean(D^2)          | mean((D(fake) - 1)^2) |
    | hinge   | mean(relu(1 - D))  | mean(relu(1 + D))  | -mean(D(fake))        |
    | bce     | BCE(D, 1) (logits) | BCE(D, 0)          | BCE(D(fake), 1)       |
    | wgan-gp | -mean(D)           | mean(D)            | -mean(D(fake))        |

    The D loss is 0.5 * (real + fake) as in pix2pixHD / vid2vid; WGAN-GP adds gradient_penalty.
    """

    def __init__(self, mode: str = "ls"):
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN mode {mode!r}; expected one of {', '.join(GAN_MODES)}")
        self.mode = mode

    def _term(self, pred: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.mode == "hinge" and not for_discriminator:
            return -pred.mean()  # G raises D(fake), no margin
        return self.target_term(pred, pred.new_tensor(1.0 if real else 0.0))

    def target_term(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of a prediction against a target given per element (target in [0, 1], 1 = real, broadcast
        to pred): the table's "D on real" column weighted by target plus its "D on fake" column weighted by
        1 - target, per element, then the mean (ls and bce: the loss against the soft target itself). A constant
        target 1 (0) is the real (fake) row; U-Net GAN's CutMix gives the decoder the mask as its target."""
        target = target.to(pred.dtype).expand_as(pred)
        if self.mode == "ls":
            return F.mse_loss(pred, target)
        if self.mode == "bce":
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.mode == "hinge":
            return (target * F.relu(1 - pred) + (1 - target) * F.relu(1 + pred)).mean()
        return ((1 - 2 * target) * pred).mean()

    def _sum(self, outputs: Outputs, real: bool, for_discriminator: bool) -> torch.Tensor:
        return sum(self._term(p, real, for_discriminator) for p in predictions(outputs))

    def generator(self, fake_outputs: Outputs) -> torch.Tensor:
        """The generator's adversarial loss on D(fake) (summed over scales)."""
        return self._sum(fake_outputs, real=True, for_discriminator=False)

    def discriminator(self, real_outputs: Outputs, fake_outputs: Outputs) -> dict[str, torch.Tensor]:
        """{"real": loss on D(real), "fake": loss on D(fake), "total": 0.5 * (real + fake)}."""
        real = self._sum(real_outputs, real=True, for_discriminator=True)
        fake = self._sum(fake_outputs, real=False, for_discriminator=True)
        return {"real": real, "fake": fake, "total": 0.5 * (real + fake)}


def feature_matching(real_outputs: list[list[torch.Tensor]], fake_outputs: list[list[torch.Tensor]]
                     ) -> torch.Tensor:
    """pix2pixHD feature matching: sum over scales and intermediate features (all but the prediction) of
    L1(fake, real.detach()) * 4 / (n_layers + 1) * 1 / num_D, where n_layers + 1 = features per scale - 1."""
    num_d = len(fake_outputs)
    loss = fake_outputs[0][0].new_zeros(())
    for real_feats, fake_feats in zip(real_outputs, fake_outputs):
        layer_weight = 4.0 / (len(fake_feats) - 1)
        for real, fake in zip(real_feats[:-1], fake_feats[:-1]):
            loss = loss + layer_weight / num_d * F.l1_loss(fake, real.detach())
    return loss


def gradient_penalty(discriminator: Callable[[torch.Tensor], Outputs], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: mean over samples of (||grad_x score(x)||_2 - 1)^2 at x = a * real + (1 - a) * fake, a ~ U(0,1)
    per sample; score(x) = sum over scales of the mean of the prediction map. Differentiable (create_graph)."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, device=real.device,
                       dtype=real.dtype)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = sum(p.reshape(len(p), -1).mean(1) for p in predictions(discriminator(x)))  # [B]
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


# ----------------------------------------------------------------------------------------------
# U-Net GAN: CutMix and the consistency regulariser
# ----------------------------------------------------------------------------------------------


def cutmix_probability(progress: float, p: float, warmup: float) -> float:
    """The probability of a CutMix D loss at training progress `progress` in [0, 1]: rises linearly from 0 to p
    over the first `warmup` of training (the paper: from 0 to 0.5 over its first epochs), then stays at p."""
    return p if warmup <= 0 else p * min(1.0, progress / warmup)


def cutmix_masks(n: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """n CutMix masks [n,1,H,W] of 0 / 1 (1 = the real image's pixel), drawn on the CPU from `generator`.

    As in CutMix (Yun et al. 2019): a box covering a fraction r ~ U(0, 1) of the image (sides sqrt(r) H and
    sqrt(r) W), centred uniformly and clipped at the borders; the box holds the fake image's pixels or, with
    probability 1/2, the real image's (the mask is inverted), so that both fakes pasted into reals and reals
    pasted into fakes are seen."""
    h, w = size
    ratio, cy, cx, invert = torch.rand(4, n, generator=generator, dtype=torch.float64)
    half_h, half_w = ratio.sqrt() * h / 2, ratio.sqrt() * w / 2
    y0, y1 = (cy * h - half_h).round().clamp(0, h), (cy * h + half_h).round().clamp(0, h)
    x0, x1 = (cx * w - half_w).round().clamp(0, w), (cx * w + half_w).round().clamp(0, w)
    ys, xs = torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64)
    in_y = (ys >= y0[:, None]) & (ys < y1[:, None])  # [n,H]
    in_x = (xs >= x0[:, None]) & (xs < x1[:, None])  # [n,W]
    box = in_y[:, :, None] & in_x[:, None, :]  # [n,H,W]
    real = torch.where((invert < 0.5)[:, None, None], ~box, box)  # the box holds the fake, or (inverted) the real
    return real[:, None].float()


def draw_cutmix(p: float, n: int, size: tuple[int, int], *, key: tuple[int, ...], rank: int = 0,
                world: int = 1) -> torch.Tensor | None:
    """This D loss's CutMix masks [n,1,H,W] (CPU), or None when it has none (probability 1 - p).

    Everything is drawn from a generator seeded by `key` (e.g. (seed, step, call)), never from the global RNG:
    the draw is the same after a resume. The decision is the same on every process; masks are drawn for the
    global batch (world * n rows) and process `rank` takes its rows rank*n .. (rank+1)*n - 1, so that W processes
    with n rows each draw what one process with W*n rows draws."""
    digest = hashlib.blake2b(repr(tuple(key)).encode(), digest_size=7).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little"))
    if torch.rand((), generator=generator, dtype=torch.float64).item() >= p:
        return None
    return cutmix_masks(world * n, size, generator)[rank * n:(rank + 1) * n]


def mix(real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CutMix of two batches: mask * real + (1 - mask) * fake (mask [N,1,H,W] broadcasts over channels)."""
    return mask * real + (1 - mask) * fake


def cutmix_terms(gan_loss: GANLoss, mixed_outputs: Outputs, real_outputs: Outputs, fake_outputs: Outputs,
                 mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """U-Net GAN's CutMix terms of the D loss, unweighted: {"cutmix", "cons"}.

    mixed_outputs: D on mix(x, G(z), M) = M x + (1 - M) G(z) (rows i < len(mask) of the real and fake
    batches, mask M [N,1,H,W], 1 = real pixel); real_outputs / fake_outputs: D on those real and fake inputs
    (only their first len(mask) rows are used). Definitions (equation numbers as we recall them from the paper,
    Schonfeld et al. CVPR 2020, sections 3.1-3.2; check them against the paper before quoting):

      D loss (Eq. 3-4):     L_D = L_D_enc + L_D_dec   - GANLoss over both branches (real: 1, fake: 0)
      G loss (Eq. 5):       L_G = L_enc(D_enc(G(z)), real) + L_dec(D_dec(G(z)), real)   - GANLoss.generator
      CutMix (Eq. 6):       mix(x, G(z), M) = M * x + (1 - M) * G(z)
      "cutmix" (Sec. 3.2):  0.5 * [L_enc(D_enc(mix), target 0) + L_dec(D_dec(mix), target M per pixel)]
                            - the encoder calls the mixed image fake (it is not a real image as a whole), the
                            decoder's per-pixel target is the mask; the loss per target is GANLoss.target_term
                            and 0.5 is the weight each of the real and fake terms has in our D loss
      "cons" (Eq. 7):       || D_dec(mix(x, G(z), M)) - mix(D_dec(x), D_dec(G(z)), M) ||^2, on the decoder's
                            logits, as a mean over pixels (not a sum), gradients into all three D outputs

    Predictions with a spatial map ([N,1,h,w]) are decoder-like (target M resized by area, consistency term);
    others ([N], a global score) are encoder-like (target fake, no consistency term). The caller weights "cons"
    (loss.cutmix; the paper's full D objective, Eq. 8: L_D + lambda * L_cons)."""
    n = len(mask)
    cutmix, cons = mask.new_zeros(()), mask.new_zeros(())
    for p_mix, p_real, p_fake in zip(predictions(mixed_outputs), predictions(real_outputs),
                                     predictions(fake_outputs), strict=True):
        if p_mix.dim() < 4:
            cutmix = cutmix + gan_loss.target_term(p_mix, p_mix.new_zeros(()))
            continue
        target = mask if mask.shape[-2:] == p_mix.shape[-2:] else F.adaptive_avg_pool2d(mask, p_mix.shape[-2:])
        cutmix = cutmix + gan_loss.target_term(p_mix, target)
        cons = cons + F.mse_loss(p_mix, mix(p_real[:n], p_fake[:n], target))
    return {"cutmix": 0.5 * cutmix, "cons": cons}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over z, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(fake, real)


# ----------------------------------------------------------------------------------------------
# VGG19 perceptual loss
# ----------------------------------------------------------------------------------------------

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
VGG_SLICES = (2, 7, 12, 21, 30)  # torchvision vgg19.features ends of relu1_1, relu2_1, ..., relu5_1
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_vgg19_path() -> Path:
    """Where torchvision caches vgg19 weights: <torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def find_vgg19_weights(path: str | Path | None = None) -> Path:
    """The VGG19 weights file (`path`, default the torch hub cache); UserError saying what to fetch when absent."""
    file = Path(path) if path else default_vgg19_path()
    if not file.is_file():
        raise UserError(
            f"VGG19 weights not found at {file} (loss.vgg_weights={str(path) if path else None}). Download "
            f"{VGG19_URL} into {default_vgg19_path().parent}/ (the torch hub checkpoints folder), or set "
            f"loss.vgg_weights to the file's path, or set loss.vgg: 0 to disable the VGG perceptual loss."
        )
    return file


def load_vgg19_features(path: str | Path | None = None) -> nn.Sequential:
    """torchvision's vgg19 `features` up to relu5_1, weights from `path` (default: the torch hub cache).

    Accepts torchvision's full vgg19 state dict (classifier keys are ignored) or one holding only
    `features.*`. Never downloads; raises UserError saying what to fetch and where when absent.
    """
    from torchvision.models.vgg import cfgs, make_layers  # here: torchvision's model zoo, only with loss.vgg

    file = find_vgg19_weights(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"{file}: not a VGG19 checkpoint torch.load(weights_only=True) can read "
                        f"({load_failure_reason(e)}); download {VGG19_URL} again") from None
    features = make_layers(cfgs["E"])[: VGG_SLICES[-1]]
    wanted = {f"features.{k}": k for k in features.state_dict()}
    missing = [k for k in wanted if k not in state] if isinstance(state, dict) else list(wanted)
    if missing:
        raise UserError(f"{file}: not a torchvision vgg19 checkpoint (missing {missing[:3]}); download {VGG19_URL}")
    try:
        features.load_state_dict({wanted[k]: state[k] for k in wanted})
    except RuntimeError as e:
        raise UserError(f"{file}: VGG19 weights have the wrong shapes ({e}); download {VGG19_URL}") from None
    return features.eval().requires_grad_(False)


class VGGLoss(nn.Module):
    """sum_i w_i * L1(vgg_i(fake), vgg_i(real).detach()) over relu1_1..relu5_1, w = 1/32, 1/16, 1/8, 1/4, 1.

    Images in [-1, 1] are mapped to [0, 1] and normalised with ImageNet mean/std (what the
    torchvision weights expect). The network is frozen and stays in eval mode.
    """

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        features = load_vgg19_features(weights_path)
        bounds = (0,) + VGG_SLICES
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGLoss:
        return super().train(False)  # always eval

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_feats, real_feats = self._features(fake), self._features(real)
        return sum(w * F.l1_loss(f, r.detach()) for w, f, r in zip(VGG_LAYER_WEIGHTS, fake_feats, real_feats))


# ----------------------------------------------------------------------------------------------
# The image models' objective
# ----------------------------------------------------------------------------------------------


class ImageLosses(nn.Module):
    """Weighted objective of pix2pix / pix2pixHD / SPADE (and the per-frame terms of the video model).

    A term whose weight is 0 is skipped and absent from the dict; vgg=0 never loads VGG19.
    """

    def __init__(self, *, gan_mode: str = "ls", gan: float = 1.0, feat: float = 10.0, vgg: float = 10.0,
                 vgg_weights: str | Path | None = None, l1: float = 0.0, kl: float = 0.05, gp: float = 10.0,
                 cutmix: float = 0.0):
        super().__init__()
        self.gan_loss = GANLoss(gan_mode)
        self.weights = {"gan": gan, "feat": feat, "vgg": vgg, "l1": l1, "kl": kl, "gp": gp, "cutmix": cutmix}
        self.vgg = VGGLoss(vgg_weights) if vgg > 0 else None

    def generator(self, *, fake_outputs: Outputs, real_outputs: Outputs | None = None,
                  fake: torch.Tensor | None = None, real: torch.Tensor | None = None,
                  mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None,
                  l1: float | None = None) -> dict[str, torch.Tensor]:
        """Weighted generator terms {"gan", "feat", "vgg", "l1", "kl" (those with weight > 0 and inputs),
        "total"}. fake_outputs / real_outputs: D(semantics + fake) and D(semantics + real); fake / real:
        frames [B,3,H,W]; mu / logvar: the VAE encoder's output (KL only when given); l1: this call's L1 weight
        instead of the configured one (None: the configured one)."""
        w = self.weights if l1 is None else {**self.weights, "l1": l1}
        parts = {}
        if w["gan"] > 0:
            parts["gan"] = w["gan"] * self.gan_loss.generator(fake_outputs)
        if w["feat"] > 0 and real_outputs is not None:
            parts["feat"] = w["feat"] * feature_matching(real_outputs, fake_outputs)
        if self.vgg is not None and fake is not None:
            parts["vgg"] = w["vgg"] * self.vgg(fake, real)
        if w["l1"] > 0 and fake is not None:
            parts["l1"] = w["l1"] * l1_loss(fake, real)
        if w["kl"] > 0 and mu is not None:
            parts["kl"] = w["kl"] * kl_divergence(mu, logvar)
        parts["total"] = sum(parts.values())
        return parts

    def discriminator(self, *, real_outputs: Outputs, fake_outputs: Outputs,
                      discriminator: Callable[[torch.Tensor], Outputs] | None = None,
                      real_input: torch.Tensor | None = None, fake_input: torch.Tensor | None = None,
                      mixed_outputs: Outputs | None = None, mask: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """{"real", "fake", ["gp",] ["cutmix", "cons",] "total"}: total = 0.5 * (real + fake) (+ gp weight * penalty
        for wgan-gp, which needs the discriminator and its real / fake inputs) (+ cutmix + cons weight * cons when
        D's outputs on CutMix inputs and their mask are given: cutmix_terms)."""
        parts = self.gan_loss.discriminator(real_outputs, fake_outputs)
        if mixed_outputs is not None:
            terms = cutmix_terms(self.gan_loss, mixed_outputs, real_outputs, fake_outputs, mask)
            parts.update(cutmix=terms["cutmix"], cons=self.weights["cutmix"] * terms["cons"])
            parts["total"] = parts["total"] + parts["cutmix"] + parts["cons"]
        if self.gan_loss.mode == "wgan-gp" and self.weights["gp"] > 0:
            if discriminator is None or real_input is None or fake_input is None:
                raise ValueError("wgan-gp needs discriminator, real_input and fake_input for the gradient penalty")
            parts["gp"] = self.weights["gp"] * gradient_penalty(discriminator, real_input, fake_input)
            parts["total"] = parts["total"] + parts["gp"]
        return parts


# ----------------------------------------------------------------------------------------------
# The video model's flow, warp and mask terms (vid2vid)
# ----------------------------------------------------------------------------------------------


def masked_l1(fake: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean over every element of |fake - target| * mask (mask [..., 1, H, W] broadcasts over channels).
    The mean is over all pixels, not only the masked ones, so a clip with little confident flow weighs less."""
    return ((fake - target).abs() * mask).mean()


def previous_frames(before: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """The predecessor of each frame of a chunk: before [B,C,H,W] (the frame preceding the chunk, e.g. the
    previous chunk's last final frame), frames [B,T,C,H,W] -> [B,T,C,H,W] = [before, frames[:, :-1]]."""
    return torch.cat([before[:, None], frames[:, :-1]], dim=1)


def _pairs_given(**frames: torch.Tensor | None) -> None:
    """A frame without its predecessor (real without real_prev, final without final_prev) is a caller bug."""
    names = list(frames)
    for name, prev in zip(names[::2], names[1::2]):
        if (frames[name] is None) != (frames[prev] is None):
            raise ValueError(f"VideoLosses: {name} and {prev} go together; got only one of them")


class VideoLosses:
    """vid2vid's temporal terms for generated frames that have a predecessor (reference weights):

    | part        | definition                                                         | weight (LossConfig) |
    | flow        | L1(flow, ref_flow), masked by confidence                           | flow (10)           |
    | warp_flow   | L1(warp(real_prev, flow), real), masked                            | warp (10)           |
    | warp_output | L1(final, warp(final_prev, ref_flow).detach()), masked             | warp_output (10)    |
    | mask        | L1(weight, 0) masked: weight -> 0 (use the warp) where flow is sure | mask (1)            |

    `weight` is the generator's soft mask: final = weight * raw + (1 - weight) * warp(final_prev, flow).
    Masked L1 = masked_l1 (mean over all pixels). The reference uses the mask term only when the first
    frames are generated from zeros; a multi-scale generator divides `flow` by 2^(spatial scales - 1).
    """

    def __init__(self, *, flow: float = 10.0, warp: float = 10.0, warp_output: float = 10.0, mask: float = 1.0):
        self.weights = {"flow": flow, "warp_flow": warp, "warp_output": warp_output, "mask": mask}

    def __call__(self, *, ref_flow: torch.Tensor, confidence: torch.Tensor, flow: torch.Tensor | None = None,
                 real: torch.Tensor | None = None, real_prev: torch.Tensor | None = None,
                 final: torch.Tensor | None = None, final_prev: torch.Tensor | None = None,
                 weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weighted parts {"flow", "warp_flow", "warp_output", "mask" (weight > 0 and inputs given), "total"}.

        Every tensor is [..., C, H, W] with the same leading dims ([B,T] for a chunk, [B] for one step); index
        k of each refers to the same generated frame t and its predecessor t-1:
        ref_flow [..., 2] and confidence [..., 1]: reference_flow's flow[:, t-1] / confidence[:, t-1] (t -> t-1);
        flow [..., 2]: G's predicted flow t -> t-1; weight [..., 1]: G's mask;
        real / real_prev [..., 3]: real frames t / t-1; final / final_prev [..., 3]: generated frames t / t-1
        (across a chunk boundary final_prev starts with the previous chunk's last final: previous_frames)."""
        _pairs_given(real=real, real_prev=real_prev, final=final, final_prev=final_prev)
        w, parts = self.weights, {}
        if w["flow"] > 0 and flow is not None:
            parts["flow"] = w["flow"] * masked_l1(flow, ref_flow, confidence)
        if w["warp_flow"] > 0 and flow is not None and real is not None:
            parts["warp_flow"] = w["warp_flow"] * masked_l1(warp_sequence(real_prev, flow), real, confidence)
        if w["warp_output"] > 0 and final is not None:
            target = warp_sequence(final_prev, ref_flow).detach()
            parts["warp_output"] = w["warp_output"] * masked_l1(final, target, confidence)
        if w["mask"] > 0 and weight is not None:
            parts["mask"] = w["mask"] * masked_l1(weight, torch.zeros_like(weight), confidence)
        parts["total"] = sum(parts.values()) if parts else confidence.new_zeros(())
        return parts
