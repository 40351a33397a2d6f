# murmur — build, test, demo. See README.md.
GO        ?= go
BIN       := bin
PKGS      := ./...
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/murmur-edge/murmur/agent.Version=$(VERSION)
TEST_IMAGE ?= murmur-workload:test

.PHONY: all build test test-short lint demo test-image workload bench fuzz clean chaos

all: build

build: ## bin/murmur, a static binary
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/murmur ./cmd/murmur

workload: ## bin/workload, the static test workload (sleep, health endpoint, exit codes, CPU burn)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/workload ./testdata/workload

test-image: workload ## FROM scratch image of the test workload (no registry needed)
	@if docker info >/dev/null 2>&1; then \
	  cp $(BIN)/workload testdata/workload/workload.bin && \
	  docker build -q -t $(TEST_IMAGE) -f testdata/workload/Dockerfile testdata/workload && \
	  rm -f testdata/workload/workload.bin; \
	else echo "test-image: no Docker engine answers; skipping image build"; fi

test: build workload test-image ## every test, with the race detector
	MURMUR_BIN=$(CURDIR)/$(BIN)/murmur MURMUR_WORKLOAD_BIN=$(CURDIR)/$(BIN)/workload MURMUR_TEST_IMAGE=$(TEST_IMAGE) \
	  $(GO) test -race -count=1 -timeout 9m $(PKGS)

FAULTS ?= 500
SEED   ?=
chaos: build workload ## the fault campaign on real network stacks (root; docs in cmd/murmur/chaos_test.go): make chaos FAULTS=N SEED=S
	MURMUR_BIN=$(CURDIR)/$(BIN)/murmur MURMUR_WORKLOAD_BIN=$(CURDIR)/$(BIN)/workload MURMUR_REQUIRE_NETNS=1 \
	  MURMUR_CHAOS_FAULTS=$(FAULTS) MURMUR_CHAOS_SEED=$(SEED) \
	  $(GO) test -count=1 -timeout 0 -run '^TestChaosCampaign$$' -v ./cmd/murmur/

test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

demo: build workload ## a local fleet of 5 agents on loopback; Ctrl-C stops them all
	./scripts/demo.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN)
