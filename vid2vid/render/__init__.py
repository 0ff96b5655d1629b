"""Rendering with an exported model (vid2vid render): VideoRenderer (frame in, frame out) and render_video /
render_all (whole inputs streamed to H.264 or PNG folders)."""

from vid2vid.render.renderer import RenderStopped as RenderStopped
from vid2vid.render.renderer import RenderSummary as RenderSummary
from vid2vid.render.renderer import VideoRenderer as VideoRenderer
from vid2vid.render.renderer import render_all as render_all
from vid2vid.render.renderer import render_video as render_video
