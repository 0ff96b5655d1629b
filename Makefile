# The two quick-start commands: `make demo` and `make test`. Each works from a fresh clone with
# only python3: it creates .venv when missing and (re)installs the project only when
# pyproject.toml changed.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test lint clean

install: $(STAMP)

# tools/one_opencv.py: every OpenCV wheel installs `cv2`; a .venv made before pyproject.toml switched to
# opencv-contrib-python (mediapipe's) still has opencv-python-headless, and two of them break each other.
$(STAMP): pyproject.toml tools/one_opencv.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) tools/one_opencv.py
	touch $(STAMP)

# The demo (vid2vid/demo.py): generate the synthetic street dataset, train the per-frame model (pix2pixHD)
# and the video model (vid2vid) for MINUTES of training in all (default 20 on 2 CPU cores: 6 + 11, plus 2
# for the quality metric's segmenter), render the held-out sequences with both and print the comparison
# table, the videos and the pictures. Re-running resumes; once done it finishes in seconds. The same pipeline on
# your own video: `vid2vid demo --task face --video talk.mp4`, `vid2vid demo --task pose --video dance.mp4
# [--transfer walk.mp4]` (README).
MINUTES ?= 20
demo: $(STAMP)
	$(PY) -m vid2vid demo --minutes $(MINUTES)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data/synthetic_demo runs/demo
