#!/usr/bin/env bash
# services.sh — throwaway PostgreSQL and Redis on loopback for the storage tests.
#
#   eval "$(scripts/services.sh start)"   # install if missing, start, print exports
#   scripts/services.sh stop              # stop both and remove their data
#   scripts/services.sh status            # exit 0 if both answer
#
# start prints only these lines on stdout (everything else goes to stderr, and
# only when something fails):
#   export GOTRUSTEE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:<port>/postgres?sslmode=disable
#   export GOTRUSTEE_TEST_REDIS_URL=redis://127.0.0.1:<port>/0
#
# start is idempotent: if both servers from an earlier start still answer, it
# prints the same lines again. The servers listen on 127.0.0.1 only, on free
# ports, with trust authentication and no persistence: never use them for
# anything but tests. As root (CI), missing packages (postgresql,
# redis-server) are installed with apt-get and PostgreSQL runs as the
# "postgres" user, since it refuses to run as root; as another user nothing
# is installed and both servers run as that user.
#
# Environment: GOTRUSTEE_SERVICES_DIR (default /tmp/gotrustee-services) holds
# the data, sockets, logs and state.
set -euo pipefail

STATE_DIR="${GOTRUSTEE_SERVICES_DIR:-/tmp/gotrustee-services}"
MARKER="$STATE_DIR/.gotrustee-services"
ENV_FILE="$STATE_DIR/env"
PG_DIR="$STATE_DIR/postgres"
REDIS_DIR="$STATE_DIR/redis"

die() {
	echo "services.sh: $*" >&2
	exit 1
}

# show_log FILE: print the tail of a log to stderr, to explain a failure.
show_log() {
	if [[ -f "$1" ]]; then
		echo "--- last lines of $1:" >&2
		tail -n 20 "$1" >&2 || true
	fi
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

case "$STATE_DIR" in
/?*) ;;
*) die "GOTRUSTEE_SERVICES_DIR must be an absolute path other than /" ;;
esac

# pg_bin NAME: path of a PostgreSQL server binary. Debian keeps them in
# /usr/lib/postgresql/<version>/bin, outside PATH; take the newest version.
pg_bin() {
	local dir
	dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
	if [[ -n "$dir" && -x "$dir/$1" ]]; then
		echo "$dir/$1"
	elif command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
	else
		return 1
	fi
}

