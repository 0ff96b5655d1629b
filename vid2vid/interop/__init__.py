"""The original pix2pixHD / SPADE / vid2vid code: option and key maps, and `vid2vid import` of its checkpoints."""
