# The launcher and the pool worker: they appear, wait quietly for their
# database and the extension, reload on SIGHUP, survive SIGTERM and SIGKILL,
# and a server without shared_preload_libraries gets a clear error.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

# The worker's database does not exist yet.
my $local = NetrunTest::start_local('local', database => 'pooldb');
my $remote = NetrunTest::start_remote('remote');

# --- the harness itself: the remote answers on TCP loopback -------------
is( $remote->safe_psql(
		'postgres', 'SELECT inet_server_addr()',
		connstr => NetrunTest::tcp_conninfo($remote)),
	'127.0.0.1',
	'remote server takes TCP connections on 127.0.0.1');

# --- the launcher starts and waits for the missing database ------------
ok( $local->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'netrun_pool launcher' AND datname IS NULL",
		'1'),
	'launcher shows in pg_stat_activity, connected to no database');

$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'waiting for database'),
	'state is "waiting for database" while pooldb is missing');
is( $local->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'netrun_pool worker'"),
	'0',
	'no worker runs without its database');

# Several poll intervals pass; the wait is logged once, not once per poll.
sleep(3);
is(NetrunTest::log_count($local, qr/launcher is waiting for database "pooldb"/),
	1, 'waiting for the database is logged exactly once');
is(NetrunTest::log_count($local, qr/database "pooldb" does not exist/),
	0, 'no connection attempts to the missing database');

# --- the database appears: the worker connects and waits for the extension
$local->safe_psql('postgres', 'CREATE DATABASE pooldb');
ok(NetrunTest::wait_for_state($local, 'postgres', 'waiting for extension'),
	'worker starts once pooldb exists and waits for the extension');
is( $local->safe_psql('postgres',
		"SELECT datname FROM pg_stat_activity WHERE backend_type = 'netrun_pool worker'"),
	'pooldb',
	'worker shows in pg_stat_activity as "netrun_pool worker" in pooldb');
sleep(3);
is(NetrunTest::log_count($local, qr/waiting for extension "netrun_pool" in database "pooldb"/),
	1, 'waiting for the extension is logged exactly once');

# --- the extension appears: the worker runs ------------------------------
$local->safe_psql('pooldb', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'pooldb', 'running'),
	'worker runs once the extension exists');
ok($local->log_contains('netrun_pool worker started in database "pooldb"'),
	'the start is logged');

# --- SIGHUP: the worker reloads its settings ------------------------------
my $reloads = NetrunTest::status_field($local, 'pooldb', 'reloads');
$local->reload;
ok( $local->poll_query_until('pooldb',
		"SELECT reloads > $reloads FROM netrun_pool.worker_status()"),
	'worker processes SIGHUP');

# --- SIGTERM: the worker exits cleanly and the launcher starts a new one -
my $pid = NetrunTest::status_field($local, 'pooldb', 'worker_pid');
my $starts = NetrunTest::status_field($local, 'pooldb', 'starts');
kill 'TERM', $pid;
ok( $local->poll_query_until('pooldb',
		"SELECT worker_pid <> $pid AND state = 'running' AND starts = $starts + 1 FROM netrun_pool.worker_status()"),
	'after SIGTERM a new worker runs');
is(NetrunTest::log_count($local, qr/terminated by signal/),
	0, 'SIGTERM is a clean exit, not a crash');

# --- SIGTERM to the launcher: it comes back and adopts the running worker
my $launcher = NetrunTest::status_field($local, 'pooldb', 'launcher_pid');
$pid = NetrunTest::status_field($local, 'pooldb', 'worker_pid');
kill 'TERM', $launcher;
ok( $local->poll_query_until('pooldb',
		"SELECT launcher_pid IS NOT NULL AND launcher_pid <> $launcher FROM netrun_pool.worker_status()"),
	'the postmaster restarts the launcher');
sleep(2);
is( $local->safe_psql('pooldb',
		"SELECT count(*), min(pid) FROM pg_stat_activity WHERE backend_type = 'netrun_pool worker'"),
	"1|$pid",
	'the new launcher does not start a second worker');

# --- SIGKILL: the server restarts and the worker comes back -------------
$pid = NetrunTest::status_field($local, 'pooldb', 'worker_pid');
kill 'KILL', $pid;
ok( $local->poll_query_until('pooldb',
		"SELECT state = 'running' AND worker_pid <> $pid FROM netrun_pool.worker_status()"),
	'after SIGKILL the worker is back and running');

# --- the extension or the database goes away: back to waiting ------------
$local->safe_psql('pooldb', 'DROP EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'waiting for extension'),
	'DROP EXTENSION sends the worker back to waiting');
$local->safe_psql('postgres', 'DROP DATABASE pooldb WITH (FORCE)');
ok(NetrunTest::wait_for_state($local, 'postgres', 'waiting for database'),
	'DROP DATABASE sends the launcher back to waiting');
$local->safe_psql('postgres', 'CREATE DATABASE pooldb');
$local->safe_psql('pooldb', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'),
	'a recreated database and extension are picked up again');

# --- a clean shutdown ---------------------------------------------------
$local->stop('fast');
ok($local->log_contains('database system is shut down'), 'fast shutdown completes');
is(NetrunTest::log_count($local, qr/terminated by signal (?!9)/),
	0, 'no process died by a signal other than our SIGKILL');

# --- binary upgrade mode (as pg_upgrade starts it): nothing of ours runs --
my $starts_logged = NetrunTest::log_count($local, qr/netrun_pool worker started/);
command_ok(
	[ 'pg_ctl', '-D', $local->data_dir, '-l', $local->logfile, '-o', '-b', '-w', 'start' ],
	'server starts in binary upgrade mode with netrun_pool preloaded');
is( $local->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'netrun_pool%'"),
	'0',
	'no launcher or worker in binary upgrade mode');
command_ok([ 'pg_ctl', '-D', $local->data_dir, '-m', 'fast', '-w', 'stop' ],
	'binary upgrade server stops');
is(NetrunTest::log_count($local, qr/netrun_pool worker started/),
	$starts_logged, 'the worker never started in binary upgrade mode');

# --- without shared_preload_libraries ----------------------------------
# CREATE EXTENSION works; functions that need the worker say what to do.
$remote->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
my ($ret, $out, $err) =
  $remote->psql('postgres', 'SELECT * FROM netrun_pool.worker_status()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'worker_status() fails without preload');
like($err, qr/ERROR:  55000: netrun_pool must be loaded via shared_preload_libraries/,
	'error names the cause, with SQLSTATE 55000');
like($err, qr/HINT:  Add netrun_pool to shared_preload_libraries in postgresql.conf and restart the server\./,
	'hint says what to do');

done_testing();
