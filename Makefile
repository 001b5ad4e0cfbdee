# voicescrub — every target installs what it needs first (`make setup`), so a fresh clone works.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LAKE    ?= lake
LAKES   := lakes
SF      ?= 1
SEED    ?= 42
LAYOUT  ?= date
WORKERS ?= 0

.DEFAULT_GOAL := help
.PHONY: help setup test lint generate sql bench bench-generate lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv from the pinned requirements.lock

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pipeline.kernels  # numba's loops compiled into its cache, once
	@touch $@

# One worker per core (pytest-xdist), a whole test file per worker (a file's module-scoped
# lakes are built once), in tests/conftest.py's order: the longest files first.
test: setup ## run the test suite
	$(BIN)/python -m pytest -q -n auto --maxprocesses 8 --dist loadfile --no-loadscope-reorder

lint: setup ## ruff
	$(BIN)/ruff check .

generate: setup ## generate a lake: make generate LAKE=lake SF=1 LAYOUT=date
	$(BIN)/voicescrub generate --out $(LAKE) --sf $(SF) --seed $(SEED) --layout $(LAYOUT) --workers $(WORKERS)

sql: setup ## the DuckDB shell over the lake's views: make sql LAKE=lake
	$(BIN)/voicescrub views --lake $(LAKE) --db $(LAKE).duckdb
	$(BIN)/duckdb $(LAKE).duckdb

bench-generate: setup ## benchmark the generator against DuckDB dbgen and Faker
	$(BIN)/python -m pytest bench/test_generate_bench.py --benchmark-only -q -s

# Only what the caller set reaches the benchmark (SF above has a default for `generate`).
BENCH_VARS = $(foreach v,PROFILE SF STRATEGIES BATCHES LAYOUTS ROUNDS,\
	$(if $(filter command line environment,$(origin $(v))),$(v)="$($(v))"))

bench: setup ## the scrub benchmark: make bench [PROFILE=quick|default|full] [SF= STRATEGIES= BATCHES= LAYOUTS= ROUNDS=]
	$(BENCH_VARS) $(BIN)/voicescrub bench

lock: ## re-pin requirements.lock from pyproject.toml (needs network to PyPI)
	$(PYTHON) -m pip install --quiet uv && $(PYTHON) -m uv pip compile pyproject.toml --group dev \
		--generate-hashes --python-version 3.11 --no-header -o requirements.lock

clean: ## remove .venv, generated lakes and results
	rm -rf $(VENV) $(LAKE) $(LAKES) bench/results .pytest_cache .ruff_cache .benchmarks
