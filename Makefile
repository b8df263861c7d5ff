# boxsync: `make run` to see it work, `make test` to prove it. `make help` lists the rest.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BOXSYNC := $(VENV)/bin/boxsync
INSTALLED := $(VENV)/.installed
# The demo bodies use Jira Cloud's usual ids for "Start date" and "Story point estimate".
export BOXSYNC_JIRA_FIELD_MAP ?= customfield_10015=start_date,customfield_10016=story_points

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is needed"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

setup: $(INSTALLED) ## Create .venv and install boxsync with its dev tools

stack-up: setup ## Start local Kafka (KRaft) and PostgreSQL under .local/
	$(BOXSYNC) stack up

stack-down: setup ## Stop the worker started by `make run`, then Kafka and PostgreSQL
	deploy/local/worker.sh stop
	$(BOXSYNC) stack down

stop: stack-down ## Same as stack-down

run: setup ## Start the stack, topics, database, a worker, and feed a demo through it
	$(BOXSYNC) stack up
	$(BOXSYNC) topics create
	$(BOXSYNC) db migrate
	deploy/local/worker.sh start
	$(BOXSYNC) demo
	@echo
	@echo "The stack and the worker keep running (worker log: .local/worker.log)."
	@echo "Try: .venv/bin/boxsync task show jira:acme-demo.atlassian.net:10217"
	@echo "     .venv/bin/boxsync box show demo-ops"
	@echo "     .venv/bin/boxsync command resync_box --box demo-ops --user 557058:0f1e2d3c-aaaa-4bbb-8ccc-111111111111 --wait 30"
	@echo "       (a full sync reads Jira: it fails source_unavailable until BOXSYNC_JIRA_BASE_URL is set)"
	@echo "     .venv/bin/boxsync runs --box demo-ops"
	@echo "     curl -s http://127.0.0.1:6066/metrics | grep boxsync_"
	@echo "Stop everything with: make stop"

test: setup ## Lint, type-check and run every test against a real broker and database
	tests/run.sh

helm: ## Build the pinned helm into .local/bin (once; minutes of CPU) and lint the chart
	$$(deploy/tools/helm.sh) lint --strict deploy/helm/boxsync -f deploy/helm/boxsync/values-production.yaml

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

fmt: setup ## Format the code with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format processors schemas bench

schemas: setup ## Export the JSON Schemas of every message to schemas/json/
	$(PY) -m schemas.export

bench: setup ## Hot path vs a bare loop (filters off/on), webhook gateway, 100,000-task full sync
	bench/run.sh

chaos: setup ## Reliability battery on its own stack (kill -9, outages, fuzz, gateway, soak); ARGS=--quick
	$(PY) -m chaos $(ARGS)

.PHONY: help setup stack-up stack-down stop run test helm lint fmt schemas bench chaos
