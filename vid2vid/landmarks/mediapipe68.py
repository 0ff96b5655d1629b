"""MediaPipe face mesh (478 points with refine_landmarks) -> dlib's 68-point scheme.

Each of the 68 points is one mesh vertex. The eyes, brows, nose and mouth are the vertices at the same anatomical
place (corners of the eyes and lips, the brow arcs, the nostril wings and the bridge); the mapping is left-right
symmetric (vertex pairs of the mesh's mirror: 33/263, 61/291, 70/300, 127/356, ...). dlib's jaw line (0-16) is the
visible face outline from ear level to ear level; it is drawn from the mesh's face-oval vertices, picked by the
smallest mean distance to dlib's points on frames where both found the face (the animated astronaut and the first
half of a real talking-head clip; tools/eval_landmarks.py measures it, BENCHMARKS.md has the figures). The jaw is
where the two schemes differ most: the mesh's vertices are fixed on the 3D face, dlib follows the silhouette.

    dlib points    part                       mesh vertices
    0-16           jaw, image-left to right   127 234 132 58 172 136 149 148, 152 (chin), 377 378 365 397 288 361
                                              454 356
    17-21, 22-26   brows, outer to inner and  70 63 105 66 107, 336 296 334 293 300
                   inner to outer
    27-30          nose bridge, top down      168 197 5 4
    31-35          nostrils, left to right    75 97 2 326 305
    36-41          eye on the image's left    33 160 158 133 153 144 (outer corner, upper lid, inner corner, lower lid)
    42-47          eye on the image's right   362 385 387 263 373 380 (inner corner, upper lid, outer corner, lower lid)
    48-59          outer lips from the left   61 39 37 0 267 269 291 (upper, corner to corner) 405 314 17 84 181 (lower)
                   corner, clockwise
    60-67          inner lips                 78 82 13 312 308 (upper) 317 14 87 (lower)
"""

from __future__ import annotations

import numpy as np

MESH_TO_68 = np.array([
    127, 234, 132, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 361, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
])


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """Face mesh points [468 or 478, 2] (pixels) -> dlib-scheme points [68,2] float32."""
    return np.ascontiguousarray(mesh[MESH_TO_68], dtype=np.float32)