ensure_packages() {
	local missing=()
	pg_bin initdb >/dev/null && pg_bin pg_ctl >/dev/null || missing+=(postgresql)
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	((${#missing[@]} == 0)) && return 0
	is_root || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
	command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
	export DEBIAN_FRONTEND=noninteractive
	local log="$STATE_DIR/apt.log"
	# Refresh the package lists only when apt does not know a package.
	local pkg
	for pkg in "${missing[@]}"; do
		if ! apt-cache show "$pkg" >/dev/null 2>&1; then
			apt-get update -qq >"$log" 2>&1 || { show_log "$log"; die "apt-get update failed"; }
			break
		fi
	done
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
		{ show_log "$log"; die "apt-get install ${missing[*]} failed"; }
	pg_bin initdb >/dev/null || die "postgresql installed but initdb not found"
	command -v redis-server >/dev/null 2>&1 || die "redis-server installed but not found"
}

# as_pg CMD...: run a command as the PostgreSQL owner.
as_pg() {
	if is_root; then
		if command -v runuser >/dev/null 2>&1; then
			runuser -u postgres -- "$@"
		else
			su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
		fi
	else
		"$@"
	fi
}

# port_in_use PORT: whether something accepts connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port on which nothing listens now.
free_port() {
	local p i
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		port_in_use "$p" || { echo "$p"; return 0; }
	done
	die "no free port found"
}

redis_ping() {
	local port="$1" reply
	if command -v redis-cli >/dev/null 2>&1; then
		reply="$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)"
	else
		reply="$(
			exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || exit 0
			printf 'PING\r\n' >&3
			timeout 2 head -c 7 <&3 2>/dev/null || true
		)"
	fi
	[[ "$reply" == *PONG* ]]
}

pg_ready() {
	local port="$1" isready
	isready="$(pg_bin pg_isready)" || return 1
	"$isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres
}

# wait_for CHECK ARGS...: poll CHECK for up to 30 s.
wait_for() {
	local i
	for i in $(seq 1 150); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}

start_postgres() {
	local port initdb pg_ctl log="$PG_DIR/postgres.log" try
	initdb="$(pg_bin initdb)" || die "initdb not found"
	pg_ctl="$(pg_bin pg_ctl)" || die "pg_ctl not found"
	rm -rf "$PG_DIR"
	mkdir -p "$PG_DIR/sock"
	is_root && chown -R postgres: "$PG_DIR"
	as_pg "$initdb" -A trust -U postgres -E UTF8 --no-locale -N -D "$PG_DIR/data" >"$STATE_DIR/initdb.log" 2>&1 ||
		{ show_log "$STATE_DIR/initdb.log"; die "initdb failed"; }
	for try in 1 2 3; do
		port="$(free_port)"
		# Throwaway cluster: no fsync, so tests run fast.
		if as_pg "$pg_ctl" -D "$PG_DIR/data" -l "$log" -w -t 60 -s start \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
			>>"$STATE_DIR/pg_ctl.log" 2>&1 && wait_for pg_ready "$port"; then
			echo "$port" >"$PG_DIR/port"
			return 0
		fi
		as_pg "$pg_ctl" -D "$PG_DIR/data" -m immediate -s stop >/dev/null 2>&1 || true
	done
	show_log "$log"
	die "PostgreSQL did not start"
}

start_redis() {
	local port log="$REDIS_DIR/redis.log" try
	rm -rf "$REDIS_DIR"
	mkdir -p "$REDIS_DIR"
	for try in 1 2 3; do
		port="$(free_port)"
		if redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
			--dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$log" >/dev/null 2>&1 &&
			wait_for redis_ping "$port"; then
			echo "$port" >"$REDIS_DIR/port"
			return 0
		fi
		stop_redis
	done
	show_log "$log"
	die "Redis did not start"
}

stop_postgres() {
	local pg_ctl
	[[ -d "$PG_DIR/data" ]] || return 0
	pg_ctl="$(pg_bin pg_ctl)" || return 0
	as_pg "$pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 -s stop >/dev/null 2>&1 ||
		as_pg "$pg_ctl" -D "$PG_DIR/data" -m immediate -s stop >/dev/null 2>&1 || true
}

stop_redis() {
	local pid
	[[ -f "$REDIS_DIR/redis.pid" ]] || return 0
	pid="$(cat "$REDIS_DIR/redis.pid" 2>/dev/null || true)"
	# Only the process our pid file names, and only if it is redis-server.
	if [[ "$pid" =~ ^[0-9]+$ ]] && grep -qa redis-server "/proc/$pid/cmdline" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		local i
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$REDIS_DIR/redis.pid"
}

running() {
	[[ -f "$ENV_FILE" && -f "$PG_DIR/port" && -f "$REDIS_DIR/port" ]] &&
		pg_ready "$(cat "$PG_DIR/port")" && redis_ping "$(cat "$REDIS_DIR/port")"
}

write_env() {
	local tmp="$ENV_FILE.tmp"
	{
		echo "export GOTRUSTEE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$(cat "$PG_DIR/port")/postgres?sslmode=disable"
		echo "export GOTRUSTEE_TEST_REDIS_URL=redis://127.0.0.1:$(cat "$REDIS_DIR/port")/0"
	} >"$tmp"
	mv "$tmp" "$ENV_FILE"
}

cmd_start() {
	if running; then
		cat "$ENV_FILE"
		return 0
	fi
	cmd_stop
	[[ -e "$STATE_DIR" ]] && die "$STATE_DIR exists and was not made by this script; remove it or set GOTRUSTEE_SERVICES_DIR"
	mkdir -p "$STATE_DIR"
	chmod 0755 "$STATE_DIR"
	touch "$MARKER"
	ensure_packages
	start_postgres
	start_redis
	write_env
	cat "$ENV_FILE"
}

cmd_stop() {
	# Only ever touch a directory this script created.
	[[ -f "$MARKER" ]] || return 0
	stop_postgres
	stop_redis
	rm -rf "$STATE_DIR"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) running ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
