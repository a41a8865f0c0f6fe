# Calls through the pool against real remotes: who may call (usage, and
# the password rule of CVE-2007-3278), sharing (32 clients, pool_max 4),
# acquire timeout, cancel and timeouts reaching the remote, a large
# result, and recovery from a killed worker and a restarted remote.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $keyfile = NetrunTest::write_key_file("$tmp/secret.key");
my $password = 'Calls-S3cret-pw';

# A remote that wants scram-sha-256 over TCP, and one that trusts.
my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
$remote->safe_psql('postgres', qq{
	SET password_encryption = 'scram-sha-256';
	CREATE ROLE remote_app LOGIN PASSWORD '$password';
	CREATE TABLE kv (k int PRIMARY KEY, v text);
	INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 1000) g;
	GRANT SELECT, INSERT ON kv TO remote_app;
});
my $trusting = NetrunTest::start_remote('trusting');

my $local = NetrunTest::start_local('local',
	conf => "netrun_pool.secret_key_file = '$keyfile'");
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

my $scram = NetrunTest::tcp_conninfo($remote) . " user=remote_app password=$password";
$local->safe_psql('postgres', qq{
	CREATE ROLE app_user LOGIN;
	CREATE ROLE outsider LOGIN;
	SELECT netrun_pool.register('r', '$scram', pool_max => 4, acquire_timeout_ms => 60000);
	SELECT netrun_pool.register('held', '$scram', pool_max => 1, acquire_timeout_ms => 300);
	SELECT netrun_pool.register('trusted', '@{[ NetrunTest::tcp_conninfo($trusting) ]}');
	SELECT netrun_pool.grant_usage(n, 'app_user') FROM unnest(ARRAY['r', 'held', 'trusted']) n;
});
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '3'),
	'worker loaded three connections');

# --- who may call ------------------------------------------------------
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('r', 'SELECT current_user')", extra_params => [ '-U', 'app_user' ]),
	'remote_app', 'a non-superuser with usage calls a scram remote');
my ($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.fetchval('r', 'SELECT 1')", extra_params => [ '-U', 'outsider' ]);
like($err, qr/ERROR:  permission denied for netrun_pool connection "r"/,
	'the same call without usage is refused');
($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.fetchval('trusted', 'SELECT 1')", extra_params => [ '-U', 'app_user' ]);
like($err, qr/ERROR:  password is required for netrun_pool connection "trusted"/,
	'a remote that trusts is refused to a non-superuser (password_required)');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('trusted', 'SELECT 1')"),
	'1', 'a superuser may use it');

# Twenty registrations of the same password: twenty nonces, so twenty
# different ciphertexts.  About one in five holds a NUL byte; each must
# still connect (ciphertext is bytes, not a C string).
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('copy_' || i, '$scram', pool_max => 1) FROM generate_series(1, 20) i;
});
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '23'),
	'the worker loaded the twenty copies');
is($local->safe_psql('postgres',
		"SELECT count(*) FROM generate_series(1, 20) i WHERE netrun_pool.fetchval('copy_' || i, 'SELECT current_user') = 'remote_app'"),
	'20', 'every stored secret decrypts in the worker and authenticates');
$local->safe_psql('postgres', "SELECT count(netrun_pool.unregister('copy_' || i)) FROM generate_series(1, 20) i");
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '3'),
	'and unregistered again');

# --- a remote that refuses: its callers hear why at once -----------------
# Nothing listens on port 1: the connect is refused, and the caller fails
# at once with libpq's reason, instead of waiting out acquire_timeout_ms
# (an hour here) behind a remote that refuses; so does a caller that
# comes while the pool backs off.
$local->safe_psql('postgres',
	"SELECT netrun_pool.register('nowhere', 'host=127.0.0.1 port=1 dbname=x', acquire_timeout_ms => 3600000)");
for my $caller (1, 2)
{
	($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('nowhere', 'SELECT 1')");
	like($err, qr/ERROR:  could not connect to netrun_pool connection "nowhere"\nDETAIL:  .*Connection refused.*\nHINT:  Check that the remote server runs and accepts connections/s,
		"caller $caller of an unreachable remote hears libpq's reason at once, with a hint");
}
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('nowhere')");

# A remote that stops fails its callers at once; once a health probe sees
# it back, the next call is served (no backoff left from the outage).
$trusting->stop;
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('trusted', 'SELECT 1')");
like($err, qr/ERROR:  could not connect to netrun_pool connection "trusted"/,
	'a call to a stopped remote fails at once');
$trusting->start;
ok($local->poll_query_until('postgres',
		"SELECT status IN ('healthy', 'degraded') FROM netrun_pool.health WHERE name = 'trusted'"),
	'a probe sees the remote back');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('trusted', 'SELECT ''served after the restart''')"),
	'served after the restart', 'the first call after it is served');

# --- 32 clients share 4 remote connections -------------------------------
my $script = "$tmp/calls.sql";
open(my $fh, '>', $script) or die;
print $fh <<'SQL';
\set k random(1, 1000)
SELECT netrun_pool.fetchval('r', 'SELECT v FROM kv WHERE k = $1', ARRAY[:k::text]) = 'v' || :k AS ok \gset
\if :ok
\else
SELECT 1/0;
\endif
SQL
close($fh);

my ($bout, $berr) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '32', '-j', '2', '-T', '6', '-f', $script,
	  '-U', 'app_user', $local->connstr('postgres') ],
	'>', \$bout, '2>', \$berr);
my $peak = 0;
my $samples = 0;
while ($bench->pumpable)
{
	my $n = $remote->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'netrun_pool:%'");
	$peak = $n if $n > $peak;
	$samples++;
	IPC::Run::pump_nb($bench);
	select(undef, undef, undef, 0.1);
}
$bench->finish;
is($bench->result(0), 0, 'pgbench: 32 clients, every result correct') or diag($berr);
like($bout, qr/number of failed transactions: 0/, 'no failed transactions');
my ($tx) = $bout =~ /number of transactions actually processed: (\d+)/;
ok($tx && $tx > 32, "calls were served ($tx)");
ok($peak >= 1 && $peak <= 4, "remote never held more than pool_max = 4 connections (peak $peak over $samples samples)");
ok($local->poll_query_until('postgres',
		"SELECT checked_out = 0 AND waiting = 0 AND total <= 4 FROM netrun_pool.pool_stats WHERE name = 'r'"),
	'after the load nothing is checked out or waiting, and at most pool_max are open');

# --- waiters are served first come, first served --------------------------
# One connection, held for 1.5 s; five callers arrive 0.2 s apart and each
# writes its number on the remote when it is served.
$remote->safe_psql('postgres',
	'CREATE TABLE served (seq serial, who int); GRANT INSERT ON served TO remote_app; GRANT USAGE ON SEQUENCE served_seq_seq TO remote_app');
$local->safe_psql('postgres',
	"SELECT netrun_pool.register('fifo', '$scram', pool_max => 1, acquire_timeout_ms => 20000)");
ok($local->poll_query_until('postgres',
		"SELECT count(*) FROM netrun_pool.connections WHERE name = 'fifo'", '1'), 'fifo registered');
sleep(1);
my @clients;
push @clients, NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('fifo', 'SELECT pg_sleep(1.5)')", \my $ho, \my $he);
for my $i (1 .. 5)
{
	select(undef, undef, undef, 0.2);
	push @clients, NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.exec('fifo', 'INSERT INTO served (who) VALUES (\$1)', ARRAY['$i'])", \my $o, \my $e);
}
$_->finish for @clients;
is($remote->safe_psql('postgres', "SELECT string_agg(who::text, ',' ORDER BY seq) FROM served"),
	'1,2,3,4,5', 'five waiters were served in the order they arrived');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('fifo')");

# --- overflow connections close as soon as they are free --------------------
$local->safe_psql('postgres',
	"SELECT netrun_pool.register('ovf', '$scram', pool_max => 1, max_overflow => 2, idle_timeout_s => 600)");
ok($local->poll_query_until('postgres',
		"SELECT count(*) FROM netrun_pool.pool_stats WHERE name = 'ovf'", '1'), 'ovf registered');
my @ovf = map {
	NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('ovf', 'SELECT pg_sleep(1)')", \my $o, \my $e)
} 1 .. 3;
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:ovf' AND state = 'active'", '3'),
	'three calls use pool_max + max_overflow = 3 connections');
$_->finish for @ovf;
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:ovf'", '1'),
	'the two overflow connections close when free, long before idle_timeout_s');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('ovf')");

# --- begin(): a local rollback undoes the remote work, a commit keeps it ----
$remote->safe_psql('postgres',
	'CREATE TABLE ledger (id int PRIMARY KEY); GRANT INSERT, SELECT ON ledger TO remote_app');
$local->safe_psql('postgres', q{
	BEGIN;
	SELECT netrun_pool.begin('r');
	SELECT netrun_pool.exec('r', 'INSERT INTO ledger VALUES (1)');
	ROLLBACK;
});
$local->safe_psql('postgres', q{
	BEGIN;
	SELECT netrun_pool.begin('r');
	SELECT netrun_pool.exec('r', 'INSERT INTO ledger VALUES (2)');
	COMMIT;
});
ok($remote->poll_query_until('postgres',
		"SELECT string_agg(id::text, ',') FROM ledger", '2'),
	'on the remote: the rolled-back row is gone, the committed one stays');

# --- acquire timeout: the only connection is held -------------------------
my ($sout, $serr) = ('', '');
my $sleeper = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('held', 'SELECT pg_sleep(3)')", \$sout, \$serr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'netrun_pool:held' AND state = 'active'"),
	'the held pool is busy');
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('held', 'SELECT 1')");
like($err, qr/ERROR:  timed out waiting for a connection from netrun_pool connection "held"/,
	'a caller times out waiting for a connection');
like($err, qr/DETAIL:  pool_max is 1, max_overflow 0; 1 connections are open and 1 callers are waiting\./,
	'the detail gives the pool size and the waiters');
$sleeper->finish;
is($sleeper->result(0), 0, 'the holder finished normally');
ok($local->poll_query_until('postgres',
		"SELECT exhausted_total FROM netrun_pool.pool_stats WHERE name = 'held'", '1'),
	'pool_stats counts the exhausted waiter (exhausted_total = 1)');

# --- cancel and timeouts reach the remote ---------------------------------
sub remote_sleepers
{
	return $remote->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'");
}

my $victim = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(300)')", \$sout, \$serr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'"),
	'the remote runs the long query');
$local->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(300)%' AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
$victim->finish;
like($serr, qr/canceling statement due to user request/, 'pg_cancel_backend cancels the call');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'", '0'),
	'and the remote query is gone (long before its 300 s)');

($ret, $out, $err) = $local->psql('postgres',
	"SET statement_timeout = '500ms'; SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(300)')");
like($err, qr/canceling statement due to statement timeout/, 'a local statement_timeout ends the call');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'", '0'),
	'and the remote query is gone');

$local->safe_psql('postgres', "SELECT netrun_pool.configure('r', statement_timeout_ms => 300)");
sleep(1);
($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(300)')", extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  57014: canceling statement due to statement timeout/,
	'statement_timeout_ms is the remote statement_timeout, with the remote SQLSTATE');
$local->safe_psql('postgres', "SELECT netrun_pool.configure('r', statement_timeout_ms => 0)");
sleep(1);

# --- unregister while a call runs ------------------------------------------
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('gone_soft', '$scram');
	SELECT netrun_pool.register('gone_hard', '$scram');
});
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '5'),
	'two more connections loaded');

my $soft = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('gone_soft', 'SELECT pg_sleep(2)::text || ''finished''')", \$sout, \$serr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'netrun_pool:gone_soft' AND state = 'active'"),
	'a call runs on gone_soft');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('gone_soft')");
$soft->finish;
is($sout, "finished\n", 'without force, the call in flight finishes normally');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:gone_soft'", '0'),
	'and its connection is then retired');

my $hard = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('gone_hard', 'SELECT pg_sleep(300)')", \$sout, \$serr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'netrun_pool:gone_hard' AND state = 'active'"),
	'a call runs on gone_hard');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('gone_hard', force => true)");
$hard->finish;
like($serr, qr/ERROR:  netrun_pool connection "gone_hard" was unregistered/,
	'with force, the call in flight fails at once');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:gone_hard'", '0'),
	'and its remote query and connection are gone');

# --- a caller terminated mid-call frees its connection ---------------------
my $doomed = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(301)')", \$sout, \$serr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(301)%' AND state = 'active'"),
	'a call runs for a caller about to be terminated');
$local->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(301)%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()");
$doomed->finish;
like($serr, qr/terminating connection due to administrator command/, 'the caller is terminated');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(301)%' AND state = 'active'", '0'),
	'its remote query is gone');
ok($local->poll_query_until('postgres',
		"SELECT checked_out = 0 FROM netrun_pool.pool_stats WHERE name = 'r'"),
	'and its connection is no longer checked out');

# Nothing stays checked out after cancels, timeouts and forced removals.
ok($local->poll_query_until('postgres',
		"SELECT checked_out = 0 AND waiting = 0 FROM netrun_pool.pool_stats WHERE name = 'r'"),
	'pool_stats: checked_out is back at 0');

# After all that, the pool still serves.
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT count(*) FROM kv')"),
	'1000', 'the pool serves after cancels and timeouts');

# --- lifetimes: pool_min kept warm, idle_timeout_s, recycle_s ---------------
sub remote_conns
{
	my ($name) = @_;
	return $remote->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:$name'");
}
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('warm', '$scram', pool_min => 2, pool_max => 4, idle_timeout_s => 1);
});
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:warm'", '2'),
	'pool_min connections are opened without any call');
# Four concurrent calls open two more; once idle past idle_timeout_s the
# pool shrinks back to pool_min, not below.  The calls wait on the remote
# for an advisory lock the test holds, so all four are running at once
# however slow the machine, and end normally once it is let go.
my ($lock_out, $lock_err) = ('', '');
my $barrier = IPC::Run::start(
	[ 'psql', '-X', '-d', $remote->connstr('postgres'), '-c', 'SELECT pg_advisory_lock(4242), pg_sleep(600)' ],
	'>', \$lock_out, '2>', \$lock_err);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted", '1'),
	'the test holds the barrier');
my @busy = map {
	NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('warm', 'SELECT pg_advisory_xact_lock_shared(4242)::text')", \my $o, \my $e)
} 1 .. 4;
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:warm' AND state = 'active'", '4'),
	'four calls use four connections');
$remote->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_advisory_lock(4242)%'");
$barrier->finish;
$_->finish for @busy;
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:warm'", '2'),
	'idle connections above pool_min close after idle_timeout_s');
sleep(1);
is(remote_conns('warm'), '2', 'and the pool stays at pool_min');

# recycle_s: a connection older than that is replaced between calls.
$local->safe_psql('postgres', "SELECT netrun_pool.configure('warm', pool_min => 1, recycle_s => 2)");
sleep(1);
my $pid1 = $local->safe_psql('postgres', "SELECT netrun_pool.fetchval('warm', 'SELECT pg_backend_pid()')");
ok( $local->poll_query_until('postgres',
		"SELECT netrun_pool.fetchval('warm', 'SELECT pg_backend_pid()') <> '$pid1'"),
	'a connection older than recycle_s is replaced');
# never while in use: a 3 s call on a 2 s recycle finishes normally
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('warm', 'SELECT pg_sleep(3)::text || ''ok''')"),
	'ok', 'a call longer than recycle_s is not cut short');

$local->safe_psql('postgres', "SELECT netrun_pool.unregister('warm')");

# --- pool_mode none: a connection per call --------------------------------
$local->safe_psql('postgres', "SELECT netrun_pool.register('percall', '$scram', pool_mode => 'none', pool_min => 1)");
ok($local->poll_query_until('postgres', "SELECT count(*) FROM netrun_pool.connections WHERE name = 'percall'", '1'),
	'percall registered');
sleep(1);
my $p1 = $local->safe_psql('postgres', "SELECT netrun_pool.fetchval('percall', 'SELECT pg_backend_pid()')");
my $p2 = $local->safe_psql('postgres', "SELECT netrun_pool.fetchval('percall', 'SELECT pg_backend_pid()')");
isnt($p1, $p2, 'pool_mode none connects for each call');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:percall'", '0'),
	'and keeps nothing open afterwards, not even pool_min');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('percall')");

# --- any database of the server may call; the registry stays in one -------
$local->safe_psql('postgres', 'CREATE DATABASE otherdb');
$local->safe_psql('otherdb', 'CREATE EXTENSION netrun_pool');
is($local->safe_psql('otherdb', "SELECT netrun_pool.fetchval('r', 'SELECT count(*) FROM kv')",
		extra_params => [ '-U', 'app_user' ]),
	'1000', 'a call from another database uses the same pool and grants');
($ret, $out, $err) = $local->psql('otherdb', "SELECT netrun_pool.fetchval('r', 'SELECT 1')",
	extra_params => [ '-U', 'outsider' ]);
like($err, qr/permission denied for netrun_pool connection "r"/, 'and the same usage rules');

# --- a caller in a database with another encoding ----------------------------
# The worker's database is UTF8, and so is every remote connection; a LATIN1
# database's calls are converted both ways.
$local->safe_psql('postgres',
	"CREATE DATABASE latin1db ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$local->safe_psql('latin1db', 'CREATE EXTENSION netrun_pool');
$remote->safe_psql('postgres',
	"CREATE TABLE words (w text); INSERT INTO words VALUES ('caf' || chr(233)); GRANT SELECT ON words TO remote_app");
is($local->safe_psql('latin1db',
		"SELECT encode(convert_to(netrun_pool.fetchval('r', 'SELECT w FROM words'), 'LATIN1'), 'hex')"),
	'636166e9', 'a UTF8 value arrives in a LATIN1 database as LATIN1 (é = e9)');
is($local->safe_psql('latin1db',
		"SELECT netrun_pool.fetchval('r', 'SELECT count(*) FROM words WHERE w = \$1', ARRAY['caf' || chr(233)])"),
	'1', 'a LATIN1 parameter reaches the UTF8 remote as the same text');
is($local->safe_psql('latin1db',
		"SELECT j->>'w' = 'caf' || chr(233) FROM netrun_pool.query_json('r', 'SELECT w FROM words') j"),
	't', 'and query_json values too');

# --- a large result streams through ---------------------------------------
is($local->safe_psql('postgres',
		"SELECT count(*), count(DISTINCT j->>'g') FROM netrun_pool.query_json('r', 'SELECT g FROM generate_series(1, 1000000) g') j"),
	'1000000|1000000', 'a 1-million-row query_json arrives whole, counted exactly');

# --- an unreadable key file fails the connect, not the worker ---------------
$local->safe_psql('postgres', "SELECT netrun_pool.register('keyed', '$scram')");
ok($local->poll_query_until('postgres',
		"SELECT count(*) FROM netrun_pool.pool_stats WHERE name = 'keyed'", '1'), 'keyed registered');
chmod 0644, $keyfile;
$local->safe_psql('postgres', "SELECT netrun_pool.configure('keyed', acquire_timeout_ms => 1000)");
sleep(1);
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('keyed', 'SELECT 1')");
like($err, qr/could not connect to netrun_pool connection "keyed".*DETAIL:  secret key file ".*" is accessible by group or others/s,
	'a key file readable by others fails the connect with the reason');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 5')"), '5',
	'other pools keep serving meanwhile');
chmod 0600, $keyfile;
ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('keyed', 'SELECT 6') = '6'"),
	'the pool connects again once the key file is fixed');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('keyed')");

# --- a long-lived backend survives a worker restart ---------------------------
my ($bin, $lout, $berr2) = ('', '', '');
my $long = IPC::Run::start(
	[ 'psql', '-X', '-At', $local->connstr('postgres') ],
	'<', \$bin, '>', \$lout, '2>', \$berr2);
$bin .= "SELECT 'first:' || netrun_pool.fetchval('r', 'SELECT 1');\n";
IPC::Run::pump($long) until $lout =~ /first:1/;
my $oldw = NetrunTest::status_field($local, 'postgres', 'worker_pid');
kill 'TERM', $oldw;
ok($local->poll_query_until('postgres',
		"SELECT state = 'running' AND worker_pid <> $oldw AND pools >= 3 FROM netrun_pool.worker_status()"),
	'the worker restarted');
$bin .= "SELECT 'second:' || netrun_pool.fetchval('r', 'SELECT 2');\n";
IPC::Run::pump($long) until $lout =~ /second:2/ || $berr2 =~ /ERROR/;
like($lout, qr/second:2/, 'the same backend calls again without an error: its channel is made anew');
is($berr2, '', 'no error at all');
$bin .= "\\q\n";
$long->finish;

# --- the worker dies mid-call: callers hear it, and it comes back ----------
$victim = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(300)')", \$sout, \$serr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'"),
	'a call is in flight');
my $wpid = NetrunTest::status_field($local, 'postgres', 'worker_pid');
kill 'TERM', $wpid;
$victim->finish;
like($serr, qr/netrun_pool worker is not running/, 'a caller in flight gets a clear error when the worker stops');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'the launcher starts a new worker');
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '3'),
	'which loads the registry');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(300)%' AND state = 'active'", '0'),
	'the old worker\'s remote query is gone');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 42')"),
	'42', 'calls succeed with the new worker');

$wpid = NetrunTest::status_field($local, 'postgres', 'worker_pid');
# SIGKILL under load: pgbench's clients die with the crash-restart.
my ($kout, $kerr) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', '30', '-f', $script,
	  '-U', 'app_user', $local->connstr('postgres') ],
	'>', \$kout, '2>', \$kerr);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'netrun_pool:r'"),
	'load is running');
sleep(1);
kill 'KILL', $wpid;
$load->finish;
isnt($load->result(0), 0, 'the load is cut off by the crash-restart');
ok($local->poll_query_until('postgres',
		"SELECT state = 'running' AND worker_pid <> $wpid AND pools = 3 FROM netrun_pool.worker_status()"),
	'after SIGKILL the server recovers and the worker is back');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 43')"),
	'43', 'calls succeed after the crash');

# --- the remote restarts: dead idle connections are replaced --------------
$local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 1')");
$remote->restart;
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 44')"),
	'44', 'after a remote restart the next call succeeds on a new connection');

ok(!$local->log_contains($password), 'the password never reaches the local log');
done_testing();
