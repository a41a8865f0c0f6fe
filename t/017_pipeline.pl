# Pipelined connections (pipeline_depth > 1): calls of several callers sent
# back to back on one remote connection, and what that must not change.
#
# Each scenario holds the pool's only connection (pool_max 1) with a call
# that waits on the remote for an advisory lock the test holds (the
# barrier), then sends more calls, which pool_stats.pipelined_total shows
# going out behind it.  Then, from the callers' side:
#
#  - an error in the middle of a pipeline fails that call only, with the
#    remote's own message, and nothing of it is applied;
#  - a cancel: of a call still queued in the pool (dropped, never run), of
#    one sent behind another (its caller hears at once; the remote still
#    runs it), and of the running one (a cancel reaches the remote, and
#    the calls behind it complete without the barrier being let go);
#  - the remote backend killed mid-pipeline with writes in it: the running
#    call hears of it, the calls behind get 08007, and row by row nothing
#    of theirs was applied or retried;
#  - statements that run alone (BEGIN, SET, ...) are never sent behind
#    another call, and nothing is swallowed into a transaction they open;
#  - a deferred constraint that fails at commit is the caller's error;
#  - 16 pgbench clients, each its own tenant, on one pipelined connection:
#    every call sees its own tenant, every write lands once.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $remote = NetrunTest::start_remote('remote');
$remote->safe_psql('postgres', q{
	CREATE TABLE w (id serial, who text NOT NULL, n int);
	CREATE TABLE d (id int, CONSTRAINT d_u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);
});
my $local = NetrunTest::start_local('local', conf => 'max_connections = 60');
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
my $conninfo = NetrunTest::tcp_conninfo($remote);
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('p', '$conninfo', pool_max => 1, pipeline_depth => 5,
	    acquire_timeout_ms => 120000, tenant_guard => 'off');
});
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('p', 'SELECT 42')"), '42', 'the pool serves');

sub pool_stat
{
	my ($col) = @_;
	return $local->safe_psql('postgres', "SELECT $col FROM netrun_pool.pool_stats WHERE name = 'p'");
}

# The barrier: a remote session holding advisory lock 4242 until killed.
sub barrier_up
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-d', $remote->connstr('postgres'), '-c',
		  'SELECT pg_advisory_lock(4242), pg_sleep(600)' ],
		'>', \$out, '2>', \$err);
	$remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted", '1')
	  or die 'the barrier did not come up';
	return $h;
}

sub barrier_down
{
	my ($h) = @_;
	$remote->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_advisory_lock(4242)%'");
	$h->finish;
	return;
}

# A caller in the background; returns [harness, \out, \err].
sub call
{
	my ($sql) = @_;
	my ($out, $err);
	my $h = NetrunTest::background_call($local, 'postgres', $sql, \$out, \$err);
	return [ $h, \$out, \$err ];
}

sub finish
{
	my ($c) = @_;
	$c->[0]->finish;
	my ($out, $err) = (${ $c->[1] }, ${ $c->[2] });
	chomp($out);
	return ($out, $err);
}

# The head: waits for the barrier on the remote, on the pool's connection.
sub head_call
{
	my $c = call("SELECT netrun_pool.fetchval('p', 'SELECT pg_advisory_xact_lock_shared(4242)::text || ''held''')");
	$remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock_shared(4242)%'", '1')
	  or die 'the head call did not reach the barrier';
	return $c;
}

# Start a call and wait until it went out behind the running one.
sub pipelined_call
{
	my ($sql) = @_;
	my $before = pool_stat('pipelined_total');
	my $c = call($sql);
	ok($local->poll_query_until('postgres',
			"SELECT pipelined_total > $before FROM netrun_pool.pool_stats WHERE name = 'p'"),
		"sent in the pipeline: $sql");
	return $c;
}

sub rows_of
{
	my ($who) = @_;
	return $remote->safe_psql('postgres', "SELECT count(*) FROM w WHERE who = '$who'");
}

sub local_pid_of
{
	my ($pattern) = @_;
	my $pid;
	$local->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%$pattern%' AND pid <> pg_backend_pid()", '1')
	  or die "no local backend runs $pattern";
	return $local->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE query LIKE '%$pattern%' AND pid <> pg_backend_pid()");
}

my $created = pool_stat('created_total');

