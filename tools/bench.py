"""Benchmarks: every area in quick mode, or one area with its own options.

    python tools/bench.py                       # every area, quick sizes (< 15 min on an idle 2-core CPU), then
                                                # rewrite the generated block of BENCHMARKS.md
    python tools/bench.py --areas flops,drift   # some areas; their tables replace theirs in the block
    python tools/bench.py --no-write            # print the block instead of writing it
    python tools/bench.py AREA [options]        # one area through its own command line (prints; writes nothing)

An area is a module tools/bench_<AREA>.py with main(argv) (its command line) and run(quick=True) -> dict of
figures. A figure is a number or text, or figure(...)'s dict: a value with its unit and, where the area measured
one in the same run, the reference value it is compared with and their ratio (value / reference). The key
"reference" holds a description of the references; nested dicts and lists are flattened into rows.

Each area runs in its own process (threads, peak-memory counters and failures stay apart); the block holds
the machine (CPU model, cores, torch, CPU capability, device, load average) and one table per area, between
the markers below, written atomically. The hand-written sections of BENCHMARKS.md, the history with its
commands, are left as they are.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(1, str(ROOT))

BEGIN, END = "<!-- bench.py:begin -->", "<!-- bench.py:end -->"
ORDER = ("data", "flow", "flicker", "models", "train", "video", "scales", "render", "flops", "drift")
RESERVED = ("reference", "command")  # keys of a run() result that are not figures


def areas() -> list[str]:
    found = {p.stem.removeprefix("bench_") for p in TOOLS.glob("bench_*.py")}
    return [a for a in ORDER if a in found] + sorted(found - set(ORDER))


def figure(value, unit: str = "", reference=None, against: str = "", compare: str = "ratio") -> dict:
    """One measured figure; with a reference measured in the same run (against: what it is), also
    ratio = value / reference, or with compare="difference" (dB, say) difference = value - reference."""
    row = {"value": value, "unit": unit}
    if reference is not None:
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (value, reference))
        if compare == "ratio":
            row["ratio"] = value / reference if numeric and reference else None
        else:
            row["difference"] = value - reference if numeric else None
        row.update(reference=reference, against=against)
    return row


# ----------------------------------------------------------------------------------------------
# Running areas
# ----------------------------------------------------------------------------------------------


def run_area(area: str, quick: bool) -> dict:
    """The area's run(quick), in this process."""
    return importlib.import_module(f"bench_{area}").run(quick=quick)


def run_in_subprocess(area: str, quick: bool) -> dict:
    """run_area in a fresh process (its output goes to stderr as it runs); a failure comes back as
    {"error": ...} instead of an exception."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--run-area", area, "--json", str(out)] + ([] if quick else ["--full"])
        proc = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr)
        if not out.exists():
            return {"error": f"the area's process ended with exit code {proc.returncode} and no result"}
        return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (no GPU)"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": device,
            "python": platform.python_version(), "load_average": load}


def machine_line(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, CPU capability {m['cpu_capability']}; device {m['device']}; "
            f"torch {m['torch']}, Python {m['python']}")


# ----------------------------------------------------------------------------------------------
# Tables and the generated block
# ----------------------------------------------------------------------------------------------


def fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x).replace("|", "/").replace("\n", " ")
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def flatten(result: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(name, figure) rows of a run() result: nested dicts and lists joined with ' / ' and '[i]'."""
    rows = []
    for key, value in result.items():
        if not prefix and key in RESERVED:
            continue
        name = f"{prefix} / {key}" if prefix else str(key)
        if isinstance(value, dict) and "value" not in value:
            rows += flatten(value, name)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                rows += flatten(item, f"{name}[{i}]")
        else:
            rows.append((name, value))
    return rows


def figure_cells(value) -> tuple[str, str, str]:
    """(value, reference, ratio) cells of one figure."""
    if not isinstance(value, dict):
        return fmt(value), "-", "-"
    unit = f" {value['unit']}" if value.get("unit") else ""
    if "reference" not in value:
        return f"{fmt(value['value'])}{unit}", "-", "-"
    against = f" ({fmt(value['against'])})" if value.get("against") else ""
    if value.get("ratio") is not None:
        versus = f"{fmt(value['ratio'])}x"
    elif value.get("difference") is not None:
        versus = f"{'+' if value['difference'] >= 0 else ''}{fmt(value['difference'])}{unit}"
    else:
        versus = "-"
    return f"{fmt(value['value'])}{unit}", f"{fmt(value['reference'])}{unit}{against}", versus


def area_table(result: dict) -> str:
    """Markdown for one area: its figures as a table, then multi-line texts as code blocks, the references'
    description and the command."""
    if "error" in result:
        return f"Failed: `{fmt(result['error'])}`"
    rows, blocks = [], []
    for name, value in flatten(result):
        if isinstance(value, str) and "\n" in value:
            blocks.append(f"```\n{value}\n```")
        else:
            rows.append(f"| {fmt(name)} | {' | '.join(figure_cells(value))} |")
    header = "| figure | value | reference (same run) | vs reference |\n|---|---|---|---|\n"
    parts = ([header + "\n".join(rows)] if rows else []) + blocks
    if result.get("reference"):
        parts.append(f"Reference: {fmt(result['reference'])}")
    if result.get("command"):
        parts.append(f"Command: `{result['command']}`")
    return "\n\n".join(parts)


