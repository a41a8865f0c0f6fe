# The documentation, run: every code block of README.md and docs/*.md is
# either run here, against real servers, or marked as not run with a reason;
# every link stays inside the repository and reaches a file and heading that
# exist; every setting, function, view column and error message the code
# defines is in docs/reference.md (log messages in docs/operations.md).
#
# A code block is marked by an HTML comment on the line before its fence
# (blank lines may come between):
#
#   <!-- test: sh -->                     run with bash -e
#   <!-- test: sql NODE [DB] [as ROLE] [errors] -->
#                                         fed to psql on NODE (local, remote,
#                                         nopreload), database DB (postgres),
#                                         as ROLE, the way a user pastes it;
#                                         an error fails the test unless the
#                                         marker says "errors"
#   <!-- test: conf NODE -->              appended to NODE's postgresql.conf,
#                                         then NODE restarts
#   <!-- test: output -->                 lines that must appear, in this
#                                         order, in what the block before it
#                                         printed (psql's stdout and stderr)
#   <!-- not run: REASON -->              shown, not run
#
# A block without a marker fails the test.  Blocks run in reading order:
# README.md, then docs/reference.md, tenancy.md, operations.md,
# architecture.md, benchmarks.md, reliability.md, then any other docs/*.md,
# against one set of servers, so a later block may use what an earlier one
# made (the Quick start's remote and connection "orders").
#
# The servers: "local" starts as a plain PostgreSQL; README's installation
# block preloads netrun_pool and restarts it.  "remote" listens on
# 127.0.0.1 and asks for a scram-sha-256 password over TCP.  "nopreload" is
# made on first use, without netrun_pool in shared_preload_libraries.
#
# The documents use real-looking places; before a block runs they become the
# test's (an executed block still holding one of them fails the test):
#
#   /etc/postgresql/15/main/postgresql.conf   local's postgresql.conf
#   pg_ctlcluster 15 main restart             pg_ctl restart of local
#   sudo -u postgres                          (nothing: the test's user)
#   chown postgres:                           chown to the test's user
#   /etc/postgresql/                          a folder of the test's
#   host=10.0.0.5 port=5432, 10.0.0.5:5432    the remote's address and port
#   (10.0.0.6 likewise, as a second address of the same remote)
#   127.0.0.1:9187                            local's HTTP endpoint, on a free port
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use NetrunTest;

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my @order = qw(reference tenancy operations architecture benchmarks reliability);

# --- the documents ----------------------------------------------------------
my @docs = ('README.md');
{
	my %seen;
	for my $name (@order)
	{
		my $f = "docs/$name.md";
		next unless -f "$root/$f";
		push @docs, $f;
		$seen{$f} = 1;
	}
	opendir(my $dh, "$root/docs") or die "no docs/ folder: $!";
	push @docs, map { "docs/$_" } sort grep { /\.md$/ && !$seen{"docs/$_"} } readdir($dh);
	closedir($dh);
}
ok(-f "$root/docs/$_.md", "docs/$_.md exists") for @order;

sub read_text
{
	my ($path) = @_;
	open(my $fh, '<:encoding(UTF-8)', $path) or die "could not read $path: $!";
	local $/;
	my $text = <$fh>;
	close($fh);
	return $text;
}

