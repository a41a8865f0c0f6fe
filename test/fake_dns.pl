#!/usr/bin/perl
# test/fake_dns.pl: a slow DNS server for tests and benchmarks (issue 18).
#
#   perl test/fake_dns.pl --name slow.netrun.test --delay-ms 3000 --ttl 60 \
#       [--address 127.0.0.1] [--port 53] [--max-seconds 3600]
#
# UDP only.  Every query waits --delay-ms, then gets its answer:
#   - an A query for --name (any case): 127.0.0.1, with TTL --ttl;
#   - any other type for --name (AAAA included): no answer, NOERROR (so a
#     resolver that asks for A and AAAA at once gets 127.0.0.1 and nothing
#     else);
#   - any other name: NXDOMAIN.
# Queries are served concurrently (each waits its own delay: a resolver's A
# and AAAA asked at once are both answered after one delay).  It answers
# only on --address (a loopback address; port 53 needs root), and ends by
# itself after --max-seconds, or on SIGTERM/SIGINT.
#
# It prints "ready ADDRESS PORT" once it listens, then one line per answer:
# "answer EPOCH NAME TYPE RCODE" (EPOCH: when the answer left), so a caller
# can count the lookups a run made.  Standard library only.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

my %opt = (address => '127.0.0.1', port => 53, 'delay-ms' => 0, ttl => 60,
	name => undef, 'max-seconds' => 3600);
GetOptions(\%opt, 'address=s', 'port=i', 'delay-ms=i', 'ttl=i', 'name=s', 'max-seconds=i')
  or die "usage: $0 --name NAME [--port N] [--delay-ms MS] [--ttl S] [--address A] [--max-seconds S]\n";
defined $opt{name} or die "$0: --name is required\n";
(my $want = lc $opt{name}) =~ s/\.$//;

my $sock = IO::Socket::INET->new(Proto => 'udp', LocalAddr => $opt{address},
	LocalPort => $opt{port}, ReuseAddr => 1)
  or die "$0: cannot bind udp $opt{address}:$opt{port}: $!\n";
$| = 1;
print "ready $opt{address} $opt{port}\n";

my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
my $end = time + $opt{'max-seconds'};
my @pending;    # [due, peer, packet, name, type, rcode], in arrival order (same delay: due order)
my $sel = IO::Select->new($sock);
my %TYPES = (1 => 'A', 28 => 'AAAA', 5 => 'CNAME', 15 => 'MX', 16 => 'TXT', 33 => 'SRV', 65 => 'HTTPS');

# The answer to one query, or undef for a packet that is not a query.
sub reply {
	my ($q) = @_;
	return undef if length($q) < 12;
	my ($id, $flags, $qd) = unpack('n n n', $q);
	return undef if ($flags & 0x8000) || $qd < 1;    # a response, or no question
	my ($pos, @labels) = (12);
	while (1) {
		return undef if $pos >= length($q);
		my $len = ord(substr($q, $pos, 1));
		$pos++;
		last if $len == 0;
		return undef if $len > 63 || $pos + $len > length($q);
		push @labels, substr($q, $pos, $len);
		$pos += $len;
	}
	return undef if $pos + 4 > length($q);
	my ($qtype, $qclass) = unpack('n n', substr($q, $pos, 4));
	my $question = substr($q, 12, $pos + 4 - 12);
	my $name = lc join('.', @labels);
	my $type = $TYPES{$qtype} // "TYPE$qtype";
	my $rd = $flags & 0x0100;
	my $opcode = $flags & 0x7800;
	my ($rcode, $answer, $an) = (0, '', 0);
	if ($name ne $want) {
		$rcode = 3;    # NXDOMAIN
	} elsif ($qtype == 1 && $qclass == 1) {
		# a pointer to the question's name, A, IN, TTL, 4 bytes: 127.0.0.1
		$answer = pack('n n n N n C4', 0xc00c, 1, 1, $opt{ttl}, 4, 127, 0, 0, 1);
		$an = 1;
	}
	# QR, the query's opcode, AA, its RD, RA, the rcode
	my $rflags = 0x8000 | $opcode | 0x0400 | $rd | 0x0080 | $rcode;
	my $packet = pack('n n n n n n', $id, $rflags, 1, $an, 0, 0) . $question . $answer;
	return ($packet, $name, $type, $rcode == 3 ? 'NXDOMAIN' : 'NOERROR');
}

while (!$stop && time < $end) {
	my $now = time;
	while (@pending && $pending[0][0] <= $now) {
		my $p = shift @pending;
		$sock->send($p->[2], 0, $p->[1]);
		printf "answer %.3f %s %s %s\n", time, @{$p}[3, 4, 5];
	}
	my $wait = @pending ? $pending[0][0] - $now : 0.5;
	$wait = 0.5 if $wait > 0.5;
	$wait = 0 if $wait < 0;
	next unless $sel->can_read($wait);
	my $peer = $sock->recv(my $q, 4096);
	next unless defined $peer;
	my ($packet, $name, $type, $rcode) = reply($q);
	next unless defined $packet;
	push @pending, [time + $opt{'delay-ms'} / 1000, $peer, $packet, $name, $type, $rcode];
}
