# The HTTP endpoint (netrun_pool.http_listen), served by the launcher:
# /metrics is prometheus()'s text, /ready and /alive follow the pool and
# the worker, other requests get 400, 404 or 405, the allow list closes
# connections from elsewhere, the bearer token is required once set, a
# slow client is cut off, connections are capped per client address, no
# body shows a registered password, a port already taken leaves the pool
# working without the endpoint, and Debian's Prometheus scrapes it with
# contrib/prometheus/prometheus.yml.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $password = 'pw_Http_S3cret_7f3a';
my $scratch = PostgreSQL::Test::Utils::tempdir();
my $http_port = PostgreSQL::Test::Cluster::get_free_port();

my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
$remote->safe_psql('postgres', "CREATE ROLE app LOGIN PASSWORD '$password'");

my $key = NetrunTest::write_key_file("$scratch/secret.key");
my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.secret_key_file = '$key'
netrun_pool.http_listen = '127.0.0.1:$http_port'
netrun_pool.health_interval_ms = 200
netrun_pool.unhealthy_after = 2
});
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');
is(NetrunTest::log_count($local, qr/netrun_pool HTTP endpoint listening on "127\.0\.0\.1:$http_port"/),
	1, 'the launcher says where the endpoint listens');

# Two connections with the password in the conninfo (stored encrypted),
# one of them in a cluster.
my $conninfo = NetrunTest::tcp_conninfo($remote) . " user=app password=$password";
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('r', '$conninfo', cluster => 'shop', connect_timeout_ms => 1000);
	SELECT netrun_pool.register('other', '$conninfo', connect_timeout_ms => 1000);
});

my $base = "http://127.0.0.1:$http_port";
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
my @bodies;    # every body the endpoint sent, checked for the password at the end