# ------------------------------------------------ an error mid-pipeline
{
	my $b = barrier_up();
	my $head = head_call();
	my $a = pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['e_a'])");
	my $bad = pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who, n) VALUES (\$1, 1/0)', ARRAY['e_b'])");
	my $c = pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['e_c'])");
	my $syntax = pipelined_call("SELECT * FROM netrun_pool.query('p', 'SELECT who, FROM w') AS t(who text)");
	barrier_down($b);
	my ($ho) = finish($head);
	is($ho, 'held', 'the running call ends normally');
	my ($ao) = finish($a);
	is($ao, 'INSERT 0 1', 'the call before the failing one is applied');
	my ($bo, $be) = finish($bad);
	is($be, qq{ERROR:  division by zero\nCONTEXT:  netrun_pool connection "p"\n},
		'the failing call gets the remote\'s error');
	my ($co) = finish($c);
	is($co, 'INSERT 0 1', 'the call after the failing one is applied');
	my (undef, $se) = finish($syntax);
	is($se, qq{ERROR:  syntax error at or near "FROM"\nLINE 1: SELECT who, FROM w\n} . (' ' x 20) . qq{^\nQUERY:  SELECT who, FROM w\nCONTEXT:  netrun_pool connection "p"\n},
		'a syntax error in a pipelined call comes back with its position');
	is(rows_of('e_a') . rows_of('e_b') . rows_of('e_c'), '101',
		'row by row: e_a once, nothing of the failed call, e_c once');
}

# ------------------------------------------------ cancels
$local->safe_psql('postgres', "SELECT netrun_pool.configure('p', pipeline_depth => 3)");
{
	my $b = barrier_up();
	my $head = head_call();
	my $x = pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['c_x'])");
	my $keep = pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['c_keep'])");
	# the pipeline is full (3 calls): this one waits in the pool
	my $queued = call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['c_queued'])");
	ok($local->poll_query_until('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'p'", '1'),
		'a fourth call waits in the pool, not in the pipeline');

	$local->safe_psql('postgres', 'SELECT pg_cancel_backend(' . local_pid_of("c_queued") . ')');
	my (undef, $qe) = finish($queued);
	like($qe, qr/canceling statement due to user request/, 'a queued call is cancelled');

	$local->safe_psql('postgres', 'SELECT pg_cancel_backend(' . local_pid_of("c_x") . ')');
	my (undef, $xe) = finish($x);
	like($xe, qr/canceling statement due to user request/, 'a call sent behind another is cancelled at once');

	# the running call: its cancel reaches the remote; the barrier stays up
	$local->safe_psql('postgres', 'SELECT pg_cancel_backend(' . local_pid_of("pg_advisory_xact_lock_shared(4242)") . ')');
	my (undef, $he) = finish($head);
	like($he, qr/canceling statement due to user request/, 'the running call is cancelled');
	my ($ko, $ke) = finish($keep);
	is($ko, 'INSERT 0 1', 'the call behind the cancelled ones completes, the barrier still up')
	  or diag($ke);
	ok($remote->safe_psql('postgres',
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted") eq '1',
		'the barrier was never let go');
	barrier_down($b);
	is(rows_of('c_queued'), '0', 'the queued call was dropped: never run');
	is(rows_of('c_x'), '1', 'the call that was on its way ran on the remote (documented)');
	is(rows_of('c_keep'), '1', 'c_keep applied once');
	is(pool_stat('created_total'), $created, 'the connection survived the cancels');
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('p', 'SELECT 7')"), '7', 'the pool serves');
}

# ------------------------------------------------ the remote killed mid-pipeline
$local->safe_psql('postgres', "SELECT netrun_pool.configure('p', pipeline_depth => 4)");
{
	my $b = barrier_up();
	my $head = head_call();
	my @k = map {
		pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['k_$_'])")
	} 1 .. 3;
	$remote->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'netrun_pool:p'");
	my (undef, $he) = finish($head);
	like($he, qr/ERROR:  (terminating connection due to administrator command|lost connection to netrun_pool connection "p")/,
		'the running call hears its connection died');
	for my $i (1 .. 3)
	{
		my ($o, $e) = finish($k[ $i - 1 ]);
		like($e, qr/^ERROR:  the outcome of the call on netrun_pool connection "p" is unknown\nDETAIL:  The call was sent in a pipeline behind another, and the connection ended before its answer came \(server closed the connection unexpectedly\); the remote may or may not have run it\.\nHINT:  Check the remote before running it again\.\nCONTEXT:  netrun_pool connection "p"$/m,
			"k_$i: 08007, outcome unknown");
	}
	barrier_down($b);
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('p', 'SELECT 8')"), '8', 'the pool serves again');
	# never a silent retry: the writes that were in flight did not land
	is(join(',', map { rows_of("k_$_") } 1 .. 3), '0,0,0', 'row by row: no write of the lost pipeline applied or retried');
}

