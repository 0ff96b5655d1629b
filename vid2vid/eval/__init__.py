"""Evaluation: frame and video metrics (PSNR, warping error, ...) and the quality segmenter (mIoU of generated
frames)."""
