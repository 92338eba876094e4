# Every set-up step lives here, so a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed
# The official AsyncAPI parser, which tests/test_asyncapi.py runs over `typed-ss asyncapi` output: a
# package of its own (about 170 packages), so the browser client's install stays two packages.
ASYNCAPI := tools/asyncapi
ASYNCAPI_STAMP := $(ASYNCAPI)/node_modules/.installed

# Debian packages the tests need (chromium: the browser tests; redis-server and nats-server: the brokers
# the multihome suites run, a Redis Cluster included; Go and gorilla/websocket: the benchmark's
# Go server, which tests/test_benchmarks.py builds and runs); installed only when missing.
SYSTEM_PACKAGES := chromium redis-server nats-server golang-go golang-github-gorilla-websocket-dev
# The benchmarks' extra packages (valgrind: the callgrind instruction counts; Debian's Go and
# gorilla/websocket: the Go server the Go original is measured by, benchmarks/goserver.py), not
# installed by `make test`.
BENCH_SYSTEM_PACKAGES := redis-server nats-server valgrind golang-go golang-github-gorilla-websocket-dev
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: setup system-packages demo test lint typecheck pytest pytest-native jstest clean constraints proto dist \
	bench bench-quick bench-system-packages

setup: $(STAMP) $(JS_STAMP) $(ASYNCAPI_STAMP)

# uv is bootstrapped into its own small venv so that syncing .venv never uninstalls it.
$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

# constraints.txt pins every package exactly (regenerate with `make constraints`).
$(STAMP): pyproject.toml constraints.txt | $(UV)
	test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(PY) --constraints constraints.txt -e '.[all]' --group dev
	touch $@

# The browser client's test dependencies, exactly as package-lock.json pins them.
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# --ignore-scripts: the parser needs no install script, and one of its dependencies (@scarf/scarf)
# has one that reports the installation over the network.
$(ASYNCAPI_STAMP): $(ASYNCAPI)/package.json $(ASYNCAPI)/package-lock.json
	cd $(ASYNCAPI) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

system-packages:
	scripts/ensure-system-packages $(SYSTEM_PACKAGES)

# Every group is compiled (the benchmarks' `bench` too), so one file pins everything; `make test`
# installs only what it names.
constraints: | $(UV)
	$(UV) pip compile pyproject.toml --all-extras --group dev --group bench --no-header --no-annotate \
		--python-version 3.11 -o constraints.txt

# The sdist and the wheel in $(DIST) (`make dist DIST=/elsewhere` builds elsewhere), checked by twine.
# `uv build` builds the wheel from the sdist, so a file the wheel needs and the sdist lacks fails here;
# hatchling is pinned by constraints.txt. The browser client is packed separately: `cd clients/js && npm pack`.
DIST := dist

dist: $(STAMP)
	rm -f $(DIST)/typed_ss-*.tar.gz $(DIST)/typed_ss-*.whl
	$(UV) build --quiet --build-constraint constraints.txt --out-dir $(DIST)
	$(VENV)/bin/twine check --strict $(DIST)/typed_ss-*

# The gRPC backend's generated code (typed_ss/backends/_grpc/) from proto/; committed, and checked by a test.
proto: $(STAMP)
	$(PY) scripts/gen_proto.py

# Where `make demo` serves: `make demo PORT=9000`, `make demo HOST=0.0.0.0 PORT=9000` (set on the
# command line; HOST and PORT in the environment are ignored, as a shell may set HOST to its hostname).
HOST := 127.0.0.1
PORT := 8080

# The chat demo on the native transport, its page and files served by its Starlette app beside it
# (`python -m examples.chat.app` serves the same under uvicorn).
demo: $(STAMP)
	$(VENV)/bin/typed-ss serve examples.chat.app:ss --app examples.chat.app:app --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The Python suites on every core (pytest-xdist: a worker process per core, each taking tests from the
# others once its own are done), listing the slowest; tests/README.md says why that is safe. The
# generator's tests run tsc and node from clients/js, and the AsyncAPI tests the parser in
# tools/asyncapi, so their packages come first.
# `make pytest PYTEST_ARGS='-m "not slow"'` runs the quick loop; PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
PYTEST_ARGS ?=

pytest: $(STAMP) $(JS_STAMP) $(ASYNCAPI_STAMP) system-packages
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

# The live suites again, over the native transport (typed_ss.serve) instead of uvicorn: every suite that
# serves through tests/support.py's `running` or tests/server_process.py (see tests/README.md).
NATIVE_SERVES := running[(]|server_process[(]
NATIVE_SUITES = $(shell grep -l -E '$(NATIVE_SERVES)' tests/test_*.py tests/*/test_*.py)

pytest-native: $(STAMP) $(JS_STAMP) $(ASYNCAPI_STAMP) system-packages
	TYPED_SS_TRANSPORT=native $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=5 \
		$(PYTEST_ARGS) $(NATIVE_SUITES)

# The JS client's type check (tsc: ss.d.ts against ss.js, ss-typed.d.ts against ss-typed.js), its unit
# tests, and its integration tests against a real typed-ss server from .venv: all in `npm test`.
jstest: $(STAMP) $(JS_STAMP)
	cd $(JS) && npm test

# The examples' generated clients: the typed chat's (examples/typed_chat/static/generated) and the calls
# example's Python module (examples/calls/generated/ss_client.py). `make codegen` refreshes them after a
# change to clients/js, to the Python generator or to the examples' events; `make test` fails while stale.
GEN_TYPED_CHAT := $(VENV)/bin/typed-ss gen-client examples.typed_chat.app:ss \
	--out examples/typed_chat/static/generated --lang js
GEN_CALLS := $(VENV)/bin/typed-ss gen-client examples.calls.app:ss \
	--out examples/calls/generated --lang py
.PHONY: codegen codegen-check

codegen: $(STAMP)
	$(GEN_TYPED_CHAT)
	$(GEN_CALLS)

codegen-check: $(STAMP)
	$(GEN_TYPED_CHAT) --check
	$(GEN_CALLS) --check

test: lint typecheck codegen-check pytest pytest-native jstest

# The benchmark suite (benchmarks/README.md): the `bench` dependency group on top of the test setup.
$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(UV) pip install --quiet --python $(PY) --constraints constraints.txt --group bench
	touch $@

bench-system-packages:
	scripts/ensure-system-packages $(BENCH_SYSTEM_PACKAGES)

# Full sizes (10,000 idle connections, fan-out to 10,000, presence of 10,000 sockets in one room on 3
# instances, 8 instances on each of Redis, Redis Cluster, NATS and the gRPC mesh), 5 repetitions
# (presence and scale-out: 3): over half an hour.
bench: $(BENCH_STAMP) bench-system-packages
	$(PY) -m benchmarks full

# Smaller sizes and one repetition, in a few minutes (the scale-out scenario alone takes about 80 s).
bench-quick: $(BENCH_STAMP) bench-system-packages
	$(PY) -m benchmarks quick

clean:
	rm -rf $(VENV) .uv .mypy_cache .ruff_cache .pytest_cache $(JS)/node_modules $(ASYNCAPI)/node_modules
