# The pool's session settings travel in the startup packet, so the reset
# between callers is DISCARD ALL alone; and a pgbouncer in front of the
# remote, which refuses a startup "options", still works from the first
# call, with the settings set by a statement after each reset instead.
#
# From the callers' side: a caller changes the settings the text
# conversions and the time limits rely on; the next caller must find the
# pool's again, on a direct remote and behind pgbouncer alike.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

plan skip_all => 'pgbouncer is not installed (scripts/test.sh installs it)'
  unless -x '/usr/sbin/pgbouncer';

my $remote = NetrunTest::start_remote('remote');
my $local = NetrunTest::start_local('local');
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

# pgbouncer, transaction mode, in front of the remote
my $user = getpwuid($<);
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $bdir = PostgreSQL::Test::Utils::tempdir;
my $rport = $remote->port;
open(my $fh, '>', "$bdir/pgbouncer.ini") or die $!;
print $fh <<"INI";
[databases]
postgres = host=127.0.0.1 port=$rport dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $bdir/userlist.txt
pool_mode = transaction
default_pool_size = 2
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
INI
close($fh);
open($fh, '>', "$bdir/userlist.txt") or die $!;
print $fh qq{"$user" ""\n};
close($fh);
system('/usr/sbin/pgbouncer', '-d', '-q', "$bdir/pgbouncer.ini") == 0 or die 'pgbouncer did not start';
END
{
	if (open(my $p, '<', "$bdir/pgbouncer.pid")) { my $pid = <$p>; kill 'TERM', $pid if $pid; }
}

my $conninfo = NetrunTest::tcp_conninfo($remote);
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('direct', '$conninfo', pool_max => 1, statement_timeout_ms => 1234,
	    tenant_guard => 'off');
	SELECT netrun_pool.register('bounced', 'host=127.0.0.1 port=$bport dbname=postgres user=$user',
	    pool_max => 1, statement_timeout_ms => 1234, tenant_guard => 'off');
});

my $settings = q{SELECT current_setting('DateStyle') || '|' || current_setting('IntervalStyle') || '|' || current_setting('extra_float_digits') || '|' || current_setting('statement_timeout') || '|' || coalesce(current_setting('app.current_tenant_id', true), '<null>')};
for my $name ('direct', 'bounced')
{
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('$name', \$\$$settings\$\$)"),
		'ISO, MDY|postgres|3|1234ms|', "$name: the first call finds the pool's settings and no tenant");
	$local->safe_psql('postgres', qq{SELECT netrun_pool.exec('$name', 'SET DateStyle = ''SQL, DMY''');
		SELECT netrun_pool.exec('$name', 'SET statement_timeout = 0');
		SELECT netrun_pool.exec('$name', 'SET extra_float_digits = 0')});
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('$name', \$\$$settings\$\$)"),
		'ISO, MDY|postgres|3|1234ms|', "$name: after a caller changed them, the next call finds the pool's again");
	is($local->safe_psql('postgres', qq{SELECT netrun_pool.set_tenant('acme'); SELECT netrun_pool.fetchval('$name', 'SELECT current_setting(''app.current_tenant_id'')')}),
		"acme\nacme", "$name: a call carries its tenant");
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('$name', \$\$$settings\$\$)"),
		'ISO, MDY|postgres|3|1234ms|', "$name: the next caller, without one, finds none");
	is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('$name', 'SELECT 1.0::float8 / 3')"),
		'0.3333333333333333', "$name: floats come back exact (extra_float_digits)");
}

ok(NetrunTest::log_count($local, qr/netrun_pool connection "bounced": the remote refused the settings in the startup packet/) >= 1,
	'the pool logged that pgbouncer refused the startup settings');
is(NetrunTest::log_count($local, qr/netrun_pool connection "direct": the remote refused/), 0,
	'the direct remote took them');
is($local->safe_psql('postgres', "SELECT errors_total FROM netrun_pool.pool_stats WHERE name = 'bounced'"), '0',
	'no call through pgbouncer failed');

done_testing();
