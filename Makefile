# roomfeed: the two commands of the README are `make run` and `make test`.

GO            ?= go
GO_TEST_FLAGS ?= -race -count=1 -timeout 25m
BIN           ?= bin/roomfeed

.PHONY: run build test test-go test-fuzz test-web web web-deps services vet fmt bench bench-go soak clean

## run: build the web app (when Node.js is installed) and start the embedded default on 127.0.0.1:8080
run: web
	$(GO) run ./cmd/roomfeed

## build: the web app and a static, trimmed binary in bin/
build: web
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/roomfeed

## test: the whole suite: Go (with -race, against real SQLite, PostgreSQL and Redis), Vitest, headless Chromium
test: vet test-go test-fuzz test-web

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './web/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test-go:
	env $$(scripts/test-services.sh) ROOMFEED_TEST_REQUIRE_SERVICES=1 $(GO) test $(GO_TEST_FLAGS) ./...

# Each fuzz target runs a fixed number of inputs on top of its committed
# seeds (which `go test` already runs as ordinary tests). A count, not a
# duration: Go 1.26's fuzz coordinator can fail a duration-bounded run with
# a spurious "context deadline exceeded" when the time runs out under load
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 60000x
# FuzzRequest sends each input as an HTTP request to two servers (SQLite,
# PostgreSQL + Redis), about a hundred times slower per input than the others.
FUZZTIME_REQUEST ?= 20000x
test-fuzz:
	env $$(scripts/test-services.sh) ROOMFEED_TEST_REQUIRE_SERVICES=1 \
	  $(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME_REQUEST) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzAppendEvent$$' -fuzztime $(FUZZTIME) ./sse
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./sse
	$(GO) test -run '^$$' -fuzz '^FuzzParseCursor$$' -fuzztime $(FUZZTIME) ./sse
	$(GO) test -run '^$$' -fuzz '^FuzzParseComposite$$' -fuzztime $(FUZZTIME) ./sse
	$(GO) test -run '^$$' -fuzz '^FuzzMerge3$$' -fuzztime $(FUZZTIME) ./internal/jsonmerge
	$(GO) test -run '^$$' -fuzz '^FuzzPatch$$' -fuzztime $(FUZZTIME) ./internal/jsonmerge

# test-web: Vitest (the editor and the packages in web/packages), the
# packages' size budget, Chromium e2e, and the stranger test (npm pack, a
# fresh project outside web/, tsc, a real server, Chromium).
test-web: web-deps
	cd web && npm test
	cd web && npm run size
	cd web && npm run test:e2e
	cd web && npm run test:pack

web-deps:
	@command -v npm >/dev/null || { echo "npm is required for the web tests (Node.js 20+)"; exit 1; }
	@if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
	  cd web && npm ci --no-audit --no-fund; fi

web:
	@if command -v npm >/dev/null; then \
	  $(MAKE) --no-print-directory web-deps && cd web && npm run build; \
	else echo "npm not found: serving without the web app (install Node.js 20+ for the editor)"; fi

services:
	scripts/test-services.sh

## soak: a day of churn in minutes (faults.TestSoak; SOAK=10m by default; make test runs 30s of it)
SOAK ?= 10m
soak:
	env $$(scripts/test-services.sh) ROOMFEED_TEST_REQUIRE_SERVICES=1 ROOMFEED_SOAK=$(SOAK) \
	  $(GO) test -race -count=1 -timeout 0 -run '^TestSoak$$' -v ./faults/

## bench: the benchmark tool (docs/performance.md); BENCH_FLAGS=--full for longer phases
bench:
	scripts/bench.sh $(BENCH_FLAGS)

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./sse/ ./feed/... ./repo/...

clean:
	rm -rf bin web/dist
