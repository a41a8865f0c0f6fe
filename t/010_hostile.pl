# Hostile input across the SQL API, generated from a seeded PRNG: NULLs,
# empty strings, 1 MB strings, invalid UTF-8 (from a SQL_ASCII database,
# the only way such bytes reach our code), 10,000 and 65,536 parameters,
# column lists that do not match, quoting and injection in names, broken
# conninfo strings, tokens and tenants.  Every error must be one docs/reference.md
# documents (or PostgreSQL's own, raised before our code runs, or the
# remote's own, re-raised, which the remote's server log must show it
# raised); the server never crashes; the worker keeps its pid; nothing
# stays checked out or waiting; the remote never holds more than pool_max
# connections of a pool; and a second run of the same batch grows neither
# the worker's memory and descriptors nor a long-lived calling backend's
# memory.
#
#   NETRUN_FUZZ_SEED=N    the PRNG's seed (printed; default below)
#   NETRUN_FUZZ_CASES=N   generated cases per database and batch
#   NETRUN_FUZZ_DUMP=DIR  write the two batches to DIR and skip the run, to
#                         read them or replay one case by hand
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $seed = $ENV{NETRUN_FUZZ_SEED} // 20261127;
my $ncases = $ENV{NETRUN_FUZZ_CASES} // 1000;
note("NETRUN_FUZZ_SEED=$seed NETRUN_FUZZ_CASES=$ncases");

# A PRNG of our own (a 64-bit LCG, top bits), so that a seed names the
# same cases on every perl.
my $rng = $seed;
sub rnd
{
	my ($n) = @_;
	use integer;
	$rng = ($rng * 6364136223846793005 + 1442695040888963407);
	no integer;
	my $hi = ($rng >> 33) & 0x7fffffff;
	return $hi % $n;
}
sub pick { return $_[ rnd(scalar @_) ]; }

# --- the values ------------------------------------------------------------
# Each is a SQL expression.  $ascii: the SQL_ASCII database, where invalid
# UTF-8 gets into our functions (a UTF8 database refuses it at input).
sub lit
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	if ($s =~ /[\x00-\x1f\x7f-\xff\\]/)
	{
		$s =~ s/\\/\\\\/g;
		$s =~ s/'/''/g;
		$s =~ s/([\x00-\x1f\x7f-\xff])/sprintf('\\x%02x', ord($1))/ge;
		return "E'$s'";
	}
	$s =~ s/'/''/g;
	return "'$s'";
}

my @invalid_utf8 = ("E'\\xff'", "E'r\\xc3'", "E'\\xc0\\xaf'", "E'\\xed\\xa0\\x80'",
	"E'\\xf4\\x90\\x80\\x80'", "E'r\\xe2\\x82'", "E'\\xfe\\xfe\\xff'");

# A random string from an alphabet that is mostly trouble.
sub random_string
{
	my ($ascii) = @_;
	my @alphabet = ('a' .. 'z', '0' .. '9', 'A', 'Z', '_', ' ', "'", '"', '\\', ';', '$', '%',
		'-', '/', '*', '=', ':', '(', ')', '.', ',', "\n", "\t", "\x01", 'é', '€', '😀');
	my $len = pick(0, 1, 2, 5, 17, 63, 64, 65, 200);
	my $s = join('', map { pick(@alphabet) } 1 .. $len);
	utf8::encode($s) if utf8::is_utf8($s);
	return lit($s) unless $ascii && rnd(3) == 0;
	return lit($s) . ' || ' . pick(@invalid_utf8);
}

sub hostile_name
{
	my ($ascii) = @_;
	return random_string($ascii) if rnd(5) == 0;
	return pick(@invalid_utf8) if $ascii && rnd(4) == 0;
	return pick('NULL', "''", "'nope'", "repeat('n', 1000000)", "repeat('a', 63)",
		"repeat('a', 64)", "'R'", "'r '", "' r'", "'r\"'", q{'"r"'},
		q{'r''; DROP TABLE netrun_pool.registry; --'}, q{'r; SELECT 1'}, q{'$$'},
		q{E'r\\n'}, q{E'r\\t'}, q{E'r\\x01'}, "'pg_catalog'", "'netrun_pool'", "'é'",
		"'r' || chr(8203)", q{'\\'}, "'%s%s%s%n'", "'%'", "'r%'", "'_'", "'1r'",
		"repeat('é', 40)", "'rc.r'", "'r/*'", "'r--'", "'Robert''); DROP TABLE students;--'");
}

# Names a call may use: the real ones (so the call goes through) or hostile ones.
sub call_name
{
	my ($ascii) = @_;
	return rnd(3) ? pick("'r'", "'r'", "'rc'", "'r_sess'", "'down'", "'huge_db'", "repeat('z', 63)")
	  : hostile_name($ascii);
}

