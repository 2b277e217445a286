# Aegis — build, test and try it. `make demo` and `make test` are the two
# commands a fresh clone needs; everything else is for development.

GO            ?= go
BUILD         := build
WASM          := $(BUILD)/aegis-filter.wasm
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME      ?= 60s
# Packages that are compiled into the wasm filter and must stay wasip1-clean.
WASM_PKGS     := ./engine/... ./dlp/... ./input/... ./decide/... ./bundle/... ./keys/... ./token/... ./filter/...

.PHONY: all build filter cli test check lint fmt demo fuzz bench interop clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: cli filter ## build/aegis and build/aegis-filter.wasm

cli: ## the aegis CLI
	@mkdir -p $(BUILD)
	$(GO) build -trimpath -o $(BUILD)/aegis ./cmd/aegis

filter: ## the proxy-wasm filter module (standard Go toolchain, no TinyGo)
	@mkdir -p $(BUILD)
	GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=c-shared -o $(WASM) ./filter

test: build check ## vet, wasip1 cross-build, and every test (fuzz corpora included)
	$(GO) test -count=1 -timeout 15m ./...

check: ## go vet and the wasip1 cross-build of everything the filter links
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet $(WASM_PKGS)

lint: check ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

demo: build ## a scripted tour: keys, compile + sign, verify, policy tests, decisions
	./scripts/demo.sh

fuzz: ## run every fuzz target for FUZZTIME each (default 60s)
	./scripts/fuzz.sh $(FUZZTIME)

bench: ## engine and filter micro-benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./engine/... ./policies/...

interop: cli ## verify a signed bundle with openssl and cosign (builds cosign into .cache/ once)
	./scripts/interop.sh

clean:
	rm -rf $(BUILD)
