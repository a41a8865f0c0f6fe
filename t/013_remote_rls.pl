# Row-level security verified where the rows live: rls_audit(),
# rls_status() and verify_rls_enabled() given a connection run on that
# remote, a plain PostgreSQL without netrun_pool, through the pool, as the
# pool's role there.  The pool's remote role is (a) a non-owner and the
# table FORCEs RLS: protected; (b) the owner and the table does not FORCE
# RLS: reported; (c) a tenant table has no RLS at all: critical; (d) the
# role has BYPASSRLS: reported.  The local database has a table of the same
# name set up right, so a check that looked here would answer otherwise.
# A fix made on the remote is seen by the next check; a table the remote
# does not have, a caller without usage and a remote that is down are
# errors.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $password = 'Rls-S3cret-pw';

# --- the remote: tenant tables owned by tbl_owner ---------------------------
my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
$remote->safe_psql('postgres', qq{
	SET password_encryption = 'scram-sha-256';
	CREATE ROLE tbl_owner LOGIN PASSWORD '$password';
	CREATE ROLE pool_app LOGIN PASSWORD '$password';
	CREATE ROLE pool_bypass LOGIN PASSWORD '$password' BYPASSRLS;
	GRANT CREATE ON SCHEMA public TO tbl_owner;
	SET ROLE tbl_owner;
	CREATE TABLE docs_forced (id int, tenant_id text, body text);
	ALTER TABLE docs_forced ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
	CREATE POLICY tenant ON docs_forced
	  USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), ''));
	CREATE TABLE docs_unforced (id int, tenant_id text, body text);
	ALTER TABLE docs_unforced ENABLE ROW LEVEL SECURITY;
	CREATE POLICY tenant ON docs_unforced
	  USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), ''));
	CREATE TABLE docs_plain (id int, tenant_id text, body text);
	GRANT SELECT ON docs_forced, docs_unforced, docs_plain TO pool_app, pool_bypass;
	RESET ROLE;
});

# --- the local server: one connection per remote role -------------------------
my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.secret_key_file = '@{[ NetrunTest::write_key_file("$tmp/secret.key") ]}'
netrun_pool.health_interval_ms = 200
netrun_pool.unhealthy_after = 2
});
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
my $conninfo = NetrunTest::tcp_conninfo($remote);
$local->safe_psql('postgres', qq{
	CREATE ROLE auditor LOGIN;
	CREATE ROLE stranger LOGIN;
	SELECT netrun_pool.register('as_app', '$conninfo user=pool_app password=$password',
	    pool_max => 1, connect_timeout_ms => 1000, acquire_timeout_ms => 5000);
	SELECT netrun_pool.register('as_owner', '$conninfo user=tbl_owner password=$password',
	    pool_max => 1, connect_timeout_ms => 1000, acquire_timeout_ms => 5000);
	SELECT netrun_pool.register('as_bypass', '$conninfo user=pool_bypass password=$password',
	    pool_max => 1, connect_timeout_ms => 1000, acquire_timeout_ms => 5000);
	SELECT netrun_pool.grant_usage(c, 'auditor') FROM unnest(ARRAY['as_app', 'as_owner', 'as_bypass']) c;
	-- here, docs_plain is set up right
	CREATE TABLE docs_plain (id int, tenant_id text, body text);
	SELECT netrun_pool.enable_tenant_rls('docs_plain');
	GRANT SELECT ON docs_plain TO auditor;
});
ok($local->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM netrun_pool.health WHERE status IN ('healthy', 'degraded') AND circuit = 'closed'"),
	'the three connections are probed and answer');

# Everything below runs as auditor: neither a superuser nor anyone on the
# remote.  The answers are for the pool's role there.
sub as_auditor
{
	my ($sql) = @_;
	return $local->safe_psql('postgres', $sql, extra_params => [ '-U', 'auditor' ]);
}
# One line per finding: severity, table and finding, '|'-separated.
sub findings
{
	my ($connection, $where) = @_;
	return as_auditor(qq{
		SELECT severity || '|' || coalesce(table_name, '') || '|' || finding
		  FROM netrun_pool.rls_audit(connection => '$connection')
		 WHERE $where});
}
sub reason
{
	my ($table, $connection) = @_;
	return as_auditor(qq{
		SELECT (s ->> 'role') || ': ' || (s ->> 'reason')
		  FROM netrun_pool.rls_status('$table', '$connection') s});
}
sub verified
{
	my ($table, $connection) = @_;
	return as_auditor("SELECT netrun_pool.verify_rls_enabled('$table', '$connection')");
}

# --- (a) a non-owner, the table FORCEd: protected -------------------------------
is(verified('docs_forced', 'as_app'), 't', '(a) a non-owner on a FORCEd table: verified');
is(reason('docs_forced', 'as_app'), 'pool_app: row-level security applies to the current role',
	'(a) for the pool\'s role on the remote, and why');
is(findings('as_app', "table_name = 'public.docs_forced'"),
	'info|public.docs_forced|policy "tenant" reads the tenant from setting "app.current_tenant_id", which any SQL can SET',
	'(a) the audit has no critical or warning finding for it, only the note that its setting can be SET');

# --- (b) the owner, the table not FORCEd: reported --------------------------------
is(verified('docs_unforced', 'as_owner'), 'f', '(b) the owner on a table without FORCE: not verified');
is(reason('docs_unforced', 'as_owner'), 'tbl_owner: the current role owns the table and FORCE is not set',
	'(b) because the pool\'s role owns it');
