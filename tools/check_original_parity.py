"""Numerical parity with NVIDIA's original code on one of its fixtures (shared/fixtures/*.pt).

    python tools/check_original_parity.py ../shared/fixtures/spade.pt [--tolerance 1e-4]

Every choice comes from the fixture's `options` (the original's parsed options), never from the file name.
The state dict goes through the same conversion as `vid2vid import` (import_originals.generator_from_original);
the network inputs are rebuilt from the raw label / instance maps with our encoder (vid2vid.data.encoding) and
compared with the stored network input; then our generator runs on them and every stored output is compared.
vid2vid: eval mode with running statistics (`outputs`), and batch statistics (`outputs_trainmode`, what the
original's test.py does) both as the import sets it up (model.norm_at_inference) and in plain train mode.

The tool reads what the fixture has: without instance maps (pix2pixHD/SPADE --no_instance, vid2vid without
--use_instance) the input has no edge channel, as the original's; without vid2vid's --fg there is no mask to
compare and no img_fg_feat output. tests/fixtures/originals/ holds fixtures of such options.
A fixture of vid2vid's edge2face single-frame generator (`network: vid2vid_single`, with its encoder and features)
is imported as `vid2vid import vid2vid-single --preset edge2face_512` imports it and checked through Export.generate.

Prints the max absolute difference per compared tensor; exit 0 when all are <= the tolerance, 1 otherwise,
2 with one line (the file and what is wrong) for a bad input: not a fixture (a truncated file, a foreign pickle),
a missing or wrong-typed entry, options that do not convert yet, or content that cannot be checked.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from flow.errors import load_failure_reason
from vid2vid.config import Config
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import UserError, run_cli
from vid2vid.interop.import_originals import face_single_export, generator_from_original
from vid2vid.interop.original_faces import feature_bank_of
from vid2vid.interop.originals import VID2VID_FACE_SINGLE, vid2vid_state_dict
from vid2vid.models.image import style_features
from vid2vid.models.video import VideoOutput

FORMAT = "original-code-fixture-v1"
Comparison = tuple[str, torch.Tensor, torch.Tensor]  # (what, ours, the original's)


class Fixture:
    """A fixture's dict; every read goes through here, so that a missing or wrong-typed entry is a UserError that
    names the file and the entry (exit 2, one line), never a KeyError traceback."""

    def __init__(self, data: dict, path: str | Path):
        self.data, self.path = data, path

    def has(self, *keys: str) -> bool:
        node = self.data
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    def get(self, *keys: str, kind: type = object):
        """fixture.get('inputs', 'label_map', kind=torch.Tensor) -> data['inputs']['label_map'], checked."""
        node = self.data
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise UserError(f"{self.path}: the fixture has no {self.where(keys[: depth + 1])}; pass a complete "
                                "original-code fixture (shared/fixtures/README_originals.md)")
            node = node[key]
        if not isinstance(node, kind):
            raise UserError(f"{self.path}: {self.where(keys)} is a {type(node).__name__}, not a {kind.__name__}")
        return node

    def tensor(self, *keys: str) -> torch.Tensor:
        return self.get(*keys, kind=torch.Tensor)

    @staticmethod
    def where(keys: tuple[str, ...]) -> str:
        return keys[0] + "".join(f"[{key!r}]" for key in keys[1:])


def read_fixture(path: str | Path) -> Fixture:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such fixture file")
    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of many kinds: all mean "not a fixture"
        raise UserError(f"{path}: not readable with torch.load(weights_only=True) ({load_failure_reason(e)}); "
                        "pass a fixture written by the original code (shared/fixtures/README_originals.md)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an original-code fixture (format {FORMAT!r})")
    return Fixture(data, path)


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


def semantics(cfg: Config, fixture: Fixture, labels: tuple[str, ...], inst: tuple[str, ...],
              frames: slice = slice(None)) -> torch.Tensor:
    """The fixture's raw label (and, when its options use instances, instance) id maps [B,(N,)1,H,W] (float, as the
    originals' loaders give them) -> our network input [B,(N,)C,H,W]: one-hot (+ don't-care) (+ the edge channel).
    Without instances the original's input has no edge channel, and neither has ours; a stored instance map is then
    ignored, as the original ignores it."""
    d = cfg.data
    label_ids = fixture.tensor(*labels)[(slice(None), frames)].select(-3, 0)
    inst_ids = fixture.tensor(*inst)[(slice(None), frames)].select(-3, 0).long() if d.use_instance else None
    return semantic_input(label_ids.long(), inst_ids, d.label_nc, d.use_instance, d.contain_dontcare_label)


def image_comparisons(model: nn.Module, cfg: Config, fixture: Fixture, input_name: str) -> Iterator[Comparison]:
    """pix2pixHD / SPADE: the network input, then fake_image in eval mode."""
    sem = semantics(cfg, fixture, ("inputs", "label_map"), ("inputs", "inst_map"))  # [B,C,H,W]
    yield f"input {input_name}", sem, fixture.tensor("inputs", input_name)
    with torch.no_grad():
        yield "output fake_image (eval)", model.eval()(sem), fixture.tensor("outputs", "fake_image")


def video_outputs(out: VideoOutput) -> dict[str, torch.Tensor | None]:
    """Our outputs under the original forward's return names (None where the original returns None: img_fg_feat
    without the foreground branch)."""
    return {"img_final": out.final, "flow": out.flow, "weight": out.weight, "img_raw": out.raw,
            "img_feat": out.image_features[-1], "flow_feat": out.flow_features, "img_fg_feat": out.fg_features}


def output_comparisons(out: VideoOutput, fixture: Fixture, group: str, label: str) -> Iterator[Comparison]:
    """Each of our outputs against fixture[group][name], described as label.format(name); the original stores no
    output that it returned as None (img_fg_feat without --fg), so each side must have the same names."""
    stored = fixture.get(group, kind=dict)
    for name, value in video_outputs(out).items():
        if value is None and name not in stored:
            continue
        if value is None:
            raise UserError(f"{fixture.path}: {group}[{name!r}] is stored, but our model built from the fixture's "
                            "options gives none (the original returns None there only without --fg)")
        yield label.format(name), value, fixture.tensor(group, name)


def video_comparisons(model: nn.Module, cfg: Config, fixture: Fixture) -> Iterator[Comparison]:
    """vid2vid: the label stack and previous frames, then every output in three runs (G0 fixture); a fixture of a
    finer scale also checks the coarse inputs (our pyramid), the coarse scale's outputs and the fine scale alone on
    the stored coarse features (scale_comparisons). Without --fg there is no mask to compare."""
    n = cfg.model.n_frames_G
    if cfg.data.condition == "face":  # label_nc 0: the stored face input is the network input as it is
        labels = fixture.tensor("inputs", "face_input_maps")[:, :n]
    else:
        labels = semantics(cfg, fixture, ("inputs", "A_label_ids"), ("inputs", "inst_ids"), slice(0, n))  # [B,N,C,H,W]
    prev = fixture.tensor("inputs", "B_real_frames")[:, : n - 1]  # the first call of test.py with --use_real_img
    yield "input input", rearrange(labels, "b n c h w -> b (n c) h w"), fixture.tensor("inputs", "input")
    yield "input img_prev", rearrange(prev, "b n c h w -> b (n c) h w"), fixture.tensor("inputs", "img_prev")
    if cfg.model.n_scales_spatial > 1:
        yield from scale_comparisons(model, cfg, fixture, labels, prev)
    for what, expected in norm_runs(model, cfg):
        with torch.no_grad():
            out = model(labels, prev)
        if expected == "outputs":
            if cfg.model.use_fg:
                yield "output mask (eval)", out.fg_mask[:, 0], fixture.tensor("inputs", "mask")
            if fixture.has("extra", "img_warp"):
                yield "output img_warp (eval)", out.warped, fixture.tensor("extra", "img_warp")
        yield from output_comparisons(out, fixture, expected, f"output {{}} ({what})")
        if out.coarser:  # the coarse G0 step of the same pipeline
            coarse = "coarse_G0_outputs" + expected.removeprefix("outputs")
            yield from output_comparisons(out.coarser[-1], fixture, coarse, f"coarse output {{}} ({what})")


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


def scale_comparisons(model: nn.Module, cfg: Config, fixture: Fixture, labels: torch.Tensor, prev: torch.Tensor
                      ) -> Iterator[Comparison]:
    """A finer-scale fixture (the original's CompositeLocalGenerator with its coarse G0): the coarse G0 inputs
    against our avg-pool pyramid, then the finest scale alone on the stored coarse features (its recorded
    forward call), in eval and train mode."""
    from vid2vid.models.video import pyramid

    finest = model.scales[-1]
    yield ("coarse input input", rearrange(pyramid(labels, 2)[0], "b n c h w -> b (n c) h w"),
           fixture.tensor("coarse_G0_inputs", "input"))
    yield ("coarse input img_prev", rearrange(pyramid(prev, 2)[0], "b n c h w -> b (n c) h w"),
           fixture.tensor("coarse_G0_inputs", "img_prev"))
    for what, expected in norm_runs(model, cfg):
        given = "inputs" + expected.removeprefix("outputs")
        coarse = [fixture.tensor(given, name) if fixture.has(given, name) else None
                  for name in ("img_feat_coarse", "flow_feat_coarse", "img_fg_feat_coarse")]
        with torch.no_grad():
            out = finest(labels, prev, *coarse)
        yield from output_comparisons(out, fixture, expected, f"fine scale alone: output {{}} ({what})")


def set_batch_stats(model: nn.Module, enabled: bool) -> None:
    """Batch statistics at inference on or off (vid2vid.models.image.use_batch_stats_at_inference)."""
    from vid2vid.models.image import use_batch_stats_at_inference

    use_batch_stats_at_inference(model, enabled)


def single_face_comparisons(fixture: Fixture) -> Iterator[Comparison]:
    """edge2face's single-frame generator (fixture network 'vid2vid_single'): imported with its encoder and
    features as `vid2vid import vid2vid-single --preset edge2face_512` does (face_single_export), then the encoder's
    pooled output, the nearest training image, the feature map it builds and the generated frame through
    Export.generate (what render runs), and the generator in train mode on the original's feature map. The
    original's outputs are its train-mode ones (no .eval(); instance norms use each frame's statistics)."""
    options = fixture.get("options", kind=dict)
    features = {int(k): v.numpy() for k, v in fixture.get("features", kind=dict).items()}
    bank = feature_bank_of(features, VID2VID_FACE_SINGLE["feat_num"], f"{fixture.path} features")
    export = face_single_export(options, fixture.get("state_dict", kind=dict), fixture.get("state_dict_E", kind=dict),
                                bank, source=str(fixture.path))
    cond, real = fixture.tensor("inputs", "face_input_maps"), fixture.tensor("inputs", "real_frame")
    parts = fixture.tensor("inputs", "part_labels")[:, 0].long()  # [B,H,W]
    with torch.no_grad():
        pooled = style_features(export.encoder, real, parts)
        yield "output encoder_pooled (eval)", pooled, fixture.tensor("outputs", "encoder_pooled")
        rows = export.feature_bank.nearest_rows(pooled, parts)
        yield "nearest training image", rows.float(), torch.tensor([float(fixture.get("nearest_image", kind=int))])
        yield "output feat_map", export.feature_bank.rows(parts, rows), fixture.tensor("outputs", "feat_map")
        yield ("output fake_image (Export.generate, eval)", export.generate(parts, cond=cond, real=real),
               fixture.tensor("outputs", "fake_image"))
        given = torch.cat([cond, fixture.tensor("outputs", "feat_map")], 1)
        yield "output fake_image (train mode)", export.generator.train()(given), fixture.tensor("outputs", "fake_image")
    export.generator.eval()


def comparisons(fixture: Fixture) -> Iterator[Comparison]:
    if fixture.has("network") and fixture.get("network", kind=str) == "vid2vid_single":
        return single_face_comparisons(fixture)
    options = fixture.get("options", kind=dict)
    arch = architecture(options)
    state_dict = fixture.get("state_dict", kind=dict)
    if arch == "vid2vid":  # a finer scale's fixture holds the coarser scales' weights as state_dict_G<s>
        coarser = [fixture.get(f"state_dict_G{s}", kind=dict) for s in range(options.get("n_scales_spatial", 1) - 1)]
        state_dict = vid2vid_state_dict([*coarser, state_dict])
    try:
        model, cfg = generator_from_original(arch, options, state_dict, source=str(fixture.path))
    except UserError as e:  # options that do not convert: name the fixture
        raise (e if str(fixture.path) in str(e) else UserError(f"{fixture.path}: {e}")) from None
    if arch == "vid2vid":
        return video_comparisons(model, cfg, fixture)
    return image_comparisons(model, cfg, fixture, "input_label" if arch == "pix2pixhd" else "input_semantics")


# What a fixture with wrong-typed or inconsistent content raises inside the comparisons (a value that is not what the
# originals write, tensors whose sizes do not fit together): reported as a bad fixture, in one line.
UNREADABLE = (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError)


def differences(fixture: Fixture) -> list[tuple[str, float]]:
    """(what, max |ours - the original's|) for every comparison. A fixture whose content is not what the originals
    write fails here, before anything is printed, as one UserError line."""
    found = []
    try:
        for what, ours, theirs in comparisons(fixture):
            if ours.shape != theirs.shape:
                raise UserError(f"{fixture.path}: {what}: our shape {list(ours.shape)} differs from the fixture's "
                                f"{list(theirs.shape)}")
            found.append((what, (ours.float() - theirs.float()).abs().max().item()))
    except UNREADABLE as e:
        reason = " ".join([type(e).__name__, *str(e).strip().splitlines()[:1]])
        raise UserError(f"{fixture.path}: cannot check this fixture ({reason}); pass an original-code fixture "
                        "(shared/fixtures/README_originals.md), or rerun with --traceback") from e
    return found


def check(path: str, tolerance: float) -> bool:
    """Print one line per comparison -> True when every difference is within tolerance."""
    fixture = read_fixture(path)
    found = differences(fixture)
    meta = fixture.data.get("meta") if isinstance(fixture.data.get("meta"), dict) else {}
    print(f"{path}: {meta.get('repo', '?')} {meta.get('generator_class', '?')}")
    for what, diff in found:
        print(f"  {what:<64} max |diff| {diff:.3g}{'' if diff <= tolerance else '  FAIL'}")
    worst = max((diff for _, diff in found), default=0.0)
    ok = all(diff <= tolerance for _, diff in found)  # a NaN difference fails too
    print(f"{'PASS' if ok else 'FAIL'}: largest difference {worst:.3g} (tolerance {tolerance:g})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", help="an original-code fixture, e.g. ../shared/fixtures/spade.pt")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed max |diff| (default 1e-4)")
    parser.add_argument("--traceback", action="store_true",
                        help="let an error inside the comparisons raise with its traceback (for debugging)")
    args = parser.parse_args(argv)
    passed = []
    if args.traceback:
        return 0 if check_with_traceback(args.fixture, args.tolerance) else 1
    status = run_cli("check_original_parity.py", lambda: passed.append(check(args.fixture, args.tolerance)))
    return status or (0 if all(passed) else 1)


def check_with_traceback(path: str, tolerance: float) -> bool:
    """check(), but an error inside the comparisons keeps its traceback (the chained cause)."""
    try:
        return check(path, tolerance)
    except UserError as e:
        if e.__cause__ is not None:
            raise e.__cause__ from None
        raise


if __name__ == "__main__":
    sys.exit(main())
