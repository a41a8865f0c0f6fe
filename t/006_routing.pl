# Cluster routing against a real streaming replica: the health probes see
# each member's role and replay lag; a cluster name sends writes to the
# primary and read_only reads to the replica, skips a replica that lags past
# max_replica_lag_ms, and follows a promoted replica after a failover while
# the old primary's circuit opens.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

# --- a primary and its streaming standby, both reachable over TCP ---------
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
$primary->backup('bk');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'");
$standby->start;
$primary->wait_for_catchup($standby);

my $pport = $primary->port;
my $sport = $standby->port;

my $local = NetrunTest::start_local('local',
	conf => "netrun_pool.health_interval_ms = 200\nnetrun_pool.unhealthy_after = 2");
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('primary', '@{[ NetrunTest::tcp_conninfo($primary) ]}',
		role => 'primary', cluster => 'main');
	SELECT netrun_pool.register('standby', '@{[ NetrunTest::tcp_conninfo($standby) ]}',
		role => 'replica', cluster => 'main');
});
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '2'),
	'the worker loaded both members of cluster main');

# The machine may be slow: a probe slower than degraded_latency_ms is
# degraded, which still routes.
sub member_health
{
	return q{SELECT string_agg(name || ':' || (status IN ('healthy', 'degraded')) || ':' || is_replica,
		',' ORDER BY name) FROM netrun_pool.health};
}

# --- 1. the probes see both members and their roles -----------------------
ok($local->poll_query_until('postgres', member_health(), 'primary:true:false,standby:true:true'),
	'health: both members probed, primary not a replica, standby a replica');

# --- 2. reads to the replica, writes to the primary -----------------------
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()', NULL, true)"),
	't', 'a read_only call on the cluster runs on the standby');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT current_setting(''port'')', read_only => true)"),
	$sport, 'read_only as a named argument: the standby too (its port)');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()')"),
	'f', 'the same call without read_only runs on the primary');
is($local->safe_psql('postgres',
		"SELECT count(*) FROM netrun_pool.query_json('main', 'SELECT pg_is_in_recovery() AS r', NULL, true) j WHERE j->>'r' = 'true'"),
	'1', 'query_json with read_only on the cluster runs on the standby');
is($local->safe_psql('postgres', "SELECT netrun_pool.exec('main', 'INSERT INTO t VALUES (1)')"),
	'INSERT 0 1', 'exec on the cluster succeeds');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 1'),
	'1', 'and its row is on the primary');
ok($local->poll_query_until('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()::text || '':'' || count(*) FROM t', NULL, true)",
		'true:1'),
	'the row becomes visible to a read_only call, served by the standby');

# A begin() on the cluster pins the primary for the local transaction.
# When its remote commit fails (an error inside it, caught locally), the
# cluster name is not left pinned: the next read_only call in the same
# session goes to the standby again.
my ($ret, $out, $err) = $local->psql('postgres', q{
BEGIN;
SELECT netrun_pool.begin('main');
SELECT 'pinned:' || netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()');
DO $$ BEGIN PERFORM netrun_pool.exec('main', 'SELECT 1/0'); EXCEPTION WHEN division_by_zero THEN NULL; END $$;
COMMIT;
SELECT 'after:' || netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()', NULL, true);
}, on_error_stop => 0);
like($out, qr/^pinned:f$/m, 'inside begin(), calls by the cluster name run on the pinned primary');
like($err, qr/ERROR:  the remote transaction of netrun_pool connection "primary" was rolled back/,
	'its remote commit fails');
like($out, qr/^after:t$/m, 'after the failed commit the cluster name routes afresh: read_only to the standby');

# --- 3. a replica lagging past max_replica_lag_ms is skipped ---------------
my $gen = NetrunTest::status_field($local, 'postgres', 'generation');
$local->safe_psql('postgres', "SELECT netrun_pool.configure('standby', max_replica_lag_ms => 1000)");
ok($local->poll_query_until('postgres',
		"SELECT generation > $gen FROM netrun_pool.worker_status()"),
	'the worker loaded max_replica_lag_ms = 1000');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()', NULL, true)"),
	't', 'a standby within its lag limit still serves read_only calls');

$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
# WAL keeps arriving while replay stands still: the lag grows.
$primary->safe_psql('postgres',
	join("\n", map { "INSERT INTO t VALUES ($_); SELECT pg_sleep(0.1);" } 2 .. 21));
ok($local->poll_query_until('postgres',
		"SELECT replica_lag_ms > 1000 FROM netrun_pool.health WHERE name = 'standby'"),
	'health: the paused standby reports a replica_lag_ms over 1000');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()::text || '':'' || count(*) FROM t', NULL, true)"),
	'false:21', 'a read_only call skips the lagging standby and falls back to the primary');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('standby', 'SELECT count(*) FROM t')"),
	'1', 'the standby by its own name still answers, with its stale data');

$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
ok($local->poll_query_until('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()::text || '':'' || count(*) FROM t', NULL, true)",
		'true:21'),
	'once replay catches up, read_only calls go to the standby again');

# --- 4. failover: the old primary stops, the standby is promoted -----------
$primary->stop('immediate');
$standby->promote;
ok($local->poll_query_until('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT pg_is_in_recovery()::text || '':'' || current_setting(''port'')')",
		"false:$sport"),
	'writes on the cluster follow the promoted standby');
is($local->safe_psql('postgres', "SELECT netrun_pool.exec('main', 'INSERT INTO t VALUES (100)')"),
	'INSERT 0 1', 'exec on the cluster succeeds after the failover');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 100'),
	'1', 'and its row is on the promoted standby');
ok($local->poll_query_until('postgres',
		"SELECT (status IN ('healthy', 'degraded')) || ':' || circuit || ':' || is_replica FROM netrun_pool.health WHERE name = 'standby'",
		'true:closed:false'),
	'health: the promoted standby is no longer a replica');
ok($local->poll_query_until('postgres',
		"SELECT status || ':' || circuit FROM netrun_pool.health WHERE name = 'primary'",
		'unhealthy:open'),
	'health: the old primary is unhealthy with its circuit open');
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('primary', 'SELECT 1')");
like($err, qr/ERROR:  netrun_pool connection "primary" is unavailable/,
	'a direct call to the old primary fails at once: unavailable');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('main', 'SELECT current_setting(''port'')', NULL, true)"),
	$sport, 'with no replica left, read_only calls fall back to the new primary');

# --- 5. bad arguments ------------------------------------------------------
($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.fetchval('nope', 'SELECT 1', NULL, true)");
like($err, qr/ERROR:  netrun_pool connection "nope" does not exist/,
	'a read_only call on an unknown cluster name: does not exist');

done_testing();
