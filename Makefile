# Set-up and the two main jobs. Both create the virtual environment themselves on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIANOGEN := $(VENV)/bin/pianogen
DEMO_RUN ?= runs/demo

.PHONY: install system demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# the reference codec (haydenshively/SoundStream) and its quantizer library, which tests and bench compare
	# against: without their dependencies, whose pins (numpy<2, huggingface-hub<0.16) would clash with ours
	$(PY) -m pip install -q --no-deps soundstream==0.0.1 vector-quantize-pytorch==1.6.11
	# Spotify's basic-pitch for its ONNX model file only (the transcriber): its declared dependencies pull in
	# TensorFlow, librosa and resampy, none of which the ONNX model and our note decoding need
	$(PY) -m pip install -q --no-deps basic-pitch==0.4.0
	touch $@

# The whole chain on the built-in synthetic piano corpus: corpus -> demo codec -> tokens ->
# multi-output Transformer -> continuation of a held-out prompt -> objective evaluation.
demo: install
	$(PIANOGEN) train demo run.dir=$(DEMO_RUN) $(if $(wildcard $(DEMO_RUN)/checkpoints/last),--resume,)
	$(PIANOGEN) generate $(DEMO_RUN) --prompt test:0 --prompt-seconds 4 --seconds 6 --num 2 --out $(DEMO_RUN)/generated
	$(PIANOGEN) eval $(DEMO_RUN) --out $(DEMO_RUN)/eval

# What the tests need from Debian: chromium (the serve page's test drives it through Playwright; browsers cannot
# be downloaded here), fluidsynth + a General MIDI soundfont (performances played by another sampled piano, to
# evaluate on) and opus-tools (Opus as users run it: opusenc at 48 kHz). As root (CI) missing ones are installed;
# elsewhere this says which, and the tests that need them skip unless CI is set.
SYSTEM_PACKAGES := chromium fluidsynth timgm6mb-soundfont opus-tools
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -z "$$missing" ]; then exit 0; fi; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing (sudo apt-get install$$missing)"; fi

test: install system
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check pianogen plugins tests benchmarks

bench: install
	$(PIANOGEN) bench

clean:
	rm -rf $(VENV) runs .pytest_cache