sub hostile_conninfo
{
	my ($ascii) = @_;
	return random_string($ascii) if rnd(6) == 0;
	return pick(@invalid_utf8) . " || ' host=x'" if $ascii && rnd(5) == 0;
	return pick('NULL', "''", "repeat('h', 1000000)", "'host=' || repeat('h', 1000000)",
		"'host=127.0.0.1 port=1 dbname=' || repeat('d', 1000000)",
		"'host=''unterminated'", "'postgresql://'", "'postgresql://[::1'",
		q{'postgresql://u:p@h:99999/db'}, "'hots=x'", "'host=x application_name=y'",
		"'host=x client_encoding=LATIN1'", "'host=x replication=1'",
		"'host=x connect_timeout=1'", "'host=x fallback_application_name=z'",
		"'host=x password=s3cret'", q{'postgresql://u:s3cret@h/db'}, "'host=x port=abc'",
		"'host=x sslmode=bogus'", "'=x'", "'host'", "'host = x'", "'host=x\\ y'",
		q{'postgresql://u:%zz@h/db'}, "'postgres+evil://h/db'", "'postgresql+://h'",
		"'service=nonexistent'", "'host=x options=''-c statement_timeout=1'''",
		q{'host=x'' ; DROP TABLE netrun_pool.registry; --'}, q{E'host=x\\ndbname=y'},
		"'host=x ' || repeat('password=p ', 1000)", q{'postgresql://' || repeat('@', 10000)},
		"'postgresql://h/db?' || repeat('x=y&', 1000)", "'host=x dbname=' || chr(8203)");
}

sub hostile_sql
{
	my ($ascii) = @_;
	return random_string($ascii) if rnd(8) == 0;
	return "'SELECT ''' || " . pick(@invalid_utf8) . " || ''''" if $ascii && rnd(4) == 0;
	return pick('NULL', "''", "' '", "'SELECT 1'", "'SELEC'", "'SELECT 1; SELECT 2'",
		"'SELECT ''' || repeat('x', 1000000) || ''''", "repeat('x', 1000000)",
		"'COPY (SELECT 1) TO STDOUT'", "'COPY kv FROM STDIN'", "'BEGIN'", "'COMMIT'", "'ROLLBACK'",
		q{'SELECT $1'}, q{'SELECT $1::int'}, q{'SELECT $70000'}, q{'SELECT $0'}, "'SELECT 1/0'",
		"'SET search_path = evil'", "'LISTEN x'", "'SELECT repeat(''y'', 1000000)'",
		"'SELECT generate_series(1, 1000)'", "'SELECT NULL'", "'SELECT NULL::int, NULL::text'",
		"'SELECT 1 AS \"' || repeat('c', 100) || '\"'", q{E'SELECT 1\\n;\\n'}, "'-- comment only'",
		"'/* unterminated'", q{'DO $$ BEGIN RAISE EXCEPTION ''boom'' USING DETAIL = ''d''; END $$'},
		"'SELECT * FROM kv ORDER BY k'", "'SELECT ''é€😀'''", "'PREPARE p AS SELECT 1'",
		"'DEALLOCATE ALL'", "'DISCARD ALL'", "'RESET ALL'", "'SET statement_timeout = 1'",
		"'SELECT set_config(''app.current_tenant_id'', ''other'', false)'",
		"'SELECT pg_terminate_backend(pg_backend_pid())'",
		"'SELECT pg_cancel_backend(pg_backend_pid())'", "'VACUUM kv'",
		q{'SELECT k, v FROM kv WHERE k = $1'}, q{'SELECT $1, $2'}, "'SELECT ''a''::int'",
		"'SELECT ''{\"a\": 1}''::jsonb, true, 1.5, ''NaN''::float8'",
		"'SELECT row(1, 2)'", "'SELECT ARRAY[1, 2]'", "'SELECT ''\\\\x00''::bytea'",
		"'SELECT 1 \\\\g'", "'SELECT 1' || repeat(' ', 100000)", "'SELECT pg_sleep(0.01)'",
		"'EXPLAIN SELECT 1'", "'SHOW ALL'", "'SELECT current_setting(''app.current_tenant_id'', true)'");
}

