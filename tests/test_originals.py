"""The originals' checkpoints: pix2pixHD and SPADE key maps against independently written inverses, strict
conversion, `vid2vid import` end to end on the fixtures (preset / opt.txt / --option), the pickle refusal, the
released configurations' parameter counts, don't-care labels, batch statistics at inference, and
tools/check_original_parity.py on every available fixture."""

import re
from pathlib import Path

import pytest
import torch
from einops import rearrange

from vid2vid import cli
from vid2vid.checkpoint import load_export, load_generator
from vid2vid.data.encoding import semantic_input
from vid2vid.errors import ConfigError
from vid2vid.interop.import_originals import (
    import_config,
    original_options,
    parse_value,
    read_opt_file,
)
from vid2vid.interop.originals import convert_state_dict, pix2pixhd_name, spade_name
from vid2vid.models.build import build_generator, semantic_channels
from vid2vid.models.image import (
    BatchStatsAtInference,
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    use_batch_stats_at_inference,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def load_fixture(name: str) -> dict:
    path = FIXTURES / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found (original-code fixtures of the development workspace)")
    return torch.load(path, weights_only=True)


# ---------------------------------------------------------------------------------------------- inverses
# Our names -> the original's, written from README_originals.md without vid2vid.interop.originals.


def pix2pixhd_original(key: str) -> str:
    """local_down.i.* -> model{i+1}_1.*, local_up.i.* -> model{i+1}_2.*; model.* unchanged."""
    match = re.fullmatch(r"local_(down|up)\.(\d+)\.(.+)", key)
    if match is None:
        assert key.startswith("model."), key
        return key
    return f"model{int(match[2]) + 1}_{1 if match[1] == 'down' else 2}.{match[3]}"


def spade_original(key: str) -> str:
    """x.parametrizations.weight.original / .0._u / .0._v -> x.weight_orig / weight_u / weight_v."""
    pairs = ((".parametrizations.weight.original", ".weight_orig"), (".parametrizations.weight.0._u", ".weight_u"),
             (".parametrizations.weight.0._v", ".weight_v"))
    for ours, theirs in pairs:
        if key.endswith(ours):
            return key[: -len(ours)] + theirs
    return key


def test_pix2pixhd_global_key_map_is_the_inverse_of_an_independent_mapping():
    fixture = load_fixture("pix2pixhd_global")
    g = GlobalGenerator(13, ngf=16, n_downsample=3, n_blocks=3)
    assert [pix2pixhd_original(k) for k in g.state_dict()] == fixture["state_dict_keys"]  # same order too
    assert all(pix2pixhd_name(pix2pixhd_original(k)) == k for k in g.state_dict())


def test_pix2pixhd_local_key_map_matches_the_documented_layout():
    """The (not shipped) local fixture's layout: 42 tensors, model1_1.{1,4}, model1_2.{0,1}.conv_block.{1,5},
    model1_2.2 and model1_2.6, the global part without model.26."""
    g = LocalEnhancer(13, ngf=8, n_downsample_global=3, n_blocks_global=3, n_local_enhancers=1, n_blocks_local=2)
    originals = [pix2pixhd_original(k) for k in g.state_dict()]
    assert len(originals) == 42 and sum(p.numel() for p in g.parameters()) == 1_107_475
    local = {k.rsplit(".", 1)[0] for k in originals if k.startswith("model1_")}
    assert local == {"model1_1.1", "model1_1.4", "model1_2.0.conv_block.1", "model1_2.0.conv_block.5",
                     "model1_2.1.conv_block.1", "model1_2.1.conv_block.5", "model1_2.2", "model1_2.6"}
    assert "model.26.weight" not in originals and "model.22.weight" in originals
    assert all(pix2pixhd_name(k) == ours for k, ours in zip(originals, g.state_dict()))
    with torch.device("meta"):  # two enhancers: model2_* is the finer one
        two = LocalEnhancer(13, ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=2)
    assert all(pix2pixhd_name(pix2pixhd_original(k)) == k for k in two.state_dict())
    assert any(pix2pixhd_original(k).startswith("model2_2.") for k in two.state_dict())


def test_spade_key_map_is_the_inverse_of_an_independent_mapping():
    fixture = load_fixture("spade")
    g = build_generator(import_config("spade", original_options("spade") | fixture["options"]))
    assert sorted(spade_original(k) for k in g.state_dict()) == sorted(fixture["state_dict_keys"])
    assert all(spade_name(spade_original(k)) == k for k in g.state_dict())


def test_converter_lists_mismatches_by_name_and_shape():
    fixture = load_fixture("pix2pixhd_global")
    local = LocalEnhancer(13, ngf=8, n_downsample_global=3, n_blocks_global=3, n_blocks_local=2)
    with pytest.raises(ConfigError) as error:
        convert_state_dict("pix2pixhd", fixture["state_dict"], local, source="G.pth")
    message = str(error.value)
    assert "G.pth" in message
    assert "original key model.1.weight [16, 13, 7, 7] -> model.1.weight [16, 13, 7, 7]" not in message
    assert "original key model.26.weight [3, 16, 7, 7] -> model.26.weight, which our model lacks" in message
    assert "our local_up.0.6.bias [3] is not set by any original key" in message


# ---------------------------------------------------------------------------------------------- sizes


def preset_model(arch: str, preset: str, *options: str):
    """-> a builder of our generator for a preset (plus --option values)."""
    return lambda: build_generator(import_config(arch, original_options(arch, preset=preset, options=list(options))))


# README_originals.md "Checkpoints NVIDIA released": checkpoint -> (a builder of our model of it, parameters, the
# original's state-dict tensors, whether the original's instance norms keep 3 running statistics each, which the
# import drops). edge2face's single-frame Global_with_z is our pix2pixhd with model.feat_join every_level.
RELEASED = {
    "pix2pixHD label2city_1024p G": (preset_model("pix2pixhd", "label2city_1024p"), 182_857_059, 74, False),
    "SPADE coco G": (preset_model("spade", "coco"), 97_480_899, 234, False),
    "SPADE ade20k G": (preset_model("spade", "ade20k"), 96_492_483, 234, False),
    "SPADE cityscapes G": (preset_model("spade", "cityscapes"), 93_048_003, 234, False),
    "vid2vid label2city_2048 G0": (preset_model("vid2vid", "label2city_2048", "n_scales_spatial=1"),
                                   411_335_241, 533, False),
    "vid2vid label2city_1024_g1 G0": (preset_model("vid2vid", "label2city_1024_g1", "n_scales_spatial=1"),
                                      137_792_649, 491, False),
    "vid2vid edge2face_512 G0": (preset_model("vid2vid", "edge2face_512"), 364_996_230, 356, False),
    "vid2vid label2city_2048 single G": (preset_model("vid2vid-single", "label2city_2048"), 182_852_355, 182, True),
    "vid2vid label2city_1024_g1 single G": (preset_model("vid2vid-single", "label2city_1024_g1"),
                                            182_543_619, 137, True),
    "vid2vid edge2face_512 single G": (preset_model("vid2vid-single", "edge2face_512"), 48_453_203, 127, True),
    "vid2vid edge2face_512 E": (lambda: FeatureEncoder(3, 16, ngf=16, n_downsample=4), 799_008, 47, True),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_configurations_have_the_reference_sizes(name):
    build, params, tensors, tracked_stats = RELEASED[name]
    with torch.device("meta"):
        g = build()
    instance_norms = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in g.modules())
    assert sum(p.numel() for p in g.parameters()) == params
    assert len(g.state_dict()) + (3 * instance_norms if tracked_stats else 0) == tensors


def test_preset_configs():
    cfg = import_config("spade", original_options("spade", preset="cityscapes"))
    assert str(cfg.data.crop_size) == "256x512" and cfg.model.num_upsampling_layers == "more"
    cfg = import_config("spade", original_options("spade", preset="coco"))
    assert cfg.data.contain_dontcare_label and cfg.data.use_instance and semantic_channels(cfg) == 184
    assert cfg.model.norm == "spectralbatch" and str(cfg.data.crop_size) == "256x256"
    assert semantic_channels(import_config("spade", original_options("spade", preset="ade20k"))) == 151
    cfg = import_config("pix2pixhd", original_options("pix2pixhd", preset="label2city_1024p"))
    assert (cfg.model.n_local_enhancers, cfg.model.ngf, str(cfg.data.crop_size)) == (1, 32, "1024x2048")


# ---------------------------------------------------------------------------------------------- import


def write_opt_txt(options: dict, path: Path, spade_style: bool) -> Path:
    """An opt.txt as the originals write it: pix2pixHD/vid2vid 'name: value'; SPADE right-aligned names and a
    '[default: ...]' comment."""
    lines = ["------------ Options -------------"]
    for name, value in sorted(options.items()):
        lines.append(f"{name:>25}: {str(value):<30}\t[default: x]" if spade_style else f"{name}: {value}")
    path.write_text("\n".join(lines + ["-------------- End ----------------"]) + "\n")
    return path


def argv_options(argv: list[str]) -> list[str]:
    """The fixture's original command line -> our --option NAME=VALUE list (store_true flags become =True)."""
    out, i = [], 1
    while i < len(argv):
        name = argv[i].removeprefix("--")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append(f"{name}={argv[i + 1]}")
            i += 2
        else:
            out.append(f"{name}=True")
            i += 1
    return out


def test_opt_file_values_parse():
    assert [parse_value(v) for v in ("12", "2.0", "True", "None", "inf", "[8, 9]", "[]", "spade")] == \
        [12, 2.0, True, None, float("inf"), [8, 9], [], "spade"]


def test_import_pix2pixhd_from_an_opt_file_reproduces_the_fixture(tmp_path):
    fixture = load_fixture("pix2pixhd_global")
    torch.save(fixture["state_dict"], tmp_path / "latest_net_G.pth")
    opt = write_opt_txt(fixture["options"], tmp_path / "opt.txt", spade_style=False)
    assert read_opt_file(opt)["max_dataset_size"] == float("inf")
    assert cli.main(["import", "pix2pixhd", str(tmp_path / "latest_net_G.pth"), str(tmp_path / "export"),
                     "--opt-file", str(opt)]) == 0
    inputs = fixture["inputs"]
    export = load_export(tmp_path / "export")
    frames = export.generate(inputs["label_map"][:, 0].long(), inputs["inst_map"][:, 0].long())
    assert (frames - fixture["outputs"]["fake_image"]).abs().max() <= 1e-4


def test_import_spade_from_a_spade_opt_file_reproduces_the_fixture(tmp_path):
    fixture = load_fixture("spade")
    torch.save(fixture["state_dict"], tmp_path / "latest_net_G.pth")
    opt = write_opt_txt(fixture["options"], tmp_path / "opt.txt", spade_style=True)
    assert cli.main(["import", "spade", str(tmp_path / "latest_net_G.pth"), str(tmp_path / "export"),
                     "--opt-file", str(opt)]) == 0
    inputs = fixture["inputs"]
    export = load_export(tmp_path / "export")
    frames = export.generate(inputs["label_map"][:, 0].long(), inputs["inst_map"][:, 0].long())
    assert (frames - fixture["outputs"]["fake_image"]).abs().max() <= 1e-4


def test_import_vid2vid_from_options_reproduces_the_released_behaviour(tmp_path, capsys):
    """The original's command line given as --option; the export uses batch statistics at inference, which is
    what the original's test.py does (outputs_trainmode)."""
    fixture = load_fixture("vid2vid_G0")
    torch.save(fixture["state_dict"], tmp_path / "latest_net_G0.pth")
    options = [o for o in argv_options(fixture["argv"]) if o.split("=")[0] in original_options("vid2vid")]
    assert cli.main(["import", "vid2vid", str(tmp_path / "latest_net_G0.pth"), str(tmp_path / "export"),
                     "--option", *options]) == 0
    assert "638,961 parameters, 281 tensors" in capsys.readouterr().out
    g, cfg = load_generator(tmp_path / "export")
    assert cfg.model.norm_at_inference == "batch_stats" and not g.training
    inputs = fixture["inputs"]
    with torch.no_grad():
        out = g(rearrange(inputs["input"], "b (n c) h w -> b n c h w", n=3),
                rearrange(inputs["img_prev"], "b (n c) h w -> b n c h w", n=2))
    assert (out.final - fixture["outputs_trainmode"]["img_final"]).abs().max() <= 1e-4
    assert (out.flow - fixture["outputs_trainmode"]["flow"]).abs().max() <= 1e-4


def test_import_is_strict_and_names_mismatches(tmp_path, capsys):
    fixture = load_fixture("pix2pixhd_global")
    torch.save(fixture["state_dict"], tmp_path / "G.pth")
    status = cli.main(["import", "pix2pixhd", str(tmp_path / "G.pth"), str(tmp_path / "export"), "--option",
                       "label_nc=12", "ngf=16", "n_downsample_global=3", "n_blocks_global=2"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "original key model.15.conv_block.1.weight [128, 128, 3, 3] -> model.15.conv_block.1.weight" in err
    assert not (tmp_path / "export").exists()


def test_a_checkpoint_that_needs_pickle_code_is_refused_and_never_executed(tmp_path, capsys):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model.1.weight": torch.zeros(1), "extra": Payload()}, tmp_path / "evil.pth")
    status = cli.main(["import", "pix2pixhd", str(tmp_path / "evil.pth"), str(tmp_path / "export")])
    err = capsys.readouterr().err
    assert status == 2 and "refused" in err and "execute code" in err and "Traceback" not in err
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the control: a plain unpickling does run it
    assert marker.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["vid2vid", "--preset", "label2city_2048"], "expected 3 generator checkpoints"),  # one file given
    (["vid2vid", "--preset", "label2city_1024_g1"], "n_scales_spatial 3"),
    (["vid2vid", "--option", "label_nc=0", "input_nc=6"], "label_nc 0"),  # pose2body: no input made here
    (["spade", "--preset", "label2city_1024p"], "is a pix2pixhd checkpoint"),
    (["spade", "--preset", "cocoo"], "did you mean coco"),
    (["spade", "--option", "ngff=3"], "did you mean ngf"),
    (["spade", "--option", "use_vae=True"], "use_vae"),
])
def test_unsupported_presets_and_options_are_refused_clearly(tmp_path, capsys, args, message):
    ckpt = tmp_path / "latest_net_G.pth"
    torch.save({"fc.weight": torch.zeros(1)}, ckpt)
    status = cli.main(["import", args[0], str(ckpt), str(tmp_path / "export"), *args[1:]])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- pieces