is(findings('as_owner', "table_name = 'public.docs_unforced' AND severity <> 'info'"),
	join("\n",
		'critical|public.docs_unforced|the current role owns the table and FORCE is not set: row-level security does not apply to it',
		'warning|public.docs_unforced|row-level security is not forced: the table owner bypasses it'),
	'(b) the audit reports the owner (critical) and the missing FORCE');
is(verified('docs_unforced', 'as_app'), 't',
	'(b) the same table through a non-owner role: verified (ownership is the cause)');
is(findings('as_owner', "table_name = 'public.docs_forced' AND severity <> 'info'"),
	'warning|public.docs_forced|the current role owns the table: it can turn row-level security off',
	'(b) with FORCE, the owner is still reported: any SQL sent through the pool can turn RLS off');

# --- (c) a tenant table without RLS: critical --------------------------------------
is(findings('as_app', "table_name = 'public.docs_plain'"),
	'critical|public.docs_plain|table has column "tenant_id" but row-level security is not enabled',
	'(c) a tenant table without RLS on the remote is critical');
is(as_auditor(q{
		SELECT hint FROM netrun_pool.rls_audit(connection => 'as_app')
		 WHERE table_name = 'public.docs_plain'}),
	'On the remote, run ALTER TABLE public.docs_plain ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY; and create a policy on "tenant_id".',
	'(c) its hint is plain SQL to run on the remote, which has no netrun_pool');
is(verified('docs_plain', 'as_app') . ' ' . reason('docs_plain', 'as_app'),
	'f pool_app: row-level security is not enabled', '(c) not verified, and why');
is(as_auditor("SELECT netrun_pool.verify_rls_enabled('docs_plain')"), 't',
	'(c) the local table of that name is set up right: the answers above came from the remote');

# --- (d) a role with BYPASSRLS: reported ------------------------------------------
is(verified('docs_forced', 'as_bypass'), 'f', '(d) a BYPASSRLS role on a FORCEd table: not verified');
is(reason('docs_forced', 'as_bypass'), 'pool_bypass: the current role has BYPASSRLS', '(d) and why');
is(findings('as_bypass', 'table_name IS NULL'),
	'critical||the current role has BYPASSRLS: row-level security does not apply to it',
	'(d) the audit reports the pool\'s role itself as critical');
is(findings('as_app', 'table_name IS NULL'),
	'warning||login role "pool_bypass" has BYPASSRLS: row-level security does not apply to it',
	'(d) and through another connection, as a login role with BYPASSRLS');

# --- a fix on the remote is seen at the next check ------------------------------------
$remote->safe_psql('postgres', 'ALTER TABLE docs_unforced FORCE ROW LEVEL SECURITY');
is(verified('docs_unforced', 'as_owner') . ' '
	  . findings('as_owner', "table_name = 'public.docs_unforced' AND severity <> 'info'"),
	't warning|public.docs_unforced|the current role owns the table: it can turn row-level security off',
	'after FORCE on the remote: verified, and only the ownership is left');

# --- the checks run through the pool ----------------------------------------------------
is($remote->safe_psql('postgres', q{
		SELECT string_agg(application_name || ' as ' || usename, ', ' ORDER BY application_name)
		  FROM pg_stat_activity WHERE application_name LIKE 'netrun\_pool:%'}),
	'netrun_pool:as_app as pool_app, netrun_pool:as_bypass as pool_bypass, netrun_pool:as_owner as tbl_owner',
	'on the remote, the checks ran on the pooled connections, as the pool\'s roles');

# --- errors ---------------------------------------------------------------------------------
my ($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.rls_status('docs_missing', 'as_app')", extra_params => [ '-U', 'auditor' ]);
like($err, qr/ERROR:  relation "docs_missing" does not exist on netrun_pool connection "as_app"\n/,
	'a table the remote does not have: its own error');
($ret, $out, $err) = $local->psql('postgres', q{
	\set VERBOSITY verbose
	SELECT netrun_pool.verify_rls_enabled('docs_missing', 'as_app')},
	extra_params => [ '-U', 'auditor' ]);
like($err, qr/ERROR:  42P01: /, 'with SQLSTATE 42P01');
($ret, $out, $err) = $local->psql('postgres',
	"SELECT * FROM netrun_pool.rls_audit(connection => 'as_app')", extra_params => [ '-U', 'stranger' ]);
like($err, qr/ERROR:  permission denied for netrun_pool connection "as_app"/,
	'a caller without usage is refused, as for any call');
($ret, $out, $err) = $local->psql('postgres',
	"SELECT * FROM netrun_pool.rls_audit(connection => 'nope')", extra_params => [ '-U', 'auditor' ]);
like($err, qr/ERROR:  netrun_pool connection "nope" does not exist/, 'an unknown connection');

$remote->stop;
ok($local->poll_query_until('postgres',
		"SELECT status = 'unhealthy' AND circuit = 'open' FROM netrun_pool.health WHERE name = 'as_app'"),
	'the remote stopped is seen down');
($ret, $out, $err) = $local->psql('postgres', q{
	\set VERBOSITY verbose
	SELECT * FROM netrun_pool.rls_audit(connection => 'as_app')},
	extra_params => [ '-U', 'auditor' ]);
like($err, qr/ERROR:  08004: netrun_pool connection "as_app" is unavailable/,
	'a remote that is down: the error of any call to it');

done_testing();
