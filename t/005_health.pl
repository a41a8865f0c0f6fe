# Health probes and the circuit breaker against real remotes: a remote
# stopped is seen unhealthy and its calls fail at once (callers already
# waiting too), each change of state is logged once, the remote restarted
# is seen healthy and serves again; a remote that accepts TCP but never
# answers times the probe out; calls that lose their connections degrade
# it; counters count exactly.
use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $remote = NetrunTest::start_remote('remote');
my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.health_interval_ms = 200
netrun_pool.unhealthy_after = 3
});
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

my $conninfo = NetrunTest::tcp_conninfo($remote);
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('r', '$conninfo', pool_max => 2,
	    connect_timeout_ms => 1000, acquire_timeout_ms => 5000);
	SELECT netrun_pool.register('single', '$conninfo', pool_max => 1,
	    connect_timeout_ms => 1000, acquire_timeout_ms => 120000);
});

sub health_of
{
	my ($name, $cols) = @_;
	return $local->safe_psql('postgres',
		"SELECT $cols FROM netrun_pool.health WHERE name = '$name'");
}

ok($local->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM netrun_pool.health WHERE status IN ('healthy', 'degraded') AND circuit = 'closed'"),
	'both connections are probed and answer');
is(health_of('r', "is_replica || ' ' || (server_version IS NOT NULL) || ' ' || (latency_ms >= 0)"),
	'false true true', 'the probe saw a primary, its version and its latency');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 41 + 1')"),
	'42', 'calls go through while healthy');

# --- the remote stops ---------------------------------------------------
# A caller holds the only connection of "single", another waits behind it.
my ($hold_out, $hold_err, $wait_out, $wait_err);
my $holder = NetrunTest::background_call($local, 'postgres',
	"SELECT netrun_pool.fetchval('single', 'SELECT pg_sleep(60)')", \$hold_out, \$hold_err);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'netrun_pool:single' AND state = 'active'"),
	'the holder runs on the remote');
my $waiter = NetrunTest::background_call($local, 'postgres',
	"SELECT netrun_pool.fetchval('single', 'SELECT 1')", \$wait_out, \$wait_err);
ok($local->poll_query_until('postgres',
		"SELECT waiting = 1 FROM netrun_pool.pool_stats WHERE name = 'single'"),
	'the waiter waits for the connection');

$remote->stop('immediate');

ok($local->poll_query_until('postgres',
		"SELECT status = 'unhealthy' AND circuit IN ('open', 'half_open') AND consecutive_failures >= 3 FROM netrun_pool.health WHERE name = 'r'"),
	'the stopped remote is seen unhealthy, its circuit open');
$holder->finish;
$waiter->finish;
like($hold_err, qr/ERROR:  (lost connection to netrun_pool connection "single"|terminating connection|server closed the connection)/,
	'the holder loses its call');
# Its connect fails (refused, or cut off while the remote stops: nothing
# is open, so it fails at once), or the circuit opened first: either way
# it is not left to wait.
like($wait_err, qr/ERROR:  (could not connect to netrun_pool connection "single"\nDETAIL:  connection to server at .* failed: |netrun_pool connection "single" is unavailable\nDETAIL:  Its circuit is open after \d+ failed health probes; the last: )/s,
	'the waiter is failed at once, not left to wait out acquire_timeout_ms');

my ($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 1')");
isnt($ret, 0, 'a call to the unhealthy remote fails');
like($err, qr/ERROR:  netrun_pool connection "r" is unavailable/, 'with the circuit breaker\'s error');
like($err, qr/DETAIL:  Its circuit is open after \d+ failed health probes; the last: .*Connection refused.*\. The next probe is due at \d{4}-\d\d-\d\d /s,
	'the detail gives the last error and when the next probe runs');
($ret, $out, $err) = $local->psql('postgres',
	"DO \$\$ BEGIN PERFORM netrun_pool.exec('r', 'SELECT 1'); EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'sqlstate %', SQLSTATE; END \$\$");
like($err, qr/NOTICE:  sqlstate 08004/, 'its SQLSTATE is 08004');

# Eight callers at once: every one fails at once with the same error.
my (@outs, @errs, @calls);
for my $i (0 .. 7)
{
	($outs[$i], $errs[$i]) = ('', '');
	push @calls, NetrunTest::background_call($local, 'postgres',
		"SELECT netrun_pool.fetchval('r', 'SELECT $i')", \$outs[$i], \$errs[$i]);
}
$_->finish for @calls;
is(scalar(grep { /is unavailable/ } @errs), 8, 'eight concurrent callers all fail fast');

# While it stays down, more probes fail: the change was logged once.
ok($local->poll_query_until('postgres',
		"SELECT consecutive_failures >= 6 FROM netrun_pool.health WHERE name = 'r'"),
	'probes keep failing, backing off');
is(NetrunTest::log_count($local, qr/netrun_pool connection "r" is unhealthy; its circuit is open/), 1,
	'becoming unhealthy is logged once, not once per probe');
like(health_of('r', 'last_error'), qr/Connection refused/, 'health keeps the last error');
is($local->safe_psql('postgres', "SELECT netrun_pool.ready('r')"), 'f', 'ready(r) is false');
is($local->safe_psql('postgres', "SELECT netrun_pool.alive()"), 't', 'alive() is true: the worker runs');
like($local->safe_psql('postgres', "SELECT errors_total || ' ' || last_error FROM netrun_pool.pool_stats WHERE name = 'r'"),
	qr/^\d+ 08004: refused while the circuit is open$/, 'refused calls are counted as errors');

# --- the remote comes back ---------------------------------------------
$remote->start;
ok($local->poll_query_until('postgres',
		"SELECT status IN ('healthy', 'degraded') AND circuit = 'closed' AND consecutive_failures = 0 FROM netrun_pool.health WHERE name = 'r'"),
	'the restarted remote is seen healthy again, its circuit closed');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 40 + 2')"),
	'42', 'calls succeed again');
