# One-command entry points. Each target creates .venv and installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# avsc + kafkajs from the npm registry, for the tests that use a non-Python Avro library and
# Kafka client (they skip, saying why, without node/npm)
NODE_DEPS := tests/node/node_modules/.installed

.PHONY: demo test check lint types pytest pytest-unit pytest-integration pytest-tansu pytest-kafka kafka-jars bench clean node-deps

node-deps: $(NODE_DEPS)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: run the demo on the embedded broker (broker, 2 workers, mixed batch, summary)
demo: $(STAMP)
	$(BIN)/streamtasks demo

## test: lint, type-check, the unit tests once, the integration and fault tests on both brokers
## (the embedded Tansu and Apache Kafka, side by side: Kafka needs Java 17+ and, the first
## time, Maven)
test: lint types pytest

## check: what CI runs — ruff (incl. the layering rules), mypy --strict, every test
## (tests/unit/test_layers.py fails on an upward import or an import cycle)
check: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check streamtasks tests bench
	$(BIN)/ruff format --check streamtasks tests bench

types: $(STAMP)
	$(BIN)/mypy --strict streamtasks

# the two broker passes run side by side (each waits on brokers and worker processes far more
# than it computes); each pass's output is printed whole when it ends
pytest: pytest-unit pytest-integration

pytest-integration: $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target pytest-tansu pytest-kafka

pytest-unit: $(STAMP)
	$(BIN)/pytest -ra tests/unit

pytest-tansu: $(STAMP) $(NODE_DEPS)
	STREAMTASKS_TEST_BROKER=tansu $(BIN)/pytest -ra --durations=15 tests/integration

pytest-kafka: kafka-jars $(NODE_DEPS)
	STREAMTASKS_TEST_BROKER=kafka $(BIN)/pytest -ra --durations=15 tests/integration

## kafka-jars: resolve the pinned Apache Kafka with Maven once (cache: $$STREAMTASKS_BROKER_CACHE)
kafka-jars: $(STAMP)
	$(BIN)/python -c "from streamtasks.dev.kafka import ensure_kafka_jars as e; print(e())"

$(NODE_DEPS): tests/node/package.json
	@if command -v npm >/dev/null 2>&1; then \
		npm install --no-audit --no-fund --prefix tests/node && touch $(NODE_DEPS); \
	else echo "npm not found: the Node (avsc/kafkajs) tests will be skipped"; fi

## bench: throughput and latency against a raw confluent-kafka baseline
bench: $(STAMP)
	$(BIN)/python bench/run.py --broker tansu
	$(BIN)/python bench/run.py --broker kafka

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
