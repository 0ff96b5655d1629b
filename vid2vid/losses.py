"""Losses: GAN (least squares, hinge, non-saturating BCE, WGAN-GP), feature matching, gradient penalty,
VGG19 perceptual loss, KL (VAE), L1; `ImageLosses`, the weighted objective of the image models,
whose generator and discriminator sides return their parts in a dict of named scalars; and `VideoLosses`,
the video model's flow / warp / mask terms (the temporal discriminators reuse GANLoss and feature_matching).

Discriminator outputs may be given as a prediction tensor, a list of them (one per scale), or the
multi-scale discriminator's list of feature lists (the last feature of each scale is its prediction).
Over scales the GAN terms are summed (pix2pixHD / vid2vid).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

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
        if self.mode == "ls":
            return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))
        if self.mode == "bce":
            return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, 1.0 if real else 0.0))
        if self.mode == "hinge" and for_discriminator:
            return F.relu(1 - pred).mean() if real else F.relu(1 + pred).mean()
        return -pred.mean() if real else pred.mean()  # wgan-gp both sides; hinge generator side

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
    scores = sum(p.flatten(1).mean(1) for p in predictions(discriminator(x)))  # [B]
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


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
    from torchvision.models.vgg import cfgs, make_layers

    file = find_vgg19_weights(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"{file}: not a readable VGG19 checkpoint ({e}); download {VGG19_URL} again") from None
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
                 vgg_weights: str | Path | None = None, l1: float = 0.0, kl: float = 0.05, gp: float = 10.0):
        super().__init__()
        self.gan_loss = GANLoss(gan_mode)
        self.weights = {"gan": gan, "feat": feat, "vgg": vgg, "l1": l1, "kl": kl, "gp": gp}
        self.vgg = VGGLoss(vgg_weights) if vgg > 0 else None

    def generator(self, *, fake_outputs: Outputs, real_outputs: Outputs | None = None,
                  fake: torch.Tensor | None = None, real: torch.Tensor | None = None,
                  mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weighted generator terms {"gan", "feat", "vgg", "l1", "kl" (those with weight > 0 and inputs),
        "total"}. fake_outputs / real_outputs: D(semantics + fake) and D(semantics + real); fake / real:
        frames [B,3,H,W]; mu / logvar: the VAE encoder's output (KL only when given)."""
        w = self.weights
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
                      real_input: torch.Tensor | None = None, fake_input: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """{"real", "fake", ["gp",] "total"}: total = 0.5 * (real + fake) (+ gp weight * penalty for wgan-gp,
        which needs the discriminator and its real / fake inputs)."""
        parts = self.gan_loss.discriminator(real_outputs, fake_outputs)
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
