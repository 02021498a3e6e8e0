# raftswarm build, test and demo targets. `make help` lists them.

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS_BIN := $(CURDIR)/.tools/bin

# Pinned code generators; must match the version headers of proto/*.pb.go.
# buf compiles the .proto files itself, so no protoc is needed.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

export PATH := $(TOOLS_BIN):$(PATH)

BINARIES := managerd workerd swarmctl

# Stamped into the binaries ('swarmctl version'); override with RAFTSWARM_VERSION=v1.2.3.
RAFTSWARM_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
RAFTSWARM_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X github.com/raftswarm/raftswarm/internal/version.Version=$(RAFTSWARM_VERSION) -X github.com/raftswarm/raftswarm/internal/version.Commit=$(RAFTSWARM_COMMIT)

.PHONY: all help build test lint proto tools images test-images maybe-test-images clean-images check-examples demo demo-down clean chaos package node-image

all: build

help:
	@echo "targets:"
	@echo "  build      build bin/managerd, bin/workerd, bin/swarmctl"
	@echo "  test       check generated code, go vet, then all tests (race, incl. e2e)"
	@echo "  lint       gofmt, go vet and the package layering check"
	@echo "  proto      regenerate proto/*.pb.go with buf and the pinned plugins"
	@echo "  tools      install the pinned buf and protoc plugins into .tools/bin"
	@echo "  images     build the raftswarm/demo:* Docker images"
	@echo "  test-images  build the raftswarm-test/* images from Debian's packages (root, mmdebstrap)"
	@echo "  clean-images remove the test images of deploy/images (the root filesystem cache stays)"
	@echo "  check-examples run deploy/examples with docker-compose on the local engine"
	@echo "  demo       run a local 3-manager, 2-worker cluster on 127.0.0.11-15"
	@echo "  demo-down  stop the demo cluster and remove its state"
	@echo "  chaos      randomized chaos runs (root) for DURATION (default 5m) of FAULTS faults each (default 5), then totals"
	@echo "  package    build dist/raftswarm_VERSION_ARCH.deb (binaries, systemd units, defaults)"
	@echo "  node-image build the raftswarm/node image (a node daemon as a container; docker import)"
	@echo "  clean      remove build outputs"

build:
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do \
		echo "go build ./cmd/$$b"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$$b ./cmd/$$b || exit 1; \
	done

test: build tools maybe-test-images
	scripts/check-proto.sh
	scripts/check-package.sh
	$(GO) vet ./...
	RAFTSWARM_BIN=$(BIN) $(GO) test -race -count=1 -timeout 15m ./...

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/layers

BUF_STAMP      := $(TOOLS_BIN)/.buf-$(BUF_VERSION)
GEN_GO_STAMP   := $(TOOLS_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
GEN_GRPC_STAMP := $(TOOLS_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)

# A stamp file per pinned version: bumping a version above reinstalls it.
# buf takes a few minutes to build the first time.
tools: $(BUF_STAMP) $(GEN_GO_STAMP) $(GEN_GRPC_STAMP)

$(BUF_STAMP):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@rm -f $(TOOLS_BIN)/.buf-v*; touch $@

$(GEN_GO_STAMP):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@rm -f $(TOOLS_BIN)/.protoc-gen-go-v*; touch $@

$(GEN_GRPC_STAMP):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@rm -f $(TOOLS_BIN)/.protoc-gen-go-grpc-v*; touch $@

proto: tools
	buf generate --template buf.gen.yaml

images:
	deploy/build-images.sh

# The Debian-built images the Docker and e2e tests use (deploy/images). They
# are kept between runs (rebuilt only when their recipe changes; the root
# filesystems are cached under $$RAFTSWARM_IMAGE_CACHE, default
# /var/cache/raftswarm/images); `make clean-images` removes them.
test-images:
	deploy/images/build.sh

# `make test` builds them first when this machine can; otherwise the tests
# that need them skip.
maybe-test-images:
	@if [ "$$(id -u)" = 0 ] && command -v mmdebstrap >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		echo "deploy/images/build.sh"; deploy/images/build.sh; \
	else \
		echo "test images: not built (needs root, mmdebstrap and a Docker engine); tests that need them skip"; \
	fi

clean-images:
	deploy/images/build.sh --clean

check-examples: test-images
	deploy/examples/check.sh

demo: build
	scripts/demo.sh up

demo-down:
	scripts/demo.sh down

DURATION ?= 5m
FAULTS ?= 5

chaos: build
	RAFTSWARM_BIN=$(BIN) $(GO) test -count=1 -v -timeout 0 ./chaos/ -run 'TestChaos$$' -chaos.duration=$(DURATION) -chaos.faults=$(FAULTS)

package:
	scripts/package.sh dist

node-image:
	scripts/node-image.sh raftswarm/node:latest

clean:
	rm -rf $(BIN) deploy/build dist
