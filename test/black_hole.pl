#!/usr/bin/perl
# test/black_hole.pl: a loopback TCP port that drops every SYN (issue 18).
#
#   perl test/black_hole.pl --port N [--address 127.0.0.1] [--max-seconds 3600]
#
# It listens with a backlog of 0, never accepts, and connects to itself
# until a connect no longer completes: the accept queue is then full, and
# the kernel drops every further SYN to the port.  A client's connect()
# there hangs in SYN-SENT, retrying, until its own timeout, as against a
# host behind a firewall that drops packets; nothing leaves loopback, and
# no firewall rule is needed.  (A listener that accepts and never answers
# is another fault: the connect succeeds and the startup packet waits.)
#
# Prints "ready ADDRESS PORT" once the queue is full; ends by itself after
# --max-seconds, or on SIGTERM/SIGINT.  Standard library only.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my %opt = (address => '127.0.0.1', port => undef, 'max-seconds' => 3600);
GetOptions(\%opt, 'address=s', 'port=i', 'max-seconds=i')
  or die "usage: $0 --port N [--address A] [--max-seconds S]\n";
defined $opt{port} or die "$0: --port is required\n";

my $listener = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => $opt{address},
	LocalPort => $opt{port}, ReuseAddr => 1)
  or die "$0: cannot bind $opt{address}:$opt{port}: $!\n";
# (IO::Socket's Listen => 0 would mean its default backlog of 5)
listen($listener, 0) or die "$0: cannot listen on $opt{address}:$opt{port}: $!\n";

# Fill the accept queue: each connect that completes takes a place in it;
# the first that times out shows it full.
my @held;
for (1 .. 16) {
	my $c = IO::Socket::INET->new(PeerAddr => $opt{address}, PeerPort => $opt{port},
		Proto => 'tcp', Timeout => 0.3);
	last unless $c;
	push @held, $c;
}
die "$0: the accept queue of $opt{address}:$opt{port} never filled\n" if @held >= 16;

$| = 1;
print "ready $opt{address} $opt{port}\n";
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
my $end = time + $opt{'max-seconds'};
sleep 0.2 while !$stop && time < $end;
