# The fault suite: real servers, real faults, and after each one the same
# three checks.
#
#  1. every caller either succeeded or got a clear error (a documented
#     SQLSTATE and message), and none hung: each load and each call is
#     bounded by the framework's timeout, and a hang fails the test;
#  2. no remote connection is left checked out (pool_stats.checked_out and
#     waiting are 0, and no pooled session on the remote is still running
#     a query);
#  3. the pool serves again.
#
# The faults: the remote shut down fast and then immediately under load;
# a pooled connection's remote backend killed mid-query and mid-stream; a
# black hole (TCP accepted, nothing ever answered); a slow remote against
# a local statement_timeout and the remote statement_timeout_ms; the
# worker sent SIGTERM and, separately, SIGKILL under load; a caller
# terminated while it waits for a connection and while its rows stream;
# configure, disable, unregister and register again under load; a remote
# at its max_connections; 100 callers on a pool of 2 with an acquire
# timeout.
#
# Pool "r", which most loads use, pipelines calls (pipeline_depth 4): the
# faults hit calls sent behind others too, which may hear 08007 (outcome
# unknown) where a call alone hears 08006.
use strict;
use warnings;

use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;

my $remote = NetrunTest::start_remote('remote', conf => 'max_connections = 60');
$remote->safe_psql('postgres', 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
# A remote with room for three sessions of its ordinary roles; two more
# slots are kept for superusers, so the test itself can always look in.
my $small = NetrunTest::start_remote('small', conf => qq{
max_connections = 5
superuser_reserved_connections = 2
});
$small->safe_psql('postgres', 'CREATE ROLE app LOGIN');

my $local = NetrunTest::start_local('local', conf => qq{
max_connections = 160
netrun_pool.health_interval_ms = 200
netrun_pool.unhealthy_after = 3
});

# Every call of a load goes through call_once(), which records its outcome
# (SQLSTATE 00000 for success) so that the test can read every error any
# caller saw.  query_canceled is named because OTHERS does not catch it.
$local->safe_psql('postgres', q{
	CREATE EXTENSION netrun_pool;
	CREATE TABLE outcomes (scenario text, sqlstate text, message text, detail text,
	                       began timestamptz, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION call_once(scenario text, conn text, sql text) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		began timestamptz := clock_timestamp();
		st text; msg text; det text;
	BEGIN
		PERFORM netrun_pool.fetchval(conn, sql);
		INSERT INTO outcomes VALUES (scenario, '00000', NULL, NULL, began);
	EXCEPTION WHEN query_canceled OR others THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
		INSERT INTO outcomes VALUES (scenario, st, msg, det, began);
	END $$;
});
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

my $conninfo = NetrunTest::tcp_conninfo($remote);
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('r', '$conninfo', pool_max => 4, pipeline_depth => 4,
	    connect_timeout_ms => 1000, acquire_timeout_ms => 3000);
});
ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 42')", '42'),
	'the pool serves');

# The errors a caller may see when something fails, by SQLSTATE: each is
# in the Errors table of docs/reference.md (57P01 is the remote's own, relayed).
my $conn = qr/netrun_pool connection "\w+"/;
my %clear = (
	'08001' => qr/^could not connect to $conn$/,
	'08004' => qr/^$conn is unavailable$/,
	'08006' => qr/^(lost connection to $conn|could not send a query to $conn|netrun_pool worker is not running)$/,
	'08007' => qr/^the outcome of the call on $conn is unknown$/,
	'53300' => qr/^timed out waiting for a connection from $conn$/,
	'57014' => qr/^(canceling statement due to (statement timeout|user request)|$conn was unregistered)$/,
	'57P01' => qr/^terminating connection due to administrator command$/,
	'42704' => qr/^$conn does not exist$/,
	'55000' => qr/^$conn is disabled$/);

