# Tenant isolation on the remotes, tried as a caller whose SQL is hostile.
#
# Two remotes hold the same table under FORCE row-level security: one runs
# netrun_pool's guard (session_preload_libraries, tenant_mode = pool, the
# pool's guard key), the other is plain PostgreSQL, its policy on the
# tenant setting.  Each is registered in the three pool modes with
# pool_max 1, so that every caller shares one remote session.  Then the
# attacks of the threat model (docs/tenancy.md, "What holds") are run by
# application roles, and the outcome of each is checked: with the guard
# none escapes; without it only "the caller picks its own call's tenant"
# does, exactly as documented.  Then the same after a caller that errored,
# was cancelled or was terminated mid-call.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $guard_key = NetrunTest::write_key_file("$tmp/guard.key");
my $password = 'Guard-S3cret-pw';

my $guarded = NetrunTest::start_remote('guarded', conf => qq{
session_preload_libraries = 'netrun_pool'
netrun_pool.tenant_mode = pool
netrun_pool.guard_key_file = '$guard_key'
log_statement = all
});
my $plain = NetrunTest::start_remote('plain');

# The same data on both: tenants A (2 rows), B and C (1 each).
for my $remote ($guarded, $plain)
{
	NetrunTest::require_scram($remote);
	my $guard = $remote == $guarded;
	$remote->safe_psql('postgres', ($guard ? 'CREATE EXTENSION netrun_pool;' : '') . qq{
		SET password_encryption = 'scram-sha-256';
		CREATE ROLE remote_app LOGIN PASSWORD '$password';
		CREATE TABLE docs (tenant_id text NOT NULL, body text);
		INSERT INTO docs VALUES ('A', 'a1'), ('A', 'a2'), ('B', 'b1'), ('C', 'c1');
		ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
		ALTER TABLE docs FORCE ROW LEVEL SECURITY;
		GRANT SELECT, INSERT ON docs TO remote_app;
	} . ($guard ?
		  q{CREATE POLICY docs_tenant ON docs
			  USING (tenant_id = netrun_pool.current_tenant())
			  WITH CHECK (tenant_id = netrun_pool.current_tenant());}
		: q{CREATE POLICY docs_tenant ON docs
			  USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), ''))
			  WITH CHECK (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), ''));}));
}

my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.secret_key_file = '@{[ NetrunTest::write_key_file("$tmp/secret.key") ]}'
netrun_pool.guard_key_file = '$guard_key'
});
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

# g_<mode> on the guarded remote (tenant_guard required, the default),
# p_<mode> on the plain one (tenant_guard off), p_required: plain, required.
my @modes = qw(transaction session none);
my %conninfo = (
	g => NetrunTest::tcp_conninfo($guarded) . " user=remote_app password=$password",
	p => NetrunTest::tcp_conninfo($plain) . " user=remote_app password=$password");
my $setup = "CREATE ROLE app_a LOGIN; CREATE ROLE app_b LOGIN;\n";
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		$setup .= "SELECT netrun_pool.register('${g}_$mode', '$conninfo{$g}', pool_max => 1, "
		  . "pool_mode => '$mode', statement_timeout_ms => 60000, acquire_timeout_ms => 60000"
		  . ($g eq 'p' ? ", tenant_guard => 'off'" : '') . ");\n";
	}
}
$setup .= "SELECT netrun_pool.register('p_required', '$conninfo{p}', pool_max => 1);\n";
$setup .= "SELECT netrun_pool.grant_usage(name, r) FROM netrun_pool.connections, "
  . "unnest(ARRAY['app_a', 'app_b']::regrole[]) r;\n";
$local->safe_psql('postgres', $setup);
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '7'),
	'seven connections loaded');

# A caller: a psql session as $role, with $tenant set first if given.
sub call
{
	my ($role, $tenant, $sql, %opts) = @_;
	my $pre = defined $tenant ? "SELECT netrun_pool.set_tenant('$tenant') \\g /dev/null\n" : '';
	my ($ret, $out, $err) = $local->psql('postgres', $pre . $sql,
		extra_params => [ '-U', $role ], on_error_stop => 0, %opts);
	return wantarray ? ($out, $err) : $out;
}

