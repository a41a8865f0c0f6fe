# No remote can slow another (issue 18), from the side of the remotes that
# misbehave: a host name whose DNS server answers after 5 s, a name that
# does not exist, 1,000 registered remotes of which 200 connect to black
# holes, and a remote that stops and comes back.  What a user of another
# remote, "good", must see: calls that go on while the DNS is silent, a
# worker whose system calls per call do not grow with the failing remotes,
# a clear error at once for a name that does not resolve, and the first
# call after a restart working once the remote is seen healthy.
use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $testdir = dirname(__FILE__) . '/../test';

# A fake DNS server on a free loopback port: (harness, port, output ref).
sub start_dns
{
	my (%o) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $out = '';
	my $h = IPC::Run::start(
		[ 'perl', "$testdir/fake_dns.pl", '--name', 'slow.netrun.test',
		  '--address', '127.0.0.1', '--port', $port,
		  '--delay-ms', $o{delay_ms}, '--ttl', 60, '--max-seconds', 600 ],
		'>', \$out, '2>', \$out);
	$h->pump until $out =~ /^ready/m;
	return ($h, $port, \$out);
}

# The DNS server logs an answer just after sending it: read its output
# until $re is in it (bounded), or for $secs when nothing is expected.
sub dns_log
{
	my ($h, $out, $re, $secs) = @_;
	my $end = time + ($secs // 30);
	while (time < $end)
	{
		$h->pump_nb;
		last if defined $re && $$out =~ $re;
		select(undef, undef, undef, 0.05);
	}
	return $$out;
}

my ($dns, $dns_port, $dns_out) = start_dns(delay_ms => 5000);
my $remote = NetrunTest::start_remote('remote');
my $flaky = NetrunTest::start_remote('flaky');
my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.max_pools = 1100
netrun_pool.max_connections = 2000
max_files_per_process = 4000
netrun_pool.dns_servers = '127.0.0.1:$dns_port'
netrun_pool.health_interval_ms = 500
});
my $good = NetrunTest::tcp_conninfo($remote);
my $rport = $remote->port;

$local->safe_psql('postgres', qq{
CREATE EXTENSION netrun_pool;
SELECT netrun_pool.register('good', '$good', password_required => false, tenant_guard => 'off');
SELECT netrun_pool.register('slowdns', 'host=slow.netrun.test port=$rport dbname=postgres',
       password_required => false, tenant_guard => 'off');
});
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('good', 'SELECT 1')"),
	'1', 'good answers');

# --- a DNS server that answers after 5 s ------------------------------------
# A caller of slowdns waits for the name; meanwhile 100 calls on good, one
# after another, each in its own statement, all complete before the DNS
# server has answered anything: the worker did not wait for it.
my ($sout, $serr);
my $slow = NetrunTest::background_call($local, 'postgres',
	"SELECT netrun_pool.fetchval('slowdns', 'SELECT 7')", \$sout, \$serr);
