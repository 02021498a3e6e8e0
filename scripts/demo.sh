#!/usr/bin/env bash
# demo.sh: a local raftswarm cluster of real daemons on loopback addresses.
#
#   scripts/demo.sh up     # 3 managers + 2 workers on 127.0.0.11-15:2377
#   scripts/demo.sh down   # stop them, remove their containers and .demo/
#
# Everything lives in .demo/ at the repository root: NAME/ (state dir),
# NAME.sock, NAME.log and NAME.pid for each of m1 m2 m3 w1 w2. `up` first
# tears down any previous demo. Every wait is bounded; nothing here blocks
# forever. Expects bin/ to be built (`make demo` does that).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
demo="$repo/.demo"
bin="${RAFTSWARM_BIN:-$repo/bin}"
ctl="$bin/swarmctl"

names=(m1 m2 m3 w1 w2)
declare -A ip=([m1]=127.0.0.11 [m2]=127.0.0.12 [m3]=127.0.0.13 [w1]=127.0.0.14 [w2]=127.0.0.15)
dashboard_port=8080
port=2377

log() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

sock() { echo "$demo/$1.sock"; }
sw() { # sw NAME ARGS...: swarmctl against NAME's socket
	local n=$1
	shift
	"$ctl" -H "unix://$(sock "$n")" "$@"
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.3 s.
wait_until() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			warn "timed out after ${secs}s waiting for $what"
			return 1
		fi
		sleep 0.3
	done
}

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------- down

# pids_with_socket PATH: daemons whose command line names this socket, in
# case a pid file was lost.
pids_with_socket() {
	local want=$1 p cmd
	for p in /proc/[0-9]*; do
		# Processes come and go while we look: ignore the ones that went.
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case "$cmd" in
		*"/managerd "*"--socket $want "* | *"/workerd "*"--socket $want "*) echo "${p#/proc/}" ;;
		esac
	done
}

stop_pid() { # stop_pid PID: SIGTERM, up to 10 s grace, then SIGKILL
	local pid=$1 i
	alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		alive "$pid" || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
}