# The tenants a caller sees in docs through connection $c.
sub seen
{
	my ($c, $role, $tenant) = @_;
	my ($out, $err) = call($role, $tenant,
		"SELECT coalesce(string_agg(DISTINCT tenant_id, ',' ORDER BY tenant_id), '-') FROM netrun_pool.query('$c', 'SELECT tenant_id FROM docs') AS t(tenant_id text)");
	return $err ? "error: $err" : $out;
}

# --- the guard's state is visible --------------------------------------
call('app_a', undef, "SELECT netrun_pool.fetchval(name, 'SELECT 1') FROM netrun_pool.connections");
is($local->safe_psql('postgres',
		"SELECT string_agg(name || '=' || tenant_guard, ' ' ORDER BY name) FROM netrun_pool.health WHERE name IN ('g_transaction', 'p_transaction', 'p_required')"),
	'g_transaction=enforced p_required=absent p_transaction=off',
	'health shows which remotes enforce the guard');
is($local->safe_psql('postgres',
		"SELECT tenant_guard_detail FROM netrun_pool.health WHERE name = 'p_required'"),
	'netrun_pool is not installed in the remote database', 'and why one does not');
is($local->safe_psql('postgres',
		"SELECT tenant_guard || '/' || tenant_guard_status FROM netrun_pool.connections WHERE name = 'g_session'"),
	'required/enforced', 'connections shows the setting and the state');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.health_check('g_none')->>'tenant_guard'"),
	'enforced', 'health_check() reports it');

# --- tenant_guard => required on a plain remote --------------------------
my ($out, $err) = call('app_a', 'A', "SELECT netrun_pool.fetchval('p_required', 'SELECT 1')");
like($err, qr/ERROR:  netrun_pool connection "p_required" does not enforce the tenant guard\nDETAIL:  The call carries a tenant, and the remote cannot stop the call's SQL from choosing another: netrun_pool is not installed in the remote database\.\nHINT:  Install netrun_pool on the remote/,
	'required: a tenant-carrying call to a remote without the guard is refused (28000)');
is(call('app_a', undef, "SELECT netrun_pool.fetchval('p_required', 'SELECT count(*) FROM docs')"),
	'0', 'required: a call without a tenant still runs, and sees no rows');

# --- every connection: the baseline -------------------------------------
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		is(seen($c, 'app_a', 'A'), 'A', "$c: tenant A sees its own rows");
		is(seen($c, 'app_b', undef), '-', "$c: no tenant sees no rows");
	}
}

# --- attack 1: the caller picks the remote tenant ------------------------
# Outcome per connection: "held" or "escaped" (docs/tenancy.md's table says:
# escaped without the guard, held with it).
for my $g (qw(g p))
{
	my $want = $g eq 'g' ? 'held' : 'escaped';
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		# set_config on the mirror, read in the same statement
		my ($o, $e) = call('app_a', 'A',
			"SELECT rows FROM netrun_pool.query('$c', \$\$SELECT set_config('app.current_tenant_id', 'B', true), (SELECT string_agg(tenant_id, ',') FROM docs)\$\$) AS t(s text, rows text)");
		is($o =~ /B/ ? 'escaped' : 'held', $want, "$c: set_config of the mirror in the caller's SQL: $want");
		# the guarded setting itself, and set_tenant on the remote
		if ($g eq 'g')
		{
			(undef, $e) = call('app_a', 'A',
				"SELECT netrun_pool.fetchval('$c', \$\$SELECT set_config('netrun_pool.tenant_id', 'B', false)\$\$)");
			like($e, qr/ERROR:  netrun_pool.tenant_id can only be changed by netrun_pool.set_tenant\(\)/,
				"$c: the remote refuses set_config of its tenant");
			(undef, $e) = call('app_a', 'A',
				"SELECT netrun_pool.fetchval('$c', \$\$SELECT netrun_pool.set_tenant('B')\$\$)");
			like($e, qr/ERROR:  netrun_pool.tenant_mode is "pool": only the pool's signed assertions may set the tenant/,
				"$c: the remote refuses set_tenant()");
		}
		# a write into another tenant with exec_transaction and SET LOCAL
		($o, $e) = call('app_a', 'A',
			"SELECT netrun_pool.exec_transaction('$c', ARRAY[\$\$SET LOCAL app.current_tenant_id = 'B'\$\$, \$\$INSERT INTO docs VALUES ('B', 'x-$c')\$\$])");
		my $wrote = $g eq 'g' ? $guarded : $plain;
		my $n = $wrote->safe_psql('postgres', "SELECT count(*) FROM docs WHERE body = 'x-$c'");
		is($n ? 'escaped' : 'held', $want, "$c: exec_transaction with SET LOCAL writes into B: $want");
		# begin(), SET LOCAL, then a read in a later call: every call sets
		# its tenant again, so this is held even without the guard
		($o, $e) = call('app_a', 'A',
			"BEGIN; SELECT netrun_pool.begin('$c'); SELECT netrun_pool.exec('$c', \$\$SET LOCAL app.current_tenant_id = 'B'\$\$); SELECT 'seen:' || netrun_pool.fetchval('$c', 'SELECT string_agg(tenant_id, '','') FROM docs'); COMMIT;");
		like($o, qr/^seen:A,A$/m, "$c: begin(), SET LOCAL, then another call: held");
	}
}

