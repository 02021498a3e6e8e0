#!/bin/sh
# Builds the demo images from host-compiled static binaries (no registry is
# reachable, so no multi-stage build on a golang image):
#   raftswarm/demo:v1, raftswarm/demo:v2  - VERSION baked in via ldflags
#   raftswarm/demo:crash                  - exits 1 about a second after start
# Usage: deploy/build-images.sh   (from anywhere; DOCKER=... to override the CLI)
set -eu

deploy_dir=$(cd "$(dirname "$0")" && pwd)
repo_dir=$(dirname "$deploy_dir")
docker=${DOCKER:-docker}
mkdir -p "$deploy_dir/build"

build() { # build <tag> <ldflags>
	tag=$1
	bin="build/demoapp-$tag"
	(cd "$repo_dir" && CGO_ENABLED=0 GOOS=linux go build -trimpath \
		-ldflags "-s -w $2" -o "deploy/$bin" ./deploy/demoapp)
	DOCKER_BUILDKIT=0 "$docker" build -q -f "$deploy_dir/Dockerfile.demo" \
		--build-arg "BIN=$bin" -t "raftswarm/demo:$tag" "$deploy_dir" >/dev/null
	echo "built raftswarm/demo:$tag"
}

build v1 "-X main.version=v1"
build v2 "-X main.version=v2"
build crash "-X main.version=crash -X main.crash=1"
