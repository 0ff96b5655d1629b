"""Body keypoints in OpenPose's format from MediaPipe Holistic (the legacy mp.solutions API of mediapipe 0.10.14, its
bundled models: pose landmarks with model_complexity=1, the face mesh with the iris refinement and both hands, run in
one pass on one person).

    backend = HolisticBackend()                 # video=True: one person followed from frame to frame
    found = backend.detect(frame)               # RGB uint8 [H,W,3] -> BodyFrame
    found.people                                # [] or [Person] (vid2vid.data.openpose: pose 25x3, face 70x3, hands)
    found.mask                                  # uint8 [H,W], 255 on the person, 0 elsewhere

Holistic follows the most prominent person: its pose detector picks one person on the first frame, and in video mode
each next frame starts from the last frame's landmarks. The hands are cropped around that body's wrists, so a hand is
always labelled by the body it belongs to; left and right are the person's own (MediaPipe Hands run alone labels
them as in a mirror; Holistic does not: tests/test_pose_keypoints.py checks both on real pictures).

The mapping (OpenPose's "right" is the person's right, as MediaPipe's):

    BODY_25                    MediaPipe pose (33 points)
    0 nose                     0 nose
    1 neck                     the midpoint of the shoulders 11, 12 (MediaPipe has no neck)
    2-4 right shoulder..wrist  12, 14, 16
    5-7 left shoulder..wrist   11, 13, 15
    8 mid-hip                  the midpoint of the hips 23, 24
    9-11 right hip..ankle      24, 26, 28
    12-14 left hip..ankle      23, 25, 27
    15, 16 right, left eye     5, 2 (the eye centres)
    17, 18 right, left ear     8, 7
    19, 22 left, right big toe 31, 32 (MediaPipe's foot index: the tip of the foot)
    20, 23 small toes          none: written as zeros (confidence 0). MediaPipe has one point at the toes; an
                               invented small toe would be drawn as if seen. The original's renderer then leaves out
                               only the short big-toe-to-small-toe stroke (the foot's other strokes have its colour).
    21, 24 left, right heel    29, 30

A body point's confidence is MediaPipe's visibility; a point below MIN_VISIBILITY = 0.5 (MediaPipe's own drawing
threshold: MediaPipe guesses hidden and out-of-frame points, with a low visibility) or outside the frame is written as
zeros, as OpenPose writes the points it did not find. The neck and mid-hip exist when both their points do (the
confidence: the lower of the two). Hands: MediaPipe's 21 hand landmarks are in OpenPose's order (wrist, then 4 per
finger from the thumb). Face: dlib's 68 points (mediapipe68.MESH_TO_68) and the pupils as OpenPose's points 68 (right)
and 69 (left): the iris centres of the refined mesh (vertices 468, 473), else the eye centres (the mean of points 36-41,
42-47). Hands and face carry no per-point score in MediaPipe: a detected one gets DETECTED_CONFIDENCE = 1.0 per
point inside the frame (above every threshold of the original's renderer), zeros outside it.

The body mask: Holistic's segmentation (a person probability per pixel) above MASK_THRESHOLD = 0.5, where the person
becomes more likely than not. The probabilities are nearly binary, so the threshold matters little: on the astronaut
~5 % of the frame lies between 0.1 and 0.9, and the mask covers 46 %, 43 %, 41 % of the frame at 0.1, 0.5, 0.9.

One person: Holistic finds none or one per frame (people: [] or [Person]); a frame without one is written as OpenPose
writes it, "people": [] (the original's reader draws nothing for it). When the followed person is lost, the next
detection may pick another one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from vid2vid.data.openpose import PARTS, Person
from vid2vid.landmarks.backends import _stderr_silenced, import_mediapipe_solution
from vid2vid.landmarks.mediapipe68 import mesh_to_68

# BODY_25 index -> MediaPipe pose index (the neck, the mid-hip and the small toes are not here: MIDPOINTS, zeros)
BODY_FROM_MEDIAPIPE = {
    0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 9: 24, 10: 26, 11: 28, 12: 23, 13: 25, 14: 27,
    15: 5, 16: 2, 17: 8, 18: 7, 19: 31, 21: 29, 22: 32, 24: 30,
}
MIDPOINTS = {1: (11, 12), 8: (23, 24)}  # BODY_25 neck, mid-hip: midpoints of MediaPipe's shoulders, hips
SMALL_TOES = (20, 23)  # BODY_25 points MediaPipe has no counterpart for: zeros
IRIS_CENTRES = (468, 473)  # refined face mesh: the person's right iris centre, the left one
MIN_VISIBILITY = 0.5  # mediapipe.python.solutions.drawing_utils._VISIBILITY_THRESHOLD
DETECTED_CONFIDENCE = 1.0  # each point of a detected hand or face (MediaPipe gives no per-point score)
MASK_THRESHOLD = 0.5  # person probability above which a pixel is in the body mask
POSE_POINTS = 33  # MediaPipe pose landmarks


def _in_frame(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """points [K,2] (x, y pixels), size (H, W) -> bool [K]: inside the frame."""
    h, w = size
    x, y = points[:, 0], points[:, 1]
    return (x >= 0) & (x < w) & (y >= 0) & (y < h)


def body_25(pose: np.ndarray, size: tuple[int, int], min_visibility: float = MIN_VISIBILITY) -> np.ndarray:
    """MediaPipe pose landmarks [33,3] (x, y pixels, visibility), the frame size (H, W) -> BODY_25 [25,3] (x, y,
    confidence); a point not seen (below min_visibility or outside the frame) is zeros."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (POSE_POINTS, 3):
        raise ValueError(f"pose landmarks must be [{POSE_POINTS},3], got {pose.shape}")
    seen = (pose[:, 2] >= min_visibility) & _in_frame(pose[:, :2], size)  # [33]
    out = np.zeros((PARTS["pose"], 3))
    for k, m in BODY_FROM_MEDIAPIPE.items():
        if seen[m]:
            out[k] = pose[m]
    for k, (a, b) in MIDPOINTS.items():
        if seen[a] and seen[b]:
            out[k, :2] = (pose[a, :2] + pose[b, :2]) / 2
            out[k, 2] = min(pose[a, 2], pose[b, 2])
    return out


