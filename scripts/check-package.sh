#!/usr/bin/env bash
# check-package.sh: builds the .deb (scripts/package.sh) into a temporary
# directory and checks it: the files it must hold, its control fields, the
# binaries it ships run, and `systemd-analyze verify` on its units inside
# the unpacked package (with this host's own units beside them, for the
# targets they name). Run by `make test`; needs dpkg-deb and systemd-analyze
# (.ci/run installs them when missing).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
fail() {
	printf 'check-package: %s\n' "$*" >&2
	exit 1
}
for c in dpkg-deb systemd-analyze; do
	command -v "$c" >/dev/null 2>&1 || fail "$c not found (Debian's dpkg and systemd packages)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

deb=$(VERSION=0.0.1+check DEB_COMPRESS=gzip "$repo/scripts/package.sh" "$work/dist")
[[ -f "$deb" ]] || fail "package.sh printed \"$deb\", which is not a file"

contents=$(dpkg-deb -c "$deb" | awk '{print $NF}')
for want in ./usr/bin/managerd ./usr/bin/workerd ./usr/bin/swarmctl \
	./lib/systemd/system/raftswarm-managerd.service \
	./lib/systemd/system/raftswarm-workerd.service \
	./etc/default/raftswarm ./usr/share/doc/raftswarm/README.md; do
	grep -qx -- "$want" <<<"$contents" || fail "$(basename "$deb") lacks $want"
done
if "$repo/bin/swarmctl" completion bash >/dev/null 2>&1; then
	grep -qx -- ./usr/share/bash-completion/completions/swarmctl <<<"$contents" ||
		fail "$(basename "$deb") lacks swarmctl's bash completion"
fi
# Nothing is owned by the builder.
if dpkg-deb -c "$deb" | awk '{print $2}' | grep -vqx 'root/root'; then
	fail "files not owned by root/root in $(basename "$deb")"
fi
[[ "$(dpkg-deb -f "$deb" Package)" == raftswarm ]] || fail "Package field is not raftswarm"
[[ "$(dpkg-deb -f "$deb" Version)" == 0.0.1+check ]] || fail "Version field is not the VERSION given"
# The listing is read whole before it is searched: with pipefail, grep -q
# leaving at the first match can kill tar with SIGPIPE, failing the check
# at random (it did once in CI).
ctrl=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
grep -qx './conffiles' <<<"$ctrl" || fail "no conffiles"

root="$work/root"
dpkg-deb -x "$deb" "$root"
for b in managerd workerd swarmctl; do
	grep -q 'statically linked' <<<"$(file "$root/usr/bin/$b" 2>/dev/null)" ||
		[[ "$(command -v file)" == "" ]] || fail "/usr/bin/$b is not a static binary"
done
"$root/usr/bin/swarmctl" --help >/dev/null || fail "packaged swarmctl --help failed"
out=$("$root/usr/bin/managerd" -h 2>&1 || true)
grep -q -- '-state-dir' <<<"$out" || fail "packaged managerd -h did not list its flags"

# systemd-analyze verify --root needs the targets the units name.
mkdir -p "$root/lib/systemd/system"
cp -an /lib/systemd/system/. "$root/lib/systemd/system/" 2>/dev/null || true
if ! msg=$(systemd-analyze verify --root="$root" raftswarm-managerd.service raftswarm-workerd.service 2>&1); then
	fail "systemd-analyze verify: $msg"
fi
if [[ -n "$msg" ]]; then
	fail "systemd-analyze verify warned: $msg"
fi
echo "package ok: $(basename "$deb") ($(du -h "$deb" | cut -f1)), units verified"