sub get
{
	my ($path, %opts) = @_;
	my $res = $http->request($opts{method} // 'GET', "$base$path",
		{ headers => $opts{headers} // {} });
	push @bodies, $res->{content} // '';
	return $res;
}

# Poll until $check->(response) holds, bounded by the framework's timeout.
sub poll_http
{
	my ($path, $check, %opts) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my $res = get($path, %opts);
		return $res if $check->($res);
		Time::HiRes::sleep(0.1);
	}
	return undef;
}

# --- /ready and /metrics on a healthy pool ----------------------------------
my $res = poll_http('/ready', sub { $_[0]->{status} == 200 });
ok($res, '/ready answers 200 once both connections answered their probes')
  or diag(explain(get('/ready')), $local->safe_psql('postgres', 'SELECT * FROM netrun_pool.health'));
is($res->{headers}{'content-type'}, 'application/json', '/ready is JSON');
my $ready = decode_json($res->{content});
like($ready->{status}, qr/^(healthy|degraded)$/, '/ready: the body is health_check(): its overall status');
is_deeply([ sort keys %{ $ready->{connections} } ], [ 'other', 'r' ], '/ready: and every connection');
my $sql_keys = $local->safe_psql('postgres',
	"SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(netrun_pool.health_check()) k");
is(join(',', sort keys %$ready), $sql_keys, '/ready has the keys of SQL health_check()');
$sql_keys = $local->safe_psql('postgres',
	"SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(netrun_pool.health_check('r')) k");
$res = get('/ready?name=r');
is($res->{status}, 200, '/ready?name=r: 200');
is(join(',', sort keys %{ decode_json($res->{content}) }), $sql_keys,
	'/ready?name=r is health_check(\'r\'), one connection\'s object');
$res = get('/ready?cluster=shop');
is($res->{status}, 200, '/ready?cluster=shop: 200');
is_deeply([ keys %{ decode_json($res->{content})->{connections} } ], ['r'],
	'/ready?cluster=shop: the cluster\'s members only');

$res = get('/metrics');
is($res->{status}, 200, '/metrics: 200');
is($res->{headers}{'content-type'}, 'text/plain; version=0.0.4', '/metrics: the exposition format\'s content type');
like($res->{content}, qr/^netrun_pool_up 1$/m, '/metrics: netrun_pool_up 1');
like($res->{content}, qr/^netrun_pool_pool_size\{name="r",cluster="shop"\} 10$/m,
	'/metrics: a gauge with its name and cluster labels');
like($res->{content}, qr/^netrun_pool_query_duration_seconds_count\{name="other"\} \d+$/m,
	'/metrics: a summary');

# The same series, in the same order, as SQL prometheus() for a superuser
# (the values move between the two reads).
sub series
{
	my ($text) = @_;
	return join("\n", map { s/ [^ ]+$//r } split /\n/, $text);
}
my $sql_text = $local->safe_psql('postgres', 'SELECT netrun_pool.prometheus()');
is(series($res->{content}), series($sql_text), '/metrics is the exposition of SQL prometheus()');

$res = get('/metrics', method => 'HEAD');
is($res->{status}, 200, 'HEAD /metrics: 200');
is($res->{content} // '', '', 'HEAD /metrics: no body');
is($res->{headers}{'content-type'}, 'text/plain; version=0.0.4', 'HEAD /metrics: the same content type');

$res = get('/alive');
is($res->{status}, 200, '/alive: 200 while the worker runs');
is($res->{content}, "{\"alive\": true}\n", '/alive: its body');

# --- what else is asked ------------------------------------------------------
is(get('/')->{status}, 404, '/: 404');
is(get('/metrics/')->{status}, 404, '/metrics/: 404');
is(get('/ready?name=nope')->{status}, 404, '/ready?name=nope: 404');
is(get('/ready?cluster=r')->{status}, 404, '/ready?cluster=r (a connection, not a cluster): 404');
is(get('/ready?name=shop')->{status}, 404, '/ready?name=shop (a cluster, not a connection): 404');
for my $path ('/ready?name=r&cluster=shop', '/ready?name=', '/ready?name=r&name=other',
	'/ready?verbose=1', '/metrics?name=r', '/alive?x')
{
	is(get($path)->{status}, 400, "$path: 400");
}
for my $method ('POST', 'PUT', 'DELETE')
{
	$res = get('/metrics', method => $method);
	is($res->{status}, 405, "$method /metrics: 405");
	is($res->{headers}{allow}, 'GET, HEAD', "$method /metrics: Allow: GET, HEAD");
}
is(get('/nowhere', method => 'POST')->{status}, 404, 'POST /nowhere: 404');

# Raw requests: write $request, read until the server closes or $wait
# seconds pass.  Returns (what was read, whether the server closed).
sub raw_exchange
{
	my ($request, $wait, %opts) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port,
		Proto => 'tcp', $opts{from} ? (LocalAddr => $opts{from}) : ())
	  or die "could not connect: $!";
	print $sock $request if length $request;
	return read_until_closed($sock, $wait);
}

sub read_until_closed
{
	my ($sock, $wait) = @_;
	my $sel = IO::Select->new($sock);
	my $got = '';
	my $deadline = time() + $wait;
	while (time() < $deadline)
	{
		next unless $sel->can_read(0.2);
		my $n = sysread($sock, my $buf, 65536);
		if (!$n)
		{
			close $sock;
			push @bodies, $got;
			return ($got, 1);
		}
		$got .= $buf;
	}
	close $sock;
	push @bodies, $got;
	return ($got, 0);
}

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my ($got, $closed) = raw_exchange("THIS IS NOT HTTP\r\n\r\n", $timeout);
like($got, qr{^HTTP/1\.1 400 }, 'a request line that is not HTTP: 400');
($got, $closed) = raw_exchange("GET /metrics HTTP/1.1\r\n\r\n", $timeout);
like($got, qr{^HTTP/1\.1 400 }, 'HTTP/1.1 without a Host header: 400');
($got, $closed) = raw_exchange("GET /metrics HTTP/1.0\r\n\r\n", $timeout);
like($got, qr{^HTTP/1\.[01] 200 .*\nnetrun_pool_up 1\n}s, 'a bare HTTP/1.0 request: 200');

# --- a slow client is cut off; others are served meanwhile -------------------
{
	my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port,
		Proto => 'tcp') or die "could not connect: $!";
	print $slow "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";    # no blank line: half a request
	$slow->flush;
	is(get('/alive')->{status}, 200, 'while a client sends half a request, others are served');
	my ($slow_got, $slow_closed) = read_until_closed($slow, $timeout);
	ok($slow_closed, 'the slow client is disconnected after the timeout');
	is($slow_got, '', 'and gets no answer');
}

# --- connections per client address, and in all ---------------------------------
# 8 connections from 127.0.0.3, each with half a request: a 9th from there
# is closed at once, without an answer.  24 more from .4 to .6 make 32: a
# 33rd, from .7, waits unanswered (libmicrohttpd accepts no more) until
# some close.  The holders send a header line just before each check, so
# that none is cut off as idle meanwhile.
{
	my @held;
	my $hold = sub {
		my ($ip) = @_;
		for (1 .. 8)
		{
			my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port,
				Proto => 'tcp', LocalAddr => "127.0.0.$ip") or die "could not connect: $!";
			print $s "GET /alive HTTP/1.1\r\nHost: x\r\n";
			$s->flush;
			push @held, $s;
		}
	};
	my $keep = sub { for (@held) { print $_ "X-Keep: 1\r\n"; $_->flush } };

	$hold->(3);
	$keep->();
	($got, $closed) = raw_exchange("GET /alive HTTP/1.1\r\nHost: x\r\n\r\n", $timeout, from => '127.0.0.3');
	ok($closed, 'a 9th connection from one address is closed');
	is($got, '', 'without an answer');
	($got, $closed) = raw_exchange("GET /alive HTTP/1.0\r\n\r\n", $timeout, from => '127.0.0.4');
	like($got, qr{^HTTP/1\.[01] 200 }, 'another address is served meanwhile');

	$hold->($_) for 4 .. 6;
	$keep->();
	my $waiting = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port,
		Proto => 'tcp', LocalAddr => '127.0.0.7') or die "could not connect: $!";
	print $waiting "GET /alive HTTP/1.0\r\n\r\n";
	$waiting->flush;
	ok(!IO::Select->new($waiting)->can_read(1), 'a 33rd connection is not answered while 32 are held');
	close $_ for @held;
	($got, $closed) = read_until_closed($waiting, $timeout);
	like($got, qr{^HTTP/1\.[01] 200 }, 'and is answered once they close');
	# (the server sees the closes in its own time)
	my $served = 0;
	my $deadline = time() + $timeout;
	while (!$served && time() < $deadline)
	{
		($got, $closed) = raw_exchange("GET /alive HTTP/1.0\r\n\r\n", $timeout, from => '127.0.0.3');
		$served = $got =~ m{^HTTP/1\.[01] 200 };
		Time::HiRes::sleep(0.1) unless $served;
	}
	ok($served, 'the first address is served again too');
}

