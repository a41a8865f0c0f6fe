# Secrets under every tool that keeps statement texts: pg_stat_statements
# (track = all, utilities too) and auto_explain (every plan, nested ones
# too) preloaded, log_statement = all, and a pg_read_all_stats member
# polling pg_stat_activity all along.  Twice: with netrun_pool last in
# shared_preload_libraries, then first.
#
# A password given the documented way (a libpq password file, which the
# worker reads) and a token passed as a bind parameter are found nowhere:
# not in pg_stat_statements, the pg_stat_activity samples, the server log,
# or any file of the data directory (pg_stat_tmp/pgss_query_texts.stat
# while the server runs, pg_stat/pg_stat_statements.stat after it stops).
# A password and a token typed into SQL text (a DO block, EXPLAIN ANALYZE,
# a register() that fails inside PL/pgSQL, a literal token) are found
# nowhere either, except possibly in a sample taken before their statement
# was parsed: the gap docs/reference.md (Secrets) documents.
use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use File::Copy;
use File::Find;
use IPC::Run;
use MIME::Base64 qw(encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $tmp = PostgreSQL::Test::Utils::tempdir;

# The password file's password, and a typed one holding each character
# that got past the old redaction: ? , ) & '
my $file_pw = 'Pf1le-Only-Qx7Zr4Wm';
my $typed_pw = q{Sp3c?ial,Pw)7&Qz'Kw8Yx2Vb};
(my $typed_sql = $typed_pw) =~ s/'/''/g;
# pieces, so that a half-blanked password is caught too
my @typed_pieces = ('Sp3c?ial,Pw)7&Qz', 'Kw8Yx2Vb');

my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
$remote->safe_psql('postgres', qq{
	SET password_encryption = 'scram-sha-256';
	CREATE ROLE file_app LOGIN PASSWORD '$file_pw';
	CREATE ROLE rq LOGIN PASSWORD '$typed_sql';
});
my $rport = $remote->port;

# The password file, as README's Quick start makes it.
my $passfile = "$tmp/netrun.pgpass";
open(my $fh, '>', $passfile) or die $!;
print $fh "127.0.0.1:$rport:postgres:file_app:$file_pw\n";
close($fh);
chmod 0600, $passfile;

my $keyfile = NetrunTest::write_key_file("$tmp/secret.key");
my $tenant_keyfile = NetrunTest::write_key_file("$tmp/tenant.key");
my $tenant_key = slurp_file($tenant_keyfile);

sub mint
{
	my ($payload) = @_;
	my $signing = encode_base64url('{"alg":"HS256","typ":"JWT"}') . '.' . encode_base64url($payload);
	return $signing . '.' . encode_base64url(hmac_sha256($signing, $tenant_key));
}
my $now = time;
my $bound_token = mint(qq({"tenant_id":"acme","exp":@{[ $now + 3600 ]}}));
my $typed_token = mint(qq({"tenant_id":"globex","exp":@{[ $now + 3600 ]}}));
my $expired_token = mint(qq({"tenant_id":"initech","exp":@{[ $now - 60 ]}}));
# typed in SQL, unlike $expired_token, which is only ever bound: a typed
# statement's text is in pg_stat_activity for a moment before it is parsed
my $expired_typed = mint(qq({"tenant_id":"umbrella","exp":@{[ $now - 60 ]}}));

# What must be found nowhere, and what only the samples may hold.
my @never = ($file_pw, $bound_token, (split /\./, $bound_token)[2],
	$expired_token, (split /\./, $expired_token)[2]);
my @typed = (@typed_pieces, $typed_token, (split /\./, $typed_token)[2],
	$expired_typed, (split /\./, $expired_typed)[2]);

my $local = NetrunTest::start_local('local', conf => qq{
shared_preload_libraries = 'pg_stat_statements, auto_explain, netrun_pool'
netrun_pool.secret_key_file = '$keyfile'
netrun_pool.tenant_key_file = '$tenant_keyfile'
log_statement = all
log_min_error_statement = info
log_parameter_max_length_on_error = -1
pg_stat_statements.track = all
pg_stat_statements.track_utility = on
auto_explain.log_min_duration = 0
auto_explain.log_analyze = on
auto_explain.log_verbose = on
auto_explain.log_nested_statements = on
});
$local->safe_psql('postgres', q{
	CREATE EXTENSION pg_stat_statements;
	CREATE EXTENSION netrun_pool;
	CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats;
	CREATE ROLE app LOGIN;
});
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

# The pg_read_all_stats member: every 10 ms, every other session's query.
my $samples = "$tmp/samples.txt";
open($fh, '>', "$tmp/poll.sql") or die $!;
print $fh "SELECT 'sample: ' || coalesce(string_agg(query, ' | '), '') FROM pg_stat_activity WHERE pid <> pg_backend_pid()\n\\watch 0.01\n";
close($fh);

sub start_poller
{
	my $timer = IPC::Run::timeout(3600);
	my $harness = IPC::Run::start(
		[ 'psql', '-X', '-At', '-U', 'watcher', '-d', $local->connstr('postgres'), '-f', "$tmp/poll.sql" ],
		'>>', $samples, '2>>', "$samples.err", $timer);
	return [ $harness, $timer ];
}

# SIGINT ends \watch, and psql then ends normally (flushing its output).
sub stop_poller
{
	my ($harness, $timer) = @{ $_[0] };
	$timer->start(60);
	$harness->signal('INT');
	$harness->kill_kill unless eval { $harness->finish; 1 };
	return;
}

# Every file under $dir holding one of @secrets, as "file: secret".
sub files_holding
{
	my ($dir, @secrets) = @_;
	my @hits;
	find(
		{
			no_chdir => 1,
			wanted => sub {
				return unless -f $_;
				open(my $in, '<:raw', $_) or return;
				local $/;
				my $data = <$in>;
				close($in);
				for my $s (@secrets)
				{
					push @hits, "$File::Find::name: $s" if index($data, $s) >= 0;
				}
			}
		},
		$dir);
	return @hits;
}

sub found_in
{
	my ($text, @secrets) = @_;
	return grep { index($text, $_) >= 0 } @secrets;
}

my $file_conninfo = NetrunTest::tcp_conninfo($remote) . " user=file_app passfile=$passfile";
my $uri = "postgresql://rq:$typed_sql\@127.0.0.1:$rport/postgres";
my $keyvalue = "host=127.0.0.1 port=$rport dbname=postgres user=rq password=$typed_sql";
open($fh, '>', "$tmp/token.sql") or die $!;
print $fh "SELECT netrun_pool.set_tenant_token(:token, true);\n";
close($fh);

# One round of everything, with names ending in $round.
sub exercise
{
	my ($round) = @_;

	# The documented way, twenty times over while the poller watches.
	for my $i (1 .. 20)
	{
		$local->safe_psql('postgres', qq{
			SELECT netrun_pool.register('file_${round}_$i', '$file_conninfo', enabled => false);
			SELECT pg_sleep(0.02);
			SELECT netrun_pool.configure('file_${round}_$i', conninfo => '$file_conninfo');
			SELECT netrun_pool.unregister('file_${round}_$i');
		});
	}

	# Typed: a DO block, EXPLAIN ANALYZE, a plain call, and a register()
	# that fails inside PL/pgSQL (its CONTEXT line quotes the call).
	$local->safe_psql('postgres',
		"DO \$\$ BEGIN PERFORM netrun_pool.register('typed_do_$round', '$uri'); END \$\$");
	$local->safe_psql('postgres',
		"EXPLAIN ANALYZE SELECT netrun_pool.register('typed_explain_$round', '$keyvalue')");
	$local->safe_psql('postgres',
		"SELECT netrun_pool.register('typed_select_$round', '$uri', enabled => false)");
	my ($ret, $out, $err) = $local->psql('postgres',
		"DO \$\$ BEGIN PERFORM netrun_pool.register('typed_fail_$round', '$uri', pool_max => 0); END \$\$");
	like($err, qr/ERROR:  pool_max must be greater than zero/, "round $round: a register() inside PL/pgSQL fails");
	like($err,
		qr{SQL statement "SELECT netrun_pool\.register\('typed_fail_$round', 'postgresql://rq:\*\*\*\@127\.0\.0\.1:$rport/postgres', pool_max => 0\)"},
		"round $round: its CONTEXT line has the password blanked");

	# Tokens: bound (the documented way), typed in a DO block and a
	# statement, and refused both ways.
	$local->command_ok(
		[ 'pgbench', '-n', '-M', 'extended', '-t', '20', '-D', "token=$bound_token",
			'-f', "$tmp/token.sql", '-U', 'app', $local->connstr('postgres') ],
		"round $round: set_tenant_token() with a bound token, 20 times");
	$local->command_fails(
		[ 'pgbench', '-n', '-M', 'extended', '-t', '1', '-D', "token=$expired_token",
			'-f', "$tmp/token.sql", '-U', 'app', $local->connstr('postgres') ],
		"round $round: a bound expired token is refused");
	is($local->safe_psql('postgres',
			"DO \$\$ BEGIN PERFORM netrun_pool.set_tenant_token('$typed_token'); END \$\$; SELECT netrun_pool.current_tenant()",
			extra_params => [ '-U', 'app' ]),
		'globex', "round $round: a typed token in a DO block");
	($ret, $out, $err) = $local->psql('postgres',
		"SELECT netrun_pool.set_tenant_token('$expired_typed')", extra_params => [ '-U', 'app' ]);
	like($err, qr/invalid tenant token/, "round $round: a typed expired token is refused");

	# The typed registrations work: the password came through whole.
	for my $name ("typed_do_$round", "typed_explain_$round")
	{
		ok($local->poll_query_until('postgres',
				"SELECT netrun_pool.fetchval('$name', 'SELECT current_user')", 'rq'),
			"round $round: $name connects with the typed password");
	}
	return;
}

sub check
{
	my ($round) = @_;

	my $pgss = $local->safe_psql('postgres',
		"SELECT string_agg(query, E'\\n') FROM pg_stat_statements",
		extra_params => [ '-U', 'watcher' ]);
	like($pgss, qr/netrun_pool\.set_tenant_token\(\$1, /,
		"round $round: pg_stat_statements tracks the bound token calls");
	like($pgss, qr/netrun_pool\.register\(\$1, \$2, enabled => \$3\)/,
		"round $round: and the password-file registrations");
	is(join(', ', found_in($pgss, @never, @typed)), '',
		"round $round: pg_stat_statements holds no password and no token");

	my $log = slurp_file($local->logfile);
	is(join(', ', found_in($log, @never, @typed)), '',
		"round $round: the server log holds no password and no token");
	like($log,
		qr{statement: SELECT netrun_pool\.register\('typed_select_$round', 'postgresql://rq:\*\*\*\@127\.0\.0\.1:$rport/postgres', enabled => false\)},
		"round $round: log_statement logs the call with its password blanked");
	like($log,
		qr{Query Text: EXPLAIN ANALYZE SELECT netrun_pool\.register\('typed_explain_$round', 'host=127\.0\.0\.1 port=$rport dbname=postgres user=rq password=\*\*\*'\)},
		"round $round: so does auto_explain");
	like($log, qr/execute <unnamed>: SELECT netrun_pool\.set_tenant_token\(\$1, true\);?\n.*DETAIL:  parameters: \$1 = '\*\*\*'/,
		"round $round: a bound token's logged parameter is blanked");

	my @hits = files_holding($local->data_dir, @never, @typed);
	is(join(', ', @hits), '', "round $round: no file of the data directory holds a password or token");
	return;
}

# --- the password file works end to end ------------------------------------
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('file_db', '$file_conninfo');
	SELECT netrun_pool.grant_usage('file_db', 'app');
});
is($local->safe_psql('postgres', "SELECT has_password FROM netrun_pool.connections WHERE name = 'file_db'"),
	'f', 'nothing is stored: the password stays in its file');
