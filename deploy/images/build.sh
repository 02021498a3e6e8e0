#!/bin/sh
# Builds the test images from Debian's packages, without any registry:
#
#   raftswarm-test/redis      also tagged redis:alpine
#   raftswarm-test/python     also tagged python:3.7-alpine
#   raftswarm-test/mariadb    also tagged mysql:5.7
#   raftswarm-test/wordpress  also tagged wordpress:latest
#
# The extra tags are the names the tutorial's Compose files use, so those
# files run unchanged on this machine.
#
# Usage: deploy/images/build.sh [NAME...]   (default: all four)
#        deploy/images/build.sh --clean     (remove these images, keep the cache)
#
# Each image is made in two steps:
#  1. mmdebstrap builds a minimal Debian root filesystem with the recipe's
#     packages (NAME/packages) into a tarball cached under
#     $RAFTSWARM_IMAGE_CACHE (default /var/cache/raftswarm/images), keyed by
#     a hash of everything mmdebstrap is given. A machine that has it reuses
#     it; a fresh one builds it (about half a minute per image).
#  2. `docker import` turns the tarball into a base image, and a classic
#     `docker build` of NAME/Dockerfile `FROM` that local base (no registry
#     needed) adds the entrypoint scripts and CMD/ENTRYPOINT/EXPOSE/ENV/
#     WORKDIR. The result is labelled raftswarm.test.recipe=<hash of the
#     tarball key and NAME/*>; an image already carrying the right label is
#     not rebuilt, so a second run takes a second.
#
# Concurrent runs (several test packages) are serialised per image with
# flock. Needs root (mmdebstrap's default mode), mmdebstrap and docker.
# Environment: DOCKER (the CLI, default docker; DOCKER_HOST is honoured),
# RAFTSWARM_DEBIAN_MIRROR, RAFTSWARM_DEBIAN_SECURITY, RAFTSWARM_DEBIAN_SUITE,
# RAFTSWARM_IMAGE_JOBS (root filesystems built at once; default: the cores).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
docker=${DOCKER:-docker}
cache=${RAFTSWARM_IMAGE_CACHE:-/var/cache/raftswarm/images}
suite=${RAFTSWARM_DEBIAN_SUITE:-bookworm}
mirror=${RAFTSWARM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${RAFTSWARM_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
all="redis python mariadb wordpress"

die() { echo "build.sh: $*" >&2; exit 1; }

alias_of() {
	case $1 in
	redis) echo redis:alpine ;;
	python) echo python:3.7-alpine ;;
	mariadb) echo mysql:5.7 ;;
	wordpress) echo wordpress:latest ;;
	*) die "unknown image $1 (known: $all)" ;;
	esac
}

if [ "${1:-}" = "--clean" ]; then
	# Only aliases that point at one of our images are removed: a real
	# redis:alpine pulled on a developer's machine is left alone.
	for name in $all; do
		alias=$(alias_of "$name")
		if [ -n "$("$docker" image ls -q --filter label=raftswarm.test.recipe "$alias")" ]; then
			"$docker" rmi "$alias" >/dev/null && echo "removed $alias"
		fi
	done
	# Only the images this script makes: other tests name theirs
	# raftswarm-test/... too.
	for name in $all; do
		for img in "raftswarm-test/$name" $("$docker" image ls --format '{{.Repository}}:{{.Tag}}' "raftswarm-test/base-$name"); do
			if [ -n "$("$docker" image ls -q "$img")" ]; then
				"$docker" rmi "$img" >/dev/null && echo "removed $img"
			fi
		done
	done
	exit 0
fi

command -v flock >/dev/null 2>&1 || die "flock is not installed (apt-get install util-linux)"
"$docker" info >/dev/null 2>&1 || die "cannot reach the Docker engine with '$docker info'"
mkdir -p "$cache"

sha() { sha256sum | cut -c1-64; }

# The mmdebstrap options and suite, one argument a line: with mm_mirrors,
# the whole invocation but the output path; its hash is the cache key.
mm_args() { # mm_args NAME
	printf '%s\n' --variant=minbase --mode=root --format=tar \
		--aptopt='Acquire::Retries "3"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--include="$(grep -v '^#' "$here/$1/packages" | tr -s ' \n' ',' | sed 's/,$//')" \
		"$suite"
}