# Outcomes of one scenario: (successes, failures, [unclear errors]).
sub outcomes
{
	my ($scenario) = @_;
	my $rows = $local->safe_psql('postgres', qq{
		SELECT sqlstate, count(*), message FROM outcomes WHERE scenario = '$scenario'
		GROUP BY sqlstate, message ORDER BY 1, 3});
	note("$scenario: " . $local->safe_psql('postgres', qq{
		SELECT count(*) || ' calls from ' || min(began)::time || ' to ' || max(at)::time
		       || ', avg ' || round(extract(epoch FROM avg(at - began)) * 1000) || ' ms, max '
		       || round(extract(epoch FROM max(at - began)) * 1000) || ' ms'
		FROM outcomes WHERE scenario = '$scenario'}));
	my ($ok, $failed, @unclear) = (0, 0);
	foreach my $row (split /\n/, $rows)
	{
		my ($state, $n, $message) = split /\|/, $row, 3;
		if ($state eq '00000') { $ok += $n; next; }
		$failed += $n;
		note("$scenario: $n x $state $message");
		push @unclear, "$state $message"
		  unless $clear{$state} && $message =~ $clear{$state};
	}
	return ($ok, $failed, \@unclear);
}

# $clients callers making calls through call_once() until load_was_clear()
# stops them.  The scenario decides when it has seen what it needs, so a
# slow machine only makes it longer.
sub start_load
{
	my ($scenario, $name, $clients, $sql) = @_;
	my $script = "$tmp/$scenario.sql";
	open(my $fh, '>', $script) or die;
	print $fh "SELECT call_once('$scenario', '$name', '$sql');\n";
	close($fh);
	my %load = (out => '', err => '');
	$load{h} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $clients, '-j', '2', '-T', $PostgreSQL::Test::Utils::timeout_default,
		  '-f', $script, $local->connstr('postgres') ],
		'>', \$load{out}, '2>', \$load{err},
		IPC::Run::timeout(2 * $PostgreSQL::Test::Utils::timeout_default));
	return \%load;
}

# Wait for a load that ends by itself; true if it did (did not hang).
sub finish_load
{
	my ($load) = @_;
	my $ended = eval { $load->{h}->finish; 1 };
	$load->{h}->kill_kill unless $ended;
	return $ended;
}

# The local time now, to tell outcomes before and after a step.
sub local_now
{
	return $local->safe_psql('postgres', 'SELECT clock_timestamp()');
}

# Wait until the load recorded an outcome of $state ('00000': success)
# after $since.
sub load_saw
{
	my ($scenario, $state, $since) = @_;
	return $local->poll_query_until('postgres', qq{
		SELECT count(*) > 0 FROM outcomes
		WHERE scenario = '$scenario' AND sqlstate = '$state' AND at > '$since'});
}

# Wait until the load recorded a failure after $since.
sub load_failed
{
	my ($scenario, $since) = @_;
	return $local->poll_query_until('postgres', qq{
		SELECT count(*) > 0 FROM outcomes
		WHERE scenario = '$scenario' AND sqlstate <> '00000' AND at > '$since'});
}

# The pids of $node's sessions of pool $name, as a list for IN (...).
sub remote_pids
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'netrun_pool:$name'");
}

# A psql call in the background, bounded by the framework's timeout.
sub start_call
{
	my ($sql) = @_;
	my %call = (out => '', err => '');
	$call{h} = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'VERBOSITY=verbose', '-d', $local->connstr('postgres'), '-c', $sql ],
		'>', \$call{out}, '2>', \$call{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%call;
}

sub finish_call
{
	my ($call) = @_;
	my $ended = eval { $call->{h}->finish; 1 };
	$call->{h}->kill_kill unless $ended;
	return $ended;
}

# Rows are flowing: the remote session waits for its client to take them.
sub remote_streaming
{
	my ($node, $name, $like) = @_;
	return qq{SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'netrun_pool:$name' AND query LIKE '$like' AND wait_event = 'ClientWrite'};
}

