# Postwire developer entry points. Everything runs from the repo's own virtualenv (.venv).
#   make install  create .venv (if missing) and install the package with dev extras
#   make run      install, then run the local stack in the foreground (`postwire dev up`)
#   make lint     ruff check + mypy (strict)
#   make test     install, lint, then every test layer; prints a one-line verdict
#   make bench    run every bench/*.py script (each prints its own table), except the soak
#   make chaos    the 10-minute chaos soak (bench/chaos.py): kill -9 under load, then a ledger
#   make openapi  regenerate docs/openapi/{ingest,admin}.json from the request/response models
#   make browser  install Debian's chromium for the console's browser tests (skipped when present)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_DIRS := tests/unit tests/integration tests/e2e tests/faults

.PHONY: install run lint test bench chaos clean browser openapi

install: $(STAMP)

# Re-installs only when pyproject.toml changed since the last successful install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/postwire dev up

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The console and portal tests drive the system Chromium (Playwright, executable_path).
# Idempotent: nothing happens when /usr/bin/chromium exists; otherwise apt-get as root.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "make browser: /usr/bin/chromium is missing; run 'sudo apt-get install -y chromium'"; exit 1; \
		fi; \
		echo "make browser: installing chromium (apt-get)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

test: install lint browser
	@dirs=""; for d in $(TEST_DIRS); do if [ -d "$$d" ]; then dirs="$$dirs $$d"; fi; done; \
	set +e; $(BIN)/pytest -q -rfE $$dirs; rc=$$?; set -e; \
	if [ $$rc -eq 0 ]; then echo "make test: OK (lint clean, all tests passed)"; \
	else echo "make test: FAILED (pytest exit status $$rc; see the summary above)"; fi; \
	exit $$rc

bench: install
	@for f in bench/*.py; do \
		[ -e "$$f" ] || continue; \
		name=$$(basename "$$f" .py); \
		case "$$name" in _*|chaos) continue;; esac; \
		echo "== bench/$$name.py"; \
		$(BIN)/python -m "bench.$$name" || exit 1; \
	done

# The OpenAPI documents are generated from the models that validate requests; a unit test
# (tests/unit/test_openapi_documents.py) fails when the checked-in files drift from the code.
openapi: install
	$(BIN)/python -m services.ingest.openapi > docs/openapi/ingest.json
	$(BIN)/python -m services.dlq_replay.openapi > docs/openapi/admin.json

# Not part of `make test` (a 2-minute version runs among the fault tests). Exits non-zero when
# the ledger does not hold.
chaos: install
	$(BIN)/python -m bench.chaos --duration 600

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache
