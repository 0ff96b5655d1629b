"""Face landmarks (dlib's 68-point scheme) from video frames: detector backends behind one interface (backends),
MediaPipe's face mesh mapped to the 68 points (mediapipe68), and one face followed through a video with its gaps
filled (tracking). Shared by face data preparation now and body keypoints later."""

from vid2vid.landmarks.backends import BACKENDS, DlibBackend, MediapipeBackend, open_backend
from vid2vid.landmarks.mediapipe68 import MESH_TO_68, mesh_to_68
from vid2vid.landmarks.tracking import FaceTracker, NoFaceError, fill_gaps, pick_face, track_frames, track_video

__all__ = ["BACKENDS", "DlibBackend", "MediapipeBackend", "open_backend", "MESH_TO_68", "mesh_to_68", "FaceTracker",
           "NoFaceError", "fill_gaps", "pick_face", "track_frames", "track_video"]
