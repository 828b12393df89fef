# Switchboard: `make run` starts the server, `make test` runs every test.
GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin

.PHONY: run build test test-go test-e2e test-browser lint bench clean loadtest

run: ## start the server on $PORT (default 3001)
	$(GO) run ./cmd/switchboard $(ARGS)

build: ## build bin/switchboard
	$(GO) build -trimpath -o $(BIN)/switchboard ./cmd/switchboard

test: lint test-go test-e2e test-browser ## every test: lint, Go (race detector), the npm socket.io-client suite, the pages in Chromium

# One package at a time: the load tool's 2,400-socket test would starve the
# contract suites of CPU on a 2-core machine.
test-go:
	$(GO) test -race -count=1 -p 1 ./...
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 15s ./messages
	$(GO) test -run '^$$' -fuzz FuzzFrameReader -fuzztime 10s ./transport/ws
	$(GO) test -run '^$$' -fuzz FuzzEnginePacket -fuzztime 10s ./transport
	$(GO) test -run '^$$' -fuzz FuzzMatchesEncodingJSON -fuzztime 10s ./internal/jsonscan

test-e2e: build
	cd test/e2e && npm ci --no-audit --no-fund --loglevel=error && SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard npm test
	@# The guide's contract exactly, with continuity off.
	cd test/e2e && SWITCHBOARD_RECOVERY_WINDOW=0 SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard node --test --test-concurrency=1 contract.test.mjs
	@# Routing as most widgets and CRMs connect: polling, then the upgrade.
	cd test/e2e && E2E_TRANSPORTS=polling,websocket SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard node --test --test-concurrency=1 routing.test.mjs

# The pages (web/) in the system's Chromium, driven by playwright-core:
# widget and console chatting, two consoles, the dashboard under the load
# tool, production refusing without a token. Screenshots land in
# test/browser/artifacts; UPDATE_DOCS_IMG=1 also refreshes docs/img.
test-browser: build ## the pages in real Chromium (needs chromium and redis-server: apt-get install -y chromium redis-server)
	$(GO) build -trimpath -o $(BIN)/loadtest ./cmd/loadtest
	cd test/browser && npm ci --no-audit --no-fund --loglevel=error && SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard LOADTEST_BIN=$(CURDIR)/$(BIN)/loadtest npm test

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install $(STATICCHECK)
	$(GOBIN)/staticcheck ./...

# A short load test against a server of this tree, started on a free port
# and stopped after: 200 players and 5 operators for 10 s. LOADTEST_ARGS
# adds flags (they win), e.g. LOADTEST_ARGS='--players 2000 --rate 0.1'.
loadtest: build ## short load test against a local server (reports in bin/)
	$(GO) build -trimpath -o $(BIN)/loadtest ./cmd/loadtest
	@log=$$(mktemp); \
	PORT=0 SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_LOG_LEVEL=error $(BIN)/switchboard >$$log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -f $$log' EXIT; \
	for i in $$(seq 100); do addr=$$(sed -n 's/^  listening  //p' $$log); [ -n "$$addr" ] && break; sleep 0.1; done; \
	if [ -z "$$addr" ]; then cat $$log; exit 1; fi; \
	$(BIN)/loadtest --url http://127.0.0.1:$${addr##*:} --players 200 --operators 5 --rate 0.5 --reply-chance 0.2 \
		--typing-share 0.3 --duration 10s --slo 'p99<100ms,loss=0' \
		--report $(BIN)/loadtest-report.json --html $(BIN)/loadtest-report.html $(LOADTEST_ARGS)

bench: ## Go benchmarks of the hot paths, then Switchboard and the guide's Node server side by side
	bench/e2e.sh

clean:
	rm -rf $(BIN) test/e2e/node_modules test/browser/node_modules test/browser/artifacts
