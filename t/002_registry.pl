# The registry against real servers: a remote that authenticates with
# scram-sha-256, secrets that stay secret (view, dump, log), the key file's
# rules, live pickup by the worker, and pg_dump/restore.
use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $password = 'Rem0te-S3cret-xyzzy';
my $tmp = PostgreSQL::Test::Utils::tempdir;

# A key file, mode 600, as the README tells users to make one.
my $keyfile = "$tmp/secret.key";
NetrunTest::write_key_file($keyfile);

my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
$remote->safe_psql('postgres',
	"SET password_encryption = 'scram-sha-256'; CREATE ROLE remote_app LOGIN PASSWORD '$password'");

my $local = NetrunTest::start_local('local',
	conf => "netrun_pool.secret_key_file = '$keyfile'");
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

my $conninfo = NetrunTest::tcp_conninfo($remote) . " user=remote_app password=$password";

# The remote really wants that password over TCP.
$remote->connect_ok("$conninfo", 'remote accepts the password (scram-sha-256)');
$remote->connect_fails(NetrunTest::tcp_conninfo($remote) . ' user=remote_app password=wrong',
	'remote refuses a wrong password',
	expected_stderr => qr/password authentication failed/);

# --- register: the worker picks it up without a restart ----------------
my $gen = NetrunTest::status_field($local, 'postgres', 'generation');
$local->safe_psql('postgres', "SELECT netrun_pool.register('remote_db', '$conninfo')");
ok( $local->poll_query_until('postgres',
		"SELECT pools = 1 AND generation > $gen FROM netrun_pool.worker_status()"),
	'the worker loads a new connection within a second');
is($local->safe_psql('postgres', 'SELECT name, decrypts FROM netrun_pool.check_secrets()'),
	'remote_db|t', 'the stored secret decrypts with the key file');

$local->safe_psql('postgres', "SELECT netrun_pool.configure('remote_db', enabled => false)");
$gen = NetrunTest::status_field($local, 'postgres', 'generation');
$local->safe_psql('postgres', "SELECT netrun_pool.configure('remote_db', enabled => true)");
ok( $local->poll_query_until('postgres',
		"SELECT generation > $gen FROM netrun_pool.worker_status()"),
	'a configure reaches the worker');

# A rolled-back change does not wake the worker's reload.
$gen = NetrunTest::status_field($local, 'postgres', 'generation');
$local->safe_psql('postgres',
	"BEGIN; SELECT netrun_pool.configure('remote_db', pool_max => 3); ROLLBACK;");
sleep(1);
is(NetrunTest::status_field($local, 'postgres', 'generation'),
	$gen, 'a rolled-back change leaves the generation alone');

# --- secrets stay out of the view, the table's conninfo and the log -------
my $view = $local->safe_psql('postgres', 'SELECT * FROM netrun_pool.connections');
unlike($view, qr/$password/, 'the connections view never shows the password');
like($view, qr/remote_db\|shared\|primary/, 'the view shows the connection');
unlike($local->safe_psql('postgres', 'SELECT conninfo FROM netrun_pool.registry'),
	qr/$password/, 'the stored conninfo has no password');

# Failing registry calls that carry the password: the error is logged, the
# statement (with the password) is not.
for my $sql (
	"SELECT netrun_pool.register('remote_db', 'postgresql://u:$password\@h/db')",
	"SELECT netrun_pool.register('x', 'postgresql://u:$password\@h/db', pool_max => 0)",
	"SELECT netrun_pool.register('x', 'host=h password=$password replication=1')")
{
	my ($ret) = $local->psql('postgres', $sql);
	isnt($ret, 0, 'bad registry call fails');
}
ok($local->log_contains('pool_max must be greater than zero'), 'the error is logged');
ok(!$local->log_contains($password), 'the password never reaches the log');
# log_statement = all (the test framework's default) still logs the calls,
# with the password blanked, in key=value and URI form alike.
ok($local->log_contains(qr/statement: SELECT netrun_pool\.register\('x', 'host=h password=\*\*\* replication=1'\)/),
	'statement log lines blank a key=value password');
ok($local->log_contains(qr{statement: SELECT netrun_pool\.register\('remote_db', 'postgresql://u:\*\*\*\@h/db'\)}),
	'statement log lines blank a URI password');

# --- pg_stat_activity: a registry call's text is replaced while it runs ----
$local->safe_psql('postgres', 'CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats');
my ($wout, $werr) = ('', '');
my $slow = NetrunTest::background_call($local, 'postgres', "SELECT netrun_pool.register('slow_reg', 'host=h password=$password'); SELECT pg_sleep(3)", \$wout, \$werr);
ok( $local->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
		't'),
	'the registering session is still running');