$local->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%fetchval(''slowdns''%' AND pid <> pg_backend_pid()")
  or die 'the slowdns caller did not start';
$dns->pump_nb;
is($$dns_out =~ /^answer/m ? 1 : 0, 0, 'the DNS server has not answered yet');
my $loop = join("\n", map { "SELECT netrun_pool.fetchval('good', 'SELECT $_');" } 1 .. 100);
my $got = $local->safe_psql('postgres', $loop);
is(scalar(split /\n/, $got), 100, '100 calls on good completed');
$dns->pump_nb;
is($$dns_out =~ /^answer .* slow\.netrun\.test A /m ? 1 : 0, 0,
	'... all of them before the DNS server answered for slowdns');
$slow->finish;
chomp $sout;
is($sout, '7', 'the slowdns caller got its answer once the name resolved') or diag($serr);
like(dns_log($dns, $dns_out, qr/^answer .* slow\.netrun\.test A NOERROR/m),
	qr/^answer .* slow\.netrun\.test A NOERROR/m, 'the DNS server was asked for A');

# The answer is kept (TTL 60 s): the next connect asks nothing.
my $asked = () = dns_log($dns, $dns_out, undef, 1) =~ /^answer .* slow\.netrun\.test A /mg;
$local->safe_psql('postgres', qq{
SELECT netrun_pool.configure('slowdns', pool_mode => 'none');
SELECT netrun_pool.fetchval('slowdns', 'SELECT 1');
SELECT netrun_pool.fetchval('slowdns', 'SELECT 2');
});
my $asked2 = () = dns_log($dns, $dns_out, undef, 1) =~ /^answer .* slow\.netrun\.test A /mg;
is($asked2, $asked, 'connects within the TTL use the kept address (pool_mode none: a connect per call)');

# TLS verification and .pgpass see the name, libpq connects to the address:
# the remote session's client address is the one the DNS gave.
is($local->safe_psql('postgres',
		"SELECT netrun_pool.fetchval('slowdns', 'SELECT host(inet_client_addr())')"),
	'127.0.0.1', 'the remote sees the connection from the resolved address');

# A caller whose acquire_timeout_ms passes while its pool's name is still
# being asked (the DNS server answers this one after 5 s too) hears why.
$local->safe_psql('postgres', qq{
SELECT netrun_pool.register('slowname', 'host=later.netrun.test port=$rport dbname=postgres',
       password_required => false, tenant_guard => 'off', acquire_timeout_ms => 1000);
});
my ($rc, $out, $err) = $local->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT netrun_pool.fetchval('slowname', 'SELECT 1')");
like($err, qr/ERROR:  08001: could not connect to netrun_pool connection "slowname"\nDETAIL:  Its host name was not resolved within acquire_timeout_ms of 1000 ms\.\nHINT:  Check the DNS servers of \/etc\/resolv.conf or netrun_pool.dns_servers\./,
	'a caller timed out while the name is being resolved hears why, and what to check');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('slowname')");

# --- a name that does not exist ---------------------------------------------
# Another DNS server, answering at once (dns_servers is reloadable).
$dns->signal('TERM');
$dns->finish;
my ($dns2, $dns2_port, $dns2_out) = start_dns(delay_ms => 0);
$local->safe_psql('postgres', qq{
ALTER SYSTEM SET netrun_pool.dns_servers = '127.0.0.1:$dns2_port';
SELECT pg_reload_conf();
SELECT netrun_pool.register('nxname', 'host=nosuch.netrun.test port=$rport dbname=postgres',
       password_required => false, tenant_guard => 'off', acquire_timeout_ms => 60000);
});
($rc, $out, $err) = $local->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT netrun_pool.fetchval('nxname', 'SELECT 1')");
like($err, qr/ERROR:  08001: could not connect to netrun_pool connection "nxname"/,
	'a name that does not resolve fails its caller with 08001 ...');
like($err, qr/DETAIL:  could not translate host name "nosuch.netrun.test" to address: Domain name not found/,
	'... saying why, in libpq\'s words (not after acquire_timeout_ms: that would be another error)');
like(dns_log($dns2, $dns2_out, qr/nosuch/), qr/^answer .* nosuch\.netrun\.test A NXDOMAIN/m,
	'the new DNS server was the one asked');
ok($local->poll_query_until('postgres',
		"SELECT consecutive_failures > 0 AND last_error LIKE '%could not translate host name%' FROM netrun_pool.health WHERE name = 'nxname'"),
	'the name that does not resolve counts as a failed health probe');
$local->safe_psql('postgres', "SELECT netrun_pool.unregister('nxname')");

# --- 1,000 remotes: 800 disabled, 200 connecting to black holes --------------
# The worker's system calls per call on good, counted by strace while 300
# calls run, without and then with the 1,000 remotes.  The old loop rebuilt
# its event set whenever a connection was connecting: an epoll_create1 and
# one epoll_ctl per socket on nearly every turn.
my $worker = $local->safe_psql('postgres', 'SELECT worker_pid FROM netrun_pool.worker_status()');
my $calls = join("\n", map { "SELECT netrun_pool.fetchval('good', 'SELECT $_');" } 1 .. 300);

sub syscalls_per_call
{
	my $trace = "$PostgreSQL::Test::Utils::tmp_check/strace.$_[0]";
	my $h = IPC::Run::start([ 'strace', '-c', '-o', $trace, '-p', $worker ], '2>', \my $e);
	# strace says when it is attached
	$h->pump until $e =~ /attached/;
	$local->safe_psql('postgres', $calls);
	$h->signal('INT');
	$h->finish;
	my %n;
	for (split /\n/, slurp_file($trace))
	{
		$n{$2} = $1 if /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/ && $2 ne 'total';
	}
	$n{$_} //= 0 for qw(epoll_ctl epoll_create1 socket);
	$n{total} = 0;
	$n{total} += $n{$_} for grep { $_ ne 'total' } keys %n;
	return \%n;
}

my $before = syscalls_per_call('before');

my $bh_port = PostgreSQL::Test::Cluster::get_free_port();
my $bh_out = '';
my $bh = IPC::Run::start([ 'perl', "$testdir/black_hole.pl", '--port', $bh_port, '--max-seconds', 600 ],
	'>', \$bh_out, '2>', \$bh_out);
$bh->pump until $bh_out =~ /^ready/m;
$local->safe_psql('postgres', qq{
DO \$\$
BEGIN
  FOR i IN 1 .. 1000 LOOP
    PERFORM netrun_pool.register('far' || i,
      CASE WHEN i <= 200 THEN 'host=127.0.0.1 port=$bh_port dbname=postgres'
           ELSE '$good' END,
      password_required => false, tenant_guard => 'off',
      enabled => i <= 200, pool_min => 1, pool_max => 1, connect_timeout_ms => 2000);
  END LOOP;
END \$\$;
});
# every black hole is connecting (a pool connection and a probe each)
ok($local->poll_query_until('postgres',
		"SELECT count(*) = 200 FROM netrun_pool.pool_stats WHERE name LIKE 'far%' AND total > 0"),
	'200 remotes are connecting to black holes');
my $during = syscalls_per_call('during');
# The failing remotes cost system calls when they try again (a socket, its
# options, a connect, its watch, a close: about 16), never per turn of the
# loop: what is left after those is what 300 calls on good cost.
my $per_call = sub { ($_[0]{total} - 40 * $_[0]{socket}) / 300 };
diag(sprintf('worker system calls during 300 calls on good: %d without the 1,000 remotes, %d with them, '
	  . 'of which %d connect attempts to black holes and %d epoll_ctl (%d and %d without); per call, '
	  . 'less 40 per connect attempt: %.1f -> %.1f',
	$before->{total}, $during->{total}, $during->{socket}, $during->{epoll_ctl},
	$before->{socket}, $before->{epoll_ctl}, $per_call->($before), $per_call->($during)));
is($during->{epoll_create1}, 0, 'no event set is created while remotes connect');
cmp_ok($during->{epoll_ctl}, '<=', 3 * $during->{socket} + 5,
	'epoll_ctl: a few per connect attempt, none per turn or per call');
cmp_ok($per_call->($during), '<', 1.5 * $per_call->($before) + 2,
	'system calls per call on good stay flat with 1,000 remotes');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('good', 'SELECT 42')"), '42',
	'good answers among them');

