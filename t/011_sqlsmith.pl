# sqlsmith against a server with netrun_pool: random SQL that calls our
# functions, reads our views and writes our tables with whatever values it
# finds, next to a working remote, a remote that is down and a cluster.
# Two runs: as a superuser (registry functions, the registry tables
# themselves) and as an application role with usage on the connections.
# Errors are expected by the hundred; what must not happen is a crash,
# a server that stops answering, a worker that is gone, or a connection
# left checked out.  And, so that a quiet run cannot pass for a good one,
# each run must have reached the extension: track_functions counts the
# calls of every function, and each role's sqlsmith must have called
# several distinct functions of schema netrun_pool.  A call that fails is
# not counted there, so the notes also list the functions of ours that
# raised errors for it (log_error_verbosity = verbose names them).
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
track_functions = 'all'
log_error_verbosity = verbose
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

# Calls of netrun_pool's functions, from pg_stat_user_functions (the
# function's OID tells overloads apart).  A session's counts reach shared
# memory as it exits, so a reading first waits until no other client
# backend is left (sqlsmith's and the setup's sessions have gone).
my $alone_sql = q{
	SELECT count(*) = 0 FROM pg_stat_activity
	 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()};
sub function_calls
{
	$local->poll_query_until('postgres', $alone_sql)
	  or diag('client backends are still there: ' . $local->safe_psql('postgres',
			q{SELECT string_agg(usename || ' ' || state, ', ') FROM pg_stat_activity WHERE backend_type = 'client backend'}));
	my %calls = map { split(/=/) } split(/\n/, $local->safe_psql('postgres', q{
		SELECT string_agg(funcid || '=' || calls, E'\n')
		  FROM pg_stat_user_functions WHERE schemaname = 'netrun_pool'}));
	return \%calls;
}
# The netrun_pool functions whose call count differs from %$before (a
# superuser's random SQL may reset the counters, hence "differs"), as
# "name(args) xN" per line.
sub changed_sql
{
	my ($before) = @_;
	my $values = join(', ', map { "($_, $before->{$_})" } sort keys %$before) || '(0, 0)';
	return qq{
		SELECT f.funcid::regprocedure || ' x' || (f.calls - coalesce(b.calls, 0))
		  FROM pg_stat_user_functions f
		  LEFT JOIN (VALUES $values) b(funcid, calls) ON b.funcid = f.funcid
		 WHERE f.schemaname = 'netrun_pool' AND f.calls IS DISTINCT FROM b.calls
		 ORDER BY 1};
}

# The errors raised in our own code for client backends, in the server log
# after byte $from: "function (file.c)" for our C code, "function
# (PL/pgSQL)" for a RAISE in one of our PL/pgSQL functions, with counts.
my %our_files = map { m{([^/]+\.c)$} ? ($1 => 1) : () } glob('src/*.c');
sub our_errors
{
	my ($from) = @_;
	my $log = substr(slurp_file($local->logfile), $from);
	my %raised;
	while ($log =~
		/^[^\n]*\[(\d+)\] client backend ERROR:  [^\n]*(?:\n\t[^\n]*)*((?:\n[^\n]*\[\1\] client backend (?:DETAIL|HINT|QUERY|CONTEXT):  [^\n]*(?:\n\t[^\n]*)*)*)\n[^\n]*\[\1\] client backend LOCATION:  (\w+), (\w+\.c):\d+$/mg)
	{
		my ($between, $function, $file) = ($2, $3, $4);
		if ($our_files{$file})
		{
			$raised{"$function ($file)"}++;
		}
		elsif ($function eq 'exec_stmt_raise'
			&& $between =~ /CONTEXT:  PL\/pgSQL function (netrun_pool\.\w+)\([^\n]*\) line \d+ at RAISE/)
		{
			$raised{"$1 (PL/pgSQL)"}++;
		}
	}
	return \%raised;
}

# Each run must complete calls of at least this many distinct netrun_pool
# functions.  With the default seed the application role completed calls
# of 5 to 7 (the views' functions, _conninfo_get, current_tenant), the
# superuser of 8 or 9 (the registry triggers too), over three runs.  A run that never reached the
# extension (sqlsmith no longer seeing the schema, or every query that
# names one of our functions failing before or in the call) counts fewer
# and fails.
my $min_functions = 4;
my $before = function_calls();
for my $user ('smith_app', scalar(getpwuid($<)))
{
	my $log_from = -s $local->logfile;
	my ($ran, $errors, $lost, $err) = run_sqlsmith($user);
	ok(defined $ran && $ran >= $queries, "$user: sqlsmith ran its $queries queries")
	  or diag(substr($err, -3000));
	is($lost, 0, "$user: no connection was lost");
	is($local->safe_psql('postgres', 'SELECT 1'), '1', "$user: the server still answers");

	# Polled: a session's counts are flushed as it exits, which may be
	# just after it left pg_stat_activity.
	$local->poll_query_until('postgres', $alone_sql);
	my $changed = changed_sql($before);
	$local->poll_query_until('postgres', "SELECT count(*) >= $min_functions FROM ($changed) c");
	my @called = split(/\n/, $local->safe_psql('postgres', $changed));
	note("$user: sqlsmith called " . scalar(@called) . " distinct netrun_pool functions:\n  "
		  . join("\n  ", @called));
	if (%our_files)
	{
		my $raised = our_errors($log_from);
		note("$user: errors raised in " . scalar(keys %$raised) . " functions of ours:\n  "
			  . join("\n  ", map { "$_ x$raised->{$_}" } sort keys %$raised));
	}
	cmp_ok(scalar(@called), '>=', $min_functions,
		"$user: sqlsmith reached the extension (distinct netrun_pool functions called)");
	$before = function_calls();
}
note('queries_total by pool: '
	  . $local->safe_psql('postgres', q{SELECT string_agg(name || '=' || queries_total, ' ' ORDER BY name) FROM netrun_pool.pool_stats}));

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

note(sprintf('%d s in all', time - $^T));
done_testing();