# --- /ready follows a remote that stops and comes back --------------------
$remote->stop('immediate');
$res = poll_http('/ready', sub { $_[0]->{status} == 503 });
ok($res, '/ready: 503 once the stopped remote fails a probe');
# (the body's "healthy" is still true while the connection is only degraded)
$res = poll_http('/ready', sub { $_[0]->{status} == 503 && $_[0]->{content} =~ /"status": "unhealthy"/ });
ok($res, '/ready: 503 while the remote is unhealthy');
is(decode_json($res->{content})->{healthy}, JSON::PP::false, '/ready: the body says so');
is(get('/ready?name=r')->{status}, 503, '/ready?name=r: 503');
is(get('/ready?cluster=shop')->{status}, 503, '/ready?cluster=shop: 503');
is(get('/alive')->{status}, 200, '/alive: still 200, the worker runs');
like(get('/metrics')->{content}, qr/^netrun_pool_circuit_open\{name="r",cluster="shop"\} 1$/m,
	'/metrics: the circuit is open');
$local->safe_psql('postgres', "SELECT netrun_pool.configure('other', enabled => false)");
$remote->start;
ok(poll_http('/ready', sub { $_[0]->{status} == 200 }),
	'/ready: 200 again once the remote is back (the disabled connection left out)');
is(get('/ready?cluster=shop')->{status}, 200, '/ready?cluster=shop: 200 again');
is(get('/ready?name=other')->{status}, 503, '/ready?name=other: a disabled connection is not ready');
$local->safe_psql('postgres', "SELECT netrun_pool.configure('other', enabled => true)");
ok(poll_http('/ready?name=other', sub { $_[0]->{status} == 200 }), '/ready?name=other: 200 once enabled');

