# Aegis — build, test and try it. `make demo` and `make test` are the two
# commands a fresh clone needs; everything else is for development.

GO            ?= go
BUILD         := build
WASM          := $(BUILD)/aegis-filter.wasm
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME      ?= 60s
# Packages that are compiled into the wasm filter and must stay wasip1-clean.
WASM_PKGS     := ./engine/... ./dlp/... ./input/... ./decide/... ./bundle/... ./keys/... ./token/... ./filter/...

.PHONY: all build filter cli test test-wasm check lint fmt demo tour fuzz bench microbench microbench-wasm e2e e2e-envoy interop clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: cli filter ## build/aegis and build/aegis-filter.wasm

cli: ## the aegis CLI
	@mkdir -p $(BUILD)
	$(GO) build -trimpath -o $(BUILD)/aegis ./cmd/aegis

filter: ## the proxy-wasm filter module (standard Go toolchain, no TinyGo), then binaryen wasm-opt -Oz
	@mkdir -p $(BUILD)
	GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -ldflags='-s -w' -buildmode=c-shared -o $(BUILD)/aegis-filter.go.wasm ./filter
	./scripts/wasm-opt.sh $(BUILD)/aegis-filter.go.wasm $(WASM)

test: build check ## vet, wasip1 cross-build, every test (fuzz corpora included), then test-wasm
	$(GO) test -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory test-wasm

test-wasm: ## the tests of every package the filter links, as wasip1 binaries on wazero
	./scripts/test-wasm.sh -count=1 -timeout 10m

check: ## go vet and the wasip1 cross-build of everything the filter links
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet $(WASM_PKGS)

lint: check ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

demo: ## the whole system on loopback: control plane, edge gateways, tools, scripted agents
	$(GO) run ./e2e/demo

tour: build ## the CLI alone: keys, compile + sign, verify, policy tests, single decisions
	./scripts/demo.sh

fuzz: ## run every fuzz target for FUZZTIME each (default 60s)
	./scripts/fuzz.sh $(FUZZTIME)

bench: build ## the benchmark harness: engine vs OPA, filter under wazero, edge vs ext_authz (results in bench/results/)
	./$(BUILD)/aegis bench engine --scaling 10,100,1000 --plot
	./$(BUILD)/aegis bench filter --scaling 10,100,1000 --plot
	./$(BUILD)/aegis bench edge --plot

microbench: ## Go micro-benchmarks of the engine and policies
	$(GO) test -run '^$$' -bench . -benchmem ./engine/... ./policies/...

STEP_BENCH    := -run '^$$' -bench 'Decision$$|Build$$|Verif|Redact' -benchmem -benchtime 2000x
STEP_PKGS     := ./policies ./input ./token ./dlp

microbench-wasm: ## the filter's steps (policies, input, token, dlp) as Go benchmarks, native then as wasip1 on wazero
	$(GO) test $(STEP_BENCH) $(STEP_PKGS)
	./scripts/test-wasm.sh $(STEP_BENCH) -- $(STEP_PKGS)

e2e: ## the end-to-end suite alone (real processes, Postgres)
	$(GO) test -count=1 -timeout 15m ./e2e/...

e2e-envoy: build ## the end-to-end scenarios through a real Envoy (needs envoy on PATH)
	@if ! command -v envoy >/dev/null; then echo "e2e-envoy: no envoy binary on PATH; skipped (the configs are still checked by go test ./envoy/...)"; exit 0; fi; \
	echo "e2e-envoy: envoy found, but the scenarios are not yet wired to drive it (see docs/envoy.md)"; exit 1

interop: cli ## verify a signed bundle with openssl and cosign (builds cosign into .cache/ once)
	./scripts/interop.sh

clean:
	rm -rf $(BUILD)