# A captured assertion, replayed: the guarded remote logs every statement
# with its parameters, so a reader of its log has them all.
{
	call('app_a', 'A', "SELECT netrun_pool.fetchval('g_transaction', 'SELECT 1')");
	my $log = slurp_file($guarded->logfile);
	my @captured = ($log =~ /guard_assert\(\$1, \$2::bigint, \$3\)\n[^\n]*DETAIL:  parameters: \$1 = '(\w*)', \$2 = '(\d+)', \$3 = '([0-9a-f]{64})'/g);
	ok(@captured >= 3, 'assertions can be read from the remote log');
	my ($tenant, $seq, $mac) = @captured[-3 .. -1];
	is($tenant, 'A', 'the last one carried tenant A');
	# the same session (pool_max 1): its sequence was used
	my ($o, $e) = call('app_b', 'B',
		"SELECT netrun_pool.fetchval('g_transaction', \$\$SELECT netrun_pool.guard_assert('$tenant', $seq, '$mac')\$\$)");
	like($e, qr/ERROR:  invalid tenant assertion\nDETAIL:  Its sequence was already used in this session\./,
		'replayed in the same remote session: refused (sequence)');
	# a later sequence under the same signature
	($o, $e) = call('app_b', 'B',
		"SELECT netrun_pool.fetchval('g_transaction', \$\$SELECT netrun_pool.guard_assert('$tenant', @{[ $seq + 1000 ]}, '$mac')\$\$)");
	like($e, qr/DETAIL:  Its signature does not match this session\./,
		'with another sequence: refused (signature)');
	# another session, bound with its own hello
	($o, $e) = call('app_b', 'B',
		"SELECT netrun_pool.fetchval('g_session', \$\$SELECT netrun_pool.guard_assert('$tenant', $seq, '$mac')\$\$)");
	like($e, qr/DETAIL:  Its signature does not match this session\./,
		'replayed in another remote session: refused (signature)');
	# straight to the remote, as its role, in a session of its own
	my ($r, $so, $se) = $guarded->psql('postgres',
		"SELECT netrun_pool.guard_hello(repeat('0', 32)); SELECT netrun_pool.guard_assert('$tenant', $seq, '$mac'); SELECT count(*) FROM docs",
		extra_params => [ '-U', 'remote_app' ], on_error_stop => 0);
	like($se, qr/invalid tenant assertion/, 'replayed in a direct session: refused');
	like($so, qr/^0$/m, 'and that session sees no rows');
}

# --- attack 2: a tenant set by one caller reaches the next -----------------
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		call('app_a', 'A', "SELECT netrun_pool.exec('$c', \$\$SET app.current_tenant_id = 'C'\$\$)");
		call('app_a', 'A', "SELECT netrun_pool.exec('$c', \$\$SELECT set_config('netrun_pool.tenant_id', 'C', false)\$\$)")
		  if $g eq 'g';
		is(seen($c, 'app_b', undef), '-', "$c: the next caller, with no tenant, sees no rows");
	}
}

