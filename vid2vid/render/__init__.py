"""Rendering with an exported model (vid2vid render).

    renderer.py   VideoRenderer: frame in, frame out (the video model through vid2vid.temporal's one-frame step)
    inputs.py     label inputs: folders of id or colour PNGs, dataset sequences, video files; palettes
    faces.py      face inputs: keypoint sequence folders, talking-head videos (landmarks detected while streaming)
    poses.py      pose inputs: prepared <phase>_openpose/<seq> folders, videos of a person (MediaPipe Holistic)
    streaming.py  the reader and encoder threads and the sinks they write to (H.264, PNG folders)
    pipeline.py   RenderOptions, render_video / render_all: whole inputs streamed through a renderer
"""

from vid2vid.render.pipeline import RenderOptions as RenderOptions
from vid2vid.render.pipeline import RenderStopped as RenderStopped
from vid2vid.render.pipeline import RenderSummary as RenderSummary
from vid2vid.render.pipeline import render_all as render_all
from vid2vid.render.pipeline import render_input as render_input
from vid2vid.render.pipeline import render_video as render_video
from vid2vid.render.renderer import VideoRenderer as VideoRenderer
