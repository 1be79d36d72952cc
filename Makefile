# Set-up and the two main jobs. Both create the virtual environment themselves on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIANOGEN := $(VENV)/bin/pianogen
DEMO_RUN ?= runs/demo

.PHONY: install browser demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# the reference codec (haydenshively/SoundStream) and its quantizer library, which tests and bench compare
	# against: without their dependencies, whose pins (numpy<2, huggingface-hub<0.16) would clash with ours
	$(PY) -m pip install -q --no-deps soundstream==0.0.1 vector-quantize-pytorch==1.6.11
	touch $@

# The whole chain on the built-in synthetic piano corpus: corpus -> demo codec -> tokens ->
# multi-output Transformer -> continuation of a held-out prompt -> objective evaluation.
demo: install
	$(PIANOGEN) train demo run.dir=$(DEMO_RUN) $(if $(wildcard $(DEMO_RUN)/checkpoints/last),--resume,)
	$(PIANOGEN) generate $(DEMO_RUN) --prompt test:0 --prompt-seconds 4 --seconds 6 --num 2 --out $(DEMO_RUN)/generated
	$(PIANOGEN) eval $(DEMO_RUN) --out $(DEMO_RUN)/eval

# The serve page's test drives Debian's chromium through Playwright (browsers cannot be downloaded here);
# as root (CI) a missing chromium is installed, elsewhere the test says how and skips unless CI is set.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing: the browser test needs it (sudo apt-get install chromium)"; fi

test: install browser
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check pianogen plugins tests benchmarks

bench: install
	$(PIANOGEN) bench

clean:
	rm -rf $(VENV) runs .pytest_cache