# --- attack 3: rows stolen through kept temporary objects -----------------
my $trap = q{CREATE TEMP TABLE loot (tenant_id text, body text);
CREATE FUNCTION pg_temp.spy(t text, b text) RETURNS boolean LANGUAGE sql AS 'INSERT INTO pg_temp.loot VALUES (t, b) RETURNING true';
CREATE TEMP VIEW docs AS SELECT d.* FROM public.docs d WHERE pg_temp.spy(d.tenant_id, d.body);};
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		# one call sets the trap; in session mode, the session is released
		my $sql = "SELECT netrun_pool.exec_transaction('$c', ARRAY["
		  . join(', ', map { "\$q\$$_\$q\$" } split(/\n/, $trap)) . "]);";
		$sql .= "\nSELECT netrun_pool.release('$c');" if $mode eq 'session';
		my ($o, $e) = call('app_b', 'B', $sql);
		is($e, '', "$c: the trap is set");
		is(seen($c, 'app_a', 'A'), 'A', "$c: the victim reads its rows");
		($o, $e) = call('app_b', 'B', "SELECT netrun_pool.fetchval('$c', 'SELECT count(*) FROM pg_temp.loot')");
		like($e, qr/relation "pg_temp.loot" does not exist/, "$c: the trap is gone, nothing was stolen");
	}
}

# --- attack 4: settings carried between callers ----------------------------
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		my $sql = join("\n", map { "SELECT netrun_pool.exec('$c', \$q\$$_\$q\$);" }
			('RESET ALL', 'SET default_transaction_read_only = on', "SET DateStyle = 'SQL, DMY'",
			 'SET statement_timeout = 0', 'SELECT pg_advisory_lock(77)', 'PREPARE p AS SELECT 1',
			 'LISTEN chan', "DECLARE cur CURSOR WITH HOLD FOR SELECT 1", 'CREATE TEMP SEQUENCE s',
			 "SELECT nextval('pg_temp.s')"));
		$sql .= "\nSELECT netrun_pool.release('$c');" if $mode eq 'session';
		call('app_b', undef, $sql);
		my ($o, $e) = call('app_a', 'A',
			"SELECT * FROM netrun_pool.query('$c', \$\$SELECT current_setting('default_transaction_read_only'), current_setting('DateStyle'), current_setting('statement_timeout'), current_setting('client_connection_check_interval'), (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), (SELECT count(*) FROM pg_prepared_statements), (SELECT count(*) FROM pg_listening_channels()), (SELECT count(*) FROM pg_cursors WHERE name = 'cur'), current_user\$\$) AS t(ro text, ds text, st text, ccci text, locks bigint, prep bigint, listen bigint, cursors bigint, usr text)");
		is($o, 'off|ISO, MDY|1min|500ms|0|0|0|0|remote_app', "$c: the next caller gets the pool's settings and a clean session");
		($o, $e) = call('app_a', 'A', "SELECT netrun_pool.exec('$c', \$\$INSERT INTO docs VALUES ('A', 'w-$c')\$\$)");
		is($o, 'INSERT 0 1', "$c: and its INSERT is not read-only");
	}
}

# --- attack 5: a cleared tenant stays on the remote ----------------------
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		my $q = "SELECT coalesce(string_agg(DISTINCT tenant_id, ','), '-') FROM netrun_pool.query('$c', 'SELECT tenant_id FROM docs') AS t(tenant_id text)";
		my ($o, $e) = call('app_a', undef, qq{
SELECT netrun_pool.set_tenant('A') \\g /dev/null
$q;
SELECT netrun_pool.clear_tenant() \\g /dev/null
$q;
SELECT netrun_pool.set_tenant('A') \\g /dev/null
$q;
DISCARD ALL;
$q;
SELECT netrun_pool.set_tenant('A') \\g /dev/null
RESET ALL;
$q;
BEGIN;
SELECT netrun_pool.set_tenant('A', true) \\g /dev/null
$q;
COMMIT;
$q;
SELECT netrun_pool.set_tenant('B') \\g /dev/null
$q;
});
		is($o, "A\n-\nA\n-\n-\nA\n-\nB", "$c: the remote tenant follows the local one on every call");
	}
}