$local->safe_psql('postgres', qq{
DO \$\$ BEGIN FOR i IN 1 .. 1000 LOOP PERFORM netrun_pool.unregister('far' || i); END LOOP; END \$\$;
});
$bh->signal('TERM');
$bh->finish;

# --- a remote that stops and comes back -------------------------------------
my $fl = NetrunTest::tcp_conninfo($flaky);
$local->safe_psql('postgres', qq{
SELECT netrun_pool.register('flaky', '$fl', password_required => false, tenant_guard => 'off',
       acquire_timeout_ms => 60000, pool_max => 4);
SELECT netrun_pool.fetchval('flaky', 'SELECT 1');
});
$flaky->stop('immediate');
# the caller that meets the lost connection, then the next one: both told at
# once (with acquire_timeout_ms of 60 s, a wait would end in another error)
($rc, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('flaky', 'SELECT 1')");
like($err, qr/netrun_pool connection "flaky"/, 'the call on the stopped remote fails');
($rc, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('flaky', 'SELECT 1')");
like($err, qr/could not connect to netrun_pool connection "flaky"|netrun_pool connection "flaky" is unavailable/,
	'the next call fails at once with the connect error');
$flaky->start;
# within a probe interval of the remote accepting connections the pool sees
# it healthy, and from then on the first call works, with no retry
ok($local->poll_query_until('postgres',
		"SELECT status = 'healthy' FROM netrun_pool.health WHERE name = 'flaky'"),
	'the restarted remote is seen healthy');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('flaky', 'SELECT 5')"), '5',
	'the first call after it is seen healthy works');

$dns2->signal('TERM');
$dns2->finish;
done_testing();
