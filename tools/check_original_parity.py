"""Numerical parity with NVIDIA's original code on one of its fixtures (shared/fixtures/*.pt).

    python tools/check_original_parity.py ../shared/fixtures/spade.pt [--tolerance 1e-4]

Every choice comes from the fixture's `options` (the original's parsed options), never from the file name.
The state dict goes through the same conversion as `vid2vid import` (import_originals.generator_from_original);
the network inputs are rebuilt from the raw label / instance maps with our encoder (vid2vid.data.encoding) and
compared with the stored network input; then our generator runs on them and every stored output is compared.
vid2vid: eval mode with running statistics (`outputs`), and batch statistics (`outputs_trainmode`, what the
original's test.py does) both as the import sets it up (model.norm_at_inference) and in plain train mode.

Prints the max absolute difference per compared tensor; exit 0 when all are <= the tolerance, 1 otherwise,
2 for a bad input (not a fixture, or options that do not convert yet).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from flow.errors import load_failure_reason
from vid2vid.config import Config
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import UserError, run_cli
from vid2vid.import_originals import generator_from_original
from vid2vid.models.video import VideoOutput
from vid2vid.originals import vid2vid_state_dict

FORMAT = "original-code-fixture-v1"
Comparison = tuple[str, torch.Tensor, torch.Tensor]  # (what, ours, the original's)


def read_fixture(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such fixture file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of many kinds: all mean "not a fixture"
        raise UserError(f"{path}: not readable with torch.load(weights_only=True) ({load_failure_reason(e)}); "
                        "pass a fixture written by the original code (shared/fixtures/README_originals.md)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an original-code fixture (format {FORMAT!r})")
    return data


def architecture(options: dict) -> str:
    """The original project, from its options: pix2pixHD's model 'pix2pixHD', SPADE's model 'pix2pix' with
    netG 'spade', vid2vid's model 'vid2vid'."""
    model = options.get("model")
    if model == "pix2pixHD":
        return "pix2pixhd"
    if model == "pix2pix" and options.get("netG") == "spade":
        return "spade"
    if model == "vid2vid":
        return "vid2vid"
    raise UserError(f"options model={model!r} netG={options.get('netG')!r}: not a pix2pixHD, SPADE or vid2vid fixture")