# --- attack 6: the same answer whatever the pool's history ----------------
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('fresh', '$conninfo{p}', pool_max => 1, tenant_guard => 'off');
	SELECT netrun_pool.grant_usage('fresh', 'app_a');
});
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '8'),
	'a fresh connection is loaded');
my $probe = "SELECT coalesce(current_setting('app.current_tenant_id', true), '<null>') || ':' || (SELECT count(*) FROM docs)";
my $first = call('app_a', undef, "SELECT netrun_pool.fetchval('fresh', \$\$$probe\$\$)");
call('app_a', 'A', "SELECT netrun_pool.fetchval('fresh', 'SELECT 1')");
my $again = call('app_a', undef, "SELECT netrun_pool.fetchval('fresh', \$\$$probe\$\$)");
is($first, ':0', 'a fresh connection shows the tenant setting as empty, no rows');
is($again, $first, 'a reused one shows the same');

# --- callers that errored, were cancelled or were terminated mid-call -----
# Each leaves session state behind as far as it can (an advisory lock, a
# tenant, a temp table) and then fails; the next caller finds none of it.
my $leftovers = "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) || '/' || (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) || '/' || coalesce(nullif(current_setting('app.current_tenant_id', true), ''), '-') || '/' || (SELECT count(*) FROM docs)";
for my $g (qw(g p))
{
	for my $mode (@modes)
	{
		my $c = "${g}_$mode";
		my ($o, $e) = call('app_a', 'A', qq{
SELECT netrun_pool.exec('$c', 'CREATE TEMP TABLE left_behind (x int)');
SELECT netrun_pool.fetchval('$c', \$\$SELECT pg_advisory_lock(5) IS NULL, set_config('app.current_tenant_id', 'C', false), 1/0\$\$);
});
		like($e, qr/division by zero/, "$c: caller 1 errors");
		is(call('app_b', undef, "SELECT netrun_pool.fetchval('$c', \$\$$leftovers\$\$)"), '0/0/-/0',
			"$c: after an error, the next caller finds nothing left");

		($o, $e) = call('app_a', 'A', qq{
SELECT netrun_pool.exec('$c', 'CREATE TEMP TABLE left_behind (x int)');
SET statement_timeout = '300ms';
SELECT netrun_pool.fetchval('$c', \$\$SELECT pg_advisory_lock(6) IS NULL, set_config('app.current_tenant_id', 'C', false), pg_sleep(30)\$\$);
});
		like($e, qr/canceling statement due to statement timeout/, "$c: caller 1 is cancelled");
		is(call('app_b', undef, "SELECT netrun_pool.fetchval('$c', \$\$$leftovers\$\$)"), '0/0/-/0',
			"$c: after a cancel, the next caller finds nothing left");

		my ($bout, $berr);
		my $h = NetrunTest::background_call($local, 'postgres',
			"SELECT netrun_pool.set_tenant('A'); SELECT netrun_pool.exec('$c', 'CREATE TEMP TABLE left_behind (x int)'); SELECT netrun_pool.fetchval('$c', \$\$SELECT pg_advisory_lock(8) IS NULL, set_config('app.current_tenant_id', 'C', false), pg_sleep(30)\$\$)",
			\$bout, \$berr, '-U', 'app_a');
		my $remote = $g eq 'g' ? $guarded : $plain;
		ok($remote->poll_query_until('postgres',
				"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()"),
			"$c: caller 3 runs");
		$local->safe_psql('postgres',
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app_a' AND query LIKE '%pg_sleep(30)%'");
		$h->finish;
		like($berr, qr/terminating connection due to administrator command/, "$c: caller 3 is terminated mid-call");
		is(call('app_b', undef, "SELECT netrun_pool.fetchval('$c', \$\$$leftovers\$\$)"), '0/0/-/0',
			"$c: after a termination, the next caller finds nothing left");
	}
}

# Nothing is left checked out or waiting.
ok($local->poll_query_until('postgres',
		'SELECT sum(checked_out) + sum(waiting) = 0 FROM netrun_pool.pool_stats'),
	'nothing is left checked out or waiting');

done_testing();