sub hostile_params
{
	my ($ascii) = @_;
	return 'ARRAY[' . pick(@invalid_utf8) . ']' if $ascii && rnd(5) == 0;
	return 'ARRAY[' . random_string($ascii) . ']' if rnd(6) == 0;
	return pick('NULL', 'ARRAY[]::text[]', 'ARRAY[NULL]::text[]', "ARRAY['1']", "ARRAY['x', 'y']",
		"ARRAY[ARRAY['a']]", "ARRAY[repeat('p', 1000000)]", "array_fill('1'::text, ARRAY[10000])",
		"array_fill('1'::text, ARRAY[65535])", "array_fill('1'::text, ARRAY[65536])",
		"array_fill(NULL::text, ARRAY[70000])", "'{}'", "'{1,2'", "array_fill('x'::text, ARRAY[2], ARRAY[0])",
		"'[5:6]={a,b}'::text[]", q{ARRAY[E'\\x01']}, q{ARRAY['''; DROP TABLE kv; --']},
		"ARRAY['1', NULL, '3']", "ARRAY['NaN']", "ARRAY[repeat('p', 100000), repeat('q', 100000)]");
}

sub coldef
{
	return pick('AS t(a int)', 'AS t(a text)', 'AS t(a int, b int)', 'AS t(a text, b text, c text)',
		'AS t(a date)', 'AS t(a bytea)', 'AS t(a jsonb)', 'AS t(a int[])', 'AS t(a netrun_no_such_type)',
		'AS t(a text COLLATE "C")', '', 'AS t(k int, v text)', 'AS t(a numeric(2,1))',
		'AS t(a "char")', 'AS t(a varchar(1))', 'AS t(a name)', 'AS t(a regclass)',
		'AS t(' . join(', ', map { "c$_ int" } 1 .. 1600) . ')');
}

sub bool_value { return pick('true', 'false', 'NULL', "'maybe'"); }
sub int_value
{
	return pick('-1', '0', '1', '2147483647', '-2147483648', 'NULL', '2147483648', "'x'", '65535',
		'1000000000');
}
sub text_option
{
	my ($ascii) = @_;
	return rnd(3) ? hostile_name($ascii)
	  : pick("'shared'", "'admin'", "'replica'", "'primary'", "'session'", "'none'",
		"'transaction'", "'a.b'", "'app.' || repeat('x', 200)", "'x'", "'a.b; DROP TABLE kv'",
		"repeat('r', 64)", "repeat('é', 32)");
}

sub hostile_tenant
{
	my ($ascii) = @_;
	return random_string($ascii) if rnd(4) == 0;
	return pick(@invalid_utf8) if $ascii && rnd(4) == 0;
	return pick('NULL', "''", "repeat('t', 1000000)", "repeat('t', 255)", "repeat('t', 256)",
		q{E'\\x01'}, q{E'a\\nb'}, "'../../etc'", "'6F1C1F4E-8A1B-4C2D-9E3F-0A1B2C3D4E5F'",
		q{'t''; DROP TABLE kv; --'}, "'é€'", "'pg_catalog'", "'acme'", "'-'", "'_'",
		"repeat('é', 200)", "'a.b'");
}

sub hostile_token
{
	my ($ascii) = @_;
	return random_string($ascii) if rnd(3) == 0;
	return pick('NULL', "''", "repeat('t', 1000000)", "'a.b.c'", "'..'", "'a.b'", "'.'",
		"'eyJhbGciOiJub25lIn0.eyJ0ZW5hbnRfaWQiOiJ4In0.'",
		"'eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRfaWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA'",
		"'eyJhbGciOiJIUzI1NiJ9.' || repeat('A', 100000) || '.x'", "'%%%.%%%.%%%'",
		"'eyJ' || repeat('=', 10) || '.e30.'", "'e30.e30.e30'", "'bnVsbA.bnVsbA.x'");
}

sub role_value
{
	return pick("'app_role'", "'pg_monitor'", "'no_such_role'", 'NULL', "''", "'\"app_role\"'",
		"repeat('x', 100)", "current_user::regrole", "'app_role; DROP ROLE app_role'");
}

# A registry change is made and rolled back, so that every batch finds
# the same registry.  Most fail before the end anyway.
sub in_rollback { return "BEGIN;\n$_[0];\nROLLBACK;"; }

my @register_options = (
	[ 'kind', \&text_option ], [ 'role', \&text_option ], [ 'cluster', \&hostile_name ],
	[ 'region', \&text_option ], [ 'pool_min', \&int_value ], [ 'pool_max', \&int_value ],
	[ 'max_overflow', \&int_value ], [ 'pool_mode', \&text_option ],
	[ 'acquire_timeout_ms', \&int_value ], [ 'connect_timeout_ms', \&int_value ],
	[ 'statement_timeout_ms', \&int_value ], [ 'idle_timeout_s', \&int_value ],
	[ 'recycle_s', \&int_value ], [ 'password_required', \&bool_value ],
	[ 'enabled', \&bool_value ], [ 'max_replica_lag_ms', \&int_value ],
	[ 'tenant_setting', \&text_option ]);

sub named_options
{
	my ($ascii, $with_conninfo) = @_;
	my @opts;
	push @opts, 'conninfo => ' . hostile_conninfo($ascii) if $with_conninfo && rnd(2);
	for (1 .. rnd(4))
	{
		my ($opt, $gen) = @{ pick(@register_options) };
		push @opts, "$opt => " . $gen->($ascii);
	}
	my %seen;
	return join('', map { ", $_" } grep { my ($k) = /^(\w+)/; !$seen{$k}++ } @opts);
}

my @templates = (
	sub { in_rollback("SELECT netrun_pool.register(" . hostile_name($_[0]) . ', ' . hostile_conninfo($_[0]) . named_options($_[0], 0) . ')') },
	sub { in_rollback("SELECT netrun_pool.register('fz', " . hostile_conninfo($_[0]) . named_options($_[0], 0) . ')') },
	sub { in_rollback("SELECT netrun_pool.register('fz', 'host=127.0.0.1 port=1'" . named_options($_[0], 0) . ')') },
	sub { in_rollback("SELECT netrun_pool.configure(" . pick("'r'", "'down'", hostile_name($_[0])) . named_options($_[0], 1) . ')') },
	sub { in_rollback("SELECT netrun_pool.unregister(" . hostile_name($_[0]) . ', ' . bool_value() . ')') },
	sub { in_rollback("SELECT netrun_pool.grant_usage(" . call_name($_[0]) . ', ' . role_value() . ')') },
	sub { in_rollback("SELECT netrun_pool.revoke_usage(" . call_name($_[0]) . ', ' . role_value() . ')') },
	sub { "SELECT netrun_pool.has_usage(" . call_name($_[0]) . ', ' . role_value() . ');' },
	sub { "SELECT * FROM netrun_pool.query(" . call_name($_[0]) . ', ' . hostile_sql($_[0]) . ', ' . hostile_params($_[0]) . ', ' . bool_value() . ') ' . coldef() . ';' },
	sub { "SELECT * FROM netrun_pool.query(" . call_name($_[0]) . ", 'SELECT k, v FROM kv WHERE k < 3') " . coldef() . ';' },
	sub { "SELECT * FROM netrun_pool.query_json(" . call_name($_[0]) . ', ' . hostile_sql($_[0]) . ', ' . hostile_params($_[0]) . ', ' . bool_value() . ');' },
	sub { "SELECT netrun_pool.fetchval(" . call_name($_[0]) . ', ' . hostile_sql($_[0]) . ', ' . hostile_params($_[0]) . ', ' . bool_value() . ');' },
	sub { "SELECT netrun_pool.fetchval(" . call_name($_[0]) . ", 'SELECT \$1::text', " . hostile_params($_[0]) . ');' },
	sub { "SELECT netrun_pool.exec(" . call_name($_[0]) . ', ' . hostile_sql($_[0]) . ', ' . hostile_params($_[0]) . ');' },
	sub {
		"SELECT netrun_pool.exec_transaction(" . call_name($_[0]) . ', '
		  . pick('NULL', 'ARRAY[]::text[]', 'ARRAY[NULL]::text[]', "ARRAY['SELECT 1', 'COMMIT']",
			'ARRAY[' . hostile_sql($_[0]) . ']', 'ARRAY[' . hostile_sql($_[0]) . ', ' . hostile_sql($_[0]) . ']',
			"array_fill('SELECT 1'::text, ARRAY[1000])", "ARRAY[ARRAY['SELECT 1']]",
			"ARRAY['  /* x */ begin']", "ARRAY['SELECT 1;COMMIT']") . ');'
	},
	sub {
		my $n = call_name($_[0]);
		"BEGIN;\nSELECT netrun_pool.begin($n);\nSELECT netrun_pool.exec($n, " . hostile_sql($_[0]) . ");\n"
		  . pick('COMMIT;', 'ROLLBACK;', "PREPARE TRANSACTION 'fz';\nROLLBACK;");
	},
	sub { "SELECT netrun_pool.begin(" . call_name($_[0]) . ');' },
	sub { "SELECT netrun_pool.release(" . call_name($_[0]) . ');' },
	sub { "SELECT netrun_pool.health_check(" . call_name($_[0]) . ');' },
	sub { "SELECT netrun_pool.ready(" . call_name($_[0]) . ');' },
	sub { "SELECT netrun_pool.reset_stats(" . call_name($_[0]) . ');' },
	sub { "SELECT netrun_pool.set_tenant(" . hostile_tenant($_[0]) . ', ' . bool_value() . ');' },
	sub { "SELECT netrun_pool.set_tenant_token(" . hostile_token($_[0]) . ', ' . bool_value() . ');' },
	sub { "SELECT netrun_pool.clear_tenant();" },
	sub { "SELECT netrun_pool.current_tenant();" },
	sub { "SELECT netrun_pool.tenant_schema(" . hostile_tenant($_[0]) . ');' },
	sub { "SELECT netrun_pool.validate_schema_name(" . hostile_tenant($_[0]) . ');' },
	sub { in_rollback("SELECT netrun_pool.route_tenant(" . hostile_tenant($_[0]) . ', ' . call_name($_[0]) . ')') },
	sub { in_rollback("SELECT netrun_pool.unroute_tenant(" . hostile_tenant($_[0]) . ')') },
	sub { "SELECT netrun_pool.tenant_connection(" . hostile_tenant($_[0]) . ');' },
	sub { "SELECT netrun_pool._conninfo_get(" . hostile_conninfo($_[0]) . ', ' . text_option($_[0]) . ');' },
	sub { "SELECT netrun_pool._normalize_tenant(" . hostile_tenant($_[0]) . ', ' . bool_value() . ');' },
	sub { in_rollback("SELECT netrun_pool._request_force_retire(" . hostile_name($_[0]) . ')') },
	sub { "SELECT * FROM netrun_pool.pool_stats;\nSELECT * FROM netrun_pool.health;\nSELECT netrun_pool.prometheus();" },
);

# One batch per database, the same in both runs of it.
sub generate_batch
{
	my ($ascii, $path) = @_;
	open(my $fh, '>', $path) or die "could not write $path: $!";
	for my $i (1 .. $ncases)
	{
		my $case = $templates[ rnd(scalar @templates) ]->($ascii);
		print $fh "-- case $i\n$case\n";
	}
	close($fh);
	return;
}
my $tmp = PostgreSQL::Test::Utils::tempdir;
# NETRUN_FUZZ_DUMP=DIR: write the batches there and stop, to read them.
my $batchdir = $ENV{NETRUN_FUZZ_DUMP} // $tmp;
generate_batch(0, "$batchdir/batch_utf8.sql");
generate_batch(1, "$batchdir/batch_ascii.sql");
if ($ENV{NETRUN_FUZZ_DUMP})
{
	plan skip_all => "batches written to $batchdir";
}

# --- the servers ----------------------------------------------------------
my $keyfile = NetrunTest::write_key_file("$tmp/secret.key");
my $tenant_keyfile = NetrunTest::write_key_file("$tmp/tenant.key");

my $remote = NetrunTest::start_remote('remote');
$remote->safe_psql('postgres',
	"CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g");
my $local = NetrunTest::start_local('local', conf => qq{
netrun_pool.secret_key_file = '$keyfile'
netrun_pool.tenant_key_file = '$tenant_keyfile'
netrun_pool.health_interval_ms = 500
});
$local->safe_psql('postgres', 'CREATE EXTENSION netrun_pool');
ok(NetrunTest::wait_for_state($local, 'postgres', 'running'), 'worker running');

# Calls work from any database; invalid UTF-8 can only come in through a
# database whose encoding does not check it.
$local->safe_psql('postgres',
	"CREATE DATABASE asciidb ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
$local->safe_psql('asciidb', 'CREATE EXTENSION netrun_pool');

my $conninfo = NetrunTest::tcp_conninfo($remote);
my %pool_limit = (r => 3, r_sess => 2);
$local->safe_psql('postgres', qq{
	CREATE ROLE app_role LOGIN;
	SELECT netrun_pool.register('r', '$conninfo', pool_max => 3, cluster => 'rc',
	    acquire_timeout_ms => 10000, statement_timeout_ms => 5000);
	SELECT netrun_pool.register('r_sess', '$conninfo', pool_max => 2, pool_mode => 'session',
	    acquire_timeout_ms => 2000, statement_timeout_ms => 5000);
	SELECT netrun_pool.register('down', 'host=127.0.0.1 port=1 dbname=x',
	    acquire_timeout_ms => 200, connect_timeout_ms => 200);
	SELECT netrun_pool.grant_usage('r', 'app_role');
});
# Odd but valid: accepted, loaded, and called like any other.  A 100 kB
# dbname makes a startup packet the remote refuses; a 63-byte name, a
# 62-byte region of 2-byte characters and a 122-byte tenant_setting are
# the longest allowed.
my $port = $remote->port;
$local->safe_psql('postgres', qq{
	SELECT netrun_pool.register('huge_db', 'host=127.0.0.1 port=$port dbname=' || repeat('d', 100000),
	    acquire_timeout_ms => 300, connect_timeout_ms => 300);
	SELECT netrun_pool.register(repeat('z', 63), '$conninfo', pool_max => 1, region => repeat('é', 31),
	    tenant_setting => 'a.' || repeat('b', 120), acquire_timeout_ms => 5000, statement_timeout_ms => 5000);
});
$pool_limit{ 'z' x 63 } = 1;
ok($local->poll_query_until('postgres', 'SELECT pools FROM netrun_pool.worker_status()', '5'),
	'the worker loaded the five connections');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('r', 'SELECT 1')"), '1', 'r answers');
my $worker_pid = NetrunTest::status_field($local, 'postgres', 'worker_pid');


# --- the documented errors -------------------------------------------------
# From the Errors table of docs/reference.md: [SQLSTATE, message].  A quoted "N" stands for
# any text.
my $Q = '"(?s:.*)"';
my @ours = (
	[ '55000', 'the netrun_pool registry lives in database "postgres"' ],
	[ '42602', "invalid netrun_pool connection name $Q" ],
	[ '22004', 'netrun_pool connection name must not be null' ],
	[ '22004', 'conninfo must not be null' ],
	[ '22004', '\w+ must not be null' ],
	[ '22004', 'grantee must not be null' ],
	[ '42710', "netrun_pool connection $Q already exists" ],
	[ '42704', "netrun_pool connection $Q does not exist" ],
	[ '42501', "permission denied for netrun_pool connection $Q" ],
	[ '22023', "invalid (kind|role|pool_mode) $Q for netrun_pool connection $Q" ],
	[ '22023', 'pool_min \(-?\d+\) must not exceed pool_max \(-?\d+\)' ],
	[ '22023', '(pool_max|acquire_timeout_ms|connect_timeout_ms|idle_timeout_s|recycle_s) must be greater than zero' ],
	[ '22023', '(pool_min|max_overflow|statement_timeout_ms|max_replica_lag_ms) must not be negative' ],
	[ '42602', "invalid cluster name $Q" ],
	[ '42710', "cluster name $Q is already the name of a netrun_pool connection" ],
	[ '42710', "netrun_pool connection name $Q is already the name of a cluster" ],
	[ '22023', 'region must be at most 63 bytes' ],
	[ '22023', "invalid connection string for netrun_pool connection $Q" ],
	[ '22023', "connection option $Q is not allowed in a netrun_pool connection" ],
	[ '53400', 'too many netrun_pool connections' ],
	[ '53400', "netrun_pool connection $Q would exceed netrun_pool.max_connections" ],
	[ '53400', "too many grantees for netrun_pool connection $Q" ],
	[ '55000', "netrun_pool connection $Q is disabled" ],
	[ '08004', "netrun_pool connection $Q is unavailable" ],
	[ '40000', "the remote transaction of netrun_pool connection $Q was rolled back" ],
	[ '08006', "the remote transaction of netrun_pool connection $Q was lost" ],
	[ '08006', "the session of netrun_pool connection $Q was lost" ],
	[ '0A000', 'cannot prepare a transaction that has begun a netrun_pool remote transaction' ],
	[ '25001', "cannot release netrun_pool connection $Q inside its begin\\(\\) transaction" ],
	[ '0A000', 'COPY is not supported through netrun_pool' ],
	[ '25001', "a remote transaction is already open on netrun_pool connection $Q" ],
	[ '25001', "read_only is not possible inside begin\\(\\) on netrun_pool connection $Q" ],
	[ '53300', "timed out waiting for a connection from netrun_pool connection $Q" ],
	[ '08001', "could not connect to netrun_pool connection $Q" ],
	[ '08006', "lost connection to netrun_pool connection $Q" ],
	[ '08006', "could not send a query to netrun_pool connection $Q" ],
	[ '42804', 'remote query result does not match the column list' ],
	[ '42601', 'a column definition list is required for functions returning "record"' ],
	[ '22004', 'sql must not be null' ],
	[ '2202E', 'params must be a one-dimensional array' ],
	[ '25000', 'exec_transaction statements must not control the transaction' ],
	[ '22023', 'statements must not be empty' ],
	[ '22004', 'statements must not be null' ],
	[ '22004', 'statements must not contain NULL' ],
	[ '54000', 'too many parameters: \d+' ],
	[ '42501', 'netrun_pool.tenant_id can only be changed by netrun_pool.set_tenant\(\)' ],
	[ '22P02', "invalid tenant id for netrun_pool.tenant_id_format $Q" ],
	[ '22004', 'tenant must not be null' ],
	[ '22004', 'token must not be null' ],
	[ '28000', 'invalid tenant token' ],
	[ '22023', "tenant $Q has no valid schema name" ],
	[ '55000', 'no tenant is set' ],
	[ '22023', 'tenant must not be empty' ],
	[ '22023', "invalid tenant_setting $Q for netrun_pool connection $Q" ],
	[ '22023', "invalid tenant_guard $Q for netrun_pool connection $Q" ],
	[ '28000', "netrun_pool connection $Q does not enforce the tenant guard" ],
	[ '28000', "netrun_pool connection $Q cannot sign the tenant" ],
	[ '28000', 'invalid tenant assertion' ],
	[ '55000', "netrun_pool connection $Q cannot be used before the transaction that changed the registry commits" ],
	[ '22023', 'invalid guard challenge' ],
	[ '55000', 'netrun_pool.tenant_mode is not "pool" on this server' ],
	[ '42501', 'netrun_pool.tenant_mode is "pool": only the pool\'s signed assertions may set the tenant' ],
);
# PostgreSQL's own, raised before our code runs (input functions, the
# parser, the executor around a set-returning function), or for the
# transaction commands around the cases.
my @postgres = (
	[ '22021', 'invalid byte sequence for encoding "UTF8": .*' ],
	[ '22P02', '(invalid input syntax for type \w+|malformed array literal): .*' ],
	[ '22003', 'value "\d+" is out of range for type integer' ],
	[ '42883', 'function netrun_pool\.\w+\(.*\) does not exist' ],
	[ '42601', 'syntax error at or near .*' ],
	[ '42704', "(role|type) $Q does not exist" ],
	[ '42602', 'invalid name syntax' ],
	[ '54000', 'requested character too large for encoding: \d+' ],
	[ '42P16', 'column "\w+" has pseudo-type .*' ],
	[ '54011', 'tables can have at most 1600 columns' ],
	[ '25P02', 'current transaction is aborted, commands ignored until end of transaction block' ],
	[ '0A000', 'cannot PREPARE a transaction that has exported snapshots' ],
	[ '55000', 'prepared transactions are disabled' ],
);
# The remote's own errors come back with the context line naming the
# connection; ours never need to hide there, so such an error whose
# message speaks of netrun_pool must be one of ours.  The context line
# alone proves nothing: api.c adds it to every error the worker relays,
# the worker's own included.  So an error classified here as the remote's
# is only a candidate; below, its message must also be in the remote's
# server log.
sub classify
{
	my ($state, $msg, $has_context) = @_;
	for my $e (@ours)
	{
		return ('ours', "$e->[0] $e->[1]") if $state eq $e->[0] && $msg =~ /^$e->[1]$/;
	}
	if ($has_context)
	{
		return (undef, "$state $msg") if $msg =~ /netrun_pool/ || $state eq 'XX000';
		(my $kind = substr($msg, 0, 120)) =~ s/"[^"]*"/"N"/g;
		$kind =~ s/\d+/N/g;
		return ('remote', "$state $kind");
	}
	for my $e (@postgres)
	{
		return ('postgres', "$e->[0] $e->[1]") if $state eq $e->[0] && $msg =~ /^$e->[1]$/;
	}
	return (undef, "$state $msg");
}

# --- the runs --------------------------------------------------------------
# One psql session per database: batch, measure, the same batch again,
# measure.  Memory and descriptors are read in the session itself, so that
# the backend measured is the one that made the calls.
my $measure = q{SELECT (SELECT sum(total_bytes) FROM pg_backend_memory_contexts) AS mem,
       substring(pg_read_file('/proc/' || worker_pid || '/status') FROM 'VmRSS:\s+(\d+) kB') AS rss,
       (SELECT count(*) FROM pg_ls_dir('/proc/' || worker_pid || '/fd')) AS fds
  FROM netrun_pool.worker_status()};

my %seen_kind;
my @unmatched;
# primary message => where it was first seen, for every "remote" error
my %remote_said;
my $errors_total = 0;
my $cases_total = 0;
my $longest_error = 0;
my $longest_text = '';

sub run_batches
{
	my ($dbname, $batch) = @_;
	my $driver = "$tmp/driver_$dbname.sql";
	open(my $fh, '>', $driver) or die;
	print $fh <<"SQL";
\\set VERBOSITY verbose
\\set ON_ERROR_STOP off
\\o /dev/null
\\i $batch
\\o
SELECT netrun_pool.clear_tenant() \\gset
$measure \\gset first_
\\echo MEASURE 1 :first_mem :first_rss :first_fds
\\o /dev/null
\\i $batch
\\o
SELECT netrun_pool.clear_tenant() \\gset
$measure \\gset second_
\\echo MEASURE 2 :second_mem :second_rss :second_fds
SQL
	close($fh);

	my ($out, $err) = ('', '');
	my $h = IPC::Run::run([ 'psql', '-X', '-q', '-d', $local->connstr($dbname), '-f', $driver ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default * 3));
	my %m;
	while ($out =~ /^MEASURE (\d) (\d+) (\d+) (\d+)$/mg)
	{
		$m{$1} = { mem => $2, rss => $3, fds => $4 };
	}

	# Split stderr into messages: each starts with "psql:FILE:LINE: LEVEL:",
	# and its primary message runs to the first DETAIL, HINT, CONTEXT,
	# LOCATION, QUERY or LINE (a message may hold newlines).
	my @blocks = split(/^(?=psql:[^\n]*?:\d+: [A-Z]+:  )/m, $err);
	for my $b (@blocks)
	{
		next unless $b =~ /^psql:[^\n]*?:\d+: (ERROR|FATAL|PANIC):  (\S{5}): /;
		my ($level, $state) = ($1, $2);
		my $rest = substr($b, $+[0]);
		my ($msg, $extra) = split(/\n(?=(?:DETAIL|HINT|CONTEXT|LOCATION|QUERY|STATEMENT):  |LINE \d+: )/, $rest, 2);
		$extra //= '';
		$errors_total++;
		# (a value of the remote's that did not convert here names its
		# column and the connection: a local error, PostgreSQL's own)
		my $has_context = $extra =~ /^CONTEXT:  (?:.*\n)*?.*netrun_pool connection "/m
		  && $extra !~ /^CONTEXT:  column \d+ \(".*" in the column list, ".*" on the remote\) of a row from netrun_pool connection "/m;
		my ($class, $kind) = classify($state, $msg, $has_context);
		$class = undef if $level ne 'ERROR';
		if (($class // '') eq 'ours')
		{
			# what we say, not what the remote or the parser echoes
			(my $said = "$msg\n$extra") =~ s/^(CONTEXT|LOCATION|LINE \d+):  .*$//mg;
			if (length($said) > $longest_error)
			{
				$longest_error = length($said);
				$longest_text = substr($said, 0, 300);
			}
		}
		($remote_said{ $msg =~ s/\n+\z//r } //= "$dbname: $state") if ($class // '') eq 'remote';
		$seen_kind{ ($class // 'UNMATCHED') . ': ' . substr($kind, 0, 120) }++;
		push @unmatched, "$dbname: $level $state " . substr($msg, 0, 300) . "\n" . substr($extra, 0, 500)
		  unless $class;
	}
	return (\%m, $out, $err);
}

my ($m_utf8, $out_utf8, $err_utf8) = run_batches('postgres', "$batchdir/batch_utf8.sql");
my ($m_ascii, $out_ascii, $err_ascii) = run_batches('asciidb', "$batchdir/batch_ascii.sql");
$cases_total = 4 * $ncases;

ok($m_utf8->{1} && $m_utf8->{2}, 'the UTF8 session lived through both batches')
  or diag(substr($err_utf8, -3000));
ok($m_ascii->{1} && $m_ascii->{2}, 'the SQL_ASCII session lived through both batches')
  or diag(substr($err_ascii, -3000));
note("$cases_total cases run, $errors_total errors, " . scalar(keys %seen_kind) . ' distinct kinds');
note("$_ x$seen_kind{$_}") for sort keys %seen_kind;
is(scalar(@unmatched), 0, 'every error is documented, PostgreSQL\'s own, or the remote\'s')
  or diag(join("\n", @unmatched[ 0 .. ($#unmatched < 40 ? $#unmatched : 39) ]));
ok($errors_total > $ncases, "the batches did raise errors ($errors_total)");
ok(scalar(grep { /^remote: / } keys %seen_kind) > 0, 'remote errors came back');

# An error is the remote's only if the remote raised it.  The remote logs
# every ERROR (log_min_messages is warning) and a FATAL such as
# pg_terminate_backend()'s, as "ERROR:  message" after the framework's
# log_line_prefix ('%m [%p] %q%a '), a message's further lines indented by
# a tab, and " at character N" appended if it has a position.  So every distinct primary message classified as the remote's
# must be one the remote logged.  An undocumented error raised by the
# worker itself (say a libpq failure it relays with a made-up SQLSTATE),
# or by our backend code while a relayed error's context is set, carries
# the connection's context line too and was classified as the remote's
# above; the remote never logged it, so it is listed here and this fails.
my %remote_logged;
{
	my $remote_log = slurp_file($remote->logfile);
	while ($remote_log =~
		/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] [^\n]*?(?:ERROR|FATAL):  ([^\n]*(?:\n\t[^\n]*)*)/mg)
	{
		(my $logged = $1) =~ s/\n\t/\n/g;
		# the log adds the error's position, which the client gets apart
		$logged =~ s/ at character \d+\z//;
		$remote_logged{$logged} = 1;
	}
}
my @not_logged = grep { !$remote_logged{$_} } sort keys %remote_said;
note(scalar(keys %remote_said) . ' distinct messages classified as the remote\'s, '
	  . scalar(keys %remote_logged) . ' distinct ERROR/FATAL messages in the remote\'s log');
is(scalar(@not_logged), 0, 'every error classified as the remote\'s is one the remote logged')
  or diag(join("\n", map { "$remote_said{$_}: " . substr($_, 0, 300) } @not_logged[ 0 .. ($#not_logged < 40 ? $#not_logged : 39) ]));
cmp_ok($longest_error, '<', 1000, "none of our errors echoes a huge input (longest $longest_error bytes)")
  or diag($longest_text);

# --- nothing broke -----------------------------------------------------------
my $log = slurp_file($local->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike($log, qr/was terminated/, 'no process "was terminated"');
unlike($log, qr/TRAP:|PANIC:/, 'no failed assertion, no PANIC');
is(NetrunTest::status_field($local, 'postgres', 'worker_pid'), $worker_pid, 'the worker kept its pid');
is(NetrunTest::status_field($local, 'postgres', 'state'), 'running', 'and still serves');

$local->safe_psql('postgres', "SELECT netrun_pool.release('r_sess')");
ok($local->poll_query_until('postgres',
		'SELECT bool_and(checked_out = 0 AND waiting = 0) FROM netrun_pool.pool_stats'),
	'afterwards nothing is checked out and no one waits, in every pool')
  or diag($local->safe_psql('postgres', 'SELECT name, checked_out, waiting FROM netrun_pool.pool_stats'));
my $over = $remote->safe_psql('postgres', q{
	SELECT string_agg(application_name || '=' || n, ' ') FROM (
	  SELECT application_name, count(*) AS n FROM pg_stat_activity
	   WHERE application_name LIKE 'netrun_pool:%' GROUP BY 1) s});
note("remote connections by pool: $over");
for my $pool (sort keys %pool_limit)
{
	# the remote keeps 63 bytes of an application_name
	my $app = substr("netrun_pool:$pool", 0, 63);
	my ($n) = $over =~ /(?:^| )\Q$app\E=(\d+)/;
	cmp_ok($n // 0, '<=', $pool_limit{$pool}, "the remote holds at most pool_max of $pool (" . ($n // 0) . ')');
}
my ($n_other) = $remote->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'netrun_pool:%' AND application_name NOT IN ('netrun_pool:r', 'netrun_pool:r_sess', left('netrun_pool:' || repeat('z', 63), 63))");
is($n_other, '0', 'no other pool holds connections on the remote');

# Deterministic answers after all that.
is($local->safe_psql('postgres', q{
	SELECT netrun_pool.fetchval('r',
	    (SELECT 'SELECT sum(x) FROM unnest(ARRAY[' || string_agg('$' || i, ', ') || ']::int[]) x'
	       FROM generate_series(1, 10000) i),
	    (SELECT array_agg(i::text) FROM generate_series(1, 10000) i))}),
	'50005000', '10,000 parameters travel and add up');
is($local->safe_psql('postgres', q{
	SELECT netrun_pool.fetchval('r',
	    (SELECT 'SELECT (ARRAY[' || string_agg('$' || i, ', ') || '])[65535]'
	       FROM generate_series(1, 65535) i),
	    array_fill('x'::text, ARRAY[65534]) || 'last'::text)}),
	'last', '65,535 parameters, the protocol\'s most, still work');
my ($ret, $out, $err) = $local->psql('postgres',
	q{SELECT netrun_pool.fetchval('r', 'SELECT 1', array_fill('1'::text, ARRAY[65536]))},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  54000: too many parameters: 65536/, '65,536 parameters: 54000');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval('rc', 'SELECT 40 + 2', read_only => true)"),
	'42', 'the cluster still serves');
is($local->safe_psql('asciidb', "SELECT netrun_pool.fetchval('r', 'SELECT ''still''')"),
	'still', 'calls from the SQL_ASCII database still serve');
is($local->safe_psql('postgres', "SELECT netrun_pool.fetchval(repeat('z', 63), 'SELECT 7')"),
	'7', 'the connection with the longest name serves');
($ret, $out, $err) = $local->psql('postgres', "SELECT netrun_pool.fetchval('huge_db', 'SELECT 1')");
like($err, qr/ERROR:  (could not connect to|netrun_pool connection "huge_db" is unavailable)/,
	'a startup packet the remote refuses: a documented connect error');

# --- no leak on the second batch --------------------------------------------
for my $m ([ 'UTF8', $m_utf8 ], [ 'SQL_ASCII', $m_ascii ])
{
	my ($db, $r) = @$m;
	next unless $r->{1} && $r->{2};
	note(sprintf('%s: backend memory %d -> %d bytes; worker VmRSS %d -> %d kB; worker fds %d -> %d',
			$db, $r->{1}{mem}, $r->{2}{mem}, $r->{1}{rss}, $r->{2}{rss}, $r->{1}{fds}, $r->{2}{fds}));
	cmp_ok($r->{2}{mem} - $r->{1}{mem}, '<', 1024 * 1024,
		"$db: the calling backend's memory grew less than 1 MB over the second batch");
	cmp_ok($r->{2}{rss} - $r->{1}{rss}, '<', 8 * 1024,
		"$db: the worker's RSS grew less than 8 MB over the second batch");
	cmp_ok(abs($r->{2}{fds} - $r->{1}{fds}), '<=', 3,
		"$db: the worker holds as many descriptors after the second batch (within 3)");
}

note(sprintf('%d s in all', time - $^T));
done_testing();
