# NetrunTest: the two-server harness every TAP test of netrun_pool uses.
#
# A "local" server preloads netrun_pool; a "remote" server is a plain
# PostgreSQL that takes TCP connections on 127.0.0.1.  Both live in the
# test's temp dir on free ports chosen by PostgreSQL::Test::Cluster, and
# are stopped when the test ends.
package NetrunTest;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A server with netrun_pool preloaded.  %opts: database (the worker's
# database, default postgres), conf (extra postgresql.conf lines).
sub start_local
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $db = $opts{database} // 'postgres';

	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'netrun_pool'
netrun_pool.database = '$db'
max_worker_processes = 16
log_line_prefix = '%m [%p] %b '
# production behaviour: the framework turns this off by default
restart_after_crash = on
});
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	$node->start;
	return $node;
}

# A plain server listening on 127.0.0.1 (as well as its socket).
# %opts: conf (extra postgresql.conf lines).
sub start_remote
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'");
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	$node->start;
	return $node;
}

# A key file for netrun_pool.secret_key_file: 32 random bytes as hex,
# readable only by the owner.
sub write_key_file
{
	my ($path) = @_;
	my $hex = join('', map { sprintf('%02x', int(rand(256))) } 1 .. 32);
	open(my $fh, '>', $path) or die "could not write $path: $!";
	print $fh $hex;
	close($fh);
	chmod 0600, $path;
	return $path;
}

# Make TCP connections to the node authenticate with scram-sha-256, while
# the test's own socket connections stay trusted.
sub require_scram
{
	my ($node) = @_;
	open(my $fh, '>', $node->data_dir . '/pg_hba.conf') or die $!;
	print $fh "local all all trust\n";
	print $fh "host all all 127.0.0.1/32 scram-sha-256\n";
	close($fh);
	$node->append_conf('postgresql.conf', "password_encryption = 'scram-sha-256'");
	$node->reload;
	return;
}

# libpq conninfo for reaching a remote over TCP loopback.
sub tcp_conninfo
{
	my ($node, $dbname) = @_;
	return 'host=127.0.0.1 port=' . $node->port . ' dbname=' . ($dbname // 'postgres');
}

# Run "psql -c $sql" against $dbname in the background; its output and
# errors land in the scalars $out_ref and $err_ref (reset here).  Returns
# the IPC::Run harness: ->finish waits for it.  @opts go to psql (-U ...).
sub background_call
{
	my ($node, $dbname, $sql, $out_ref, $err_ref, @opts) = @_;
	$$out_ref = '';
	$$err_ref = '';
	return IPC::Run::start(
		[ 'psql', '-X', '-At', @opts, '-d', $node->connstr($dbname), '-c', $sql ],
		'>', $out_ref, '2>', $err_ref);
}

# Wait (bounded by the framework's timeout) until worker_status().state,
# read in $dbname, equals $state.  Tolerates the server being down for a
# while, as after a crash-restart.
sub wait_for_state
{
	my ($node, $dbname, $state) = @_;
	return $node->poll_query_until($dbname,
		"SELECT state FROM netrun_pool.worker_status()", $state);
}

# One field of worker_status(), read in $dbname.
sub status_field
{
	my ($node, $dbname, $field) = @_;
	return $node->safe_psql($dbname,
		"SELECT $field FROM netrun_pool.worker_status()");
}

# How many times $pattern occurs in the node's server log.
sub log_count
{
	my ($node, $pattern) = @_;
	my $log = slurp_file($node->logfile);
	my @hits = ($log =~ /$pattern/g);
	return scalar @hits;
}

1;