def semantics(cfg: Config, labels: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Raw label / instance id maps [...,H,W] (float, as the originals' loaders give them) -> our network input."""
    d = cfg.data
    return semantic_input(labels.long(), inst.long(), d.label_nc, d.use_instance, d.contain_dontcare_label)


def image_comparisons(model: nn.Module, cfg: Config, fixture: dict, input_name: str) -> Iterator[Comparison]:
    """pix2pixHD / SPADE: the network input, then fake_image in eval mode."""
    inputs = fixture["inputs"]
    sem = semantics(cfg, inputs["label_map"][:, 0], inputs["inst_map"][:, 0])
    yield f"input {input_name}", sem, inputs[input_name]
    with torch.no_grad():
        yield "output fake_image (eval)", model.eval()(sem), fixture["outputs"]["fake_image"]


def video_outputs(out: VideoOutput) -> dict[str, torch.Tensor]:
    """Our outputs under the original forward's return names."""
    return {"img_final": out.final, "flow": out.flow, "weight": out.weight, "img_raw": out.raw,
            "img_feat": out.image_features[-1], "flow_feat": out.flow_features, "img_fg_feat": out.fg_features}


def video_comparisons(model: nn.Module, cfg: Config, fixture: dict) -> Iterator[Comparison]:
    """vid2vid: the label stack and previous frames, then every output in three runs (G0 fixture); a fixture of a
    finer scale also checks the coarse inputs (our pyramid), the coarse scale's outputs and the fine scale alone on
    the stored coarse features (scale_comparisons)."""
    inputs, n = fixture["inputs"], cfg.model.n_frames_G
    labels = semantics(cfg, inputs["A_label_ids"][:, :n, 0], inputs["inst_ids"][:, :n, 0])  # [B,N,C,H,W]
    prev = inputs["B_real_frames"][:, : n - 1]  # the first call of test.py with --use_real_img
    yield "input input", rearrange(labels, "b n c h w -> b (n c) h w"), inputs["input"]
    yield "input img_prev", rearrange(prev, "b n c h w -> b (n c) h w"), inputs["img_prev"]
    if cfg.model.n_scales_spatial > 1:
        yield from scale_comparisons(model, cfg, fixture, labels, prev)
    for what, expected in norm_runs(model, cfg):
        with torch.no_grad():
            out = model(labels, prev)
        if expected == "outputs":
            yield "output mask (eval)", out.fg_mask[:, 0], inputs["mask"]
            yield "output img_warp (eval)", out.warped, fixture["extra"]["img_warp"]
        for name, value in video_outputs(out).items():
            yield f"output {name} ({what})", value, fixture[expected][name]
        if out.coarser:  # the coarse G0 step of the same pipeline
            coarse = "coarse_G0_outputs" + expected.removeprefix("outputs")
            for name, value in video_outputs(out.coarser[-1]).items():
                yield f"coarse output {name} ({what})", value, fixture[coarse][name]


def norm_runs(model: nn.Module, cfg: Config) -> Iterator[tuple[str, str]]:
    """Sets the model up for each of the three runs in turn -> (what, the fixture's outputs to compare with). Each
    run starts from the checkpoint's running statistics (a train-mode forward updates them), and so does what
    comes after the last run."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    runs: list[tuple[str, Callable[[], None], str]] = [
        ("eval, running statistics", lambda: set_batch_stats(model, False), "outputs"),
        (f"eval, model.norm_at_inference {cfg.model.norm_at_inference}",
         lambda: set_batch_stats(model, cfg.model.norm_at_inference == "batch_stats"), "outputs_trainmode"),
        ("train mode", lambda: model.train(), "outputs_trainmode"),
    ]
    for what, prepare, expected in runs:
        model.load_state_dict(saved)
        model.eval()
        prepare()
        yield what, expected
    model.load_state_dict(saved)


def scale_comparisons(model: nn.Module, cfg: Config, fixture: dict, labels: torch.Tensor, prev: torch.Tensor
                      ) -> Iterator[Comparison]:
    """A finer-scale fixture (the original's CompositeLocalGenerator with its coarse G0): the coarse G0 inputs
    against our avg-pool pyramid, then the finest scale alone on the stored coarse features (its recorded
    forward call), in eval and train mode."""
    from vid2vid.models.video import pyramid

    coarse_inputs, finest = fixture["coarse_G0_inputs"], model.scales[-1]
    yield "coarse input input", rearrange(pyramid(labels, 2)[0], "b n c h w -> b (n c) h w"), coarse_inputs["input"]
    yield "coarse input img_prev", rearrange(pyramid(prev, 2)[0], "b n c h w -> b (n c) h w"), coarse_inputs["img_prev"]
    for what, expected in norm_runs(model, cfg):
        given = fixture["inputs" + expected.removeprefix("outputs")]
        with torch.no_grad():
            out = finest(labels, prev, given["img_feat_coarse"], given["flow_feat_coarse"], given["img_fg_feat_coarse"])
        for name, value in video_outputs(out).items():
            yield f"fine scale alone: output {name} ({what})", value, fixture[expected][name]


def set_batch_stats(model: nn.Module, enabled: bool) -> None:
    """Batch statistics at inference on or off (vid2vid.models.image.use_batch_stats_at_inference)."""
    from vid2vid.models.image import use_batch_stats_at_inference

    use_batch_stats_at_inference(model, enabled)


def comparisons(fixture: dict, source: str) -> Iterator[Comparison]:
    options = fixture["options"]
    arch = architecture(options)
    state_dict = fixture["state_dict"]
    if arch == "vid2vid":  # a finer scale's fixture holds the coarser scales' weights as state_dict_G<s>
        coarser = [fixture[f"state_dict_G{s}"] for s in range(options.get("n_scales_spatial", 1) - 1)]
        state_dict = vid2vid_state_dict([*coarser, state_dict])
    model, cfg = generator_from_original(arch, options, state_dict, source=source)
    if arch == "vid2vid":
        return video_comparisons(model, cfg, fixture)
    return image_comparisons(model, cfg, fixture, "input_label" if arch == "pix2pixhd" else "input_semantics")


def check(path: str, tolerance: float) -> bool:
    """Print one line per comparison -> True when every difference is within tolerance."""
    fixture = read_fixture(path)
    meta = fixture.get("meta", {})
    print(f"{path}: {meta.get('repo', '?')} {meta.get('generator_class', '?')}")
    worst = 0.0
    for what, ours, theirs in comparisons(fixture, path):
        if ours.shape != theirs.shape:
            raise UserError(f"{what}: our shape {list(ours.shape)} differs from the fixture's {list(theirs.shape)}")
        diff = (ours.float() - theirs.float()).abs().max().item()
        worst = max(worst, diff)
        print(f"  {what:<64} max |diff| {diff:.3g}{'' if diff <= tolerance else '  FAIL'}")
    ok = worst <= tolerance
    print(f"{'PASS' if ok else 'FAIL'}: largest difference {worst:.3g} (tolerance {tolerance:g})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", help="an original-code fixture, e.g. ../shared/fixtures/spade.pt")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed max |diff| (default 1e-4)")
    args = parser.parse_args(argv)
    passed = []
    status = run_cli("check_original_parity.py", lambda: passed.append(check(args.fixture, args.tolerance)))
    return status or (0 if all(passed) else 1)


if __name__ == "__main__":
    sys.exit(main())
