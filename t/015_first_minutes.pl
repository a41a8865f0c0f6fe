# The first five minutes, as a new user meets them: a call right after
# CREATE EXTENSION and register() works (100 times in 100, each from new
# sessions); a call inside the registering transaction says to commit; a
# stopped remote fails its callers at once instead of after
# acquire_timeout_ms; the first call after the remote is back works;
# health_check() as a role that sees nothing is not healthy; a pool shrunk
# by configure() closes its surplus at once.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $remote = NetrunTest::start_remote('remote');
my $local = NetrunTest::start_local('local', conf => "netrun_pool.health_interval_ms = 500");
my $conninfo = NetrunTest::tcp_conninfo($remote);

# psql with one -c per statement, as a user types them: each -c is its own
# transaction.  Returns (exit code, stdout, stderr); gives up after $secs.
sub psql_c
{
	my ($secs, @statements) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ('psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $local->connstr('postgres'));
	push @cmd, ('-c', $_) for @statements;
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err, IPC::Run::timeout($secs));
	my $ok = eval { $h->finish; 1 };
	$h->kill_kill unless $ok;
	chomp $out;
	return ($ok ? $h->result(0) : 'timeout', $out, $err);
}

# --- CREATE EXTENSION, register, call: one session each ------------------
my ($rc, $out, $err) = psql_c(60, 'CREATE EXTENSION netrun_pool');
is($rc, 0, 'CREATE EXTENSION');
($rc, $out, $err) = psql_c(60,
	"SELECT netrun_pool.register('first', '$conninfo', password_required => false, tenant_guard => 'off')",
	"SELECT netrun_pool.fetchval('first', 'SELECT 41 + 1')");
is("$rc $out", "0 \n42", 'the first call, right after CREATE EXTENSION and register(), works')
  or diag($err);

# --- register then call, 100 times, each time a new name -------------------
my $failed = 0;
for my $i (1 .. 100)
{
	($rc, $out, $err) = psql_c(60,
		"SELECT netrun_pool.register('r$i', '$conninfo', password_required => false, tenant_guard => 'off')",
		"SELECT netrun_pool.fetchval('r$i', 'SELECT $i')",
		"SELECT netrun_pool.configure('r$i', pool_max => 3)",
		"SELECT pool_max FROM netrun_pool.pool_stats WHERE name = 'r$i' AND netrun_pool.fetchval('r$i', 'SELECT 1') = '1'",
		"SELECT netrun_pool.unregister('r$i')");
	next if $rc eq '0' && $out eq "\n$i\n\n3\n";
	$failed++;
	diag("round $i: $rc: $out $err") if $failed <= 3;
}
is($failed, 0, 'register(), call, configure(), call: 100 times in 100');

# --- inside the registering transaction ----------------------------------
($rc, $out, $err) = psql_c(60,
	"BEGIN; SELECT netrun_pool.register('early', '$conninfo', password_required => false); SELECT netrun_pool.fetchval('early', 'SELECT 1'); COMMIT;");
like($err,
	qr/ERROR:  netrun_pool connection "early" cannot be used before the transaction that changed the registry commits\nDETAIL:  The pool's worker loads registry changes when they commit\.\nHINT:  Commit the transaction, then call it\./,
	'a call inside the registering transaction says to commit first');

# --- a stopped remote fails fast; the first call after it is back works ------
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('stop', '$conninfo', password_required => false, tenant_guard => 'off',
	                            pool_max => 2, acquire_timeout_ms => 600000);
	CREATE ROLE stranger LOGIN;
});
is((psql_c(60, "SELECT netrun_pool.fetchval('stop', 'SELECT 1')"))[1], "1", 'the remote answers');
$remote->stop('fast');
for my $caller (1 .. 2)
{
	# acquire_timeout_ms is ten minutes: a caller queued behind the refusal
	# would run into the 60 s limit here
	($rc, $out, $err) = psql_c(60, "SELECT netrun_pool.fetchval('stop', 'SELECT 1')");
	like($err, qr/ERROR:  could not connect to netrun_pool connection "stop"\nDETAIL:  connection to server at "127\.0\.0\.1", port \d+ failed: Connection refused/,
		"caller $caller of a stopped remote fails at once with the connect error");
}
like($err, qr/HINT:  Check that the remote server runs and accepts connections/, 'with a hint');
# several at once
my @h;
my @outs = ('') x 4;
my @errs = ('') x 4;
for my $k (0 .. 3)
{
	push @h, NetrunTest::background_call($local, 'postgres',
		"SELECT netrun_pool.fetchval('stop', 'SELECT 1')", \$outs[$k], \$errs[$k]);
}
$_->finish for @h;
is(scalar(grep { /could not connect to netrun_pool connection "stop"/ } @errs), 4,
	'four concurrent callers all fail at once');

$remote->start;
ok($local->poll_query_until('postgres',
		"SELECT status IN ('healthy', 'degraded') FROM netrun_pool.health WHERE name = 'stop'"),
	'health sees the remote again');
($rc, $out, $err) = psql_c(60, "SELECT netrun_pool.fetchval('stop', 'SELECT 2')");
is("$rc $out", "0 2", 'the first call after health shows it healthy works, with no retry')
  or diag($err);

# --- health_check() as a role that sees nothing ---------------------------
($rc, $out, $err) = psql_c(60,
	"SET ROLE stranger",
	"SELECT netrun_pool.health_check()->>'status', netrun_pool.health_check()->>'healthy', netrun_pool.health_check()->'connections'");
is($out, 'unknown|false|{}', 'health_check() for a role with no usage: unknown, not healthy');

# --- a pool shrunk by configure() -------------------------------------------
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('wide', '$conninfo', password_required => false, tenant_guard => 'off',
	                            pool_min => 8, pool_max => 8);
});
ok($local->poll_query_until('postgres',
		"SELECT total = 8 AND idle = 8 FROM netrun_pool.pool_stats WHERE name = 'wide'"),
	'a pool of 8 idle connections');
($rc, $out, $err) = psql_c(60,
	"SELECT netrun_pool.configure('wide', pool_min => 0, pool_max => 2)",
	"SELECT netrun_pool.fetchval('wide', 'SELECT 1')",
	"SELECT total <= 2, overflow, max_overflow FROM netrun_pool.pool_stats WHERE name = 'wide'");
is($out, "\n1\nt|0|0", 'after configure(pool_max => 2) the surplus is closed at once');
is($remote->safe_psql('postgres',
		"SELECT count(*) <= 2 FROM pg_stat_activity WHERE application_name = 'netrun_pool:wide'"),
	't', 'and the remote sees them go');

done_testing();
