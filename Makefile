# Borg-DQN: the documented interface. `make run` runs the local hive, `make test` every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AGENTS ?= 2
ENV ?=
# Python projects of the repo, each with src/, tests/ and dev/test dependency groups
# (common: the library both services install).
SERVICES := common game monitor harness
SOAK_MINUTES ?= 30
KAFKA_DEV_PORT ?= 9092
# `make run` appends every agent's training log (JSON lines) here; `make plot` draws it.
TRAINING_LOG ?= runs/training-log.jsonl
PLOT_ARGS ?=
# The tools harness/install-*.sh build (make stack-tools).
TOOLS := $(or $(BORG_CACHE_DIR),$(HOME)/.cache/borg-dqn)/bin
HELM := $(TOOLS)/helm
KUBECHECK := $(TOOLS)/kubecheck

.DEFAULT_GOAL := help
.PHONY: help install run plot test test-docker lint proto lock clean kafka kafka-jars stack-tools up down soak watch docs docs-serve chart

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# One environment for every service of the repo, pinned by constraints.txt (what the images install).
$(VENV)/.installed: $(foreach service,$(SERVICES),$(service)/pyproject.toml) tests/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt \
		$(foreach service,$(SERVICES),-e $(service) --group $(service)/pyproject.toml:dev --group $(service)/pyproject.toml:test) \
		--group game/pyproject.toml:plot --group tests/pyproject.toml:test
	touch $@

install: $(VENV)/.installed  ## create .venv with every service, dev and test tools

run: install  ## the local hive: AGENTS=2 agents on an embedded Redis (ENV=CartPole-v1 for a quick one)
	CONFIG_training_log_file=$(TRAINING_LOG) $(BIN)/python -m borg_game.hive --agents $(AGENTS) $(if $(ENV),--env-id $(ENV))

plot: install  ## learning curves of the newest `make run` (TRAINING_LOG) to a PNG; PLOT_ARGS="--run-id ..."
	$(BIN)/python -m borg_game.plot $(TRAINING_LOG) $(PLOT_ARGS)

# One pytest run per project: each has its own `tests` package and settings.
test: install kafka-jars stack-tools  ## every test, against real servers on loopback
	cd common && ../$(BIN)/python -m pytest
	cd game && ../$(BIN)/python -m pytest
	cd monitor && ../$(BIN)/python -m pytest
	cd harness && ../$(BIN)/python -m pytest
	$(BIN)/python -m pytest tests

# `make watch AGENT=<agent_id>` (default: the best-scoring model), ENV=<env_id> to pick among envs.
AGENT ?=
watch: install  ## play an agent's best model: a window when $DISPLAY is set, else an MP4 (AGENT=, ENV=)
	$(BIN)/python -m borg_game.watch $(if $(AGENT),--agent $(AGENT)) $(if $(ENV),--env $(ENV))

# As root on Debian bookworm: installs and starts Debian's Docker engine (stopped again after),
# builds stand-in base images from Debian packages (harness/docker/README.md), the images with
# `docker compose build`, then runs and checks redis, kafka, 2 CPU agents and the monitor.
test-docker: install kafka-jars stack-tools  ## the stack in a real Docker engine, as users run it (root; docs/full-stack.md)
	$(BIN)/python -m pytest tests/test_stack_in_docker.py -m docker -s

soak: install  ## the local hive, 4 Pong agents for SOAK_MINUTES (30): RSS and Redis memory over time
	$(BIN)/python -m borg_game.soak --minutes $(SOAK_MINUTES) --report .hive/soak-report.json

stack-tools: install  ## Docker Compose, Helm, kubecheck (built with Go) and the Elasticsearch zip for the stack tests (once, into ~/.cache/borg-dqn)
	bash harness/install-compose.sh
	bash harness/install-helm.sh
	bash harness/install-kubecheck.sh
	$(BIN)/python -m borg_harness.search_server --install-only

up: .env  ## the full stack in Docker: AGENTS=2 agents, Kafka, Elasticsearch, Kibana (docs/full-stack.md)
	docker compose up --detach --build --scale game=$(AGENTS)
	@echo "dashboard: http://localhost:5601/app/dashboards#/view/borg-dqn (ready once kibana-setup has exited 0)"

CHART := deploy/helm/borg-dqn
chart: stack-tools  ## lint the Helm chart and validate its manifests against the Kubernetes API types (docs/kubernetes.md)
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --values $(CHART)/values-cpu.yaml
	$(HELM) template hive $(CHART) | $(KUBECHECK)
	$(HELM) template hive $(CHART) --values $(CHART)/values-cpu.yaml | $(KUBECHECK)

down:  ## stop the full stack; its volumes (checkpoints, replay memory, indices) stay
	docker compose down

