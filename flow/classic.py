"""OpenCV flow (DIS, Farneback) behind the same interface as RAFT: `est(img1, img2) -> flow`.

Images are [B,3,H,W] float RGB in [-1, 1]; they are turned into grey uint8 images exactly as
`grey_uint8` says (x in [0, 1] -> round(255 x) -> cv2 RGB2GRAY). Flow is [B,2,H,W] float32 in
pixels on the images' device, mapping pixel x of img1 to x + flow(x) in img2.
"""

import cv2
import numpy as np
import torch
from einops import rearrange

from flow.errors import FlowError

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# Farneback parameters of TecoGAN's tOF (also this estimator's): pyr_scale, levels, winsize,
# iterations, poly_n, poly_sigma, flags.
FARNEBACK_PARAMS = dict(
    pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0
)


def grey_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """images [B,3,H,W] RGB in [-1, 1] -> B grey uint8 arrays [H,W] (round(255 x), x in [0, 1], RGB2GRAY)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise FlowError(f"flow estimators take RGB images [B,3,H,W] in [-1, 1], got {tuple(images.shape)}")
    rgb = ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    rgb = rearrange(rgb, "b c h w -> b h w c").cpu().numpy()
    return [rgb_to_grey(frame) for frame in rgb]


def rgb_to_grey(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3] -> uint8 grey [H,W] (OpenCV's RGB2GRAY weights and rounding)."""
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class ClassicFlow:
    """DIS (preset ultrafast | fast | medium) or Farneback (TecoGAN's parameters) on grey images.

    `flow.classic.ClassicFlow("dis", preset="medium")(img1, img2) -> flow [B,2,H,W]`;
    `.grey_flow(grey1, grey2) -> np.ndarray [H,W,2]` works on grey uint8 arrays directly (so a
    caller that measures many pairs converts each frame once).
    """

    def __init__(self, method: str = "dis", *, preset: str = "medium"):
        if method == "dis":
            if preset not in DIS_PRESETS:
                raise FlowError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
            self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
            self.name = f"dis_{preset}"
        elif method == "farneback":
            self._dis = None
            self.name = "farneback"
        else:
            raise FlowError(f"unknown classic flow method {method!r}; choose 'dis' or 'farneback'")

    def grey_flow(self, grey1: np.ndarray, grey2: np.ndarray) -> np.ndarray:
        """Grey uint8 [H,W] x 2 -> flow [H,W,2] float32 from grey1 to grey2."""
        if grey1.shape != grey2.shape:
            raise FlowError(f"{self.name}: image sizes differ: {grey1.shape} vs {grey2.shape}")
        if self._dis is not None:
            return self._dis.calc(grey1, grey2, None)
        return cv2.calcOpticalFlowFarneback(grey1, grey2, None, **FARNEBACK_PARAMS)

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """img1, img2 [B,3,H,W] in [-1, 1] -> flow [B,2,H,W] float32 on img1's device."""
        if img1.shape != img2.shape:
            raise FlowError(f"{self.name}: image shapes differ: {tuple(img1.shape)} vs {tuple(img2.shape)}")
        flows = [self.grey_flow(a, b) for a, b in zip(grey_uint8(img1), grey_uint8(img2))]
        flow = torch.from_numpy(np.stack(flows))  # [B,H,W,2]
        return rearrange(flow, "b h w c -> b c h w").to(img1.device)
