# murmur — build, test, demo. See README.md.
GO        ?= go
BIN       := bin
PKGS      := ./...
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/murmur-edge/murmur/agent.Version=$(VERSION) -X github.com/murmur-edge/murmur/agent.Commit=$(COMMIT)
TEST_IMAGE ?= murmur-workload:test
# make image: the agent image, for this machine's architecture unless IMAGE_ARCH is
# amd64, arm64 or arm (v7); no emulation is needed, the image has no RUN step.
IMAGE      ?= murmur:$(VERSION)
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
DIST      := dist
# make release: os/arch[/arm version] of every static binary in dist/.
RELEASE_PLATFORMS := linux/amd64 linux/arm64 linux/arm/7

.PHONY: all build test test-short lint demo test-image workload bench fuzz clean chaos check-deploy image release

all: build

build: ## bin/murmur, a static binary
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/murmur ./cmd/murmur

image: ## the agent image FROM scratch (deploy/Dockerfile): the static binary only; IMAGE=name:tag IMAGE_ARCH=arm64
	rm -rf $(BIN)/image && mkdir -p $(BIN)/image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(if $(filter arm,$(IMAGE_ARCH)),GOARM=7) \
	  $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/image/murmur ./cmd/murmur
	docker build -q --no-cache --platform linux/$(IMAGE_ARCH)$(if $(filter arm,$(IMAGE_ARCH)),/v7) \
	  --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) -f deploy/Dockerfile $(BIN)/image
	@docker image inspect -f '{{.RepoTags}} {{.Os}}/{{.Architecture}} {{.Size}} bytes' $(IMAGE)

release: ## static binaries for linux amd64, arm64 and arm v7 in dist/, with SHA256SUMS
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  os=$$(echo $$p | cut -d/ -f1); arch=$$(echo $$p | cut -d/ -f2); arm=$$(echo $$p | cut -d/ -f3); \
	  out=$(DIST)/murmur-$(VERSION)-$$os-$$arch$${arm:+v$$arm}; \
	  echo "release: $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/murmur; \
	done
	cd $(DIST) && sha256sum murmur-* > SHA256SUMS && cat SHA256SUMS

workload: ## bin/workload, the static test workload (sleep, health endpoint, exit codes, CPU burn)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/workload ./testdata/workload

test-image: workload ## FROM scratch image of the test workload (no registry needed)
	@if docker info >/dev/null 2>&1; then \
	  cp $(BIN)/workload testdata/workload/workload.bin && \
	  docker build -q -t $(TEST_IMAGE) -f testdata/workload/Dockerfile testdata/workload && \
	  rm -f testdata/workload/workload.bin; \
	else echo "test-image: no Docker engine answers; skipping image build"; fi

# With MURMUR_REQUIRE_DOCKER=1 (CI) make test then runs a short fault campaign
# (CHAOS_SHORT faults, a random seed it prints; SEED=S replays one) after the package
# tests, not beside them: on 2 cores its 7 agents would starve the timing-sensitive
# tests. Its log goes to bin/chaos-short.log.
CHAOS_SHORT ?= 50
FAULTS      ?= 500
SEED        ?=
test: build workload test-image check-deploy ## every test, with the race detector (and a short fault campaign in CI)
	MURMUR_BIN=$(CURDIR)/$(BIN)/murmur MURMUR_WORKLOAD_BIN=$(CURDIR)/$(BIN)/workload MURMUR_TEST_IMAGE=$(TEST_IMAGE) \
	  $(GO) test -race -count=1 -timeout 12m $(PKGS)
	@if [ "$$MURMUR_REQUIRE_DOCKER" = 1 ]; then \
	  echo "test: a $(CHAOS_SHORT)-fault campaign (log: $(BIN)/chaos-short.log)"; \
	  if MURMUR_BIN=$(CURDIR)/$(BIN)/murmur MURMUR_WORKLOAD_BIN=$(CURDIR)/$(BIN)/workload MURMUR_REQUIRE_NETNS=1 \
	    MURMUR_CHAOS_FAULTS=$(CHAOS_SHORT) MURMUR_CHAOS_SEED=$(SEED) \
	    $(GO) test -count=1 -timeout 10m -run '^TestChaosCampaign$$' -v ./cmd/murmur/ >$(BIN)/chaos-short.log 2>&1; \
	  then grep -E '^(chaos:|ok|PASS)' $(BIN)/chaos-short.log; \
	  else echo "--- the short fault campaign failed; the end of $(BIN)/chaos-short.log:"; grep -v '^\s*time=' $(BIN)/chaos-short.log | grep -v -- '--- log of' | tail -n 400; exit 1; fi; \
	fi

# The Prometheus rules in deploy/prometheus: promtool checks them and runs their unit
# tests (alerts_test.yml). Without promtool the check is skipped with a note, unless
# MURMUR_REQUIRE_PROMTOOL=1 (CI, which installs it: Debian's prometheus package).
# That the rules and deploy/grafana/murmur.json name only metrics an agent exports is
# checked by a Go test (cmd/murmur, TestRealDeployMetricsExist).
PROMTOOL ?= promtool
check-deploy: ## promtool check rules and promtool test rules on deploy/prometheus
	@if ! command -v $(PROMTOOL) >/dev/null 2>&1; then \
	  if [ "$$MURMUR_REQUIRE_PROMTOOL" = 1 ]; then echo "check-deploy: $(PROMTOOL) not found (apt-get install prometheus ships it)"; exit 1; fi; \
	  echo "check-deploy: $(PROMTOOL) not found; skipping the rule checks (apt-get install prometheus ships it)"; exit 0; \
	fi; \
	$(PROMTOOL) check rules deploy/prometheus/alerts.yml && \
	cd deploy/prometheus && $(PROMTOOL) test rules alerts_test.yml

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
	rm -rf $(BIN) $(DIST)