my $seen = $local->safe_psql('postgres',
	"SELECT string_agg(query, ' | ') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
	extra_params => [ '-U', 'watcher' ]);
unlike($seen, qr/$password/, 'pg_stat_activity never shows the password to a pg_read_all_stats member');
like($seen, qr/<netrun_pool registry change: statement hidden>/, 'it shows a placeholder instead');
$slow->finish;
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('slow_reg')");

# --- the key file's rules ------------------------------------------------
chmod 0644, $keyfile;
my ($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.register('other', 'host=h password=$password')");
like($err, qr/secret key file ".*" is accessible by group or others/,
	'a key file readable by others is refused');
like($err, qr/HINT:  Run chmod 600 on it\./, 'with a hint');
chmod 0600, $keyfile;

$local->safe_psql('postgres', "ALTER SYSTEM SET netrun_pool.secret_key_file = ''");
$local->reload;
($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.register('other', 'host=h password=$password')");
like($err, qr/cannot store the password of netrun_pool connection "other"/,
	'without a key a password cannot be stored');
like($err, qr/HINT:  Set netrun_pool.secret_key_file to a file of at least 32 random bytes, or leave the password out and use a passfile or service file\./,
	'the hint says what to do');
# A conninfo without a password needs no key (passfile and service work).
my $pgpass = "$tmp/pgpass";
open(my $pf, '>', $pgpass) or die "could not write $pgpass: $!";
print $pf "h:5432:*:u:not-used\n";
close($pf);
chmod 0600, $pgpass;
$local->safe_psql('postgres',
	"SELECT netrun_pool.register('via_passfile', 'host=h user=u passfile=$pgpass')");
$local->safe_psql('postgres', "ALTER SYSTEM RESET netrun_pool.secret_key_file");
$local->reload;
$local->poll_query_until('postgres', "SELECT setting <> '' FROM pg_settings WHERE name = 'netrun_pool.secret_key_file'");

# --- pg_dump and restore ------------------------------------------------
$local->safe_psql('postgres', "CREATE ROLE app_user LOGIN; SELECT netrun_pool.grant_usage('remote_db', 'app_user')");
my $dump = "$tmp/registry.sql";
$local->command_ok([ 'pg_dump', '-d', $local->connstr('postgres'), '-f', $dump ],
	'pg_dump as superuser');
ok(!(slurp_file($dump) =~ /$password/), 'the dump does not hold the password in clear');
like(slurp_file($dump), qr/COPY netrun_pool\.registry/, 'the dump holds the registry rows');

# A non-superuser cannot dump the registry at all.
$local->command_fails_like(
	[ 'pg_dump', '-d', $local->connstr('postgres') . ' user=app_user', '-t', 'netrun_pool.registry' ],
	qr/permission denied for table registry/,
	'pg_dump as a non-superuser cannot read the registry');

# Restore into a new server with the same key file.
my $restored = NetrunTest::start_local('restored',
	conf => "netrun_pool.secret_key_file = '$keyfile'");
$restored->safe_psql('postgres', 'CREATE ROLE app_user LOGIN');
$restored->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $restored->connstr('postgres'), '-f', $dump ],
	'the dump restores');
is($restored->safe_psql('postgres', 'SELECT name, decrypts FROM netrun_pool.check_secrets() ORDER BY 1'),
	'remote_db|t', 'restored with the same key, the secret decrypts');
is($restored->safe_psql('postgres', "SELECT netrun_pool.has_usage('remote_db', 'app_user')"),
	't', 'grants survive the restore');
ok(NetrunTest::wait_for_state($restored, 'postgres', 'running'), 'restored worker running');
ok( $restored->poll_query_until('postgres', "SELECT pools FROM netrun_pool.worker_status()", '2'),
	'the restored registry reaches the worker');

# With another key file, the secret does not decrypt.
my $otherkey = "$tmp/other.key";
NetrunTest::write_key_file($otherkey);
$restored->safe_psql('postgres', "ALTER SYSTEM SET netrun_pool.secret_key_file = '$otherkey'");
$restored->reload;
ok( $restored->poll_query_until('postgres',
		'SELECT NOT decrypts FROM netrun_pool.check_secrets()'),
	'with a different key the secret does not decrypt');

ok(!$local->log_contains($password) && !$restored->log_contains($password),
	'no log of either server holds the password');

done_testing();
