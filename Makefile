# Borg-DQN: the documented interface. `make run` runs the local hive, `make test` every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AGENTS ?= 2
ENV ?=
SERVICES := game

.DEFAULT_GOAL := help
.PHONY: help install run test test-game lint proto lock clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# One environment for every service of the repo, pinned by constraints.txt (what the images install).
$(VENV)/.installed: game/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt \
		$(foreach service,$(SERVICES),-e $(service) --group $(service)/pyproject.toml:dev --group $(service)/pyproject.toml:test)
	touch $@

install: $(VENV)/.installed  ## create .venv with every service, dev and test tools

run: install  ## the local hive: AGENTS=2 agents on an embedded Redis (ENV=CartPole-v1 for a quick one)
	$(BIN)/python -m borg_game.hive --agents $(AGENTS) $(if $(ENV),--env-id $(ENV))

test: install  ## every test, against real servers on loopback
	cd game && ../$(BIN)/python -m pytest

lint: install  ## ruff and mypy --strict on every service
	$(BIN)/ruff check $(SERVICES)
	$(BIN)/ruff format --check $(SERVICES)
	$(foreach service,$(SERVICES),(cd $(service) && ../$(BIN)/mypy src tests) &&) true

proto: install  ## regenerate the Python code of proto/transition.proto
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=game/src/borg_game --pyi_out=game/src/borg_game proto/transition.proto

lock: install  ## re-pin constraints.txt from the current environment
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^borg-' > constraints.txt

clean:  ## remove local run state (embedded Redis data, logs); keeps runs/ and models/
	rm -rf .hive