# Code blocks with their markers, and the text outside them.
sub parse_doc
{
	my ($file) = @_;
	my @lines = split /\n/, read_text("$root/$file"), -1;
	my (@blocks, @prose);
	my $last_nonblank = '';
	for (my $i = 0; $i < @lines; $i++)
	{
		my $line = $lines[$i];
		if ($line =~ /^\s*(`{3,}|~{3,})\s*([\w+-]*)/)
		{
			my ($fence, $lang, $start) = ($1, $2, $i + 1);
			my @body;
			$i++;
			while ($i < @lines && $lines[$i] !~ /^\s*\Q$fence\E\s*$/)
			{
				push @body, $lines[$i];
				$i++;
			}
			my $marker = $last_nonblank =~ /^\s*<!--\s*((?:test|not run):.*?)\s*-->\s*$/ ? $1 : undef;
			push @blocks, { file => $file, line => $start, lang => $lang,
				text => join("\n", @body) . "\n", marker => $marker };
			$last_nonblank = '```';
			push @prose, '';
			next;
		}
		push @prose, $line;
		$last_nonblank = $line if $line =~ /\S/;
	}
	return (\@blocks, \@prose);
}

my (%blocks, %prose);
for my $file (@docs)
{
	my ($b, $p) = parse_doc($file);
	$blocks{$file} = $b;
	$prose{$file} = $p;
}

# --- every block is marked --------------------------------------------------
my @unmarked = map { "$_->{file}:$_->{line}" } grep { !defined $_->{marker} } map { @{ $blocks{$_} } } @docs;
is(join(', ', @unmarked), '',
	'every code block says how it is tested (<!-- test: ... --> or <!-- not run: reason -->)');
my @bad_markers;
for my $b (map { @{ $blocks{$_} } } @docs)
{
	next unless defined $b->{marker};
	my $m = $b->{marker};
	next if $m =~ /^not run:\s*\S/;
	next if $m =~ /^test:\s*(sh|output|conf (local|remote|nopreload))$/;
	next if $m =~ /^test:\s*sql (local|remote|nopreload)( \w+)?( as \w+)?( errors)?$/;
	push @bad_markers, "$b->{file}:$b->{line} ($m)";
}
is(join(', ', @bad_markers), '', 'every marker is one the test knows');

# --- links ------------------------------------------------------------------
# GitHub's heading anchors: lower case, punctuation dropped, spaces to "-".
sub anchors_of
{
	my ($file) = @_;
	my %anchors;
	my %count;
	$prose{$file} //= (parse_doc($file))[1];
	for my $line (@{ $prose{$file} })
	{
		next unless $line =~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
		my $slug = lc $1;
		$slug =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;
		$slug =~ s/[^\w\- ]//g;
		$slug =~ s/ /-/g;
		my $n = $count{$slug}++;
		$anchors{ $n ? "$slug-$n" : $slug } = 1;
	}
	return \%anchors;
}

# "a/b/../c" without asking the file system (the file may not exist).
sub resolve_path
{
	my ($path) = @_;
	my @out;
	for my $part (split m{/}, $path)
	{
		next if $part eq '' || $part eq '.';
		if ($part eq '..') { pop @out }
		else { push @out, $part }
	}
	return '/' . join('/', @out);
}

my @bad_links;
for my $file (@docs)
{
	my $n = 0;
	for my $line (@{ $prose{$file} })
	{
		$n++;
		(my $text = $line) =~ s/`[^`]*`//g;    # code spans are not links
		my @targets;
		push @targets, $1 while $text =~ /\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
		push @targets, $1 if $text =~ /^\s*\[[^\]]+\]:\s*(\S+)/;
		(my $bare = $text) =~ s/\]\([^)]*\)//g;
		push @bad_links, "$file:$n: $1 (a web address)" while $bare =~ m{(\b(?:https?|ftp)://\S+|www\.\S+)}g;
		for my $target (@targets)
		{
			if ($target =~ /^[a-z][a-z0-9+.-]*:/i)
			{
				push @bad_links, "$file:$n: $target (outside the repository)";
				next;
			}
			my ($path, $anchor) = $target =~ /^([^#]*)(?:#(.*))?$/;
			my $dest = $file;
			if ($path ne '')
			{
				my $abs = resolve_path(dirname("$root/$file") . "/$path");
				if (index("$abs/", "$root/") != 0)
				{
					push @bad_links, "$file:$n: $target (outside the repository)";
					next;
				}
				if (!-e $abs)
				{
					push @bad_links, "$file:$n: $target (no such file)";
					next;
				}
				$dest = substr($abs, length($root) + 1);
			}
			next unless defined $anchor && $anchor ne '';
			if ($dest !~ /\.md$/ || !-f "$root/$dest")
			{
				push @bad_links, "$file:$n: $target (an anchor into something that is not a markdown file)";
				next;
			}
			$prose{$dest} //= (parse_doc($dest))[1];
			push @bad_links, "$file:$n: $target (no such heading)"
			  unless anchors_of($dest)->{$anchor};
		}
	}
}
is(join("\n", @bad_links), '', 'every link reaches a file and heading of this repository');

# --- what the code defines is documented -------------------------------------
my $reference = read_text("$root/docs/reference.md");
my $operations = read_text("$root/docs/operations.md");
my $guc_c = read_text("$root/src/guc.c");
my $install_sql = join('', map { read_text($_) } glob("$root/sql/netrun_pool--*.sql"));

my @settings = $guc_c =~ /DefineCustom\w+Variable\(\s*"(netrun_pool\.\w+)"/g;
ok(@settings > 10, 'settings found in src/guc.c');
my @undocumented = grep { $reference !~ /^\|\s*`\Q$_\E`\s*\|/m } @settings;
is(join(', ', @undocumented), '', 'every setting has a row in docs/reference.md');

my %objects;
$objects{$1} = 1 while $install_sql =~ /CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|VIEW)\s+netrun_pool\.([a-z]\w*)/g;
ok(keys %objects > 30, 'functions and views found in the install script');
@undocumented = grep { $reference !~ /`(?:netrun_pool\.)?\Q$_\E\b/ } sort keys %objects;
is(join(', ', @undocumented), '', 'every function and view is in docs/reference.md');

my @columns;
while ($install_sql =~ /CREATE FUNCTION netrun_pool\.(pool_stats|health)\((.*?)\)\s*RETURNS/gs)
{
	my $args = $2;
	push @columns, $1 while $args =~ /\bOUT\s+(\w+)/g;
}
@undocumented = grep { $reference !~ /`\Q$_\E`/ } @columns;
is(join(', ', @undocumented), '', 'every column of pool_stats and health is in docs/reference.md');

# Messages: from ereport/request_fail/RAISE, as patterns; documented ones are
# the backquoted texts of the table under "## Errors" (and, for the server
# log, of docs/operations.md).
sub c_string
{
	my ($s) = @_;
	$s =~ s/\\"/"/g;
	$s =~ s/\\\\/\\/g;
	return $s;
}

sub message_pattern
{
	my ($fmt, $placeholder) = @_;
	my @parts = split /($placeholder)/, $fmt;
	return join('', map { /^(?:$placeholder)$/ ? '.*?' : quotemeta($_) } @parts);
}

my (@errors, @logs);
for my $c (glob("$root/src/*.c"))
{
	my $src = read_text($c);
	my $base = substr($c, length($root) + 1);
	while ($src =~ /ereport\(\s*(\w+)\s*,\s*\((?:(?!ereport\().){0,300}?\berrmsg\("((?:[^"\\]|\\.)*)"/gs)
	{
		my ($level, $fmt) = ($1, c_string($2));
		my $entry = [ $base, $fmt, message_pattern($fmt, '%(?:\.\d+)?[sdmuf]|%ld') ];
		if ($level eq 'ERROR' || $level eq 'FATAL') { push @errors, $entry }
		elsif ($level eq 'LOG' || $level eq 'WARNING') { push @logs, $entry }
	}
	while ($src =~ /GUC_check_errmsg\("((?:[^"\\]|\\.)*)"/g)
	{
		my $fmt = c_string($1);
		push @errors, [ $base, $fmt, message_pattern($fmt, '%(?:\.\d+)?[sdmuf]|%ld') ];
	}
	while ($src =~ /request_fail\([^,]+,\s*"(\w{5})",\s*(?:psprintf\()?\s*"((?:[^"\\]|\\.)*)"/gs)
	{
		my $fmt = c_string($2);
		push @errors, [ $base, $fmt, message_pattern($fmt, '%(?:\.\d+)?[sdmuf]|%ld') ];
	}
}
while ($install_sql =~ /RAISE\s+(EXCEPTION|WARNING|NOTICE)\s+'((?:[^']|'')*)'/g)
{
	my ($level, $fmt) = ($1, $2);
	$fmt =~ s/''/'/g;
	next unless $level eq 'EXCEPTION';
	push @errors, [ 'sql/netrun_pool--1.0.sql', $fmt, message_pattern($fmt, '%') ];
}
ok(@errors > 60, 'error messages found in src/ and sql/ (' . scalar(@errors) . ')');

