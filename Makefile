# One-command set-up on a fresh Debian machine: `make test` and `make demo` install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PKGS := redis-server nginx libnginx-mod-rtmp ffmpeg espeak-ng sox apertium apertium-eng-spa curl chromium chromium-driver docker-compose iproute2 util-linux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
TEST_JOBS ?= 2
RERUN_MAX ?= 6

.PHONY: setup system venv test unit lint demo bench clean lock

setup: system venv

system:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

# The locked dependencies with their hashes, then livedub itself (editable, no dependencies).
$(VENV)/.installed: setup.cfg pyproject.toml requirements/dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy api tasks worker bench
	$(VENV)/bin/lint-imports

# Most tests spend their time waiting on streams played in real time: they run TEST_JOBS at a time, a file
# per worker (its stack is shared), the longest files first (tests/conftest.py). Two streams at once on 2 cores can make a piece miss its deadline, so
# a few (at most RERUN_MAX) that fail beside another run again alone, and count as they do alone. Those
# marked `solo` assert "no fallback" under a real-time load and only run alone. Every pass reports; exit
# 5 is "this selection has no test".
test: setup lint
	@$(PY) -m pytest -ra --durations=25 -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --cache-clear -m "not solo" $(PYTEST_ARGS); \
	a=$$?; n=$$($(PY) -c 'import json; print(len(json.load(open(".pytest_cache/v/cache/lastfailed"))))' 2>/dev/null || echo 0); \
	if [ "$$a" = 1 ] && [ "$$n" -ge 1 ] && [ "$$n" -le $(RERUN_MAX) ]; then \
	  echo "make test: the $$n test(s) that failed above, beside another, run again alone"; \
	  $(PY) -m pytest -ra --lf --lfnf=none -m "not solo" $(PYTEST_ARGS); a=$$?; [ "$$a" != 5 ] || a=1; fi; \
	$(PY) -m pytest -ra --durations=10 -p no:cacheprovider -m solo $(PYTEST_ARGS); b=$$?; \
	echo "make test: shared passes exit $$a, solo pass exit $$b"; \
	case "$$a$$b" in 00|05|50) ;; *) exit 1;; esac

unit: venv
	$(PY) -m pytest -q tests/unit

demo: setup
	$(VENV)/bin/livedub demo

bench: setup
	$(PY) bench/hooks.py

# Lock files with hashes, generated from setup.cfg: base (API and workers), offline (+ the models; the
# image), dev (+ tests and linters; CI and `make test`).
LOCK := $(VENV)/bin/pip-compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links --strip-extras \
	--allow-unsafe setup.cfg
lock:
	$(LOCK) -o requirements/base.txt
	$(LOCK) --extra offline -o requirements/offline.txt
	$(LOCK) --extra offline --extra dev -o requirements/dev.txt
	$(VENV)/bin/pip-compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links --strip-extras \
		--allow-unsafe requirements/gpu.in -o requirements/gpu.txt

clean:
	rm -rf .livedub .pytest_cache .mypy_cache .ruff_cache
