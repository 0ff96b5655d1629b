"""Benchmarks: `python tools/bench.py AREA [options]`, AREA one of the modules tools/bench_<AREA>.py.

Each area prints its figures (ratios against a reference measured in the same run, and the
machine); BENCHMARKS.md records them.
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    areas = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    if len(sys.argv) < 2 or sys.argv[1] not in areas:
        sys.exit(f"usage: python tools/bench.py {{{'|'.join(areas)}}} [options]")
    importlib.import_module(f"bench_{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
