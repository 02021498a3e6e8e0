#!/usr/bin/env bash
# node-image.sh: makes a container image that runs a raftswarm node, with
# no Dockerfile and no registry: the static binaries go into a tar that
# `docker import` turns into an image, as the test images are made.
#
#   scripts/node-image.sh [TAG]      # default TAG: raftswarm/node:latest
#
# The image holds /usr/bin/managerd, workerd and swarmctl, an empty
# /var/lib/raftswarm (the state dir: mount a volume there) and
# /run/raftswarm (the control socket's directory: bind-mount a host
# directory there to use swarmctl from the host). Its entrypoint is
#   managerd --state-dir /var/lib/raftswarm --socket /run/raftswarm/raftswarm.sock
# and arguments after the image name are more daemon flags (a flag given
# twice takes the last value). README "Running a node in a container".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-raftswarm/node:latest}
docker=${DOCKER:-docker}
go=${GO:-go}

die() {
	printf 'node-image: %s\n' "$*" >&2
	exit 1
}
[[ "$tag" =~ ^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$ ]] || die "invalid image tag \"$tag\""
"$docker" info >/dev/null 2>&1 || die "no Docker Engine reachable (docker info failed)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/usr/bin" "$root/var/lib/raftswarm" "$root/run/raftswarm" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/raftswarm"
for b in managerd workerd swarmctl; do
	(cd "$repo" && CGO_ENABLED=0 GOOS=linux "$go" build -trimpath -ldflags "-s -w ${RAFTSWARM_LDFLAGS:-}" \
		-o "$root/usr/bin/$b" "./cmd/$b") || die "go build ./cmd/$b failed"
done
# Names the daemon may look up: itself, and no DNS search of its own.
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
printf 'root:x:0:0:root:/root:/usr/bin/swarmctl\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/node.tar" .
"$docker" import \
	--change 'ENTRYPOINT ["/usr/bin/managerd", "--state-dir", "/var/lib/raftswarm", "--socket", "/run/raftswarm/raftswarm.sock"]' \
	--change 'VOLUME ["/var/lib/raftswarm"]' \
	--change 'ENV SWARMCTL_HOST=unix:///run/raftswarm/raftswarm.sock' \
	--change 'LABEL org.opencontainers.image.title=raftswarm-node' \
	--message "raftswarm node image (scripts/node-image.sh)" \
	"$work/node.tar" "$tag" >/dev/null || die "docker import failed"
echo "$tag"
