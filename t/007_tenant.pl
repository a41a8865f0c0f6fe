# The tenant context against real servers: PGOPTIONS cannot set it at
# connection start; two tenants making 1000 interleaved calls through a
# pool of one connection, against a remote table under row-level security
# keyed on the remote's tenant setting, never see each other's rows; a
# call made with no tenant sees none (fail closed).
# The remote is plain PostgreSQL, registered with tenant_guard => 'off';
# t/014_remote_guard.pl covers the guard.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $password = 'Tenant-S3cret-pw';

# The remote: a table of two tenants' rows, RLS forced, read by a
# non-owner role through a policy on the remote's tenant setting.
my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
$remote->safe_psql('postgres', qq{
	SET password_encryption = 'scram-sha-256';
	CREATE ROLE remote_app LOGIN PASSWORD '$password';
	CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, body text);
	INSERT INTO docs SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 'doc ' || g
	  FROM generate_series(1, 200) g;
	ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
	ALTER TABLE docs FORCE ROW LEVEL SECURITY;
	CREATE POLICY docs_tenant ON docs
	  USING (tenant = current_setting('app.current_tenant_id', true))
	  WITH CHECK (tenant = current_setting('app.current_tenant_id', true));
	GRANT SELECT, INSERT ON docs TO remote_app;
});

my $local = NetrunTest::start_local('local',
	conf => "netrun_pool.secret_key_file = '" . NetrunTest::write_key_file("$tmp/secret.key") . "'");
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
my $conninfo = NetrunTest::tcp_conninfo($remote) . " user=remote_app password=$password";
$local->safe_psql('postgres', qq{
	CREATE ROLE app LOGIN;
	SELECT netrun_pool.register('r', '$conninfo', pool_max => 1, acquire_timeout_ms => 60000,
	                            tenant_guard => 'off');
	SELECT netrun_pool.grant_usage('r', 'app');
	CREATE TABLE checks (client int, tenant text, seen int, foreign_rows int);
	GRANT INSERT ON checks TO app;
});
ok($local->poll_query_until('postgres',
		"SELECT status IN ('healthy', 'degraded') FROM netrun_pool.health WHERE name = 'r'"),
	'the remote is registered and answers');

# --- PGOPTIONS cannot set the tenant ----------------------------------------
{
	local $ENV{PGOPTIONS} = '-c netrun_pool.tenant_id=evil';
	my ($ret, $out, $err) = $local->psql('postgres', 'SELECT netrun_pool.current_tenant()',
		extra_params => [ '-U', 'app' ]);
	isnt($ret, 0, 'a connection that sets the tenant with PGOPTIONS is refused');
	like($err, qr/netrun_pool.tenant_id can only be changed by netrun_pool.set_tenant\(\)/,
		'with the guard\'s message');
}

# --- the application role, logged in, tries the other ways around the guard ------
my ($ret, $out, $err) = $local->psql('postgres', q{
	SELECT netrun_pool.set_tenant('acme');
	SET netrun_pool.tenant_id = 'globex';
	SELECT set_config('netrun_pool.tenant_id', 'globex', false);
	RESET netrun_pool.tenant_id;
	SELECT 'still:' || netrun_pool.current_tenant();
	RESET ALL;
	SELECT 'after reset all:' || coalesce(netrun_pool.current_tenant(), '<none>');
	SELECT netrun_pool.set_tenant('acme');
	DISCARD ALL;
	SELECT 'after discard all:' || coalesce(netrun_pool.current_tenant(), '<none>');
}, extra_params => [ '-U', 'app' ], on_error_stop => 0);
is(scalar(() = $err =~ /ERROR:  netrun_pool.tenant_id can only be changed by netrun_pool.set_tenant\(\)/g), 3,
	'SET, set_config and RESET are each refused');
like($out, qr/^still:acme$/m, 'and the tenant is unchanged');
like($out, qr/^after reset all:<none>$/m, 'RESET ALL clears it');
like($out, qr/^after discard all:<none>$/m, 'DISCARD ALL clears it');
($ret, $out, $err) = $local->psql('postgres', "ALTER ROLE app SET netrun_pool.tenant_id = 'globex'");
like($err, qr/can only be changed by netrun_pool.set_tenant/, 'ALTER ROLE ... SET is refused');

