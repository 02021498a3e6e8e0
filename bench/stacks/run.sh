#!/usr/bin/env bash
# bench/stacks/run.sh: time from `swarmctl stack deploy` of each tutorial
# app (deploy/examples) to its first good answer, on a local cluster of
# three daemons (1 manager, 2 workers) on 127.0.0.61-63 sharing the local
# Docker engine. Needs root, the built binaries (make build) and the test
# images (make test-images). Usage: bench/stacks/run.sh [RUNS]   (default 3)
#
# Each run deploys the stack, polls every 100 ms (at most 120 s) until the
# app answers through the routing mesh on a node that does not run it:
#   composetest: GET http://127.0.0.63:5000/ answers "Hello World! ..."
#   wordpress:   GET http://127.0.0.63:8000/wp-admin/install.php shows the
#                installation page (so WordPress reached its database),
# then removes the stack with its volumes and waits for its tasks to go.
set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$repo/bin
dir=$(mktemp -d /tmp/rs-stackbench.XXXXXX)
S="$bin/swarmctl -H unix://$dir/n1.sock"

cleanup() {
	for i in 1 2 3; do [ -f "$dir/n$i.pid" ] && kill "$(cat "$dir/n$i.pid")" 2>/dev/null || true; done
	sleep 2
	for i in 1 2 3; do
		id=$(sed -n 's/.*"node_id": *"\([^"]*\)".*/\1/p' "$dir/n$i/node.json" 2>/dev/null || true)
		[ -n "$id" ] || continue
		docker ps -aq --filter "label=raftswarm.node.id=$id" | xargs -r docker rm -f >/dev/null
		docker network ls -q --filter "label=raftswarm.node.id=$id" | xargs -r docker network rm >/dev/null
		nft delete table ip "raftswarm_${id:0:12}" 2>/dev/null || true
	done
	docker volume rm -f wp_db_data >/dev/null 2>&1 || true
	docker image rm -f composetest_web >/dev/null 2>&1 || true
	umount "$dir"/n*/taskdata/secrets 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

for i in 1 2 3; do
	setsid "$bin/managerd" --state-dir "$dir/n$i" --socket "$dir/n$i.sock" --hostname "n$i" \
		--ingress-addr "127.0.0.6$i" </dev/null >>"$dir/n$i.log" 2>&1 &
	echo $! >"$dir/n$i.pid"
done
for _ in $(seq 50); do [ -S "$dir/n3.sock" ] && break; sleep 0.1; done
$S init --advertise-addr 127.0.0.61 >/dev/null
tok=$($S join-token worker | grep -o 'SWMTKN[^ ]*')
for i in 2 3; do
	"$bin/swarmctl" -H "unix://$dir/n$i.sock" join --token "$tok" --advertise-addr "127.0.0.6$i" 127.0.0.61:2377 >/dev/null
done
# The apps answer on n3; keep their tasks off it so the mesh is crossed.
$S node update --availability drain n3 >/dev/null 2>&1 || $S node update n3 --availability drain >/dev/null

now() { date +%s.%N; }
poll() { # poll URL PATTERN
	local deadline=$(($(date +%s) + 120))
	until curl -s -m 2 "$1" 2>/dev/null | grep -q "$2"; do
		if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
		sleep 0.1
	done
}
gone() { # wait until no task of the stack is left
	local deadline=$(($(date +%s) + 60))
	while docker ps -a --format '{{.Label "raftswarm.service.name"}}' | grep -q "^$1_"; do
		if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
		sleep 0.2
	done
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for app in composetest wordpress; do
	case $app in
	composetest) stack=composetest url=http://127.0.0.63:5000/ pat="Hello World" ;;
	wordpress) stack=wp url=http://127.0.0.63:8000/wp-admin/install.php pat="WordPress &rsaquo; Installation" ;;
	esac
	for r in $(seq "$runs"); do
		t0=$(now)
		(cd "$repo/deploy/examples/$app" && $S stack deploy -d -c docker-compose.yml "$stack" >/dev/null)
		if poll "$url" "$pat"; then
			printf '%s run %d: %.2f s\n' "$app" "$r" "$(echo "$(now) - $t0" | bc)"
		else
			echo "$app run $r: no answer within 120 s"
		fi
		$S stack rm --volumes "$stack" >/dev/null
		gone "$stack" || echo "$app: tasks still present after 60 s"
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