def section(area: str, result: dict, seconds: float, when: str, cpu: float | None = None) -> str:
    cpu_text = "" if cpu is None else f", {cpu:.0f} s CPU"
    return f"### {area}\n\n_{when}, {seconds:.0f} s wall{cpu_text}_\n\n{area_table(result)}\n"


def render_block(machine_info: dict, sections: dict[str, str], note: str) -> str:
    load = machine_info.get("load_average")
    header = (f"## Latest figures (generated by `python tools/bench.py`)\n\n"
              f"Machine: {machine_line(machine_info)}; load average {fmt(load)} at the start. {note} "
              "Ratios are value / reference, both measured in the same run; absolute times depend on the "
              "machine and its load, the ratios much less. Quick mode uses each area's run(quick=True) sizes (its "
              "Command line is the equivalent command); the hand-written sections below hold the full-size figures "
              "and their history.\n")
    body = "\n".join(sections[a] for a in [*ORDER, *sorted(set(sections) - set(ORDER))] if a in sections)
    return f"{BEGIN}\n{header}\n{body}{END}"


def existing_sections(text: str) -> dict[str, str]:
    """The per-area sections of the current generated block (empty when there is none)."""
    if BEGIN not in text or END not in text:
        return {}
    block = text[text.index(BEGIN) + len(BEGIN): text.index(END)]
    parts = re.split(r"^### ", block, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): "### " + p.rstrip() + "\n" for p in parts}


def replace_block(text: str, block: str) -> str:
    """text with its generated block replaced, or inserted before the first '## ' heading (after the intro)."""
    if BEGIN in text and END in text:
        return text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    match = re.search(r"^## ", text, flags=re.M)
    if match is None:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[: match.start()] + block + "\n\n" + text[match.start():]


def update_markdown(path: Path, machine_info: dict, new_sections: dict[str, str], note: str) -> str:
    """Rewrite path's generated block: new_sections replace those areas' sections, the others are kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    sections = {**existing_sections(text), **new_sections}
    updated = replace_block(text, render_block(machine_info, sections, note))
    from flow import atomic_path  # the project's one atomic-write helper

    with atomic_path(path) as tmp:
        tmp.write_text(updated)
    return updated


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: an area's cost, less sensitive than its
    wall time to other jobs on the machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_all(selected: list[str], quick: bool, markdown: Path | None) -> int:
    machine_info, when = machine(), datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"machine: {machine_line(machine_info)}; load average {fmt(machine_info['load_average'])}", flush=True)
    new_sections, failed, total = {}, [], time.perf_counter()
    for area in selected:
        print(f"\n== {area} ({'quick' if quick else 'full'}) ==", flush=True)
        start, cpu = time.perf_counter(), children_cpu()
        result = run_in_subprocess(area, quick)
        seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
        print(f"== {area}: {seconds:.0f} s wall, {cpu:.0f} s CPU"
              f"{' FAILED: ' + result['error'] if 'error' in result else ''}", flush=True)
        if "error" in result:
            failed.append(area)
        new_sections[area] = section(area, result, seconds, when, cpu)
    total = time.perf_counter() - total
    note = (f"Run {when}: {', '.join(selected)} in {'quick' if quick else 'full'} mode, {total:.0f} s in all"
            f"{'; failed: ' + ', '.join(failed) if failed else ''}.")
    print(f"\ntotal {total:.0f} s", flush=True)
    if markdown is None:
        print(render_block(machine_info, new_sections, note))
    else:
        update_markdown(markdown, machine_info, new_sections, note)
        print(f"wrote the generated block of {markdown}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = areas()
    if argv and argv[0] in known:  # one area through its own command line
        importlib.import_module(f"bench_{argv[0]}").main(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python tools/bench.py", description=__doc__.split("\n\n")[0],
                                epilog=f"areas: {', '.join(known)}. `python tools/bench.py AREA --help` gives an "
                                "area's own options.")
    p.add_argument("what", nargs="?", default="all", choices=["all", *known],
                   help="all (the default): every area, quick; AREA: that area's own command line")
    p.add_argument("--areas", help=f"comma-separated subset of: {','.join(known)}")
    p.add_argument("--full", action="store_true", help="the areas' full sizes instead of quick (much longer)")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md", help="file whose block is rewritten")
    p.add_argument("--no-write", action="store_true", help="print the block instead of writing it")
    p.add_argument("--run-area", choices=known, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_area:  # the child process of run_in_subprocess
        try:
            result, code = run_area(args.run_area, quick=not args.full), 0
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: the parent records the failure
            traceback.print_exc()
            message = (str(e).strip().splitlines() or [""])[-1]
            result, code = {"error": f"{type(e).__name__}: {message}"}, 1
        args.json.write_text(json.dumps(result, indent=1, default=str))
        return code
    selected = args.areas.split(",") if args.areas else known
    unknown = [a for a in selected if a not in known]
    if unknown:
        p.error(f"--areas: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return run_all(selected, not args.full, None if args.no_write else args.markdown)


if __name__ == "__main__":
    sys.exit(main())