ok($local->poll_query_until('postgres',
		"SELECT netrun_pool.fetchval('file_db', 'SELECT current_user')", 'file_app'),
	'the worker connects with the password file');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('file_db', 'SELECT current_user')",
		extra_params => [ '-U', 'app' ]),
	'file_app', 'and an application role calls through it (the remote asked for the password)');

# The password rule still holds: over the remote's socket, which trusts
# everyone, libpq never reads the file, and a non-superuser is refused.
$local->safe_psql('postgres', "SELECT netrun_pool.register('file_trust', 'host="
	  . $remote->host . " port=$rport dbname=postgres user=file_app passfile=$passfile');"
	  . " SELECT netrun_pool.grant_usage('file_trust', 'app')");
my ($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.fetchval('file_trust', 'SELECT 1')", extra_params => [ '-U', 'app' ]);
like($err, qr/password is required for netrun_pool connection "file_trust"/,
	'a remote that asks for no password is refused to a non-superuser (PQconnectionUsedPassword)');

# A password file libpq would skip is refused at once.
copy($passfile, "$passfile.644") or die $!;
chmod 0644, "$passfile.644";
($ret, $out, $err) = $local->psql('postgres',
	"SELECT netrun_pool.register('file_644', 'host=127.0.0.1 user=file_app passfile=$passfile.644')");
like($err, qr/password file ".*\.644" is accessible by group or others/,
	'a password file open to others is refused');

# --- round 1: netrun_pool last in shared_preload_libraries -----------------
my $poller = start_poller();
exercise(1);
stop_poller($poller);
check(1);
ok(-s $local->data_dir . '/pg_stat_tmp/pgss_query_texts.stat',
	'pg_stat_statements keeps its texts in pg_stat_tmp/pgss_query_texts.stat');

# --- round 2: netrun_pool first --------------------------------------------
$local->append_conf('postgresql.conf',
	"shared_preload_libraries = 'netrun_pool, pg_stat_statements, auto_explain'\n");
$local->restart;
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running again');
is($local->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'netrun_pool, pg_stat_statements, auto_explain', 'netrun_pool is now loaded first');
$poller = start_poller();
exercise(2);
stop_poller($poller);
check(2);

# --- the samples, and what pg_stat_statements writes at shutdown -----------
my $seen = slurp_file($samples);
my $nsamples = () = $seen =~ /^sample: /mg;
cmp_ok($nsamples, '>', 100, "the poller took samples ($nsamples)");
like($seen, qr/<netrun_pool registry change: statement hidden>/,
	'and saw registrations in flight');
is(join(', ', found_in($seen, @never)), '',
	'no sample holds the password file\'s password or the bound token');
my @caught = found_in($seen, @typed);
note('typed secrets caught by the poller before their statement was parsed: '
	  . (@caught ? join(', ', @caught) : 'none'));

$local->stop;
ok(-s $local->data_dir . '/pg_stat/pg_stat_statements.stat',
	'pg_stat_statements wrote its file at shutdown');
is(join(', ', files_holding($local->data_dir, @never, @typed)), '',
	'no file of the stopped server\'s data directory holds a password or token');
is(join(', ', found_in(slurp_file($local->logfile), @never, @typed)), '',
	'nor does its log');

done_testing();