sub remote_active
{
	my ($node, $name, $like) = @_;
	return qq{SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'netrun_pool:$name' AND state = 'active' AND query LIKE '$like'};
}

# Checks 2 and 3, after a fault: nothing checked out or waiting, no pooled
# session of $name still busy on $node, and a call served.
sub settles_and_serves
{
	my ($case, $name, $node) = @_;
	ok($local->poll_query_until('postgres',
			"SELECT checked_out = 0 AND waiting = 0 FROM netrun_pool.pool_stats WHERE name = '$name'"),
		"$case: nothing is left checked out or waiting");
	ok($node->poll_query_until('postgres', remote_active($node, $name, '%'), '0'),
		"$case: no pooled session on the remote is still running a query");
	ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('$name', 'SELECT 7 * 6')", '42'),
		"$case: the pool serves again");
}

# Check 1 for a load: stopped, no session is left inside a call (a call
# that hung would stay), no client met an error call_once() did not
# catch, and each failure was a clear one.
sub load_was_clear
{
	my ($case, $scenario, $load, $want_failures) = @_;
	$load->{h}->kill_kill(grace => 5);
	ok($local->poll_query_until('postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		WHERE query LIKE 'SELECT call_once(''$scenario''%' AND pid <> pg_backend_pid()}, '0'),
		"$case: every caller's session ended (no call hung)");
	unlike($load->{err}, qr/aborted|error/i, "$case: no client of the load met an error it did not expect")
	  or diag($load->{err});
	my ($ok, $failed, $unclear) = outcomes($scenario);
	ok($ok > 0, "$case: calls succeeded ($ok)");
	ok($failed > 0, "$case: the fault hit calls ($failed failed)") if $want_failures;
	is(scalar @$unclear, 0, "$case: every failure was a documented error")
	  or diag(join("\n", @$unclear));
	return ($ok, $failed);
}

my $worker = NetrunTest::status_field($local, 'postgres', 'worker_pid');

# --- 1. the remote shuts down under load, fast and then immediate --------------
{
	my $load = start_load('shutdown', 'r', 16, 'SELECT pg_sleep(0.01)');
	ok(load_saw('shutdown', '00000', '-infinity'), 'remote shutdown: the load runs');
	foreach my $mode ('fast', 'immediate')
	{
		my $stopped = local_now();
		$remote->stop($mode);
		ok(load_failed('shutdown', $stopped), "remote shutdown ($mode): calls fail while it is down");
		my $back = local_now();
		$remote->start;
		ok(load_saw('shutdown', '00000', $back), "remote shutdown ($mode): the load is served again once the remote is back");
	}
	my ($ok, $failed) = load_was_clear('remote shutdown', 'shutdown', $load, 1);
	note("remote shutdown: $ok calls succeeded, $failed failed clearly");
	settles_and_serves('remote shutdown', 'r', $remote);
}

# --- 2. the remote backend of a pooled connection is killed --------------------
# $sql runs; once $ready holds on the remote, its remote backend (query
# LIKE $like) is terminated.
sub remote_backend_killed
{
	my ($case, $sql, $ready, $like) = @_;
	my $call = start_call($sql);
	ok($remote->poll_query_until('postgres', $ready, '1'), "$case: the remote runs the call");
	$remote->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'netrun_pool:r' AND query LIKE '$like'");
	ok(finish_call($call), "$case: the caller does not hang");
	like($call->{err}, qr/ERROR:  (57P01: terminating connection due to administrator command|08006: lost connection to netrun_pool connection "r")/,
		"$case: the caller gets a clear error");
	settles_and_serves("backend killed $case", 'r', $remote);
}
remote_backend_killed('mid-query',
	"SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(300)')",
	remote_active($remote, 'r', 'SELECT pg_sleep(300)%'), 'SELECT pg_sleep(300)%');
# mid-stream: rows are flowing
remote_backend_killed('mid-stream',
	q{SELECT count(*) FROM netrun_pool.query('r',
		'SELECT g, repeat(''x'', 200) FROM generate_series(1, 50000000) g') AS t(g int, x text)},
	remote_streaming($remote, 'r', 'SELECT g, repeat%'), 'SELECT g, repeat%');

# --- 3. a black hole: TCP accepted, nothing ever answered ------------------------
# The circuit would open after three probes; with it held shut for this case,
# the calls themselves meet connect_timeout_ms.
{
	$local->safe_psql('postgres', 'ALTER SYSTEM SET netrun_pool.unhealthy_after = 100; SELECT pg_reload_conf()');
	my $hole = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
		LocalPort => 0, Proto => 'tcp') or die "could not listen: $!";
	my $port = $hole->sockport;
	# 'hole' times its callers out; 'hole_wait' keeps one waiting for
	# minutes, to show the worker serving others while a connect hangs.
	$local->safe_psql('postgres', qq{
		SELECT netrun_pool.register('hole', 'host=127.0.0.1 port=$port dbname=x', pool_max => 2,
		    connect_timeout_ms => 400, acquire_timeout_ms => 6000);
		SELECT netrun_pool.register('hole_wait', 'host=127.0.0.1 port=$port dbname=x', pool_max => 1,
		    connect_timeout_ms => 170000, acquire_timeout_ms => 170000);
	});
	ok($local->poll_query_until('postgres',
			"SELECT count(*) FROM netrun_pool.pool_stats WHERE name LIKE 'hole%'", '2'),
		'black hole: registered');
	my $long = start_call("SELECT netrun_pool.fetchval('hole_wait', 'SELECT 1')");
	my @calls = map { start_call("SELECT netrun_pool.fetchval('hole', 'SELECT 1')") } 1 .. 4;
	ok($local->poll_query_until('postgres',
			"SELECT bool_and(waiting > 0) FROM netrun_pool.pool_stats WHERE name LIKE 'hole%'"),
		'black hole: callers are waiting on it');
	# Meanwhile the worker serves everyone else: twenty calls in one statement.
	is($local->safe_psql('postgres', q{
		SELECT count(*) FROM generate_series(1, 20) i
		WHERE netrun_pool.fetchval('r', 'SELECT $1::int * 2', ARRAY[i::text]) = (i * 2)::text}),
		'20', 'black hole: other pools are served while its connects hang');
	is($local->safe_psql('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'hole_wait'"),
		'1', 'black hole: (a caller of it was still waiting meanwhile)');
	# A caller waiting on a connect that hangs can be cancelled.
	$local->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%''hole_wait''%' AND pid <> pg_backend_pid()");
	ok(finish_call($long), 'black hole: a waiting caller, cancelled, ends');
	like($long->{err}, qr/ERROR:  57014: canceling statement due to user request/, 'black hole: with 57014');
	ok($local->poll_query_until('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'hole_wait'", '0'),
		'black hole: and leaves the queue');
	my $ended = 0;
	my @errors;
	foreach my $call (@calls)
	{
		$ended++ if finish_call($call);
		push @errors, $call->{err};
	}
	is($ended, 4, 'black hole: no caller hangs');
	is(scalar(grep { /ERROR:  08001: could not connect to netrun_pool connection "hole"\nDETAIL:  timeout expired after 400 ms/ } @errors),
		4, 'black hole: each caller hears that connect_timeout_ms expired')
	  or diag(join("\n", @errors));
	settles_and_serves('black hole', 'r', $remote);
	# The pool itself serves once its conninfo points somewhere real.
	$local->safe_psql('postgres', "SELECT netrun_pool.configure('hole', conninfo => '$conninfo')");
	settles_and_serves('black hole, repointed', 'hole', $remote);
	close($hole);
	$local->safe_psql('postgres', q{
		SELECT netrun_pool.unregister('hole');
		SELECT netrun_pool.unregister('hole_wait');
		ALTER SYSTEM RESET netrun_pool.unhealthy_after; SELECT pg_reload_conf();
	});
}

# --- 4. a slow remote ------------------------------------------------------------
{
	my $call = start_call("SET statement_timeout = '300ms'; SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(300)')");
	ok(finish_call($call), 'local statement_timeout: the caller does not hang');
	like($call->{err}, qr/ERROR:  57014: canceling statement due to statement timeout/,
		'local statement_timeout: the call ends with 57014');
	settles_and_serves('local statement_timeout', 'r', $remote);

	$local->safe_psql('postgres',
		"SELECT netrun_pool.register('slow', '$conninfo', pool_max => 1, statement_timeout_ms => 300)");
	ok($local->poll_query_until('postgres',
			"SELECT count(*) FROM netrun_pool.pool_stats WHERE name = 'slow'", '1'),
		'slow: registered');
	# Two callers on one connection: the second waits behind the first.
	my @calls = map { start_call("SELECT netrun_pool.fetchval('slow', 'SELECT pg_sleep(300)')") } 1 .. 2;
	my $ended = 0;
	foreach my $c (@calls) { $ended++ if finish_call($c); }
	is($ended, 2, 'remote statement_timeout_ms: no caller hangs');
	is(scalar(grep { $_->{err} =~ /ERROR:  57014: canceling statement due to statement timeout\nCONTEXT:  .*netrun_pool connection "slow"/s } @calls),
		2, 'remote statement_timeout_ms: both calls end with the remote 57014, naming the connection')
	  or diag(join("\n", map { $_->{err} } @calls));
	settles_and_serves('remote statement_timeout_ms', 'slow', $remote);
	is($local->safe_psql('postgres', "SELECT created_total FROM netrun_pool.pool_stats WHERE name = 'slow'"),
		'1', 'remote statement_timeout_ms: the connection survived its timeouts (one was ever opened)');
}

# --- 5. the worker is stopped or killed under load -----------------------------------
{
	my $starts = NetrunTest::status_field($local, 'postgres', 'starts');
	my $load = start_load('sigterm', 'r', 8, 'SELECT pg_sleep(0.01)');
	ok(load_saw('sigterm', '00000', '-infinity'), 'worker SIGTERM: the load runs');
	kill 'TERM', $worker;
	ok($local->poll_query_until('postgres',
			"SELECT worker_pid <> $worker AND state = 'running' AND starts = $starts + 1 FROM netrun_pool.worker_status()"),
		'worker SIGTERM: a new worker runs');
	my $back = local_now();
	ok(load_saw('sigterm', '00000', $back), 'worker SIGTERM: the new worker serves the load');
	load_was_clear('worker SIGTERM', 'sigterm', $load, 1);
	settles_and_serves('worker SIGTERM', 'r', $remote);
	is(NetrunTest::log_count($local, qr/terminated by signal/), 0, 'worker SIGTERM: no process crashed');

	# SIGKILL: the postmaster restarts the whole server, so the load's own
	# sessions go too.  They must be told, and the server must come back.
	$worker = NetrunTest::status_field($local, 'postgres', 'worker_pid');
	$load = start_load('sigkill', 'r', 8, 'SELECT pg_sleep(0.01)');
	ok(load_saw('sigkill', '00000', '-infinity'), 'worker SIGKILL: the load runs');
	my $old_sessions = remote_pids($remote, 'r');
	kill 'KILL', $worker;
	ok(finish_load($load), 'worker SIGKILL: the load ended (no caller hung)');
	my @lines = grep { /error|abort/i } split /\n/, $load->{err};
	is(scalar(grep { !/server closed the connection unexpectedly|terminating connection because of crash of another server process|connection to server .* failed|Run was aborted|client \d+ aborted|perhaps the backend died|there is no connection to the server|connection to server was lost|the database system is in recovery mode/ } @lines),
		0, 'worker SIGKILL: the load\'s sessions were told their server restarted, nothing else')
	  or diag($load->{err});
	ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker SIGKILL: the worker runs again');
	$worker = NetrunTest::status_field($local, 'postgres', 'worker_pid');
	settles_and_serves('worker SIGKILL', 'r', $remote);
	ok($old_sessions ne '' && $remote->poll_query_until('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE pid IN ($old_sessions)", '0'),
		'worker SIGKILL: the dead worker\'s remote sessions are gone');
}

# --- 6. a caller is terminated ----------------------------------------------------
{
	$local->safe_psql('postgres',
		"SELECT netrun_pool.register('one', '$conninfo', pool_max => 1, acquire_timeout_ms => 120000)");
	ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('one', 'SELECT 1')", '1'),
		'one: registered and serving');
	my $holder = start_call("SELECT netrun_pool.fetchval('one', 'SELECT pg_sleep(300)')");
	ok($remote->poll_query_until('postgres', remote_active($remote, 'one', 'SELECT pg_sleep(300)%'), '1'),
		'waiting caller: the only connection is held');
	my $waiter = start_call("SELECT netrun_pool.fetchval('one', 'SELECT ''waiter''')");
	ok($local->poll_query_until('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'one'", '1'),
		'waiting caller: a second caller waits');
	$local->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%''''waiter''''%' AND pid <> pg_backend_pid()");
	ok(finish_call($waiter), 'waiting caller: terminated, it ends');
	like($waiter->{err}, qr/terminating connection due to administrator command/, 'waiting caller: it is told why');
	ok($local->poll_query_until('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'one'", '0'),
		'waiting caller: it leaves the queue at once, while the holder still holds');
	is($remote->safe_psql('postgres', remote_active($remote, 'one', 'SELECT pg_sleep(300)%')), '1',
		'waiting caller: (the holder was still running then)');
	$local->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(300)%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()");
	ok(finish_call($holder), 'waiting caller: the holder, cancelled, ends');
	settles_and_serves('caller terminated while waiting', 'one', $remote);

	my $streamer = start_call(q{SELECT count(*) FROM netrun_pool.query('r',
		'SELECT g, repeat(''y'', 200) FROM generate_series(1, 50000000) g') AS t(g int, x text)});
	ok($remote->poll_query_until('postgres', remote_streaming($remote, 'r', 'SELECT g, repeat%'), '1'),
		'streaming caller: rows are flowing');
	$local->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%repeat(''''y''''%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()");
	ok(finish_call($streamer), 'streaming caller: terminated, it ends');
	like($streamer->{err}, qr/terminating connection due to administrator command/, 'streaming caller: it is told why');
	settles_and_serves('caller terminated mid-stream', 'r', $remote);
	is(NetrunTest::status_field($local, 'postgres', 'worker_pid'), $worker,
		'terminated callers: the worker is the same process');
}

# --- 7. the registry changes under load ----------------------------------------------
{
	$local->safe_psql('postgres',
		"SELECT netrun_pool.register('reg', '$conninfo', pool_max => 4, acquire_timeout_ms => 3000)");
	ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('reg', 'SELECT 1')", '1'),
		'reg: registered and serving');
	my $load = start_load('registry', 'reg', 8, 'SELECT pg_sleep(0.01)');
	ok(load_saw('registry', '00000', '-infinity'), 'registry changes: the load runs');
	my $first_sessions = remote_pids($remote, 'reg');
	# Each change, and what the load must see after it.
	my $applied = 0;
	my $seen = 0;
	my $change = sub {
		my ($sql, $expect) = @_;
		my $since = local_now();
		my ($ret, $out, $err) = $local->psql('postgres', $sql);
		$applied++ if $ret == 0;
		$seen++ if load_saw('registry', $expect, $since);
	};
	$change->("SELECT netrun_pool.configure('reg', pool_max => 2)", '00000');
	$change->("SELECT netrun_pool.configure('reg', pool_max => 6, pool_min => 2)", '00000');
	$change->("SELECT netrun_pool.configure('reg', enabled => false)", '55000');
	$change->("SELECT netrun_pool.configure('reg', enabled => true)", '00000');
	# A change the pool cannot take is refused and leaves it as it was.
	my $before = $local->safe_psql('postgres', "SELECT conninfo || ' ' || updated_at FROM netrun_pool.registry WHERE name = 'reg'");
	my ($ret, $out, $err) = $local->psql('postgres',
		"SELECT netrun_pool.configure('reg', conninfo => '$conninfo application_name=x')");
	like($err, qr/ERROR:  connection option "application_name" is not allowed in a netrun_pool connection/,
		'registry changes: a conninfo the pool sets itself is refused under load');
	is($local->safe_psql('postgres', "SELECT conninfo || ' ' || updated_at FROM netrun_pool.registry WHERE name = 'reg'"),
		$before, 'registry changes: and the connection is as it was');
	$change->("SELECT netrun_pool.unregister('reg')", '42704');
	$change->("SELECT netrun_pool.register('reg', '$conninfo', pool_max => 3)", '00000');
	$change->("SELECT netrun_pool.unregister('reg', force => true)", '42704');
	$change->("SELECT netrun_pool.register('reg', '$conninfo', pool_max => 4)", '00000');
	is($applied, 8, 'registry changes: every change applied');
	is($seen, 8, 'registry changes: the load saw each change take effect');
	load_was_clear('registry changes', 'registry', $load, 1);
	settles_and_serves('registry changes', 'reg', $remote);
	is($local->safe_psql('postgres', "SELECT pool_max FROM netrun_pool.pool_stats WHERE name = 'reg'"),
		'4', 'registry changes: the last registration is the one in force');
	ok($first_sessions ne '' && $remote->poll_query_until('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE pid IN ($first_sessions)", '0'),
		'registry changes: the connections of the unregistered definition are closed');
}

# --- 8. the remote is full --------------------------------------------------------------
{
	my $smallinfo = NetrunTest::tcp_conninfo($small) . ' user=app';
	$local->safe_psql('postgres', qq{
		SELECT netrun_pool.register('full', '$smallinfo', pool_max => 2,
		    connect_timeout_ms => 1000, acquire_timeout_ms => 1500);
	});
	ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('full', 'SELECT 1')", '1'),
		'remote full: serving while there is room');
	# Fill the ordinary roles' remaining slots with sessions that sleep.
	my $free = $small->safe_psql('postgres',
		"SELECT 3 - count(*) FROM pg_stat_activity WHERE usename = 'app'");
	# One at a time: a sleeper refused because this test's own session
	# was still leaving its slot is started again (the harness's race with
	# itself, not the pool's).
	my @sleepers;
	for my $try (1 .. 50)
	{
		my $have = $small->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'");
		last if $have >= 3;
		my ($o, $e) = ('', '');
		my $h = IPC::Run::start(
			[ 'psql', '-X', '-U', 'app', '-d', $small->connstr('postgres'), '-c', 'SELECT pg_sleep(120)' ],
			'>', \$o, '2>', \$e);
		my $in = 0;
		for (1 .. 100)
		{
			eval { $h->pump_nb };
			last if $e =~ /FATAL/;
			$in = $small->safe_psql('postgres',
				"SELECT count(*) > $have FROM pg_stat_activity WHERE usename = 'app'") eq 't';
			last if $in;
		}
		if ($in) { push @sleepers, $h; }
		else { $h->kill_kill; }
	}
	ok($small->poll_query_until('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'", '3'),
		"remote full: $free sleeping sessions fill it");
	my ($ret, $out, $err) = $small->psql('postgres', 'SELECT 1', extra_params => [ '-U', 'app' ]);
	like($err, qr/remaining connection slots are reserved|too many clients already/,
		'remote full: (it refuses another session)');
	# A caller holds the pool's one open connection; the next one needs a
	# new connection, which the remote refuses.
	my $holder = start_call("SELECT netrun_pool.fetchval('full', 'SELECT pg_sleep(300)')");
	ok($small->poll_query_until('postgres', remote_active($small, 'full', 'SELECT pg_sleep(300)%'), '1'),
		'remote full: a caller holds the open connection');
	my $second = start_call("SELECT netrun_pool.fetchval('full', 'SELECT 1')");
	ok(finish_call($second), 'remote full: the caller that needs a new connection does not hang');
	# 53300 while the open connection is busy, or 08004 if the probes
	# fail too: either way with the remote's reason.
	like($second->{err}, qr/ERROR:  (53300: timed out waiting for a connection from |08004: )netrun_pool connection "full".*\nDETAIL:  .*(remaining connection slots are reserved|too many clients already)/s,
		'remote full: it fails with the remote\'s reason');
	$small->safe_psql('postgres',
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'netrun_pool:full' AND query LIKE 'SELECT pg_sleep(300)%'");
	ok(finish_call($holder), 'remote full: the holder, its remote query cancelled, ends');
	$_->kill_kill foreach @sleepers;
	settles_and_serves('remote full', 'full', $small);
}

# --- 9. a pool of two, 100 callers, a 1 s acquire timeout ----------------------------------
{
	$local->safe_psql('postgres', qq{
		SELECT netrun_pool.register('tiny', '$conninfo', pool_max => 2, acquire_timeout_ms => 1000);
	});
	ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('tiny', 'SELECT 1')", '1'),
		'tiny: registered and serving');
	$local->safe_psql('postgres', "SELECT netrun_pool.reset_stats('tiny')");
	my $script = "$tmp/exhaust.sql";
	open(my $fh, '>', $script) or die;
	print $fh "SELECT call_once('exhausted', 'tiny', 'SELECT pg_sleep(0.3)');\n";
	close($fh);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '100', '-j', '2', '-t', '1', '-f', $script,
		  $local->connstr('postgres') ],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $peak = 0;
	while ($h->pumpable)
	{
		my ($r, $n) = $remote->psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:tiny'");
		$peak = $n if $r == 0 && $n > $peak;
		last unless eval { IPC::Run::pump_nb($h); 1 };
		select(undef, undef, undef, 0.1);
	}
	ok(eval { $h->finish; 1 }, 'pool exhausted: the 100 callers all ended');
	is($h->result(0), 0, 'pool exhausted: no client was aborted') or diag($err);
	my ($ok, $failed, $unclear) = outcomes('exhausted');
	is($ok + $failed, 100, "pool exhausted: 100 outcomes ($ok served, $failed timed out)");
	ok($ok >= 2 && $failed >= 1, 'pool exhausted: some were served and some timed out');
	is(scalar @$unclear, 0, 'pool exhausted: every failure was a documented error')
	  or diag(join("\n", @$unclear));
	is($local->safe_psql('postgres', "SELECT count(*) FROM outcomes WHERE scenario = 'exhausted' AND sqlstate <> '53300' AND sqlstate <> '00000'"),
		'0', 'pool exhausted: every failure was the acquire timeout (53300)');
	is($local->safe_psql('postgres', "SELECT exhausted_total FROM netrun_pool.pool_stats WHERE name = 'tiny'"),
		$failed, 'pool exhausted: exhausted_total counts each of them');
	settles_and_serves('pool exhausted', 'tiny', $remote);
	ok($peak >= 1 && $peak <= 2, "pool exhausted: the remote never held more than pool_max = 2 of its connections (peak $peak)");
}

# Only the SIGKILL case may have killed a process.
is(NetrunTest::log_count($local, qr/terminated by signal (?!9)/), 0,
	'no local process died of a signal other than the SIGKILL the test sent');

done_testing();