sub quoted_texts
{
	my ($text) = @_;
	my @q;
	push @q, $1 while $text =~ /`([^`]+)`/g;
	return @q;
}
my ($errors_table) = $reference =~ /^## Errors\n(.*?)(?=^## |\z)/ms;
my @documented = quoted_texts($errors_table // '');
@undocumented = map { "$_->[0]: $_->[1]" }
  grep { my $re = $_->[2]; !grep { /^$re$/ } @documented } @errors;
is(join("\n", @undocumented), '', 'every error message is in the Errors table of docs/reference.md');
my ($log_table) = $operations =~ /^## Server log messages\n(.*?)(?=^## |\z)/ms;
my @log_documented = quoted_texts($log_table // '');
@undocumented = map { "$_->[0]: $_->[1]" }
  grep { my $re = $_->[2]; !grep { /^$re$/ } @log_documented } @logs;
is(join("\n", @undocumented), '', 'every LOG and WARNING message is in docs/operations.md');

# bench/run.sh rewrites the text between these markers after a full run.
for my $pair ([ 'README.md', 'bench:readme' ], [ 'docs/benchmarks.md', 'bench:latest' ])
{
	my $text = read_text("$root/$pair->[0]");
	my @starts = $text =~ /<!-- \Q$pair->[1]\E:start -->/g;
	my @ends = $text =~ /<!-- \Q$pair->[1]\E:end -->/g;
	ok(@starts == 1 && @ends == 1 && $text =~ /<!-- \Q$pair->[1]\E:start -->.*<!-- \Q$pair->[1]\E:end -->/s,
		"$pair->[0] has one pair of $pair->[1] markers for bench/run.sh");
}

# --- the servers ------------------------------------------------------------
my $user = getpwuid($<);
my $scratch = PostgreSQL::Test::Utils::tempdir();
my $etc = "$scratch/etcpg";
make_path($etc);

my $remote = NetrunTest::start_remote('remote');
NetrunTest::require_scram($remote);
my $local = PostgreSQL::Test::Cluster->new('local');
$local->init;
$local->append_conf('postgresql.conf', "max_worker_processes = 16\n");
$local->start;
my $nopreload;
my %node = (local => $local, remote => $remote);

sub node_named
{
	my ($name) = @_;
	if ($name eq 'nopreload' && !$nopreload)
	{
		$nopreload = PostgreSQL::Test::Cluster->new('nopreload');
		$nopreload->init;
		$nopreload->start;
		$node{nopreload} = $nopreload;
	}
	return $node{$name};
}

my $http_port = PostgreSQL::Test::Cluster::get_free_port();

sub substitute
{
	my ($text) = @_;
	my $rport = $remote->port;
	my $conf = $local->data_dir . '/postgresql.conf';
	my $restart = 'pg_ctl -D ' . $local->data_dir . ' -l ' . $local->logfile . ' -w restart';
	$text =~ s{/etc/postgresql/15/main/postgresql\.conf}{$conf}g;
	$text =~ s{pg_ctlcluster 15 main restart}{$restart}g;
	$text =~ s{sudo -u postgres }{}g;
	$text =~ s{chown postgres:}{chown $user:}g;
	$text =~ s{/etc/postgresql/}{$etc/}g;
	$text =~ s{host=10\.0\.0\.[56] port=5432\b}{host=127.0.0.1 port=$rport}g;
	$text =~ s{\b10\.0\.0\.[56]:5432\b}{127.0.0.1:$rport}g;
	$text =~ s{\b127\.0\.0\.1:9187\b}{127.0.0.1:$http_port}g;
	return $text;
}

# --- the blocks, in reading order -------------------------------------------
my $previous;    # what the last block that ran printed
for my $b (map { @{ $blocks{$_} } } @docs)
{
	my $m = $b->{marker} // next;
	next if $m =~ /^not run:/;
	my $where = "$b->{file}:$b->{line}";

	if ($m =~ /^test:\s*output$/)
	{
		if (!defined $previous)
		{
			fail("$where: an output block follows a block that ran");
			next;
		}
		my @have = grep { /\S/ } map { s/\s+$//r } split /\n/, $previous;
		my @want = grep { /\S/ } map { s/\s+$//r } split /\n/, $b->{text};
		my ($i, $missing) = (0, undef);
		for my $w (@want)
		{
			$i++ while $i < @have && $have[$i] ne $w;
			if ($i >= @have) { $missing = $w; last }
			$i++;
		}
		ok(!defined $missing, "$where: the output shown is what the block before it printed")
		  or diag("not found (in this order): $missing\nprinted:\n$previous");
		next;
	}

	my $text = substitute($b->{text});
	if ($text =~ m{(10\.0\.0\.\d+|/etc/postgresql|pg_ctlcluster|sudo |:9187\b)})
	{
		fail("$where: a place the test does not substitute: $1");
		$previous = undef;
		next;
	}

	my ($out, $ok) = ('', 0);
	if ($m =~ /^test:\s*sh$/)
	{
		local $ENV{PGHOST} = $local->host;
		local $ENV{PGPORT} = $local->port;
		local $ENV{PGDATABASE} = 'postgres';
		my $h = IPC::Run::start([ 'bash', '-e', '-o', 'pipefail', '-c', "cd '$scratch'\n$text" ],
			'<', \'', '>&', \$out, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		$ok = eval { $h->finish } && $h->result == 0;
		ok($ok, "$where: sh") or diag("ran:\n$text\nprinted:\n$out");
	}
	elsif ($m =~ /^test:\s*conf (\w+)$/)
	{
		my $n = node_named($1);
		$n->append_conf('postgresql.conf', $text);
		$ok = eval { $n->restart; 1 };
		ok($ok, "$where: conf $1, then a restart") or diag($@);
	}
	elsif ($m =~ /^test:\s*sql (\w+)(?: (?!as\b|errors\b)(\w+))?(?: as (\w+))?( errors)?$/)
	{
		my ($name, $db, $role, $errors) = ($1, $2 // 'postgres', $3, $4);
		my $n = node_named($name);
		my @cmd = ('psql', '-X', '-d', $n->connstr($db), ($role ? ('-U', $role) : ()),
			'-v', 'ON_ERROR_STOP=' . ($errors ? 0 : 1));
		my $input = $text;
		my $h = IPC::Run::start(\@cmd, '<', \$input, '>&', \$out,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		$ok = eval { $h->finish } && $h->result == 0;
		$ok &&= $out !~ /^(ERROR|FATAL|PANIC):/m unless $errors;
		ok($ok, "$where: sql on $name" . ($role ? " as $role" : ''))
		  or diag("ran:\n$text\nprinted:\n$out");
	}
	note("$where printed:\n$out");
	$previous = $out;
}

done_testing();
