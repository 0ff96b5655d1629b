"""Leave exactly one OpenCV distribution in this Python environment (`make install` runs it after pip).

Every OpenCV wheel (opencv-python, -headless, -contrib-python, -contrib-python-headless) installs the same `cv2`
package, so two of them overwrite each other's files and uninstalling one breaks the other. pyproject.toml asks
for opencv-contrib-python (mediapipe requires it; it has everything we use) below Python 3.13 and
opencv-python-headless from 3.13 on. An environment made before that change still has the old one: this removes
every OpenCV but the wanted one, then reinstalls the wanted one's files (without touching other packages).

    python tools/one_opencv.py          # fix the environment of this interpreter; prints what it did
    python tools/one_opencv.py --check  # exit 1 unless exactly the wanted OpenCV is installed
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata

OPENCVS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def wanted() -> str:
    """The OpenCV distribution pyproject.toml asks for on this Python."""
    return "opencv-contrib-python" if sys.version_info < (3, 13) else "opencv-python-headless"


def installed() -> dict[str, str]:
    """{OpenCV distribution name: version} installed in this environment."""
    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in OPENCVS:
            found[name] = dist.version
    return found


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 unless one, the wanted, is there")
    args = parser.parse_args()
    keep, found = wanted(), installed()
    if set(found) == {keep}:
        print(f"one OpenCV: {keep} {found[keep]}")
        return 0
    if args.check:
        print(f"OpenCV distributions installed: {found or 'none'}; expected only {keep} (run tools/one_opencv.py)")
        return 1
    extra = sorted(set(found) - {keep})
    if extra:
        pip("uninstall", "-y", *extra)
    version = found.get(keep)
    pip("install", "--force-reinstall", "--no-deps", f"{keep}=={version}" if version else keep)
    print(f"removed {', '.join(extra) or 'nothing'}; (re)installed {keep}; one OpenCV: {installed()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
