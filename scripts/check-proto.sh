#!/usr/bin/env bash
# check-proto.sh: fails when the committed proto/*.pb.go differ from what the
# pinned generators produce from proto/*.proto (the same command as
# `make proto`, run into a temporary directory). buf compiles the .proto
# files itself; no protoc is needed.
#
# Generators are looked up in .tools/bin first (where `make tools` puts
# them), then on PATH.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.tools/bin:$PATH"

want_buf=$(sed -n 's/^BUF_VERSION *:= *//p' Makefile)
want_go=$(sed -n 's/^PROTOC_GEN_GO_VERSION *:= *//p' Makefile)
want_grpc=$(sed -n 's/^PROTOC_GEN_GO_GRPC_VERSION *:= *//p' Makefile)

missing=()
for tool in buf protoc-gen-go protoc-gen-go-grpc; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	echo "check-proto: missing ${missing[*]}: run 'make tools'" >&2
	exit 2
fi

# A different plugin version writes a different header, which would show up
# below as a confusing one-line diff; name the real cause instead.
have_buf=$(buf --version 2>&1 | awk '{print $NF}')
have_go=$(protoc-gen-go --version 2>&1 | awk '{print $NF}')
have_grpc=$(protoc-gen-go-grpc --version 2>&1 | awk '{print $NF}')
if [[ "v${have_buf#v}" != "$want_buf" || "$have_go" != "$want_go" || "v${have_grpc#v}" != "$want_grpc" ]]; then
	echo "check-proto: found buf $have_buf, protoc-gen-go $have_go and protoc-gen-go-grpc $have_grpc, want $want_buf, $want_go and $want_grpc: run 'make tools'" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The template writes to proto/; -o puts that under $tmp.
buf generate --template buf.gen.yaml -o "$tmp"
gen="$tmp/proto"

stale=0
# Every generated file must match its committed copy...
for f in "$gen"/*.pb.go; do
	name=$(basename "$f")
	if [[ ! -f "proto/$name" ]]; then
		echo "check-proto: proto/$name is missing" >&2
		stale=1
	elif ! diff -u "proto/$name" "$f" >"$tmp/$name.diff"; then
		echo "check-proto: proto/$name differs from the generated code:" >&2
		head -n 40 "$tmp/$name.diff" >&2
		stale=1
	fi
done
# ...and no committed .pb.go may be left over from a removed .proto.
for f in proto/*.pb.go; do
	[[ -e "$f" ]] || continue
	if [[ ! -f "$gen/$(basename "$f")" ]]; then
		echo "check-proto: $f has no source in proto/*.proto" >&2
		stale=1
	fi
done

if ((stale)); then
	echo "generated code in proto/ is stale: run 'make proto'" >&2
	exit 1
fi
echo "check-proto: proto/*.pb.go are up to date"
