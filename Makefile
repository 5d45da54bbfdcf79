# Warden. `make help` lists the targets.
GO        ?= go
BIN       := bin/warden
PKGS      := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/warden
	$(GO) build -o $(BIN) ./cmd/warden

.PHONY: run
run: build ## Start Warden on embedded defaults (data in ./data)
	./$(BIN) serve

.PHONY: deps
deps: ## Install test dependencies (Go modules, npm packages under test/)
	$(GO) mod download
	cd test && npm ci --no-audit --no-fund

.PHONY: test
test: deps ## Run every test with the race detector (unit, integration, end to end)
	$(GO) test -race -count=1 -timeout 25m $(PKGS)
	$(MAKE) test-chart

.PHONY: test-chart
test-chart: ## Render the Helm chart for each values file and decode it strictly (its own module)
	cd deploy/helm/charttest && $(GO) test -count=1 ./...

.PHONY: e2e
e2e: deps build ## Run the end-to-end tests only (test/e2e drives the bin/warden just built)
	WARDEN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 15m ./test/...

.PHONY: lint
lint: ## gofmt, go vet, staticcheck, go mod tidy check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) mod tidy && git diff --exit-code -- go.mod go.sum

.PHONY: bench
bench: build ## Benchmarks: in-process Check, the gRPC load generator at 1/4/16 callers (three shapes, with peak RSS); with PLUGIN=..., bench-anchor too
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./authz ./policy ./internal/mcp
	$(GO) run ./test/loadgen -warden $(BIN)
	$(GO) run ./test/loadgen -warden $(BIN) -distinct 20000
	$(GO) run ./test/loadgen -warden $(BIN) -distinct 20000 -policy args
	@if [ -n "$(PLUGIN)" ]; then $(MAKE) --no-print-directory bench-anchor PLUGIN=$(PLUGIN); fi

.PHONY: bench-anchor
bench-anchor: build ## Warden beside the real opa-envoy-plugin, interleaved, issue-12 mix (PLUGIN=/path/to/opa-envoy-plugin, built outside the repo)
	@test -n "$(PLUGIN)" || { echo "set PLUGIN=/path/to/opa-envoy-plugin (go build ./cmd/opa-envoy-plugin in a clone outside this repository)"; exit 1; }
	$(GO) run ./test/loadgen -warden $(BIN) -anchor $(PLUGIN) -callers 16 -rounds 3

.PHONY: bench-baseline
bench-baseline: ## Same load on a plain OPA ext_authz server (OPA-Envoy plugin stand-in), for the ratio
	$(GO) run ./test/baseline

.PHONY: bench-floor
bench-floor: ## Same load on an allow-everything grpc-go server: what gRPC alone costs here
	$(GO) build -o bin/floor ./test/loadgen/floor
	$(GO) run ./test/loadgen -floor bin/floor

.PHONY: fuzz
fuzz: ## Fuzz the JSON-RPC classifier and Check input handling (60s each)
	$(GO) test -run '^$$' -fuzz FuzzClassify -fuzztime 60s ./internal/mcp
	$(GO) test -run '^$$' -fuzz FuzzCheck -fuzztime 60s ./authz

.PHONY: testdata
testdata: ## Regenerate the xDS golden files (and delete those no input produces)
	$(GO) test ./xds/translate -run TestGolden -update

.PHONY: clean
clean: ## Remove build output (keeps ./data)
	rm -rf bin
