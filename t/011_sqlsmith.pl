# sqlsmith against a server with netrun_pool: random SQL that calls our
# functions, reads our views and writes our tables with whatever values it
# finds, next to a working remote, a remote that is down and a cluster.
# Two runs: as a superuser (registry functions, the registry tables
# themselves) and as an application role with usage on the connections.
# Errors are expected by the hundred; what must not happen is a crash,
# a server that stops answering, a worker that is gone, or a connection
# left checked out.
#
#   NETRUN_SQLSMITH_QUERIES=N   queries per run (default below)
#   NETRUN_SQLSMITH_SEED=N      sqlsmith's --seed
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my ($sqlsmith) = grep { -x } map { "$_/sqlsmith" } split(/:/, $ENV{PATH});
plan skip_all => 'sqlsmith is not installed (scripts/test.sh installs it)' unless $sqlsmith;

my $queries = $ENV{NETRUN_SQLSMITH_QUERIES} // 5000;
my $seed = $ENV{NETRUN_SQLSMITH_SEED} // 20261127;
note("NETRUN_SQLSMITH_QUERIES=$queries NETRUN_SQLSMITH_SEED=$seed");

my $remote = NetrunTest::start_remote('remote');
$remote->safe_psql('postgres',
	"CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g");
my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.health_interval_ms = 500
});
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
my $worker_pid = NetrunTest::status_field($local, 'postgres', 'worker_pid');

my $conninfo = NetrunTest::tcp_conninfo($remote);
# Each role's queries are bounded: sqlsmith sets its own statement_timeout
# too, and these hold if it did not.  A table of our own gives sqlsmith
# rows to draw values from.
$local->safe_psql('postgres', qq{
	CREATE ROLE smith_app LOGIN;
	ALTER ROLE smith_app SET statement_timeout = '2s';
	ALTER ROLE CURRENT_USER SET statement_timeout = '2s';
	CREATE TABLE public.things (id int, name text, conninfo text, sql text);
	INSERT INTO public.things VALUES (1, 'r', '$conninfo', 'SELECT 1'),
	    (2, 'down', 'host=127.0.0.1 port=1', 'SELECT k, v FROM kv'), (3, 'rc', '', NULL);
	GRANT SELECT ON public.things TO smith_app;
	SELECT netrun_pool.register('r', '$conninfo', pool_max => 3, cluster => 'rc',
	    password_required => false, acquire_timeout_ms => 2000, statement_timeout_ms => 2000);
	SELECT netrun_pool.register('r_replica', '$conninfo', pool_max => 2, cluster => 'rc', role => 'replica',
	    password_required => false, acquire_timeout_ms => 2000, statement_timeout_ms => 2000);
	SELECT netrun_pool.register('r_sess', '$conninfo', pool_max => 2, pool_mode => 'session',
	    password_required => false, acquire_timeout_ms => 2000, statement_timeout_ms => 2000);
	SELECT netrun_pool.register('down', 'host=127.0.0.1 port=1 dbname=x',
	    acquire_timeout_ms => 200, connect_timeout_ms => 200);
	SELECT netrun_pool.grant_usage(n, 'smith_app') FROM unnest(ARRAY['r', 'r_replica', 'r_sess', 'down']) n;
});
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '4'),
	'the worker loaded the four connections');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 1')"), '1', 'r answers');

# One sqlsmith run: its report is on stderr ("queries: N", one line per
# distinct error with its count, "error rate: F").
sub run_sqlsmith
{
	my ($user) = @_;
	my $target = $local->connstr('postgres') . " user=$user";
	my ($out, $err) = ('', '');
	my $start = time;
	IPC::Run::run(
		[ $sqlsmith, "--target=$target", "--seed=$seed", "--max-queries=$queries", '--verbose',
		  '--exclude-catalog' ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default * 4));
	my $secs = time - $start;
	# a report every ten seconds and one at the end, each cumulative
	my @reports = split(/^(?=queries: \d+)/m, $err);
	my $last = @reports > 1 ? $reports[-1] : '';
	my ($ran) = $last =~ /^queries: (\d+)/m;
	my ($rate) = $last =~ /^error rate: ([0-9.]+)/m;
	my $errors = 0;
	$errors += $1 while $last =~ /^(\d+)\t/mg;
	my $ours = 0;
	$ours += $1 while $last =~ /^(\d+)\t.*netrun_pool/mg;
	# the progress line: '.' ok, 'e' error, 't' timeout, 'C' connection lost
	my $progress = join('', $err =~ /^([.etSC]+)$/mg);
	my $lost = $progress =~ tr/C//;
	note(sprintf('%s: %s queries in %d s, %d errors (rate %s), %d naming netrun_pool, %d connections lost',
			$user, $ran // '?', $secs, $errors, $rate // '?', $ours, $lost));
	note($1) while $last =~ /^(\d+\t.*netrun_pool.*)$/mg;
	return ($ran, $errors, $lost, $err);
}

for my $user ('smith_app', scalar(getpwuid($<)))
{
	my ($ran, $errors, $lost, $err) = run_sqlsmith($user);
	ok(defined $ran && $ran >= $queries, "$user: sqlsmith ran its $queries queries")
	  or diag(substr($err, -3000));
	is($lost, 0, "$user: no connection was lost");
	is($local->safe_psql('postgres', 'SELECT 1'), '1', "$user: the server still answers");
}

my $log = slurp_file($local->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike($log, qr/TRAP:|PANIC:/, 'no failed assertion, no PANIC');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'the worker is running');
my $now_pid = NetrunTest::status_field($local, 'postgres', 'worker_pid');
note($now_pid eq $worker_pid ? 'the worker kept its pid'
	  : "the worker was restarted ($worker_pid -> $now_pid): sqlsmith may terminate backends");
$local->safe_psql('postgres', 'ALTER ROLE CURRENT_USER RESET statement_timeout');
ok($local->poll_query_until('postgres',
		'SELECT coalesce(bool_and(checked_out = 0 AND waiting = 0), true) FROM netrun_pool.pool_stats'),
	'afterwards no pool has a connection checked out or a caller waiting')
  or diag($local->safe_psql('postgres', 'SELECT name, checked_out, waiting FROM netrun_pool.pool_stats'));

done_testing();
