#!/usr/bin/env bash
# netrun_pool under valgrind memcheck: installs valgrind if missing, builds
# with -Wall -Wextra -Werror and assertions, and runs "make test-valgrind":
# a short workload taking every call path, then the regression, isolation
# and TAP suites, each server that preloads netrun_pool (postmaster,
# launcher, worker, backends) under valgrind.  Any invalid read, write or
# free, use of uninitialised memory, crash or failed Assert whose stack
# goes through netrun_pool's code fails the run.  Slow: about an hour
# on 2 cores (the TAP suite is most of it).
#
#   bash scripts/valgrind.sh                      (as root)
#   VG_SUITES="workload regress" bash scripts/valgrind.sh
#   PROVE_TESTS="t/001_worker.pl" VG_SUITES=tap bash scripts/valgrind.sh
#   VG_OPTS=--track-origins=yes KEEP=1 bash scripts/valgrind.sh
#
# It runs as its own user (netrun_vg) with its own lock and temp dir, and
# installs nothing system-wide (make test-valgrind uses a private copy of
# the install), so scripts/test.sh runs alongside it undisturbed.
#
# AddressSanitizer is not used: preloading its runtime into Debian's
# (uninstrumented) postgres binary deadlocks at start-up on this platform.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
VG_USER=netrun_vg
ensure_packages valgrind
ensure_user "$VG_USER"

start_run netrun_pool_vg "$VG_USER" /tmp/netrun_pool_vg.lock
install -d -o "$VG_USER" "$work/tmp"

echo "== build (warnings are errors, assertions on)"
as_user "$VG_USER" make -C "$work/src" -s clean >/dev/null
as_user "$VG_USER" make -C "$work/src" -s ASSERT=1 || die "build failed"

as_user "$VG_USER" env TMPDIR="$work/tmp" ${VG_SUITES:+VG_SUITES="$VG_SUITES"} \
	${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} ${VG_OPTS:+VG_OPTS="$VG_OPTS"} \
	make -C "$work/src" -s test-valgrind ASSERT=1