# --- the allow list -----------------------------------------------------------
# A client outside it has its connection closed at once, without an answer.
$local->append_conf('postgresql.conf', "netrun_pool.http_allow = '10.0.0.0/8, 127.0.0.2'\n");
$local->reload;
ok(poll_http('/alive', sub { !defined $_[0]->{status} || $_[0]->{status} == 599 }),
	'after a reload, 127.0.0.1 outside http_allow: the connection is closed');
($got, $closed) = raw_exchange("GET /alive HTTP/1.0\r\n\r\n", $timeout);
ok($closed && $got eq '', 'closed without an answer');
($got, $closed) = raw_exchange("GET /alive HTTP/1.0\r\n\r\n", $timeout, from => '127.0.0.2');
like($got, qr{^HTTP/1\.[01] 200 }, 'the one address in the list is served');

# a list that does not parse is refused by the reload, the old one stays
$local->append_conf('postgresql.conf', "netrun_pool.http_allow = '127.0.0.1/33'\n");
$local->reload;
ok(eval { $local->wait_for_log(qr/invalid value for parameter "netrun_pool\.http_allow": "127\.0\.0\.1\/33"\n.*DETAIL:  "127\.0\.0\.1\/33" is not an IP address or a CIDR block/s) },
	'a list that does not parse is refused at reload, and the log says why');
($got, $closed) = raw_exchange("GET /alive HTTP/1.0\r\n\r\n", $timeout, from => '127.0.0.2');
like($got, qr{^HTTP/1\.[01] 200 }, 'an invalid list is refused, and the previous one stays');