def _detected(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """points [K,2] pixels -> [K,3] with DETECTED_CONFIDENCE, zeros for the points outside the frame."""
    out = np.zeros((len(points), 3))
    inside = _in_frame(points, size)
    out[inside, :2] = points[inside]
    out[inside, 2] = DETECTED_CONFIDENCE
    return out


def hand_21(hand: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """MediaPipe hand landmarks [21,2] pixels (None: no hand) -> OpenPose's hand [21,3] (the same order)."""
    if hand is None:
        return np.zeros((PARTS["hand_left"], 3))
    return _detected(np.asarray(hand, np.float64), size)


def face_70(mesh: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """The face mesh [468 or 478, 2] pixels (None: no face) -> OpenPose's face [70,3]: dlib's 68 points, then the
    right and the left pupil (iris centres with the 478-point mesh, else the eye centres)."""
    if mesh is None:
        return np.zeros((PARTS["face"], 3))
    mesh = np.asarray(mesh, np.float64)
    points = mesh_to_68(mesh).astype(np.float64)  # [68,2]
    if len(mesh) > max(IRIS_CENTRES):
        pupils = mesh[list(IRIS_CENTRES)]
    else:
        pupils = np.stack([points[36:42].mean(0), points[42:48].mean(0)])
    return _detected(np.concatenate([points, pupils]), size)  # [70,3]


def to_person(pose: np.ndarray, left: np.ndarray | None, right: np.ndarray | None, face: np.ndarray | None,
              size: tuple[int, int], min_visibility: float = MIN_VISIBILITY) -> Person:
    """One body's MediaPipe landmarks in pixels (pose [33,3] with visibility; the person's left and right hand
    [21,2], the face mesh [478,2]; None: not found) -> its OpenPose Person."""
    return Person(pose=body_25(pose, size, min_visibility), face=face_70(face, size), hand_left=hand_21(left, size),
                  hand_right=hand_21(right, size))


def body_mask(probability: np.ndarray | None, size: tuple[int, int], threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """A person probability [H,W] (None: no person) -> uint8 [H,W], 255 where it is above threshold, else 0."""
    if probability is None:
        return np.zeros(size, np.uint8)
    return np.where(np.asarray(probability) > threshold, 255, 0).astype(np.uint8)


@dataclass
class BodyFrame:
    """One frame's result: the people found ([] or one Person) and the body mask (uint8 [H,W] 0/255)."""

    people: list[Person] = field(default_factory=list)
    mask: np.ndarray | None = None


def _pixels(landmarks, size: tuple[int, int], visibility: bool = False) -> np.ndarray | None:
    """A MediaPipe landmark list (None: not found) -> [K,2] pixels, or [K,3] with the visibility."""
    if landmarks is None:
        return None
    h, w = size
    rows = [(p.x * w, p.y * h, p.visibility) if visibility else (p.x * w, p.y * h) for p in landmarks.landmark]
    return np.array(rows, np.float64)


class HolisticBackend:
    """MediaPipe Holistic on each frame -> BodyFrame. video: frames of one video in order (each frame starts from
    the last one's landmarks: the same person is followed); False: every frame on its own (pictures). smooth (with
    video): MediaPipe's own smoothing of the landmarks and the mask over time; off by default, as OpenPose's points
    are per frame: on a body moving 3 px a frame it lags ~2 px behind (~1 px without; tests/test_prepare_pose.py's
    clip). mask: also compute the body mask (else BodyFrame.mask is None)."""

    name = "mediapipe"

    def __init__(self, video: bool = True, mask: bool = True, smooth: bool = False,
                 min_visibility: float = MIN_VISIBILITY, min_confidence: float = 0.5):
        holistic = _import_holistic()
        self.with_mask, self.min_visibility = mask, min_visibility
        with _stderr_silenced():  # the graph's start writes C++ log lines (TFLite delegate, absl notices) to fd 2
            self.model = holistic.Holistic(static_image_mode=not video, model_complexity=1, smooth_landmarks=smooth,
                                           enable_segmentation=mask, smooth_segmentation=smooth,
                                           refine_face_landmarks=True, min_detection_confidence=min_confidence)
            self.model.process(np.zeros((32, 32, 3), np.uint8))  # returns once the graph has started (no person:
            # no state is kept for the next frame)

    def detect(self, frame: np.ndarray) -> BodyFrame:
        """RGB uint8 [H,W,3] -> the person found (at most one; none when no point of it is seen) and the body
        mask."""
        frame = np.ascontiguousarray(frame)
        size = frame.shape[:2]
        with warnings.catch_warnings(), _stderr_silenced():  # each sub-model writes C++ log lines as it starts
            warnings.simplefilter("ignore", UserWarning)  # protobuf's deprecation notice inside mediapipe
            result = self.model.process(frame)
        mask = body_mask(result.segmentation_mask, size) if self.with_mask else None
        pose = _pixels(result.pose_landmarks, size, visibility=True)  # [33,3] or None
        if pose is None:
            return BodyFrame([], mask)
        person = to_person(pose, _pixels(result.left_hand_landmarks, size), _pixels(result.right_hand_landmarks, size),
                           _pixels(result.face_landmarks, size), size, self.min_visibility)
        return BodyFrame([person] if person.seen() else [], mask)  # nothing seen: no person, as OpenPose writes it

    def close(self) -> None:
        self.model.close()


def _import_holistic():
    """mediapipe's legacy holistic module, or a UserError saying what to install."""
    return import_mediapipe_solution("holistic", "--labels pose", "holistic model", "use a Python 3.10-3.12 "
                                     "environment, or give OpenPose's own JSON output with --openpose DIR")
