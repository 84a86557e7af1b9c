# protoc-gen-pygateway — run `make help` for the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GEN ?= gen
FUZZ_SECONDS ?= 60
STAMP := $(VENV)/.installed

.PHONY: help install generate demo test coverage soak bench lint typecheck golden fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the plugin with its dev tools

generate: $(STAMP) ## generate the demo gateway (pb2 + gateway modules + OpenAPI documents) from testdata into gen/
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m protoc_gen_pygateway.protoc -Itestdata/protos --python_out=$(GEN) --pyi_out=$(GEN) \
		--grpc_python_out=$(GEN) --pygateway_out=$(GEN) --pygateway_opt=openapi=true \
		testdata/protos/shop/v1/shop.proto testdata/protos/shop/v1/feed.proto
	$(PY) -m protoc_gen_pygateway.openapi.merge -o $(GEN)/openapi.json \
		$(GEN)/shop/v1/shop.openapi.json $(GEN)/shop/v1/feed.openapi.json

demo: generate ## run the example backend + generated gateway, show real requests (DEMO_ARGS=--once to exit)
	$(PY) -m demo.run --gen $(GEN) $(DEMO_ARGS)

# Pass 1: everything with the native transport (the default). Pass 2: the tests marked `gateway`
# (tests/gateway_marker.py: every test that serves a generated gateway, marked automatically) with grpcio.
# Both always run.
test: $(STAMP) ## the whole suite on the native transport (the default), then every test that serves a gateway again on grpcio
	@status=0; \
	echo "== make test, pass 1 of 2: the whole suite, gRPC transport native"; \
	PYGATEWAY_TRANSPORT=native $(PY) -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	echo "== make test, pass 2 of 2: the tests that serve a gateway (-m gateway), gRPC transport grpcio"; \
	PYGATEWAY_TRANSPORT=grpcio $(PY) -m pytest -q -m gateway $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	exit $$status

test-native: $(STAMP) ## the whole suite (not only -m gateway) with every served gateway on native (PYGATEWAY_TRANSPORT=native)
	PYGATEWAY_TRANSPORT=native $(PY) -m pytest -q $(PYTEST_ARGS)

COVERAGE_DIR := $(CURDIR)/.coverage-data
coverage: $(STAMP) ## line + branch coverage of the plugin and the runtime over the whole suite (servers included; htmlcov/)
	rm -rf $(COVERAGE_DIR) htmlcov && mkdir -p $(COVERAGE_DIR)
	-PYGATEWAY_COVERAGE_DIR=$(COVERAGE_DIR) $(VENV)/bin/coverage run -m pytest -q $(PYTEST_ARGS)  # report even on a failure
	PYGATEWAY_COVERAGE_DIR=$(COVERAGE_DIR) $(VENV)/bin/coverage combine -q
	$(PY) -m tests.coverage_map --remap $(COVERAGE_DIR)/.coverage
	PYGATEWAY_COVERAGE_DIR=$(COVERAGE_DIR) $(VENV)/bin/coverage html -q --include='protoc_gen_pygateway/*'
	PYGATEWAY_COVERAGE_DIR=$(COVERAGE_DIR) $(VENV)/bin/coverage report --include='protoc_gen_pygateway/*' --skip-covered
	$(PY) -m tests.coverage_map --summary $(COVERAGE_DIR)/.coverage

SOAK_ARGS ?= --streams 1000 --seconds 60
soak: $(STAMP) ## hold 1,000 server streams x 60 s through the gateway: loss/order, RSS per stream, CPU (SOAK_ARGS=...)
	timeout 600 $(PY) -m tests.soak $(SOAK_ARGS)

BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## ours (+metrics, 2 workers, native, gRPC-Web/Connect) vs Go grpc-gateway + baselines: CPU/req, streams, RSS, codegen, targets, metrics pairs (~15 min, stopped at 20; BENCH_ARGS=--quick: ~5 min)
	timeout 1200 $(PY) -m bench.run $(BENCH_ARGS)

bench-workers: $(BENCH_STAMP) ## the serve command with --workers 1 and 2 in one run: req/s, p99, CPU/req (~1 min)
	timeout 600 $(PY) -m bench.workers $(BENCH_ARGS)

lint: $(STAMP) ## ruff + mypy --strict on the plugin, demo and tests
	$(VENV)/bin/ruff check protoc_gen_pygateway demo tests
	$(VENV)/bin/ruff format --check protoc_gen_pygateway demo tests
	$(VENV)/bin/mypy protoc_gen_pygateway

golden: $(STAMP) ## refresh the golden generated outputs under testdata/golden
	$(PY) -m tests.golden --update

fuzz: $(STAMP) ## fuzz the generated gateway's request path (atheris) for FUZZ_SECONDS; crashes -> tests/fuzz_corpus/crashes/
	$(PY) -m pip install --quiet -e '.[fuzz]' || echo "atheris could not be installed: the hypothesis driver runs instead"
	mkdir -p .fuzz/corpus tests/fuzz_corpus/crashes
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m tests.fuzz_gateway -max_total_time=$(FUZZ_SECONDS) -timeout=20 \
		-dict=tests/fuzz_gateway.dict -artifact_prefix=tests/fuzz_corpus/crashes/ .fuzz/corpus tests/fuzz_corpus/seeds

clean: ## remove generated and cached files
	rm -rf $(GEN) .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz .coverage-data htmlcov