# each connection has its own circuit, closed by its own next probe
ok($local->poll_query_until('postgres',
		"SELECT circuit = 'closed' AND consecutive_failures = 0 FROM netrun_pool.health WHERE name = 'single'"),
	'the other connection to that remote recovers on its own probe');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('single', 'SELECT 7')"),
	'7', 'and serves again');
is(NetrunTest::log_count($local, qr/netrun_pool connection "r" is healthy again; its circuit is closed/), 1,
	'recovering is logged once');
is($local->safe_psql('postgres', "SELECT netrun_pool.ready('r')"), 't', 'ready(r) is true again');

# --- a remote that accepts TCP but never answers ------------------------
my $blackhole = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
	LocalPort => 0, Proto => 'tcp') or die "could not listen: $!";
my $bport = $blackhole->sockport;
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('blackhole', 'host=127.0.0.1 port=$bport dbname=x',
	    connect_timeout_ms => 300, acquire_timeout_ms => 60000);
});
ok($local->poll_query_until('postgres',
		"SELECT status = 'unhealthy' FROM netrun_pool.health WHERE name = 'blackhole'"),
	'a remote that never answers is seen unhealthy');
like(health_of('blackhole', 'last_error'), qr/^health probe timed out after 300 ms$/,
	'its probes time out after connect_timeout_ms');
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('blackhole', 'SELECT 1')");
like($err, qr/ERROR:  netrun_pool connection "blackhole" is unavailable/,
	'a call to it fails at once instead of waiting 60 s for a connection');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('blackhole')");
close($blackhole);

# --- calls that lose their connection degrade the remote -----------------
# Each call terminates its own remote session (57P01): the remote's fault,
# not the caller's SQL.  At least ten must land between two probes, and
# each reconnects, so the calls come from four clients at once and probes
# are 2 s apart here (a fault brings one forward at most once a second:
# windows of about a second).  Rounds of 40 go on until the change is
# logged, within the framework's timeout.
$local->safe_psql('postgres', "ALTER SYSTEM SET netrun_pool.health_interval_ms = 2000; SELECT pg_reload_conf()");
$local->safe_psql('postgres', "SELECT netrun_pool.reset_stats('r')");
my $faulty = PostgreSQL::Test::Utils::tempdir() . "/faulty.sql";
open(my $ffh, '>', $faulty) or die;
print $ffh q{DO $$ BEGIN PERFORM netrun_pool.fetchval('r', 'SELECT pg_terminate_backend(pg_backend_pid())'); EXCEPTION WHEN OTHERS THEN NULL; END $$;}, "\n";
close($ffh);
my $degraded = 0;
my $calls = 0;
my $until = time + $PostgreSQL::Test::Utils::timeout_default;
while (!$degraded && time < $until)
{
	$local->command_ok([ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', '10', '-f', $faulty,
		$local->connstr('postgres') ], 'a round of 40 calls that lose their connection');
	$calls += 40;
	for (1 .. 20)
	{
		$degraded = NetrunTest::log_count($local,
			qr/netrun_pool connection "r" is degraded\n.*DETAIL:  .* \d+ of \d+ calls since the probe before failed through the remote's fault/);
		last if $degraded;
		Time::HiRes::usleep(100_000);
	}
}
ok($degraded >= 1, 'a high rate of lost connections marks the remote degraded (logged)');
$local->safe_psql('postgres', "ALTER SYSTEM RESET netrun_pool.health_interval_ms; SELECT pg_reload_conf()");
is($local->safe_psql('postgres', "SELECT errors_total || ' ' || queries_total FROM netrun_pool.pool_stats WHERE name = 'r'"),
	"$calls $calls", "each failed call is counted once ($calls calls)");
like($local->safe_psql('postgres', "SELECT last_error FROM netrun_pool.pool_stats WHERE name = 'r'"),
	qr/^(57P01: terminating connection due to administrator command|08006: lost connection to netrun_pool connection "r")$/,
	'the last error says why, not a remote message with data');
ok($local->poll_query_until('postgres',
		"SELECT status = 'healthy' OR (status = 'degraded' AND latency_ms > 100) FROM netrun_pool.health WHERE name = 'r'"),
	'with the errors over, the next probes find it healthy');

# --- counters under concurrency -------------------------------------------
$local->safe_psql('postgres', "SELECT netrun_pool.reset_stats('r')");
my $script = PostgreSQL::Test::Utils::tempdir() . "/calls.sql";
open(my $fh, '>', $script) or die $!;
print $fh "SELECT netrun_pool.fetchval('r', 'SELECT 1');\n";
close($fh);
$local->command_ok([ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', '50', '-f', $script,
		'-h', $local->host, '-p', $local->port, 'postgres' ],
	'pgbench: 8 clients, 50 calls each');
is($local->safe_psql('postgres',
		"SELECT queries_total || ' ' || acquired_total || ' ' || errors_total FROM netrun_pool.pool_stats WHERE name = 'r'"),
	'400 400 0', 'counters count every call exactly once under concurrency');
is($local->safe_psql('postgres',
		"SELECT acquire_wait_p95_ms <= acquire_wait_max_ms AND query_p95_ms > 0 AND query_avg_ms > 0 FROM netrun_pool.pool_stats WHERE name = 'r'"),
	't', 'latency percentiles are recorded');
like($local->safe_psql('postgres', 'SELECT netrun_pool.prometheus()'),
	qr/^netrun_pool_queries_total\{name="r"\} 400$/m, 'prometheus() exposes the same count');

done_testing();