# --- signed mode: tokens minted the way applications mint them ------------------
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
my $tenant_key = 'k' x 40;
open(my $kf, '>', "$tmp/tenant.key") or die $!;
print $kf "$tenant_key\n";
close($kf);
chmod 0600, "$tmp/tenant.key";
$local->append_conf('postgresql.conf', qq{
netrun_pool.tenant_key_file = '$tmp/tenant.key'
netrun_pool.tenant_mode = signed
});
$local->reload;
sub mint
{
	my ($header, $payload, $key) = @_;
	my $signing = encode_base64url($header) . '.' . encode_base64url($payload);
	return $signing . '.' . encode_base64url(hmac_sha256($signing, $key // $tenant_key));
}
my $now = time;
my %tokens = (
	valid => mint('{"alg":"HS256","typ":"JWT"}', qq({"tenant_id":"acme","exp":@{[ $now + 300 ]}})),
	forged => mint('{"alg":"HS256","typ":"JWT"}', qq({"tenant_id":"acme","exp":@{[ $now + 300 ]}}), 'x' x 40),
	expired => mint('{"alg":"HS256","typ":"JWT"}', qq({"tenant_id":"acme","exp":@{[ $now - 60 ]}})),
	none => encode_base64url('{"alg":"none"}') . '.' . encode_base64url(qq({"tenant_id":"acme","exp":@{[ $now + 300 ]}})) . '.',
);
ok($local->poll_query_until('postgres', "SELECT current_setting('netrun_pool.tenant_mode')", 'signed'),
	'signed mode is on');
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.set_tenant('acme')",
	extra_params => [ '-U', 'app' ]);
like($err, qr/only set_tenant_token\(\) may set the tenant/, 'in signed mode set_tenant() is refused to the application');
is($local->safe_psql('postgres',
		"SELECT netrun_pool.set_tenant_token('$tokens{valid}'); SELECT count(*) FROM netrun_pool.query('r', 'SELECT tenant FROM docs WHERE tenant = ''acme''') AS t(tenant text)",
		extra_params => [ '-U', 'app' ]),
	"acme\n100", 'a valid token sets the tenant, which reaches the remote');
for my $bad (qw(forged expired none))
{
	($ret, $out, $err) = $local->psql('postgres',
		"SELECT netrun_pool.set_tenant_token('$tokens{$bad}')", extra_params => [ '-U', 'app' ]);
	like($err, qr/ERROR:  invalid tenant token/, "a $bad token is refused");
}
$local->append_conf('postgresql.conf', "netrun_pool.tenant_mode = open\n");
$local->reload;
ok($local->poll_query_until('postgres', "SELECT current_setting('netrun_pool.tenant_mode')", 'open'),
	'back to open mode');

# --- no tenant: no rows (fail closed) -----------------------------------------
is($local->safe_psql('postgres',
		"SELECT count(*) FROM netrun_pool.query('r', 'SELECT id FROM docs') AS t(id int)",
		extra_params => [ '-U', 'app' ]),
	'0', 'with no tenant set, the remote policy shows no row');
is($local->safe_psql('postgres', q{
		SELECT netrun_pool.set_tenant('acme');
		SELECT count(*) || ' ' || count(*) FILTER (WHERE tenant = 'acme')
		  FROM netrun_pool.query('r', 'SELECT tenant FROM docs') AS t(tenant text);
	}, extra_params => [ '-U', 'app' ]),
	"acme\n100 100", 'with a tenant set, exactly its rows');
($ret, $out, $err) = $local->psql('postgres', q{
		SELECT netrun_pool.set_tenant('acme');
		SELECT netrun_pool.exec('r', 'INSERT INTO docs VALUES (1000, ''globex'', ''smuggled'')');
	}, extra_params => [ '-U', 'app' ]);
like($err, qr/new row violates row-level security policy for table "docs"/,
	'the remote WITH CHECK refuses a row of another tenant');

# --- two tenants, 1000 interleaved calls, one connection ------------------------
# Client 0 is acme, client 1 globex.  Each call records how many rows it
# saw and how many were not its tenant's.
my $script = "$tmp/tenants.sql";
open(my $fh, '>', $script) or die $!;
print $fh q{SELECT netrun_pool.set_tenant(CASE WHEN :client_id = 0 THEN 'acme' ELSE 'globex' END);
INSERT INTO checks
  SELECT :client_id, netrun_pool.current_tenant(), count(*), count(*) FILTER (WHERE tenant <> netrun_pool.current_tenant())
    FROM netrun_pool.query('r', 'SELECT tenant FROM docs') AS t(tenant text);
};
close($fh);
$local->command_ok([ 'pgbench', '-n', '-c', '2', '-j', '2', '-t', '500', '-f', $script,
		'-U', 'app', '-h', $local->host, '-p', $local->port, 'postgres' ],
	'pgbench: two tenants, 500 calls each, interleaved on one pooled connection');
is($local->safe_psql('postgres',
		"SELECT count(*) || ' ' || sum(foreign_rows) || ' ' || min(seen) || ' ' || max(seen) FROM checks"),
	'1000 0 100 100', '1000 calls, no row of one tenant reached the other, each saw all of its own');
is($local->safe_psql('postgres',
		"SELECT string_agg(DISTINCT client || ':' || tenant, ',' ORDER BY client || ':' || tenant) FROM checks"),
	'0:acme,1:globex', 'each client kept its own tenant');
is($remote->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'netrun_pool:r'"),
	'1', 'all of it through one remote connection');

# --- after them, a call with no tenant still sees nothing -------------------------
is($local->safe_psql('postgres',
		"SELECT count(*) FROM netrun_pool.query('r', 'SELECT id FROM docs') AS t(id int)",
		extra_params => [ '-U', 'app' ]),
	'0', 'the pooled connection carries no tenant to the next caller');

done_testing();