# .env.example with a fresh random value for each empty *_PASSWORD / *_KEY line (the stack's
# secrets), readable by its owner only. An existing .env is never overwritten.
.env:
	umask 077 && $(PYTHON) -c 'import re, secrets, sys; sys.stdout.write(re.sub(r"^(\w+_(?:PASSWORD|KEY))=$$", lambda m: m.group(1) + "=" + secrets.token_hex(24), open(".env.example").read(), flags=re.M))' > .env.tmp
	mv .env.tmp .env
	@echo "created .env from .env.example, with new random passwords (Kibana: log in as elastic, ELASTIC_PASSWORD in .env)"

kafka-jars: install  ## fetch the Kafka broker jars with mvn (once, into ~/.cache/borg-dqn) for tests and `make kafka`
	$(BIN)/python -m borg_harness.kafka_broker --install-only

kafka: kafka-jars  ## a Kafka broker for development, in the foreground on 127.0.0.1:9092 (KAFKA_DEV_PORT=...)
	$(BIN)/python -m borg_harness.kafka_broker --port $(KAFKA_DEV_PORT) --data-dir .hive/kafka

lint: install  ## ruff and mypy --strict on every service
	$(BIN)/ruff check $(SERVICES) tests
	$(BIN)/ruff format --check $(SERVICES) tests
	$(foreach service,$(SERVICES),(cd $(service) && ../$(BIN)/mypy src tests) &&) true
	cd tests && ../$(BIN)/mypy .

proto: install  ## regenerate the Python code of proto/transition.proto
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=game/src/borg_game --pyi_out=game/src/borg_game proto/transition.proto

# --all: pip, setuptools and wheel too (torch needs setuptools at run time; the images get the pin).
lock: install  ## re-pin constraints.txt from the current environment
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^borg-' > constraints.txt

# --- the documentation site (mkdocs.yml): docs/*.md, with the configuration page generated ---
$(VENV)/.docs-installed: $(VENV)/.installed tests/pyproject.toml
	$(BIN)/python -m pip install --quiet -c constraints.txt --group tests/pyproject.toml:docs
	touch $@

# Never --quiet: it hides the warnings that --strict fails on. NO_MKDOCS_2_WARNING: no banner.
docs: $(VENV)/.docs-installed  ## build the documentation site into site/ (strict: a broken link fails)
	$(BIN)/python -m borg_game.config_reference docs/configuration.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "site built: site/index.html (make docs-serve serves it on 127.0.0.1:8000)"

docs-serve: $(VENV)/.docs-installed  ## serve the documentation on 127.0.0.1:8000, rebuilt on every edit
	$(BIN)/python -m borg_game.config_reference docs/configuration.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

clean:  ## remove local run state (embedded Redis data, logs); keeps runs/ and models/
	rm -rf .hive

# --- benchmarks (docs/benchmarks.md): programs that print ratios measured side by side ---
BENCH_ARGS ?=
.PHONY: bench bench-learn bench-pong bench-scale bench-video bench-tools lint-bench

$(VENV)/.bench-installed: $(VENV)/.installed game/pyproject.toml
	$(BIN)/python -m pip install --quiet -c constraints.txt --group game/pyproject.toml:bench
	touch $@

bench-tools: $(VENV)/.bench-installed  ## the benchmarks' extra tools (SB3, matplotlib, profilers)

bench: install kafka-jars bench-tools  ## replay, agent loop, telemetry vs the 2023 reference -> bench-results.json
	$(BIN)/python game/benchmarks/throughput.py $(BENCH_ARGS)

bench-learn: install bench-tools  ## CartPole: hives of 1, 2, 4 x uniform/prioritized x linear/ape_x vs SB3's DQN, equal own steps, 5 seeds
	$(BIN)/python game/benchmarks/cartpole_learning.py $(BENCH_ARGS)

bench-pong: install bench-tools  ## Pong on one GPU: AGENTS agents to an evaluation mean of 18 (curve PNG + TensorBoard)
	$(BIN)/python game/benchmarks/pong_learning.py --agents $(AGENTS) $(BENCH_ARGS)

bench-video: install  ## what recording evaluation videos costs: Pong and CartPole steps/s off, idle, recording
	$(BIN)/python game/benchmarks/video_recording.py $(BENCH_ARGS)

bench-scale: install  ## N simulated agents (1, 2, 4, 8, ...) on one Redis, then a primary + 2 read replicas (~3 min)
	$(BIN)/python game/benchmarks/scale.py $(BENCH_ARGS)

lint-bench: install  ## mypy --strict on the benchmark programs (ruff checks them with game/)
	cd game && ../$(BIN)/mypy benchmarks
