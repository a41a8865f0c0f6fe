# contrib/prometheus/ checked by Debian's promtool: the scrape config and
# the alerting rules are valid, and the rules' unit tests pass (each alert
# fires on the series that should fire it, after its "for", and not on a
# healthy pool).  The alerts' metric names are ones /metrics serves
# (t/020_http.pl runs Prometheus itself against the endpoint).  Also
# contrib/kubernetes/probes.yaml probes the endpoint's paths.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $dir = "$root/contrib/prometheus";

plan skip_all => 'promtool is not installed' unless -x '/usr/bin/promtool';

sub promtool
{
	my @args = @_;
	my ($out, $err) = ('', '');
	# promtool resolves rule_files against the current directory
	my $ok = IPC::Run::run([ 'promtool', @args ], '>', \$out, '2>', \$err, init => sub { chdir $dir or die $! });
	return ($ok, "$out$err");
}

my ($ok, $out) = promtool('check', 'config', 'prometheus.yml');
ok($ok, 'promtool check config prometheus.yml') or diag($out);
like($out, qr/SUCCESS: 1 rule files found/, 'the config loads the rules file');

($ok, $out) = promtool('check', 'rules', 'netrun_pool.rules.yml');
ok($ok, 'promtool check rules netrun_pool.rules.yml') or diag($out);
like($out, qr/SUCCESS: 6 rules found/, 'six alerting rules');

($ok, $out) = promtool('test', 'rules', 'netrun_pool.rules.test.yml');
ok($ok, 'promtool test rules netrun_pool.rules.test.yml') or diag($out);

# Every alert has a unit test, and uses only series netrun_pool serves (or
# Prometheus' own "up").
my $rules = slurp_file("$dir/netrun_pool.rules.yml");
my $tests = slurp_file("$dir/netrun_pool.rules.test.yml");
my @alerts = $rules =~ /^\s*- alert: (\w+)$/mg;
is(scalar(@alerts), 6, 'six alerts');
for my $alert (@alerts)
{
	like($tests, qr/alertname: \Q$alert\E$/m, "$alert has a unit test");
}
my $families = slurp_file("$root/src/views.c");
my @exprs = $rules =~ /^\s*expr: (.*)$/mg;
for my $expr (@exprs)
{
	for my $metric ($expr =~ /\b(netrun_pool_\w+)/g)
	{
		like($families, qr/\b\Q$metric\E\b/, "$metric in an alert is a metric views.c renders");
	}
}

my $k8s = slurp_file("$root/contrib/kubernetes/probes.yaml");
like($k8s, qr/readinessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/ready\n/, 'the readiness probe asks /ready');
like($k8s, qr/livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: \/alive\n/, 'the liveness probe asks /alive');

done_testing();