down() {
	if [[ ! -d "$demo" ]]; then
		log "no demo running (no $demo)"
		return 0
	fi
	local n pid ids=()
	# Node IDs first: the state dirs are about to go.
	for n in "${names[@]}"; do
		[[ -f "$demo/$n/node.json" ]] || continue
		id=$(sed -n 's/.*"node_id" *: *"\([^"]*\)".*/\1/p' "$demo/$n/node.json" | head -n1)
		[[ -n "$id" ]] && ids+=("$id")
	done
	for n in "${names[@]}"; do
		if [[ -f "$demo/$n.pid" ]]; then
			pid=$(cat "$demo/$n.pid")
			if alive "$pid"; then
				log "stopping $n (pid $pid)"
				stop_pid "$pid" &
			fi
		fi
	done
	wait
	for n in "${names[@]}"; do
		for pid in $(pids_with_socket "$(sock "$n")"); do
			log "stopping leftover $n daemon (pid $pid)"
			stop_pid "$pid"
		done
	done
	if ((${#ids[@]})) && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
		local cs=() id c
		for id in "${ids[@]}"; do
			while read -r c; do [[ -n "$c" ]] && cs+=("$c"); done \
				< <(docker ps -aq --filter "label=raftswarm.node.id=$id" 2>/dev/null || true)
		done
		if ((${#cs[@]})); then
			log "removing ${#cs[@]} demo container(s)"
			docker rm -f "${cs[@]}" >/dev/null || warn "could not remove some containers"
		fi
	fi
	# A node killed with -9 (the README's failover step) and not restarted
	# never removed its nftables tables (its daemon removes them on exit, or
	# on its next start): remove them here, only those of this demo's nodes.
	if ((${#ids[@]})) && command -v nft >/dev/null 2>&1; then
		local fam tbl short
		while read -r _ fam tbl; do
			for id in "${ids[@]}"; do
				short=${id:0:12}
				if [[ "$tbl" == "raftswarm_mesh_$short" || "$tbl" == "raftswarm_$short" ]]; then
					log "removing the stopped node's nftables table $tbl"
					nft delete table "$fam" "$tbl" 2>/dev/null || warn "could not remove nftables table $tbl"
				fi
			done
		done < <(nft list tables 2>/dev/null || true)
	fi
	rm -rf "$demo"
	log "demo removed"
}

# ---------------------------------------------------------------- up

start_daemon() { # start_daemon NAME
	local n=$1 daemon=workerd extra=()
	# Managers serve the web dashboard on their own loopback address.
	[[ $n == m* ]] && daemon=managerd extra=(--dashboard-addr "${ip[$n]}:$dashboard_port")
	mkdir -p "$demo/$n"
	# setsid: the daemons outlive `make demo` and its terminal's signals.
	setsid "$bin/$daemon" --state-dir "$demo/$n" --socket "$(sock "$n")" \
		--hostname "$n" --ingress-addr "${ip[$n]}" --log-level info "${extra[@]}" \
		</dev/null >"$demo/$n.log" 2>&1 &
	echo $! >"$demo/$n.pid"
}

# answers NAME: the daemon behind the socket replied (an inactive node
# replies to `node ls` with an error that is not about reaching it).
answers() {
	local out
	[[ -S "$(sock "$1")" ]] || return 1
	out=$(sw "$1" node ls 2>&1) && return 0
	[[ $out != *"cannot reach the raftswarm daemon"* && $out != *"did not answer"* ]]
}

ready_nodes() { sw m1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true; }
five_ready() { [[ $(ready_nodes) -ge 5 ]]; }

show_logs_and_die() {
	local n
	for n in "${names[@]}"; do
		[[ -f "$demo/$n.log" ]] || continue
		echo "--- last lines of .demo/$n.log" >&2
		tail -n 5 "$demo/$n.log" >&2
	done
	die "$1 (the cluster is left running for inspection; 'make demo-down' removes it)"
}

service_demo() {
	if [[ ! -x "$repo/deploy/build-images.sh" ]]; then
		warn "deploy/build-images.sh not found: skipping the service demo"
		return 0
	fi
	if ! sw m1 service create --help >/dev/null 2>&1; then
		warn "this swarmctl has no 'service create': skipping the service demo"
		return 0
	fi
	if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
		warn "no reachable Docker engine: skipping the service demo"
		return 0
	fi
	log "building demo images (make images)"
	# The legacy-builder deprecation notice is noise here.
	if ! make -s -C "$repo" images 2>&1 | grep -Ev 'DEPRECATED|BuildKit is currently disabled|environment-variable|^$'; [[ ${PIPESTATUS[0]} -ne 0 ]]; then
		warn "building the demo images failed: the cluster stays up without a service"
		return 0
	fi
	log "creating service web: 7 replicas of raftswarm/demo:v1, port 8888"
	if ! sw m1 service create --detach --name web --replicas 7 -p 8888:80 raftswarm/demo:v1; then
		warn "service create failed: the cluster stays up without a service"
		return 0
	fi
	has_tasks() { [[ -n $(sw m1 service ps -q web 2>/dev/null) ]]; }
	running_7() { sw m1 service ls 2>/dev/null | awk '$2 == "web"' | grep -q '7/7'; }
	if ! wait_until 20 "tasks of service web" has_tasks; then
		warn "no tasks were created for web: this build may not run services yet"
	elif ! wait_until 60 "service web to reach 7/7 running" running_7; then
		warn "web has not converged yet; watch it with 'bin/swarmctl service ps web'"
	fi
	echo
	sw m1 service ls || warn "service ls failed"
	echo
	sw m1 service ps web || warn "service ps web failed"
}

up() {
	[[ -x "$ctl" && -x "$bin/managerd" && -x "$bin/workerd" ]] || die "binaries missing in $bin: run 'make build'"
	if [[ -d "$demo" ]]; then
		log "tearing down the previous demo"
		down
	fi
	local s
	s=$(sock m1)
	((${#s} < 100)) || die "socket path $s is too long for a unix socket; move the checkout to a shorter path"
	mkdir -p "$demo"

	local n
	for n in "${names[@]}"; do
		start_daemon "$n"
	done
	for n in "${names[@]}"; do
		wait_until 20 "$n's socket" answers "$n" || show_logs_and_die "$n did not start"
	done
	log "daemons up: ${names[*]}"

	sw m1 init --advertise-addr "${ip[m1]}" >/dev/null || show_logs_and_die "init on m1 failed"
	log "m1 initialized the swarm at ${ip[m1]}:$port"
	local mtok wtok
	mtok=$(sw m1 join-token -q manager) || show_logs_and_die "cannot read the manager token"
	wtok=$(sw m1 join-token -q worker) || show_logs_and_die "cannot read the worker token"
	for n in m2 m3; do
		sw "$n" join --token "$mtok" --advertise-addr "${ip[$n]}" "${ip[m1]}:$port" >/dev/null ||
			show_logs_and_die "$n could not join as a manager"
		log "$n joined as a manager"
	done
	for n in w1 w2; do
		sw "$n" join --token "$wtok" --advertise-addr "${ip[$n]}" "${ip[m1]}:$port" >/dev/null ||
			show_logs_and_die "$n could not join as a worker"
		log "$n joined as a worker"
	done
	wait_until 30 "5 Ready nodes" five_ready || show_logs_and_die "only $(ready_nodes) of 5 nodes became Ready"
	echo
	sw m1 node ls
	echo
	service_demo || true
	cat <<EOT

The demo cluster is running (logs in .demo/NAME.log). Point swarmctl at it:

    export SWARMCTL_HOST=unix://$demo/m1.sock
    bin/swarmctl node ls

The live dashboard: http://${ip[m1]}:$dashboard_port/ (any manager: m2 on
http://${ip[m2]}:$dashboard_port/, m3 on http://${ip[m3]}:$dashboard_port/).

Any manager's socket works too (.demo/m2.sock, .demo/m3.sock); workers hold no
cluster state. Stop everything with 'make demo-down'.
EOT
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
