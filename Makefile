# Two commands for a fresh machine: `make run` (the whole system on the embedded default)
# and `make test` (the whole test suite). Both create or reuse .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean swagger-ui screenshots console-assets

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pathways up

# Two test processes (pytest-xdist), each with its own dev server, worker and databases: most
# tests wait on servers, so two share two cores well (8 min instead of 12 here).
test: lint
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.handover_throughput

clean:
	rm -rf $(VENV) .data .pytest_cache .hypothesis

# The console's front-end files, vendored from npm (versions pinned in the script; no CDN).
console-assets:  # htmx (console) and axe-core (its browser tests) from npm, pinned in the script
	api/console/vendor.sh

# The Swagger UI behind /docs, served from the package so the page works offline (no CDN).
SWAGGER_UI_VERSION := 5.35.0
SWAGGER_UI_DIR := api/static/swagger-ui
swagger-ui:
	rm -rf $(SWAGGER_UI_DIR) && mkdir -p $(SWAGGER_UI_DIR)
	cd $(SWAGGER_UI_DIR) && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) \
	  && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz --strip-components=1 \
	     package/swagger-ui-bundle.js package/swagger-ui.css package/favicon-32x32.png package/LICENSE package/swagger-ui-bundle.js.LICENSE.txt \
	  && rm swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz && echo $(SWAGGER_UI_VERSION) > VERSION

# Refresh the README's console screenshots (the browser tests take them).
screenshots: $(STAMP)
	PATHWAYS_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q tests/console/test_console_browser.py tests/console/test_analytics_console.py
