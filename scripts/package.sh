#!/usr/bin/env bash
# package.sh: builds the Debian package of raftswarm with dpkg-deb.
#
#   scripts/package.sh [OUTDIR]      # default OUTDIR: dist/
#
# The package holds the three static binaries (/usr/bin/managerd, workerd,
# swarmctl), the systemd units raftswarm-managerd.service and
# raftswarm-workerd.service, a default flags file /etc/default/raftswarm (a
# conffile), swarmctl's bash completion when swarmctl can generate it, and
# the README. The binaries are built here from the checkout
# (CGO_ENABLED=0), stamped with VERSION (env; default: from git). Prints the
# path of the .deb it wrote.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/dist}
go=${GO:-go}

die() {
	printf 'package: %s\n' "$*" >&2
	exit 1
}
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian's dpkg package)"

# A Debian version must start with a digit: 0.1.0+git<commit>, or VERSION.
if [[ -z "${VERSION:-}" ]]; then
	rev=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
	VERSION="0.1.0+git$rev"
fi
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "invalid VERSION \"$VERSION\": a Debian version starts with a digit and holds only letters, digits and .+~-"
arch=$("$go" env GOARCH)
case "$arch" in
amd64 | arm64) ;;
*) die "unsupported GOARCH $arch (amd64 or arm64)" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
	"$root/usr/share/doc/raftswarm" "$root/usr/share/bash-completion/completions"

ldflags="-s -w ${RAFTSWARM_LDFLAGS:-}"
for b in managerd workerd swarmctl; do
	(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH="$arch" "$go" build -trimpath \
		-ldflags "$ldflags" -o "$root/usr/bin/$b" "./cmd/$b") || die "go build ./cmd/$b failed"
done
install -m 0644 "$repo"/deploy/package/systemd/raftswarm-managerd.service \
	"$repo"/deploy/package/systemd/raftswarm-workerd.service "$root/lib/systemd/system/"
install -m 0644 "$repo/deploy/package/default" "$root/etc/default/raftswarm"
install -m 0644 "$repo/README.md" "$root/usr/share/doc/raftswarm/README.md"
# Completion comes from swarmctl itself when it has the command.
if "$root/usr/bin/swarmctl" completion bash >"$work/completion" 2>/dev/null && [[ -s "$work/completion" ]]; then
	install -m 0644 "$work/completion" "$root/usr/share/bash-completion/completions/swarmctl"
else
	rmdir "$root/usr/share/bash-completion/completions" "$root/usr/share/bash-completion"
fi

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: raftswarm
Version: $VERSION
Architecture: $arch
Maintainer: raftswarm developers <dev@raftswarm.invalid>
Installed-Size: $size
Section: admin
Priority: optional
Recommends: docker.io | docker-ce, nftables
Homepage: https://github.com/raftswarm/raftswarm
Description: Swarm-style cluster manager over Raft
 raftswarm runs services on a cluster of Docker hosts with Docker swarm
 mode's workflow: init a cluster, join nodes with a token, create services
 with replicas and published ports, deploy Compose files as stacks.
 .
 This package holds the node daemon (managerd and workerd, one program),
 the swarmctl command-line client and their systemd units. Enable one unit
 per host: raftswarm-managerd or raftswarm-workerd.
EOF
echo /etc/default/raftswarm >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# The units are not enabled or started: a node first needs `swarmctl init`
# or `swarmctl join`, which talk to a running daemon, so the operator
# chooses which unit to enable (see /usr/share/doc/raftswarm/README.md).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	# The node's state (certificates, Raft log) is removed only on purge.
	rm -rf /var/lib/raftswarm
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/raftswarm_${VERSION}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null || die "dpkg-deb --build failed"
echo "$deb"
