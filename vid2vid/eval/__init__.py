"""Evaluation: frame and video metrics (PSNR, warping error, ...), detail figures and E_warp at matched detail, the
flow-guided recursive filter (the temporal-consistency baseline), and the quality segmenter (mIoU of generated
frames)."""