$local->append_conf('postgresql.conf', "netrun_pool.http_allow = '127.0.0.0/8, ::1/128'\n");
$local->reload;
ok(poll_http('/alive', sub { ($_[0]->{status} // 0) == 200 }), 'back to the default list');

# --- the bearer token -------------------------------------------------------
my $token = 'tok_' . join('', map { sprintf('%02x', int(rand(256))) } 1 .. 24);
my $token_file = "$scratch/http.token";
open(my $fh, '>', $token_file) or die $!;
print $fh "$token\n";
close $fh;
chmod 0600, $token_file;
$local->append_conf('postgresql.conf', "netrun_pool.http_token_file = '$token_file'\n");
$local->reload;
$res = poll_http('/metrics', sub { $_[0]->{status} == 401 });
ok($res, 'with http_token_file set, a request without a token: 401');
is($res->{headers}{'www-authenticate'}, 'Bearer realm="netrun_pool"', 'with WWW-Authenticate: Bearer');
$res = get('/metrics', headers => { Authorization => 'Bearer wrong_' . $token });
is($res->{status}, 401, 'a wrong token: 401');
is($res->{headers}{'www-authenticate'}, 'Bearer realm="netrun_pool", error="invalid_token"',
	'with error="invalid_token"');
is(get('/ready', headers => { Authorization => "Basic $token" })->{status}, 401, 'another scheme: 401');
is(get('/nowhere')->{status}, 401, 'the token comes before the path');
$res = get('/metrics', headers => { Authorization => "Bearer $token" });
is($res->{status}, 200, 'the token (the file\'s trailing newline dropped): 200');
is(get('/ready', headers => { Authorization => "bearer $token" })->{status}, 200,
	'the scheme is case-insensitive');

# a file open to others is refused as every key file is: nobody gets in
chmod 0644, $token_file;
$local->reload;
ok(eval { $local->wait_for_log(qr/WARNING:  netrun_pool HTTP endpoint refuses every request: its token file is unusable\n.*DETAIL:  HTTP token file ".*" is accessible by group or others/s) },
	'a token file open to others: the launcher warns');
is(get('/alive', headers => { Authorization => "Bearer $token" })->{status}, 401,
	'a token file open to others: even the right token gets 401');
chmod 0600, $token_file;
$local->reload;
ok(poll_http('/alive', sub { $_[0]->{status} == 200 }, headers => { Authorization => "Bearer $token" }),
	'fixed and reloaded: the token works again');
$local->append_conf('postgresql.conf', "netrun_pool.http_token_file = ''\n");
$local->reload;
ok(poll_http('/alive', sub { $_[0]->{status} == 200 }), 'http_token_file unset: no token needed');

# --- Prometheus scrapes the endpoint ------------------------------------------
SKIP:
{
	skip 'prometheus is not installed', 4 unless -x '/usr/bin/prometheus';
	my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
	my $prom_dir = "$scratch/prometheus";
	mkdir $prom_dir;
	my $config = slurp_file("$root/contrib/prometheus/prometheus.yml");
	$config =~ s/scrape_interval: 15s/scrape_interval: 1s/ or die 'no scrape_interval';
	$config =~ s/scrape_timeout: 5s/scrape_timeout: 1s/ or die 'no scrape_timeout';
	$config =~ s/'127\.0\.0\.1:9187'/'127.0.0.1:$http_port'/ or die 'no target';
	open(my $cf, '>', "$prom_dir/prometheus.yml") or die $!;
	print $cf $config;
	close $cf;
	copy("$root/contrib/prometheus/netrun_pool.rules.yml", "$prom_dir/netrun_pool.rules.yml") or die $!;

	my ($prom_out, $prom_err) = ('', '');
	my $prom = IPC::Run::start(
		[ 'prometheus', "--config.file=$prom_dir/prometheus.yml",
		  "--storage.tsdb.path=$prom_dir/data",
		  "--web.listen-address=127.0.0.1:$prom_port" ],
		'>', \$prom_out, '2>', \$prom_err);
	my $query = "http://127.0.0.1:$prom_port/api/v1/query?query=netrun_pool_pool_size%7Bname%3D%22r%22%7D";
	my $result;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $r = $http->get($query);
		if ($r->{success})
		{
			my $data = decode_json($r->{content});
			if (@{ $data->{data}{result} // [] })
			{
				$result = $data->{data}{result}[0];
				last;
			}
		}
		Time::HiRes::sleep(0.25);
	}
	ok($result, 'Prometheus scraped the endpoint and has netrun_pool_pool_size{name="r"}')
	  or diag($prom_err);
	is_deeply($result && $result->{metric},
		{ __name__ => 'netrun_pool_pool_size', name => 'r', cluster => 'shop',
		  job => 'netrun_pool', instance => "127.0.0.1:$http_port" },
		'with the labels name, cluster, job and instance');
	is($result && $result->{value}[1], '10', 'and its value');
	my $r = $http->get("http://127.0.0.1:$prom_port/api/v1/rules");
	like($r->{content} // '', qr/"name":"NetrunPoolWorkerDown"/, 'and loaded contrib\'s alerting rules');
	$prom->signal('TERM');
	$prom->finish;
}

# --- a stuck launcher stalls no pooled call --------------------------------
# The launcher stopped (as one stuck on a client would be): pooled calls
# go on, an HTTP client waits, and is answered once the launcher runs.
{
	my $launcher = $local->safe_psql('postgres', 'SELECT launcher_pid FROM netrun_pool.worker_status()');
	ok($launcher > 0, 'the launcher\'s pid');
	kill 'STOP', $launcher;
	my $waiting = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $http_port,
		Proto => 'tcp') or die "could not connect: $!";
	print $waiting "GET /alive HTTP/1.0\r\n\r\n";
	$waiting->flush;
	my $sum = $local->safe_psql('postgres',
		"SELECT sum(netrun_pool.fetchval(CASE WHEN i % 2 = 0 THEN 'r' ELSE 'other' END, 'SELECT ' || i)::int) FROM generate_series(1, 200) i");
	kill 'CONT', $launcher;
	is($sum, '20100', 'with the launcher stopped, 200 pooled calls ran');
	($got, $closed) = read_until_closed($waiting, $timeout);
	like($got, qr{^HTTP/1\.[01] 200 }, 'and the HTTP client that waited meanwhile is answered once it runs again');
}

# --- no secret in any body -------------------------------------------------
ok(scalar(@bodies) > 50, 'bodies collected: ' . scalar(@bodies));
is(scalar(grep { index($_, $password) >= 0 } @bodies), 0, 'no body holds the registered password');
is(scalar(grep { index($_, $token) >= 0 } @bodies), 0, 'nor the token');

# --- the worker down: /alive 503, /ready 503, netrun_pool_up 0 ----------------
# The worker's database is missing: the launcher waits for it, and serves.
$local->append_conf('postgresql.conf', "netrun_pool.database = 'later'\n");
$local->restart;
ok(NetrunTest::wait_for_state($local, 'postgres', 'waiting for database'), 'the worker waits for its database');
$res = poll_http('/alive', sub { defined $_[0]->{status} && $_[0]->{status} != 599 });
is($res->{status}, 503, '/alive: 503 while the worker does not run');
is($res->{content}, "{\"alive\": false}\n", '/alive: its body');
is(get('/ready')->{status}, 503, '/ready: 503 too');
like(get('/metrics')->{content}, qr/^netrun_pool_up 0$/m, '/metrics: netrun_pool_up 0');
$local->safe_psql('postgres', 'CREATE DATABASE later');
ok(NetrunTest::wait_for_state($local, 'postgres', 'waiting for extension'), 'the worker started, waiting for the extension');
is(get('/alive')->{status}, 503, '/alive: still 503, the worker does not serve yet');
$local->safe_psql('later', 'CREATE EXTENSION netrun_pool');
ok(poll_http('/alive', sub { $_[0]->{status} == 200 }), '/alive: 200 once the worker serves');

# --- a port already taken -----------------------------------------------------
my $squatter = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
	LocalPort => 0, Proto => 'tcp', ReuseAddr => 0) or die "could not listen: $!";
my $taken = $squatter->sockport;
$local->append_conf('postgresql.conf', "netrun_pool.http_listen = '127.0.0.1:$taken'\n");
$local->restart;
ok(NetrunTest::wait_for_state($local, 'later', 'running'), 'with the port taken, the worker still runs');
ok(eval { $local->wait_for_log(qr/WARNING:  could not start the netrun_pool HTTP endpoint on "127\.0\.0\.1:$taken"\n.*DETAIL:  .*Address already in use/s) },
	'the launcher warns that it could not start the endpoint, and why');
$local->safe_psql('later', "SELECT netrun_pool.register('r', '$conninfo')");
is($local->safe_psql('later', "SELECT netrun_pool.fetchval('r', 'SELECT 6 * 7')"), '42',
	'pooled calls work without the endpoint');
close $squatter;

# An address that is not one: PostgreSQL warns as it loads the library,
# and the setting keeps its default, off.
$local->append_conf('postgresql.conf', "netrun_pool.http_listen = 'localhost:9187'\n");
$local->restart;
ok(eval { $local->wait_for_log(qr/WARNING:  invalid value for parameter "netrun_pool\.http_listen": "localhost:9187"\n.*DETAIL:  It must be an IP address and a port/s) },
	'http_listen with a host name: a WARNING says why');
is($local->safe_psql('later', 'SHOW netrun_pool.http_listen'), '', 'and the endpoint is off');
ok(NetrunTest::wait_for_state($local, 'later', 'running'), 'while the worker runs');

done_testing();
