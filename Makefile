# ftpool: the two commands a new machine needs are `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run demo test lint format clean images docker chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[e2e]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## Start the controller: local runtime, embedded SQLite store under ./data, port 5000.
run: $(STAMP)
	$(VENV)/bin/ftpool controller

## Offline demo: the exchange emulator, a controller and three dry-run bots that trade.
demo: $(STAMP)
	$(VENV)/bin/python -m tests.demo

## Lint, then every suite: unit, integration (real supervisord), e2e/local (real freqtrade),
## e2e/docker (real pool containers) and browser (the dashboard in headless chromium).
## Installs and starts Docker, installs chromium and builds images first.
test: $(STAMP) images chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	FTPOOL_REQUIRED_SUITES=unit,integration,e2e/local,e2e/docker,browser $(VENV)/bin/pytest -v --durations=15 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

## Docker images freqtrade-pool:latest + ftpool-controller:latest, offline (no registry):
## `make images` (pool FROM freqtradeorg/freqtrade:stable if present, else a self-built base),
## or `make images BASE_IMAGE=<local image>`. Cached; see images/build.sh.
images: docker
	BASE_IMAGE='$(BASE_IMAGE)' images/build.sh

## Install docker.io and debootstrap when missing, start dockerd when it is not running.
docker:
	images/docker-up.sh

## Install Debian's chromium and chromedriver when missing (the browser tests drive them).
chromium:
	tests/browser/chromium-up.sh

clean:
	rm -rf $(VENV) build *.egg-info
