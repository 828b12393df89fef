# Switchboard: `make run` starts the server, `make test` runs every test.
GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin

.PHONY: run build test test-go test-e2e lint bench clean

run: ## start the server on $PORT (default 3001)
	$(GO) run ./cmd/switchboard $(ARGS)

build: ## build bin/switchboard
	$(GO) build -trimpath -o $(BIN)/switchboard ./cmd/switchboard

test: lint test-go test-e2e ## every test: lint, Go (race detector), the npm socket.io-client suite

test-go:
	$(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 15s ./messages

test-e2e: build
	cd test/e2e && npm ci --no-audit --no-fund --loglevel=error && SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard npm test

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install $(STATICCHECK)
	$(GOBIN)/staticcheck ./...

bench: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN) test/e2e/node_modules
