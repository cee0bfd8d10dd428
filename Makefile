# Parley: the two commands are `make dev` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
GENERATED := internal/gen internal/store/sqlcgen

.PHONY: soak fuzz dev web test web-test web-deps node-deps generate check-generated lint vet fmt build bench docker clean-dev help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

dev: ## run the API locally with a private Postgres, a dev signing key and no accounts
	$(GO) build -o bin/parley ./cmd/parley
	exec bin/parley dev

web: web-deps ## serve the chat page on http://localhost:5173 against `make dev`
	npm --prefix web run dev

test: check-generated lint node-deps ## every check and every test (what CI runs)
	$(GO) test -race -count=1 ./...
	@# TestWaitingStacks checks a production build's stack sizes, which -race changes.
	$(GO) test -count=1 -run '^TestWaitingStacks$$' ./internal/rpc/
	@# Benchmarks are not tests: compile them (and the bench-tagged harness), run none.
	$(GO) vet -tags bench ./...
	$(MAKE) --no-print-directory web-test

web-test: web-deps ## the TypeScript client's Node tests and the page's browser test, against a real parley dev
	npm --prefix web test

QSTASH_NODE := internal/qstash/testdata/node

node-deps: $(QSTASH_NODE)/node_modules/.package-lock.json ## install the pinned npm packages of the QStash cross-check

web-deps: web/node_modules/.package-lock.json ## install the web client's pinned npm packages

web/node_modules/.package-lock.json: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund
	@touch $@

# npm ci writes node_modules/.package-lock.json; reinstall when the lock file is newer.
$(QSTASH_NODE)/node_modules/.package-lock.json: $(QSTASH_NODE)/package-lock.json
	npm ci --prefix $(QSTASH_NODE) --no-audit --no-fund
	@touch $@

bench: ## measure against same-run baselines; rewrites BENCHMARKS.md and bench/ttft.svg (~5 min)
	$(GO) test -tags bench -run TestReport -count=1 -timeout 15m -v ./internal/bench/

SOAK_COUNT ?= 3

soak: ## the reliability suite, SOAK_COUNT times at a larger size; rewrites RELIABILITY.md (~10 min)
	PARLEY_SOAK=1 SOAK_COUNT=$(SOAK_COUNT) PARLEY_RELIABILITY_REPORT=$(CURDIR)/RELIABILITY.md \
	  $(GO) test -race -count=$(SOAK_COUNT) -timeout 90m -v ./internal/reliability/ 2>&1 | grep -E '^(=== RUN|--- |\s+--- |PASS|FAIL|ok)|_test.go:' 

FUZZTIME ?= 2m

fuzz: ## run every Go fuzz target for FUZZTIME each (their seed corpora already run in make test)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

generate: web-deps ## regenerate protobuf/Connect (Go and TypeScript) and sqlc code with pinned tools
	$(GO) tool buf format -w
	$(GO) tool buf generate
	$(GO) tool buf generate --template web/buf.gen.yaml
	$(GO) tool sqlc generate

check-generated: web-deps ## fail when generated code is stale, buf lint fails or buf format would change a file
	$(GO) tool buf lint
	$(GO) tool buf format --diff --exit-code
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(GO) tool buf generate --output "$$tmp"; \
	  diff -r "$$tmp/internal/gen" internal/gen || { echo "internal/gen is stale: run make generate"; exit 1; }; \
	  $(GO) tool buf generate --template web/buf.gen.yaml --output "$$tmp"; \
	  diff -r "$$tmp/web/src/gen" web/src/gen || { echo "web/src/gen is stale: run make generate"; exit 1; }
	$(GO) tool sqlc diff || { echo "internal/store/sqlcgen is stale: run make generate"; exit 1; }
	$(GO) tool sqlc vet

lint: vet fmt ## go vet and gofmt

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

build: ## build the static binary into bin/parley
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/parley ./cmd/parley

docker: ## build the container image (needs a Docker engine)
	docker build -t parley .

clean-dev: ## forget the dev database and signing key
	rm -rf .parley
