# Set-up and the two README commands. Each target installs what it needs into .venv first.
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build from the registry.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## train the default VAE on the embedded digits and write its run folder
	$(BIN)/vaekit train

test: $(BIN)/.installed  ## the whole test suite
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed  ## benchmarks (minutes; not part of the tests)
	$(BIN)/python bench/epoch_speed.py

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache
