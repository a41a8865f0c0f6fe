# Load without loss: 128 local clients insert rows with unique ids on a
# remote through a pool of 8 connections, and the remote restarts once in
# the middle.  Afterwards:
#
#  - every call that reported success has exactly one row on the remote;
#  - every call that failed reported a documented error, and one that
#    provably never reached the remote (acquire timeout, no connection, an
#    open circuit) left no row;
#  - no row is duplicated, and no row appears that nobody asked for;
#  - nothing is checked out, and the server log shows no crash.
#
# NETRUN_LOAD_SECONDS sets the length (60 by default, as the contract asks).
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $seconds = $ENV{NETRUN_LOAD_SECONDS} // 60;
my $clients = 128;
my $tmp = PostgreSQL::Test::Utils::tempdir;

# No key on the remote table: a duplicate must be seen, not refused.
my $remote = NetrunTest::start_remote('remote', conf => 'max_connections = 40');
$remote->safe_psql('postgres', 'CREATE TABLE ledger (id bigint NOT NULL, at timestamptz DEFAULT now())');

my $local = NetrunTest::start_local('local', conf => qq{
max_connections = 160
netrun_pool.health_interval_ms = 500
});
$local->safe_psql('postgres', q{
	CREATE EXTENSION netrun_pool;
	CREATE SEQUENCE ids;
	CREATE TABLE succeeded (id bigint PRIMARY KEY);
	CREATE TABLE failed (id bigint PRIMARY KEY, sqlstate text, message text);
	-- One call: a fresh id, inserted on the remote; the outcome is kept
	-- locally.  A call counts as a success only if the remote said
	-- INSERT 0 1.
	CREATE FUNCTION insert_one() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		i bigint := nextval('ids');
		tag text;
		st text; msg text;
	BEGIN
		tag := netrun_pool.exec('r', 'INSERT INTO ledger (id) VALUES ($1)', ARRAY[i::text]);
		IF tag = 'INSERT 0 1' THEN
			INSERT INTO succeeded VALUES (i);
		ELSE
			INSERT INTO failed VALUES (i, 'tag', tag);
		END IF;
	EXCEPTION WHEN query_canceled OR others THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		INSERT INTO failed VALUES (i, st, msg);
	END $$;
});
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
$local->safe_psql('postgres', "SELECT netrun_pool.register('r', '@{[ NetrunTest::tcp_conninfo($remote) ]}',
	pool_max => 8, connect_timeout_ms => 2000, acquire_timeout_ms => 10000)");
ok($local->poll_query_until('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 1')", '1'),
	'the pool serves');

my $script = "$tmp/insert.sql";
open(my $fh, '>', $script) or die;
print $fh "SELECT insert_one();\n";
close($fh);

my ($out, $err) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', $clients, '-j', '2', '-T', $seconds, '-f', $script,
	  $local->connstr('postgres') ],
	'>', \$out, '2>', \$err,
	IPC::Run::timeout($seconds + $PostgreSQL::Test::Utils::timeout_default));

# The remote restarts once, half way through.  The pool's remote sessions
# are sampled meanwhile.
my $peak = 0;
my $restarted = 0;
my $start = time;
while ($load->pumpable)
{
	if (!$restarted && time - $start >= $seconds / 2)
	{
		$remote->restart;
		$restarted = 1;
	}
	my ($ret, $n) = $remote->psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:r'");
	$peak = $n if $ret == 0 && $n > $peak;
	IPC::Run::pump_nb($load);
	select(undef, undef, undef, 0.2);
}
ok(eval { $load->finish; 1 }, 'the load ended (no caller hung)');
is($load->result(0), 0, "pgbench: none of the $clients clients was aborted") or diag($err);
ok($restarted, 'the remote restarted during the load');
my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;

# Bring the remote's rows here to compare.
$remote->safe_psql('postgres', "COPY ledger (id) TO '$tmp/ledger.copy'");
$local->safe_psql('postgres', "CREATE TABLE remote_rows (id bigint); COPY remote_rows FROM '$tmp/ledger.copy'");

my ($ok, $failed, $rows) = split /\|/, $local->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM succeeded), (SELECT count(*) FROM failed), (SELECT count(*) FROM remote_rows)});
note("$tx calls in $seconds s: $ok succeeded, $failed failed; $rows rows on the remote; peak $peak remote connections");
is($ok + $failed, $tx, 'every call made recorded an outcome');
ok($ok > 0 && $failed > 0, 'calls succeeded, and the restart failed some');
is($local->safe_psql('postgres', 'SELECT count(*) FROM succeeded s WHERE NOT EXISTS (SELECT FROM remote_rows r WHERE r.id = s.id)'),
	'0', 'lost = 0: every call that reported success has its row on the remote');
is($local->safe_psql('postgres', 'SELECT count(*) FROM (SELECT id FROM remote_rows GROUP BY id HAVING count(*) > 1) d'),
	'0', 'no row is duplicated');
is($local->safe_psql('postgres', q{
	SELECT count(*) FROM remote_rows r
	WHERE NOT EXISTS (SELECT FROM succeeded s WHERE s.id = r.id)
	  AND NOT EXISTS (SELECT FROM failed f WHERE f.id = r.id)}),
	'0', 'no row appears that no call asked for');

# Errors: every one documented.  A call that failed before it could reach
# the remote must have left no row; one whose connection was lost after
# sending may have (in doubt, as with any client).
my $conn = qr/netrun_pool connection "r"/;
my %clear = (
	'08001' => qr/^could not connect to $conn$/,
	'08004' => qr/^$conn is unavailable$/,
	'08006' => qr/^(lost connection to $conn|could not send a query to $conn)$/,
	'53300' => qr/^timed out waiting for a connection from $conn$/,
	'57P01' => qr/^terminating connection due to administrator command$/,
	'57P03' => qr/^the database system is (shutting down|starting up)$/);
my @unclear;
foreach my $row (split /\n/, $local->safe_psql('postgres',
		'SELECT sqlstate, count(*), message FROM failed GROUP BY 1, 3 ORDER BY 1, 3'))
{
	my ($state, $n, $message) = split /\|/, $row, 3;
	note("failed: $n x $state $message");
	push @unclear, "$state $message" unless $clear{$state} && $message =~ $clear{$state};
}
is(scalar @unclear, 0, 'every failed call reported a documented error') or diag(join("\n", @unclear));
my $in_doubt = $local->safe_psql('postgres',
	'SELECT count(*) FROM failed f WHERE EXISTS (SELECT FROM remote_rows r WHERE r.id = f.id)');
note("failed calls whose row reached the remote anyway (commit in doubt): $in_doubt");
is($local->safe_psql('postgres', q{
	SELECT count(*) FROM failed f
	WHERE sqlstate IN ('08001', '08004', '53300')
	  AND EXISTS (SELECT FROM remote_rows r WHERE r.id = f.id)}),
	'0', 'a call refused before reaching the remote left no row');
is($local->safe_psql('postgres', q{
	SELECT count(*) FROM succeeded WHERE id > (SELECT max(id) FROM failed)}) > 0 ? 1 : 0,
	1, 'calls succeeded again after the last failure');

ok($local->poll_query_until('postgres',
		"SELECT checked_out = 0 AND waiting = 0 FROM netrun_pool.pool_stats WHERE name = 'r'"),
	'afterwards nothing is checked out or waiting');
ok($peak <= 8, "the remote never held more than pool_max = 8 of the pool's connections (peak $peak)");
is(NetrunTest::log_count($local, qr/terminated by signal|was terminated|server process .* exited with exit code [^01]/), 0,
	'the local server log shows no crash');

done_testing();
