"""Bad inputs through every command line: `vid2vid train`, `check-data`, `render`, `prepare`, `import`, `python -m
flow` and the tools eval_flicker.py / compare_models.py exit 2 with one line naming the file (or key) and the fix,
never a traceback, and leave no output behind. This file holds the cases no other test covers (the rest of the
matrix: test_data_check, test_render, test_render_inputs, test_config, test_cli_errors, test_eval_flicker,
test_originals, test_train). A .pth whose unpickling would run code is refused by every loader of .pth files,
and the code never runs (its payload would create a marker file)."""

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from vid2vid import cli
from vid2vid.config import Size, load_config

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flow_main(argv: list[str]) -> int:
    from flow.__main__ import main

    return main(argv)


PROGRAMS = {"vid2vid": cli.main, "flow": flow_main}


class Payload:
    """Unpickling this creates `marker` (what a malicious checkpoint could do instead)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def malicious_pth(path: Path) -> tuple[Path, Path]:
    """A .pth holding a tensor and a pickled call; (the file, the marker its payload would create)."""
    marker = path.with_suffix(".payload_ran")
    torch.save({"features.0.weight": torch.zeros(1), "extra": Payload(marker)}, path)
    return path, marker


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """1 train + 1 test sequence of 3 frames, 32x48 (read-only: cases mutate a copy)."""
    from vid2vid.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("bad") / "data", sequences=1, test_sequences=1, frames=3,
                              size=Size(32, 48), seed=1)


def _export(config: str, out: Path, overrides: list[str]) -> Path:
    from vid2vid.checkpoint import export_generator
    from vid2vid.models.build import build_generator

    cfg = load_config(ROOT / "configs" / config, overrides)
    torch.manual_seed(0)
    return export_generator(build_generator(cfg).state_dict(), cfg, out)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """Random-weight exports: configs/tiny_video.yaml (first frames zeros) and configs/tiny.yaml."""
    root = tmp_path_factory.mktemp("exports")
    return {"video": _export("tiny_video.yaml", root / "video", ["model.first_frame=zeros"]),
            "image": _export("tiny.yaml", root / "image", [])}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset) -> Path:
    """A one-step run of the tiny image model on `dataset` (checkpoint step_0000001)."""
    from vid2vid.train import train

    out = tmp_path_factory.mktemp("run") / "run"
    train(load_config(write_config(dataset, out.parent / "run.yaml"), [f"train.out_dir={out}", "train.max_steps=1",
                                                                      "train.checkpoint_every=1"]))
    return out


def write_config(root: Path, path: Path, **data) -> Path:
    """configs/tiny.yaml on the dataset at `root` (32x48 frames, 3-frame clips, one clip per batch)."""
    tree = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    tree["data"].update({"root": str(root), "source": "folder", "load_size": "32x48", "crop_size": "32x48",
                         "n_frames": 3, "batch_size": 1, **data})
    tree["model"]["n_downsample"] = 1  # 32x48 crops: stride 2
    tree["train"].update(out_dir=str(path.with_suffix("")), sample_every=1000)
    path.write_text(yaml.safe_dump(tree))
    return path


@dataclass
class Case:
    prog: str  # vid2vid, flow, eval_flicker or compare_models.py
    argv: list
    expected: list  # texts the error line must hold
    marker: Path | None = None  # a payload's marker that must not appear
    leaves_nothing: Path | None = None  # an output that must not exist afterwards


class Cases:
    """Builders of the cases, by name; each gets a fresh tmp folder."""

    def __init__(self, tmp: Path, dataset: Path, exports: dict[str, Path], run_dir: Path | None = None):
        self.tmp, self.base, self.exports, self.run_dir = tmp, dataset, exports, run_dir

    # helpers ---------------------------------------------------------------------------------

    def data(self) -> Path:
        copy = self.tmp / "data"
        shutil.copytree(self.base, copy)
        return copy

    def config(self, root: Path | None = None, **data) -> str:
        return str(write_config(root or self.base, self.tmp / "config.yaml", **data))

    def labels(self, value: int = 7, dtype=np.uint8, n: int = 4, size=(32, 48), name: str = "labels") -> Path:
        folder = self.tmp / name
        folder.mkdir()
        for i in range(n):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.full(size, value, dtype))
        return folder

    def render(self, inputs, *extra: str, export: str = "video") -> Case:
        out = self.tmp / "out.mp4"
        return Case("vid2vid", ["render", str(inputs), str(out), "-m", str(self.exports[export]), *extra], [],
                    leaves_nothing=out)

    def file(self, name: str, content: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content)
        return path

    def export_copy(self, config_text: str | bytes) -> Path:
        copy = self.tmp / "export"
        shutil.copytree(self.exports["video"], copy)
        (copy / "config.yaml").write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
        return copy

    def sixteen_bit_label_id(self, root: Path, phase: str = "train") -> Path:
        """Label id 300 in a 16-bit label map (8-bit reading would see 300 % 256 = 44)."""
        path = root / f"{phase}_A" / "seq_0000" / "00001.png"
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.uint16)
        ids[5, 7] = 300
        cv2.imwrite(str(path), ids)
        return path

    def resumed_run(self) -> Path:
        copy = self.tmp / "run"
        shutil.copytree(self.run_dir, copy)
        return copy

    # check-data ------------------------------------------------------------------------------

    def check_zero_byte_label(self) -> Case:
        root = self.data()
        (root / "train_A/seq_0000/00001.png").write_bytes(b"")
        return Case("vid2vid", ["check-data", "-c", self.config(root)], ["train_A/seq_0000/00001.png",
                                                                         "cannot decode it", "replace or remove"])

    def check_zero_byte_frame(self) -> Case:
        root = self.data()
        (root / "test_B/seq_0000/00002.png").write_bytes(b"")
        return Case("vid2vid", ["check-data", "-c", self.config(root)], ["test_B/seq_0000/00002.png",
                                                                         "cannot decode it"])

    def check_zero_byte_video(self) -> Case:
        root = self.data()
        shutil.rmtree(root / "train_B/seq_0000")
        (root / "train_B/seq_0000.mp4").write_bytes(b"")
        return Case("vid2vid", ["check-data", "-c", self.config(root)],
                    ["train_B/seq_0000.mp4", "cannot open the video", "check that the file is complete"])

    def check_16bit_label_id(self) -> Case:
        root = self.data()
        path = self.sixteen_bit_label_id(root)
        return Case("vid2vid", ["check-data", "-c", self.config(root)],
                    [str(path), "label id 300", "data.label_nc is 35", "at least 301"])

    def check_rgba_label(self) -> Case:
        root = self.data()
        path = root / "train_A/seq_0000/00000.png"
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(path), np.dstack([ids, ids, ids, np.full_like(ids, 255)]))
        return Case("vid2vid", ["check-data", "-c", self.config(root)], [str(path), "4 channels", "single-channel"])

    def check_colour_instance_map(self) -> Case:
        root = self.data()
        path = root / "test_inst/seq_0000/00000.png"
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.uint8)
        cv2.imwrite(str(path), np.dstack([ids, ids, ids]))
        return Case("vid2vid", ["check-data", "-c", self.config(root)], [str(path), "instance map has 3 channels"])

    def check_config_not_text(self) -> Case:
        path = self.file("binary.yaml", b"\xff\xfe\x00\x81 not text")
        return Case("vid2vid", ["check-data", "-c", str(path)], [str(path), "not a text file", "YAML config"])

    # train -----------------------------------------------------------------------------------

    def train_truncated_png(self) -> Case:
        root = self.data()
        path = root / "train_A/seq_0000/00002.png"
        path.write_bytes(path.read_bytes()[:60])
        return Case("vid2vid", ["train", "-c", self.config(root)], [str(path), "cannot decode it"])

    def train_16bit_label_id(self) -> Case:
        root = self.data()
        path = self.sixteen_bit_label_id(root)
        return Case("vid2vid", ["train", "-c", self.config(root)], [str(path), "label id 300", "data.label_nc is 35"])

    def train_yaml_syntax(self) -> Case:
        path = self.file("syntax.yaml", b"data: {root: [1\n")
        return Case("vid2vid", ["train", "-c", str(path)], [str(path), "not valid YAML"])

    def train_type_error(self) -> Case:
        return Case("vid2vid", ["train", "-c", self.config(), "--set", "data.batch_size=two"],
                    ["data.batch_size: expected an integer, got 'two'"])

    def train_unknown_key(self) -> Case:
        return Case("vid2vid", ["train", "-c", self.config(), "--set", "data.batchsize=2"],
                    ["data.batchsize: unknown key; did you mean data.batch_size?"])

    def train_crop_larger_than_load(self) -> Case:
        return Case("vid2vid", ["train", "-c", self.config(crop_size="64x64")],
                    ["data.crop_size: '64x64'", "must fit inside data.load_size (32x48)"])

    def train_zero_size(self) -> Case:
        return Case("vid2vid", ["train", "-c", self.config(crop_size="0x48")],
                    ["data.crop_size", "both >= 1", "'0x48'"])

    def train_resume_corrupt_checkpoint(self) -> Case:
        run = self.resumed_run()
        weights = run / "checkpoints" / "step_0000001" / "G.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        return Case("vid2vid", ["train", "-c", str(run / "config.yaml"), "--resume", "latest", "--set",
                                f"train.out_dir={run}", "train.max_steps=2"],
                    [str(weights), "not a readable safetensors file", "resume with the config"])

    def train_resume_other_architecture(self) -> Case:
        run = self.resumed_run()
        return Case("vid2vid", ["train", "-c", str(run / "config.yaml"), "--resume", "latest", "--set",
                                f"train.out_dir={run}", "train.max_steps=2", "model.ngf=16"],
                    ["G.safetensors: weights do not match the network", "wrong shape"])

    def train_vgg_weights_pickle(self) -> Case:
        path, marker = malicious_pth(self.tmp / "vgg19.pth")
        return Case("vid2vid", ["train", "-c", self.config(), "--set", "loss.vgg=1", f"loss.vgg_weights={path}"],
                    [str(path), "weights_only", "refused, never executed"], marker=marker)

    def train_flow_weights_pickle(self) -> Case:
        path, marker = malicious_pth(self.tmp / "raft.pth")
        return Case("vid2vid", ["train", "-c", self.config(), "--set", "model.name=vid2vid", "flow.model=raft_small",
                                f"flow.weights={path}"], [str(path), "weights_only", "refused, never executed"],
                    marker=marker)

    # render ----------------------------------------------------------------------------------

    def render_zero_byte_label(self) -> Case:
        labels = self.labels()
        (labels / "002.png").write_bytes(b"")
        case = self.render(labels)
        case.expected = [str(labels / "002.png"), "cannot decode it"]
        return case

    def render_zero_byte_video(self) -> Case:
        video = self.file("empty.mp4", b"")
        case = self.render(video, "--labels", "edges")
        case.expected = [str(video), "cannot open the video"]
        return case

    def render_text_file_as_video(self) -> Case:
        video = self.file("notes.mp4", b"these are not video frames\n" * 20)
        case = self.render(video, "--labels", "edges")
        case.expected = [str(video), "cannot open the video"]
        return case

    def render_16bit_label_id(self) -> Case:
        labels = self.labels(300, np.uint16)
        case = self.render(labels)
        case.expected = [str(labels / "000.png"), "label id 300", "label_nc 35"]
        return case

    def render_export_yaml_syntax(self) -> Case:
        export = self.export_copy("model: {ngf: [8\n")
        case = self.render(self.labels())
        case.argv[4] = str(export)
        case.expected = [str(export / "config.yaml"), "not valid YAML", "re-export"]
        return case

    def render_export_config_not_text(self) -> Case:
        export = self.export_copy(b"\xff\xfe\x00\x81")
        case = self.render(self.labels())
        case.argv[4] = str(export)
        case.expected = [str(export / "config.yaml"), "re-export"]
        return case

    def render_export_unknown_key(self) -> Case:
        export = self.export_copy((self.exports["video"] / "config.yaml").read_text() + "\nbogus: 1\n")
        case = self.render(self.labels())
        case.argv[4] = str(export)
        case.expected = [str(export), "bogus: unknown key", "re-export"]
        return case

    def render_size_zero(self) -> Case:
        case = self.render(self.labels(), "--size", "0x48")
        case.expected = ["--size", "both >= 1", "'0x48'"]
        return case

    def render_size_too_small(self) -> Case:
        case = self.render(self.labels(), "--size", "2x2")
        case.expected = ["frame size 2x2: too small", "at least 5 pixels", "--size"]
        return case

    def render_tiny_label_maps(self) -> Case:
        case = self.render(self.labels(size=(3, 3)))
        case.expected = ["frame size 3x3: too small"]
        return case

    def render_crf_out_of_range(self) -> Case:
        case = self.render(self.labels(), "--crf", "99")
        case.expected = ["--crf 99", "0..51"]
        return case

    def render_fps_zero(self) -> Case:
        case = self.render(self.labels(), "--fps", "0")
        case.expected = ["--fps 0", "must be > 0"]
        return case

    def render_instance_count_mismatch(self) -> Case:
        labels, inst = self.labels(n=3), self.labels(n=2, name="inst")
        case = self.render(labels, "--instances", str(inst))
        case.expected = [f"{inst}: 2 instance maps for the 3 label maps of {labels}"]
        return case

    # prepare ---------------------------------------------------------------------------------

    def prepare_zero_byte_video(self) -> Case:
        video = self.file("empty.mp4", b"")
        return Case("vid2vid", ["prepare", "video", str(video), str(self.tmp / "out")], [str(video), "cannot open"],
                    leaves_nothing=self.tmp / "out")

    def prepare_text_file_as_video(self) -> Case:
        video = self.file("notes.mov", b"not a video\n" * 50)
        return Case("vid2vid", ["prepare", "video", str(video), str(self.tmp / "out")], [str(video), "cannot open"],
                    leaves_nothing=self.tmp / "out")

    def prepare_size_zero(self) -> Case:
        from vid2vid.video_io import VideoWriter

        video = self.tmp / "clip.mp4"
        with VideoWriter(video, fps=10) as writer:
            for i in range(4):
                writer.write(np.random.default_rng(i).integers(0, 255, (32, 48, 3), dtype=np.uint8))
        return Case("vid2vid", ["prepare", "video", str(video), str(self.tmp / "out"), "--size", "0x0"],
                    ["--size", "both >= 1", "'0x0'"], leaves_nothing=self.tmp / "out")

    def prepare_synthetic_size_zero(self) -> Case:
        return Case("vid2vid", ["prepare", "synthetic", str(self.tmp / "out"), "--size", "32x0"],
                    ["--size", "'32x0'"], leaves_nothing=self.tmp / "out")

    # tools -----------------------------------------------------------------------------------

    def flicker_zero_byte_video(self) -> Case:
        video = self.file("empty.mp4", b"")
        return Case("eval_flicker", [str(video)], [str(video), "cannot open the video"])

    def flicker_text_file_as_video(self) -> Case:
        video = self.file("notes.mkv", b"not a video\n" * 50)
        return Case("eval_flicker", [str(video)], [str(video), "cannot open the video"])

    def flicker_truncated_png(self) -> Case:
        frames = self.tmp / "frames"
        shutil.copytree(self.base / "train_B" / "seq_0000", frames)
        path = frames / "00001.png"
        path.write_bytes(path.read_bytes()[:100])
        return Case("eval_flicker", [str(frames)], [str(path), "cannot decode it"])

    def flicker_raft_weights_pickle(self) -> Case:
        path, marker = malicious_pth(self.tmp / "raft.pth")
        return Case("eval_flicker", [str(self.base / "train_B" / "seq_0000"), "--flow", "raft_small", "--weights",
                                     str(path)], [str(path), "weights_only", "refused, never executed"], marker=marker)

    def flicker_size_zero(self) -> Case:
        return Case("eval_flicker", [str(self.base / "train_B" / "seq_0000"), "--size", "0x0"],
                    ["--size", "both >= 1"])

    def compare_missing_export(self) -> Case:
        return Case("compare_models.py", ["--image", str(self.tmp / "nothing"), "--video", str(self.exports["video"]),
                                          "--out", str(self.tmp / "out")],
                    [str(self.tmp / "nothing"), "no such exported model"], leaves_nothing=self.tmp / "out")

    def compare_swapped_models(self) -> Case:
        return Case("compare_models.py", ["--image", str(self.exports["video"]), "--video", str(self.exports["image"]),
                                          "--data", str(self.base), "--out", str(self.tmp / "out")],
                    ["--image must be a per-frame model", "got vid2vid and pix2pixhd"], leaves_nothing=self.tmp / "out")

    def compare_blend_out_of_range(self) -> Case:
        return Case("compare_models.py", ["--image", str(self.exports["image"]), "--video", str(self.exports["video"]),
                                          "--data", str(self.base), "--out", str(self.tmp / "out"), "--blend", "1.5"],
                    ["--blend 1.5", "must be in (0, 1]"], leaves_nothing=self.tmp / "out")

    def compare_skip_too_large(self) -> Case:
        return Case("compare_models.py", ["--image", str(self.exports["image"]), "--video", str(self.exports["video"]),
                                          "--data", str(self.base), "--out", str(self.tmp / "out"), "--skip", "99"],
                    ["--skip 99", "at least 2 must be left"], leaves_nothing=self.tmp / "out")

    def compare_corrupt_safetensors(self) -> Case:
        export = self.tmp / "export"
        shutil.copytree(self.exports["video"], export)
        (export / "generator.safetensors").write_bytes(b"\x00" * 64)
        return Case("compare_models.py", ["--image", str(self.exports["image"]), "--video", str(export),
                                          "--data", str(self.base), "--out", str(self.tmp / "out")],
                    [str(export / "generator.safetensors"), "not a readable safetensors file"],
                    leaves_nothing=self.tmp / "out")

    def compare_16bit_label_id(self) -> Case:
        root = self.data()
        path = self.sixteen_bit_label_id(root, "test")
        return Case("compare_models.py", ["--image", str(self.exports["image"]), "--video", str(self.exports["video"]),
                                          "--data", str(root), "--out", str(self.tmp / "out")],
                    [str(path), "label id 300", "data.label_nc is 35"], leaves_nothing=self.tmp / "out")

    # import and flow -------------------------------------------------------------------------

    def import_zero_byte_checkpoint(self) -> Case:
        path = self.file("latest_net_G.pth", b"")
        return Case("vid2vid", ["import", "pix2pixhd", str(path), str(self.tmp / "export")],
                    [str(path), "not a readable PyTorch checkpoint"], leaves_nothing=self.tmp / "export")

    def import_text_file(self) -> Case:
        path = self.file("latest_net_G.pth", b"hello, these are not weights\n")
        return Case("vid2vid", ["import", "spade", str(path), str(self.tmp / "export")],
                    [str(path), "not a readable PyTorch checkpoint"], leaves_nothing=self.tmp / "export")

    def import_pickle_payload(self) -> Case:
        path, marker = malicious_pth(self.tmp / "latest_net_G.pth")
        return Case("vid2vid", ["import", "pix2pixhd", str(path), str(self.tmp / "export")],
                    [str(path), "refused", "execute code"], marker=marker, leaves_nothing=self.tmp / "export")

    def flow_weights_pickle(self) -> Case:
        path, marker = malicious_pth(self.tmp / "raft.pth")
        frames = self.base / "train_B" / "seq_0000"
        return Case("flow", [str(frames / "00000.png"), str(frames / "00001.png"), "--out", str(self.tmp / "f.flo"),
                             "--weights", str(path)], [str(path), "weights_only"], marker=marker,
                    leaves_nothing=self.tmp / "f.flo")

    def flow_zero_byte_weights(self) -> Case:
        path = self.file("raft.pth", b"")
        frames = self.base / "train_B" / "seq_0000"
        return Case("flow", [str(frames / "00000.png"), str(frames / "00001.png"), "--out", str(self.tmp / "f.flo"),
                             "--weights", str(path)], [str(path)], leaves_nothing=self.tmp / "f.flo")


CASES = sorted(name for name in vars(Cases) if name.split("_")[0] in
               ("check", "train", "render", "prepare", "flicker", "compare", "import", "flow") and name != "render")
NEEDS_RUN = {"train_resume_corrupt_checkpoint", "train_resume_other_architecture"}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_exits_2_with_one_line_naming_it(name, tmp_path, dataset, exports, capsys, request):
    run_dir = request.getfixturevalue("run_dir") if name in NEEDS_RUN else None
    case: Case = getattr(Cases(tmp_path, dataset, exports, run_dir), name)()
    main = PROGRAMS.get(case.prog) or load_tool(case.prog.removesuffix(".py")).main
    capsys.readouterr()
    code = main([str(a) for a in case.argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{case.prog}: error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err[-3000:])
    for text in case.expected:
        assert text in lines[0], (text, lines[0])
    if case.marker is not None:
        assert not case.marker.exists(), "the checkpoint's pickled code ran"
    if case.leaves_nothing is not None:
        assert not case.leaves_nothing.exists()
        assert not [p for p in case.leaves_nothing.parent.iterdir() if ".tmp" in p.name]


def test_the_pickle_payload_runs_when_loaded_without_weights_only(tmp_path):
    """The control for the refusals above: the same file, unpickled as torch.load(weights_only=False) would,
    creates the marker."""
    path, marker = malicious_pth(tmp_path / "evil.pth")
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_16bit_label_maps_are_read_whole(tmp_path, exports):
    """16-bit label PNGs with ids < label_nc render exactly as the same ids in 8-bit PNGs."""
    ids = np.random.default_rng(0).integers(0, 35, (3, 32, 48))
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        (tmp_path / f"labels{bits}").mkdir()
        for t, frame in enumerate(ids):
            cv2.imwrite(str(tmp_path / f"labels{bits}" / f"{t}.png"), frame.astype(dtype))
        assert cli.main(["render", str(tmp_path / f"labels{bits}"), str(tmp_path / f"out{bits}"), "-m",
                         str(exports["video"]), "--frames-dir"]) == 0
    for t in range(3):
        a, b = (cv2.imread(str(tmp_path / f"out{bits}" / f"{t:05d}.png")) for bits in (8, 16))
        assert np.array_equal(a, b)
