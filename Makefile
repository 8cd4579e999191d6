# gridloop: two commands do all set-up on a fresh machine — `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= var

.PHONY: run test lint typecheck unit bench fuzz clean system-deps kafka-jars

# The virtualenv is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gridloop needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## make run: simulate one day of Yuanqu into a fresh embedded store, then serve the API on it (prints the URL
## and demo tokens; Ctrl-C stops it). PORT=8311 by default.
## make run MODE=kafka: the same day through a local Kafka broker: relay, project from Kafka, board.
## make run MODE=distributed: the same on PostgreSQL (a local cluster) and the broker (docs/deploy.md).
MODE ?= embedded
ifeq ($(MODE),kafka)
run: $(VENV)/.installed-run kafka-jars
	$(BIN)/gridloop --data-dir $(DATA) kafka down
	rm -rf $(DATA)/kafka
	$(BIN)/gridloop --data-dir $(DATA) kafka up
	GRIDLOOP_MODE=kafka $(BIN)/gridloop --data-dir $(DATA) simulate --preset yuanqu --days 1 --fresh
	GRIDLOOP_MODE=kafka $(BIN)/gridloop --data-dir $(DATA) relay
	GRIDLOOP_MODE=kafka $(BIN)/gridloop --data-dir $(DATA) project --rebuild all
	GRIDLOOP_MODE=kafka $(BIN)/gridloop --data-dir $(DATA) board --summary --now 2099-01-01T00:00+08:00
	@echo "broker left running: $(BIN)/gridloop --data-dir $(DATA) kafka status | down"
else ifeq ($(MODE),distributed)
# PostgreSQL runs as the postgres user: DATA must be reachable by it (not under a 0700 home; e.g. DATA=/var/tmp/gl).
run: $(VENV)/.installed-run kafka-jars
	$(BIN)/gridloop --data-dir $(DATA) kafka down
	rm -rf $(DATA)/kafka
	$(BIN)/gridloop --data-dir $(DATA) kafka up
	$(BIN)/gridloop --data-dir $(DATA) postgres up
	GRIDLOOP_MODE=distributed $(BIN)/gridloop --data-dir $(DATA) simulate --preset yuanqu --days 1 --fresh
	GRIDLOOP_MODE=distributed $(BIN)/gridloop --data-dir $(DATA) relay
	GRIDLOOP_MODE=distributed $(BIN)/gridloop --data-dir $(DATA) project --rebuild all
	GRIDLOOP_MODE=distributed $(BIN)/gridloop --data-dir $(DATA) board --summary --now 2099-01-01T00:00+08:00
	@echo "left running: $(BIN)/gridloop --data-dir $(DATA) postgres status | down, and kafka status | down"
else
PORT ?= 8311
run: $(VENV)/.installed-run
	$(BIN)/gridloop --data-dir $(DATA) simulate --preset yuanqu --days 1 --fresh
	rm -f $(DATA)/tokens.toml
	$(BIN)/gridloop --data-dir $(DATA) serve --port $(PORT) --demo-tokens
endif

## make test: lint, type-check and run the whole suite.
test: lint typecheck unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev system-deps kafka-jars
	$(BIN)/pytest -q

# What the integration tests run on besides Python: Java and Maven for the local Kafka broker, kcat to look at it;
# Debian's Chromium for the console's end-to-end tests (tests/e2e: Playwright drives /usr/bin/chromium);
# PostgreSQL for the distributed mode (the tests start a throw-away cluster as the postgres user).
SYSTEM_DEPS := java:default-jre-headless mvn:maven kcat:kcat chromium:chromium
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
system-deps:
	@for dep in $(SYSTEM_DEPS); do \
	  command -v $${dep%%:*} >/dev/null && continue; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get install -y -q $${dep#*:} || { $$sudo apt-get update -q && $$sudo apt-get install -y -q $${dep#*:}; } \
	    || { echo "make: $${dep%%:*} is missing: install Debian's $${dep#*:}" >&2; exit 1; }; \
	done
	@# PostgreSQL's server programs (distributed mode, its tests): Debian keeps them off PATH, in /usr/lib/postgresql.
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get install -y -q postgresql || { $$sudo apt-get update -q && $$sudo apt-get install -y -q postgresql; } \
	    || { echo "make: PostgreSQL is missing: install Debian's postgresql" >&2; exit 1; }; }
	@# A font with Chinese glyphs, so the report charts name units in 中文 (they fall back to codes without one).
	@test -e $(CJK_FONT) || { sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get install -y -q fonts-wqy-microhei || echo "make: no Chinese font; charts label units by code" >&2; \
	  rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/matplotlib; }

# The local broker's jars from Maven Central, cached in ~/.cache/gridloop/kafka (fetched once).
kafka-jars: $(VENV)/.installed-run system-deps
	$(BIN)/gridloop kafka fetch

## make fuzz: the fuzz tests with a far larger budget than CI's (docs/fuzzing.md): the command state machine, the
## Avro decoder and the Kafka worker fed garbage (hypothesis profile "fuzz", FUZZ_PROPERTY_EXAMPLES examples each),
## then schemathesis over the HTTP API (FUZZ_EXAMPLES requests per operation and mode; CI sends 10). Prints a
## summary; the whole run is in $(DATA)/fuzz.log, failing examples are kept in .hypothesis/ and replayed first.
FUZZ_PROPERTY_EXAMPLES ?= 500
FUZZ_EXAMPLES ?= 40
fuzz: $(VENV)/.installed-dev
	@mkdir -p $(DATA)
	@start=$$(date +%s); \
	HYPOTHESIS_PROFILE=fuzz GRIDLOOP_FUZZ_PROPERTY_EXAMPLES=$(FUZZ_PROPERTY_EXAMPLES) GRIDLOOP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	  $(BIN)/pytest -q -p no:cacheprovider --hypothesis-show-statistics tests/fuzz tests/api/test_schemathesis.py \
	  >$(DATA)/fuzz.log 2>&1; status=$$?; \
	echo "make fuzz: $$(( $$(date +%s) - start )) s, exit $$status (log: $(DATA)/fuzz.log)"; \
	grep -E '^tests/fuzz/.*::|passing, .* failing|Stopped because|subtests? passed|^[0-9]+ (passed|failed)|^FAILED' \
	  $(DATA)/fuzz.log | sed -e 's/^  *- /  /'; \
	exit $$status

## make bench: each path against the raw library doing the same work (see docs/benchmarks.md).
bench: $(VENV)/.installed-run
	$(BIN)/gridloop bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) $(DATA) .mypy_cache .ruff_cache .pytest_cache .hypothesis