def test_dontcare_label_becomes_channel_label_nc():
    labels = torch.tensor([[[0, 1, 255]]])
    sem = semantic_input(labels, labels, 3, use_instance=True, contain_dontcare_label=True)  # [1,5,1,3]
    assert sem.shape == (1, 5, 1, 3)
    assert sem[0, :4, 0].argmax(0).tolist() == [0, 1, 3] and sem[0, 4, 0].tolist() == [1.0, 1.0, 1.0]


def test_batch_statistics_at_inference():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net[1].running_mean.fill_(5.0)
    x = torch.randn(2, 3, 8, 8)
    use_batch_stats_at_inference(net).eval()
    assert isinstance(net[1], BatchStatsAtInference)
    with torch.no_grad():
        at_inference = net(x)
        assert torch.equal(net[1].running_mean, torch.full((4,), 5.0))  # left untouched
        assert torch.allclose(at_inference, net.train()(x), atol=1e-6)
        use_batch_stats_at_inference(net, False).eval()
        assert type(net[1]) is torch.nn.BatchNorm2d and not torch.allclose(net(x), at_inference, atol=1e-3)


# ---------------------------------------------------------------------------------------------- the tool


@pytest.mark.parametrize("name", ["pix2pixhd_global", "spade", "vid2vid_G0", "vid2vid_G1"])
def test_parity_tool_passes_on_every_available_fixture(parity_tool, capsys, name):
    load_fixture(name)  # skips when absent
    assert parity_tool.main([str(FIXTURES / f"{name}.pt")]) == 0
    out = capsys.readouterr().out
    assert "PASS: largest difference" in out and "FAIL" not in out
    if name.startswith("vid2vid"):  # eval and train mode in one run
        assert "img_final (eval, running statistics)" in out and "img_final (train mode)" in out
    if name == "vid2vid_G1":  # the coarse inputs (pyramid), the coarse G0 step, and G1 alone on the stored features
        assert "coarse input input" in out and "coarse output img_feat (train mode)" in out
        assert "fine scale alone: output img_final (train mode)" in out


def test_parity_tool_fails_on_a_changed_weight_and_refuses_a_non_fixture(parity_tool, tmp_path, capsys):
    fixture = load_fixture("pix2pixhd_global")
    fixture["state_dict"]["model.26.bias"] = fixture["state_dict"]["model.26.bias"] + 0.01
    torch.save(fixture, tmp_path / "changed.pt")
    assert parity_tool.main([str(tmp_path / "changed.pt")]) == 1
    assert "FAIL" in capsys.readouterr().out
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    assert parity_tool.main([str(tmp_path / "other.pt")]) == 2
    (tmp_path / "empty.pt").write_bytes(b"")  # unpickling fails with no message at all
    assert parity_tool.main([str(tmp_path / "empty.pt")]) == 2
    captured = capsys.readouterr()
    assert "empty.pt: not readable" in captured.err + captured.out
