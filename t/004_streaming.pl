# Large results stream: a 10-million-row result passes with the worker's
# memory flat (back-pressure, batches, no whole result anywhere), the
# backend's tuplestore spills to disk past work_mem, and a caller cancelled
# mid-stream leaves the pool serving.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $remote = NetrunTest::start_remote('remote');
my $local = NetrunTest::start_local('local');
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
$local->safe_psql('postgres', "SELECT netrun_pool.register('r', '"
	  . NetrunTest::tcp_conninfo($remote) . "', pool_max => 2)");
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '1'),
	'registered');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 1')"), '1',
	'the pool answers (its connection is open before we measure)');

# Peak resident memory of a process, in kB, from /proc.
sub peak_rss_kb
{
	my ($pid) = @_;
	my $status = slurp_file("/proc/$pid/status");
	my ($kb) = $status =~ /^VmHWM:\s+(\d+) kB/m;
	return $kb;
}

my $wpid = NetrunTest::status_field($local, 'postgres', 'worker_pid');
my $before = peak_rss_kb($wpid);
my $temp_before = $local->safe_psql('postgres',
	"SELECT temp_bytes FROM pg_stat_database WHERE datname = 'postgres'");

# NETRUN_STREAM_ROWS scales the stream down where everything is far
# slower (make test-valgrind); it must stay well past work_mem.
my $rows = $ENV{NETRUN_STREAM_ROWS} // 10_000_000;
is( $local->safe_psql('postgres', qq{
		SET work_mem = '4MB';
		SELECT count(*), sum(g) FROM netrun_pool.query('r',
			'SELECT g FROM generate_series(1, $rows) g') AS t(g bigint)}),
	"$rows|" . ($rows * ($rows + 1) / 2),
	"a $rows-row result arrives whole, counted and summed exactly");

my $after = peak_rss_kb($wpid);
my $growth = $after - $before;
ok($growth < 16 * 1024,
	"the worker's peak memory stays flat: +$growth kB (under 16 MB) for ~" . int($rows * 12 / 1_000_000) . " MB of rows");
$local->poll_query_until('postgres',
	"SELECT temp_bytes > $temp_before FROM pg_stat_database WHERE datname = 'postgres'");
my $temp_after = $local->safe_psql('postgres',
	"SELECT temp_bytes FROM pg_stat_database WHERE datname = 'postgres'");
ok($temp_after > $temp_before,
	'the backend spilled the result to disk past work_mem (' . ($temp_after - $temp_before) . ' bytes)');

# --- a caller cancelled mid-stream ----------------------------------------
my ($out, $err) = ('', '');
my $h = NetrunTest::background_call($local, 'postgres', "SELECT count(*) FROM netrun_pool.query('r', 'SELECT g FROM generate_series(1, 100000000) g') AS t(g bigint)", \$out, \$err);
ok($remote->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'netrun_pool:r' AND query LIKE '%100000000%'"),
	'a 100-million-row stream is under way');
sleep(1);
$local->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%100000000%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()");
$h->finish;
like($err, qr/canceling statement due to user request/, 'the caller is cancelled mid-stream');
ok($remote->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:r' AND query LIKE '%100000000%' AND state = 'active'", '0'),
	'the remote stops streaming');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 7')"), '7',
	'and the pool serves again');
ok(peak_rss_kb($wpid) - $before < 16 * 1024, 'the worker stayed flat through the cancelled stream too');
is(NetrunTest::status_field($local, 'postgres', 'worker_pid'), $wpid, 'with the same worker');

done_testing();
