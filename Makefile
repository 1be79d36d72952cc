# Set-up and the two main jobs. Both create the virtual environment themselves on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIANOGEN := $(VENV)/bin/pianogen
DEMO_RUN ?= runs/demo

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The whole chain on the built-in synthetic piano corpus: corpus -> demo codec -> tokens ->
# multi-output Transformer -> continuation of a held-out prompt -> objective evaluation.
demo: install
	$(PIANOGEN) train demo run.dir=$(DEMO_RUN) $(if $(wildcard $(DEMO_RUN)/checkpoints/last),--resume,)
	$(PIANOGEN) generate $(DEMO_RUN) --prompt test:0 --prompt-seconds 4 --seconds 6 --num 2 --out $(DEMO_RUN)/generated
	$(PIANOGEN) eval $(DEMO_RUN) --out $(DEMO_RUN)/eval

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check pianogen plugins tests benchmarks

bench: install
	$(PIANOGEN) bench

clean:
	rm -rf $(VENV) runs .pytest_cache
