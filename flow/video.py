"""Flow for whole frame sequences with RAFT.

Each frame goes through the feature and context encoders once, not once per pair. With warm
start, pair t+1 starts from pair t's low-resolution flow carried forward along itself (forward
splatting, as RAFT's Sintel submission initialises each frame), so a few iterations suffice with
weights trained for it (`python -m flow train --warm-start ...`), and a cold pair every N
(refresh_every) bounds the error a long chain accumulates; without warm start, pairs are refined
from zero flow in batches.
"""

import torch

from flow.errors import FlowError
from flow.raft import MIN_SIZE, RAFT
from flow.warp import crop, pad_image


def forward_splat(flow: torch.Tensor) -> torch.Tensor:
    """Carry flow [B,2,h,w] forward along itself: the result at x + flow(x) is flow(x).

    Bilinear splatting with averaged collisions; pixels nothing lands on keep their own flow.
    """
    batch, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device), torch.arange(w, device=flow.device), indexing="ij")
    tx = (xs + flow[:, 0]).reshape(batch, -1)  # [B,hw] target positions
    ty = (ys + flow[:, 1]).reshape(batch, -1)
    values = flow.reshape(batch, 2, -1)
    total = flow.new_zeros(batch, 2, h * w)
    weight = flow.new_zeros(batch, 1, h * w)
    x0, y0 = tx.floor(), ty.floor()
    for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        wgt = (1 - (tx - cx).abs()) * (1 - (ty - cy).abs())  # [B,hw]
        inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        wgt = torch.where(inside, wgt, 0.0)
        index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()
        total.scatter_add_(2, index[:, None].expand(-1, 2, -1), values * wgt[:, None])
        weight.scatter_add_(2, index[:, None], wgt[:, None])
    splatted = total / weight.clamp_min(1e-6)
    filled = torch.where(weight > 1e-3, splatted, values)
    return filled.view(batch, 2, h, w)


@torch.inference_mode()
def estimate_video_flow(
    frames: torch.Tensor,
    model: RAFT,
    *,
    iters: int = 4,
    warm_start: bool = True,
    cold_iters: int = 12,
    refresh_every: int | None = None,
    batch_frames: int | None = None,
) -> torch.Tensor:
    """frames [T,3,H,W] in [-1,1] -> forward flows [T-1,2,H,W] (flow[t]: frame t -> t+1, pixels).

    iters: recurrent updates per pair: per warm-started pair, or per pair without warm start.
    With warm start, the first pair, and every refresh_every-th one if given, starts from zero flow
    with cold_iters updates instead: fed its own flow frame after frame, a model leaves errors behind
    moving edges in flat areas that the next pairs keep, and a periodic cold pair bounds them
    (weights trained for video mode, `python -m flow train --warm-start ...`, need it least).
    batch_frames: frames encoded per batch; without warm start, pairs are also refined in batches
    of this size (lower it if memory is short). Default: 8 on a GPU, 1 on the CPU, where larger
    batches of these full-resolution convolutions run slower per frame (384x768, 2 threads: the
    feature encoder takes 94 ms per frame in batches of 8, 29 ms alone).
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
        raise FlowError(f"estimate_video_flow needs frames [T,3,H,W] with T >= 2, got {tuple(frames.shape)}")
    device = next(model.parameters()).device
    batch_frames = batch_frames or (1 if device.type == "cpu" else 8)
    if min(batch_frames, iters, cold_iters, 1 if refresh_every is None else refresh_every) < 1:
        raise FlowError(f"batch_frames, iters, cold_iters and refresh_every must be >= 1, got {batch_frames}, "
                        f"{iters}, {cold_iters} and {refresh_every}")
    was_training = model.training
    model.eval()
    try:
        return _video_flow(frames, model, iters=iters, warm_start=warm_start, cold_iters=cold_iters,
                           refresh_every=refresh_every, batch_frames=batch_frames)
    finally:
        model.train(was_training)


def _video_flow(frames, model, *, iters, warm_start, cold_iters, refresh_every, batch_frames):
    device = next(model.parameters()).device
    flows = []
    prev_fmap = prev_context = prev_low = None  # features and context of the last frame of a batch
    for start in range(0, frames.shape[0], batch_frames):
        images, padding = pad_image(frames[start : start + batch_frames].to(device), multiple=8,
                                    min_size=(MIN_SIZE, MIN_SIZE))
        fmaps = model.encode_features(images)
        hidden, context = model.encode_context(images)
        if prev_fmap is not None:  # the pair that straddles two batches
            fmaps = torch.cat([prev_fmap, fmaps])
            hidden, context = torch.cat([prev_context[0], hidden]), torch.cat([prev_context[1], context])
        n_pairs = fmaps.shape[0] - 1
        if warm_start:
            for k in range(n_pairs):
                cold = prev_low is None or (refresh_every is not None and len(flows) % refresh_every == 0)
                (up,), prev_low = model.refine(fmaps[k : k + 1], fmaps[k + 1 : k + 2], hidden[k : k + 1],
                                               context[k : k + 1], iters=cold_iters if cold else iters,
                                               flow_low=None if cold else forward_splat(prev_low))
                flows.append(crop(up, padding))
        elif n_pairs > 0:
            (up,), _ = model.refine(fmaps[:-1], fmaps[1:], hidden[:-1], context[:-1], iters=iters)
            flows.extend(crop(up, padding).split(1))
        prev_fmap, prev_context = fmaps[-1:], (hidden[-1:], context[-1:])
    return torch.cat(flows)