# ------------------------------------------------ statements that run alone
{
	my $b = barrier_up();
	my $head = head_call();
	my $before = pool_stat('pipelined_total');
	my $a = pipelined_call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['s_a'])");
	my $begin = call("SELECT netrun_pool.exec('p', ' /* opens a transaction */ BEGIN')");
	ok($local->poll_query_until('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'p'", '1'),
		'BEGIN waits for the connection, not in the pipeline');
	my $set = call("SELECT netrun_pool.exec('p', 'SET work_mem = ''1MB''')");
	my $c = call("SELECT netrun_pool.exec('p', 'INSERT INTO w (who) VALUES (\$1)', ARRAY['s_c'])");
	ok($local->poll_query_until('postgres', "SELECT waiting FROM netrun_pool.pool_stats WHERE name = 'p'", '3'),
		'the calls after it wait their turn');
	is(pool_stat('pipelined_total') - $before, 1, 'only the INSERT went out behind the running call');
	barrier_down($b);
	finish($head);
	is((finish($a))[0], 'INSERT 0 1', 's_a applied');
	is((finish($begin))[0], 'BEGIN', 'BEGIN ran, alone');
	is((finish($set))[0], 'SET', 'SET ran, alone');
	is((finish($c))[0], 'INSERT 0 1', 's_c applied');
	is(rows_of('s_a') . rows_of('s_c'), '11', 'nothing was swallowed into the transaction BEGIN opened');
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('p', 'SELECT current_setting(''work_mem'')')"),
		'4MB', 'the SET did not reach the next caller');
}

# ------------------------------------------------ commit-time errors
my ($rc, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.exec('p', 'INSERT INTO d VALUES (1), (1)')");
like($err, qr/ERROR:  duplicate key value violates unique constraint "d_u"/,
	'a deferred constraint failing at commit is the caller\'s error, not a success');
is($remote->safe_psql('postgres', 'SELECT count(*) FROM d'), '0', 'and nothing of it was applied');
($rc, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.exec_transaction('p', ARRAY['INSERT INTO d VALUES (2)', 'INSERT INTO d VALUES (2)'])");
like($err, qr/ERROR:  duplicate key value violates unique constraint "d_u"/,
	'exec_transaction: a deferred constraint failing at COMMIT is the caller\'s error');
($rc, $out, $err) = $local->psql('postgres',
	"SELECT * FROM netrun_pool.query('p', 'INSERT INTO w (who) VALUES (\$1) RETURNING who', ARRAY['ro'], read_only => true) AS t(who text)");
like($err, qr/ERROR:  cannot execute INSERT in a read-only transaction/, 'read_only refuses a write');
is(rows_of('ro'), '0', 'and nothing of it was applied');

# ------------------------------------------------ many callers, each its own tenant
{
	my $script = PostgreSQL::Test::Utils::tempdir . '/tenants.sql';
	open(my $fh, '>', $script) or die $!;
	print $fh <<'EOS';
SELECT netrun_pool.set_tenant((:client_id + 1)::text);
SELECT netrun_pool.fetchval('p', 'SELECT current_setting(''app.current_tenant_id'')')::int AS seen \gset
\if :seen != :client_id + 1
SELECT 'tenant mix-up' || 1/0;
\endif
SELECT netrun_pool.exec('p', 'INSERT INTO w (who, n) VALUES (''bench'', $1::int)', ARRAY[:client_id::text]);
SELECT netrun_pool.fetchval('p', 'SELECT 1', read_only => true);
EOS
	close($fh);
	$local->safe_psql('postgres', "SELECT netrun_pool.configure('p', pipeline_depth => 8)");
	my $before = pool_stat('pipelined_total');
	my ($pout, $perr) = ('', '');
	IPC::Run::run([ 'pgbench', '-n', '-c', '16', '-j', '2', '-t', '50', '-f', $script,
			'-d', $local->connstr('postgres') ],
		'>', \$pout, '2>', \$perr);
	like($pout, qr/number of transactions actually processed: 800\/800/, 'pgbench: 16 clients x 50 calls all done')
	  or diag($perr);
	unlike($pout . $perr, qr/failed transactions: [1-9]|tenant mix-up|ERROR/, 'no call failed, no tenant mix-up');
	cmp_ok(pool_stat('pipelined_total') - $before, '>', 0, 'calls were pipelined');
	is($remote->safe_psql('postgres', "SELECT count(*), count(DISTINCT n) FROM w WHERE who = 'bench'"),
		'800|16', 'every write landed once');
	is($remote->safe_psql('postgres', "SELECT min(c), max(c) FROM (SELECT count(*) c FROM w WHERE who = 'bench' GROUP BY n) s"),
		'50|50', '50 writes for each client');
}

# the gauges are published every 250 ms
ok($local->poll_query_until('postgres',
		"SELECT checked_out || '|' || waiting FROM netrun_pool.pool_stats WHERE name = 'p'", '0|0'),
	'nothing is left checked out');
done_testing();