# The package sources, the ones this machine's apt uses (deb.debian.org).
mm_mirrors() {
	printf '%s\n' "deb $mirror $suite main" \
		"deb $mirror $suite-updates main" \
		"deb $security $suite-security main"
}

# tarball NAME: prints the cached root filesystem's path, building it first
# when missing.
tarball() {
	key=$( (mm_args "$1" && mm_mirrors) | sha)
	out="$cache/$1-$(echo "$key" | cut -c1-16).tar"
	exec 9>"$cache/$1.lock"
	flock 9
	if [ ! -s "$out" ]; then
		command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is not installed (apt-get install mmdebstrap): needed to build the $1 root filesystem"
		echo "mmdebstrap: building $1 root filesystem ($(grep -v '^#' "$here/$1/packages" | tr '\n' ' '))" >&2
		start=$(date +%s)
		log="$cache/$1.log"
		# shellcheck disable=SC2046 # one argument per line, none has a newline
		if ! (set -f; IFS='
' && mmdebstrap $(mm_args "$1") "$out.tmp" $(mm_mirrors)) >"$log" 2>&1; then
			rm -f "$out.tmp"
			tail -20 "$log" >&2
			die "mmdebstrap for $1 failed (log: $log)"
		fi
		mv "$out.tmp" "$out"
		echo "mmdebstrap: $1 done in $(($(date +%s) - start)) s" >&2
	fi
	exec 9>&-
	echo "$out"
}

recipe_hash() { # recipe_hash NAME TARBALL
	(basename "$2"; cd "$here/$1" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha
}

image() { # image NAME: builds raftswarm-test/NAME and its alias when stale
	name=$1
	alias=$(alias_of "$name")
	tar=$(tarball "$name")
	want=$(recipe_hash "$name" "$tar")
	tag="raftswarm-test/$name"
	exec 8>"$cache/$name.image.lock"
	flock 8
	have=$("$docker" image inspect --format '{{index .Config.Labels "raftswarm.test.recipe"}}' "$tag" 2>/dev/null || true)
	if [ "$have" != "$want" ]; then
		base="raftswarm-test/base-$name:$(basename "$tar" .tar | sed "s/^$name-//")"
		if ! "$docker" image inspect "$base" >/dev/null 2>&1; then
			"$docker" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
				--message "mmdebstrap $suite: $(grep -v '^#' "$here/$name/packages" | tr '\n' ' ')" \
				"$tar" "$base" >/dev/null
		fi
		# The classic builder: BuildKit would try to resolve the local base.
		if ! DOCKER_BUILDKIT=0 "$docker" build -q --build-arg "BASE=$base" \
			--label "raftswarm.test.recipe=$want" -t "$tag" "$here/$name" >"$cache/$name.build.log" 2>&1; then
			cat "$cache/$name.build.log" >&2
			die "docker build of $tag failed (run: DOCKER_BUILDKIT=0 docker build --build-arg BASE=$base $here/$name)"
		fi
		echo "built $tag" >&2
		"$docker" tag "$tag" "$alias"
		# The image this one replaces is left untagged: remove it (it may
		# still be in use by a container; then it stays).
		old=$(echo "$have" | grep -q . && "$docker" image ls -q --filter dangling=true --filter "label=raftswarm.test.recipe=$have" || true)
		[ -z "$old" ] || "$docker" rmi $old >/dev/null 2>&1 || true
	fi
	"$docker" tag "$tag" "$alias"
	exec 8>&-
}

[ $# -gt 0 ] || set -- $all
for name in "$@"; do alias_of "$name" >/dev/null; done

# Root filesystems a few at a time (downloads overlap; more jobs than
# cores only make dpkg and xz fight for them), images one by one.
jobs=${RAFTSWARM_IMAGE_JOBS:-$(nproc 2>/dev/null || echo 2)}
pids=""
n=0
failed=0
for name in "$@"; do
	tarball "$name" >/dev/null &
	pids="$pids $!"
	n=$((n + 1))
	if [ "$n" -ge "$jobs" ]; then
		for pid in $pids; do wait "$pid" || failed=1; done
		pids=""
		n=0
	fi
done
for pid in $pids; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || die "building a root filesystem failed"
for name in "$@"; do image "$name"; done
