# Shared by scripts/test.sh and scripts/demo.sh: installing what the project
# needs, and building it.  Sourced, not run.

PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin

die() { echo "error: $*" >&2; exit 1; }

require_root() {
	[ "$(id -u)" = 0 ] || die "run this as root (it installs packages and runs the servers as an unprivileged user)"
}

# Install the Debian packages the build and tests use, only if missing, so a
# machine that has them never touches the network.
ensure_packages() {
	local want=(postgresql-$PG_MAJOR postgresql-contrib postgresql-server-dev-$PG_MAJOR
		libpq-dev libc-ares-dev libmicrohttpd-dev libipc-run-perl make gcc procps openssl "$@")
	local missing=()
	local p
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	# The server-dev headers must match the running server exactly; asking for
	# both at once makes apt move them to the same version.
	if [ ${#missing[@]} -eq 0 ] && [ "$(pkg_version postgresql-$PG_MAJOR)" != \
		"$(pkg_version postgresql-server-dev-$PG_MAJOR)" ]; then
		missing=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR)
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		case " ${missing[*]} " in
		*" postgresql-server-dev-$PG_MAJOR "* | *" postgresql-$PG_MAJOR "*)
			missing+=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR) ;;
		esac
		echo "installing: ${missing[*]}"
		apt-get update -qq || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
	fi
	[ "$(pkg_version postgresql-$PG_MAJOR)" = "$(pkg_version postgresql-server-dev-$PG_MAJOR)" ] ||
		die "postgresql-$PG_MAJOR and postgresql-server-dev-$PG_MAJOR differ in version"
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

# An unprivileged system user to run servers as (initdb refuses root).
ensure_user() {
	local user=$1
	id "$user" >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
		--shell /bin/bash "$user" || die "could not create user $user"
}

as_user() {
	local user=$1
	shift
	runuser -u "$user" -- env PATH="$PG_BINDIR:/usr/local/bin:/usr/bin:/bin" "$@"
}

# Build in $1 (a copy owned by $2) warning-free, then install as root.
build_and_install() {
	local dir=$1 user=$2
	shift 2
	as_user "$user" make -C "$dir" -s clean >/dev/null
	as_user "$user" make -C "$dir" -s "$@" || die "build failed"
	make -C "$dir" -s install "$@" >/dev/null || die "install failed"
}

# Copy the source tree (without build products) into a fresh dir for $1.
copy_tree() {
	local src=$1 dst=$2 user=$3
	mkdir -p "$dst"
	tar -C "$src" --exclude=./build --exclude=./.git --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' -cf - . | tar -C "$dst" -xf -
	chown -R "$user:" "$dst"
}

# One test run at a time on a machine (a second run waits for the first, so
# the clean-up can never hit a live run); then a fresh work dir $work under
# /tmp named PREFIX.XXXXXX, removed at exit (kept with KEEP=1), with the
# source tree copied into $work/src.  start_run PREFIX USER [LOCK]: a run
# with its own user, prefix and lock file (valgrind.sh) neither waits for
# nor cleans up after the others.
start_run() {
	local prefix=$1 user=$2 lock=${3:-/tmp/netrun_pool.lock}
	# (outside the PREFIX.* pattern removed below)
	exec 9>"$lock"
	flock 9
	# anything an interrupted run left behind goes first
	pkill -KILL -u "$user" 2>/dev/null
	rm -rf "/tmp/$prefix".*
	work=$(mktemp -d "/tmp/$prefix.XXXXXX")
	RUN_USER=$user
	trap end_run EXIT
	chmod 755 "$work"
	copy_tree "$here" "$work/src" "$user"
}

end_run() {
	pkill -KILL -u "$RUN_USER" 2>/dev/null
	if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}

# The checks in one suite's output: $1 the suite (regress, isolation, tap,
# or valgrind's workload), $2 the runner's output, $3 its exit status.  Sets
# suite_passed and suite_failed.  A runner that failed with no failed check
# counts as one failure (output that could not be compared, a TAP file that
# died or had no plan).
count_suite() {
	local suite=$1 out=$2 rc=$3 t summary
	case $suite in
	tap)
		t=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$out" | tail -1)
		# prove's summary has a line per file that failed, with its count
		summary=$(sed -n '/^Test Summary Report/,/^Files=/p' "$out" |
			sed -n 's/^t\/.* Tests: [0-9]* Failed: \([0-9]*\))$/\1/p')
		suite_failed=$(printf '%s\n' "$summary" | awk 'NF { s += ($1 > 0 ? $1 : 1) } END { print s + 0 }')
		suite_passed=$((${t:-0} - $(printf '%s\n' "$summary" | awk 'NF { s += $1 } END { print s + 0 }'))) ;;
	*)
		# "test NAME ... ok", or indented within a parallel group
		suite_passed=$(grep -cE '^(test| ) *[^ ]+ +\.\.\. ok' "$out")
		suite_failed=$(grep -cE '^(test| ) *[^ ]+ +\.\.\. (FAILED|failed)' "$out") ;;
	esac
	if [ "$rc" != 0 ] && [ "$suite_failed" = 0 ]; then suite_failed=1; fi
}

# Free loopback ports: nothing listens on 127.0.0.1:PORT and no socket file
# is left for it in SOCKDIR.  next_port START SOCKDIR prints the first from START.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port() {
	local p=$1 sockdir=$2
	while ! port_free "$p" || [ -e "$sockdir/.s.PGSQL.$p" ]; do p=$((p + 1)); done
	echo "$p"
}

# ---------------------------------------------------------------- benches
# Shared by bench/*.sh, which run their servers on loopback as an
# unprivileged user.

# Take /tmp/netrun_pool.lock on descriptor 9 for the rest of the script, so
# that a bench and a test run (which install into the same PostgreSQL)
# never overlap; not when the caller already holds it (NETRUN_LOCK_HELD:
# scripts/test.sh's smoke test).  A server started afterwards must not
# inherit the descriptor (9>&-).
take_bench_lock() {
	[ -n "${NETRUN_LOCK_HELD:-}" ] && return 0
	exec 9>/tmp/netrun_pool.lock
	if ! flock -n 9; then
		echo "waiting for /tmp/netrun_pool.lock (a test or bench run holds it)" >&2
		flock 9
	fi
}

# init_bench_server USER DATADIR PORT SOCKDIR [EXTRA_CONF]: a new cluster
# owned by USER, trusting everyone, on 127.0.0.1:PORT with its socket in
# SOCKDIR, without JIT and autovacuum; EXTRA_CONF lines are appended.
init_bench_server() {
	as_user "$1" initdb -D "$2" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	cat >>"$2/postgresql.conf" <<CONF
port = $3
listen_addresses = '127.0.0.1'
unix_socket_directories = '$4'
log_line_prefix = '%m [%p] %b '
jit = off
autovacuum = off
${5:-}
CONF
}

# stop_bench_servers USER DATADIR...: a fast stop of each one that runs.
stop_bench_servers() {
	local user=$1 d
	shift
	for d; do
		[ -f "$d/postmaster.pid" ] &&
			as_user "$user" pg_ctl -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1 || true
	done
}

# wait_for SECONDS SQL EXPECTED: until the caller's `lval SQL` answers
# EXPECTED (true), or SECONDS have passed (false); polls every 0.1 s.
wait_for() {
	local n=$(($1 * 10)) i
	for ((i = 0; i < n; i++)); do
		[ "$(lval "$2" 2>/dev/null || true)" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}
