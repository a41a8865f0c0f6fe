# netrun_pool: PGXS build, plus the test targets described in docs/reliability.md.

EXTENSION    = netrun_pool
MODULE_big   = netrun_pool
OBJS         = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA         = $(wildcard sql/netrun_pool--*.sql)
PGFILEDESC   = "netrun_pool - shared pool of remote PostgreSQL connections"

PG_CONFIG   ?= pg_config
PG_CPPFLAGS  = -I$(srcdir)/src -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)
SHLIB_LINK   = -lcrypto -lcares -lmicrohttpd
# Warning-free is a rule, not a wish.  ASSERT=1 turns on our Asserts (and
# those of inline server functions) against a non-assert server build.
PG_CFLAGS   += -Wall -Wextra -Werror -Wno-unused-parameter
ifeq ($(ASSERT),1)
PG_CPPFLAGS += -DUSE_ASSERT_CHECKING
endif

# Tests are discovered from their folders, never listed by hand.
REGRESS_TESTS   = $(sort $(basename $(notdir $(wildcard sql_tests/*.sql))))
ISOLATION_TESTS = $(sort $(basename $(notdir $(wildcard specs/*.spec))))

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on every header,
# or a changed struct leaves objects built against its old layout.
$(OBJS): $(wildcard src/*.h)

pgxsdir      = $(dir $(PGXS))../..
TEST_CONF    = $(CURDIR)/test/netrun_pool.conf
REGRESS_DIR  = $(CURDIR)/build/regress
ISO_DIR      = $(CURDIR)/build/isolation
TAP_DIR      = $(CURDIR)/build/tap
# The servers' binaries: make test-valgrind points this at a wrapper dir.
TEST_BINDIR ?= $(bindir)

# pg_regress in PostgreSQL 15 reads <inputdir>/sql and <inputdir>/expected;
# stage links so the scripts can live in sql_tests/ (sql/ holds the install
# scripts).
# The instance gets a secret key file of its own (mode 600).
test-regress:
	rm -rf $(REGRESS_DIR) && mkdir -p $(REGRESS_DIR)
	ln -s $(CURDIR)/sql_tests $(REGRESS_DIR)/sql
	ln -s $(CURDIR)/expected $(REGRESS_DIR)/expected
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $(REGRESS_DIR)/secret.key)
	{ cat $(TEST_CONF); echo "netrun_pool.secret_key_file = '$(REGRESS_DIR)/secret.key'"; } \
	  > $(REGRESS_DIR)/netrun_pool.conf
	$(pgxsdir)/src/test/regress/pg_regress \
	  --temp-instance=$(REGRESS_DIR)/instance --temp-config=$(REGRESS_DIR)/netrun_pool.conf \
	  --inputdir=$(REGRESS_DIR) --outputdir=$(REGRESS_DIR) \
	  --bindir=$(TEST_BINDIR) --dbname=contrib_regression --load-extension=plpgsql \
	  $(REGRESS_TESTS)

test-isolation:
	rm -rf $(ISO_DIR) && mkdir -p $(ISO_DIR)
	ln -s $(CURDIR)/specs $(ISO_DIR)/specs
	ln -s $(CURDIR)/expected $(ISO_DIR)/expected
	$(pgxsdir)/src/test/isolation/pg_isolation_regress \
	  --temp-instance=$(ISO_DIR)/instance --temp-config=$(TEST_CONF) \
	  --inputdir=$(ISO_DIR) --outputdir=$(ISO_DIR) \
	  --bindir=$(TEST_BINDIR) --dbname=contrib_regression \
	  $(ISOLATION_TESTS)

# TAP tests start their own servers (PostgreSQL::Test::Cluster).
test-tap:
	rm -rf $(TAP_DIR) && mkdir -p $(TAP_DIR)
	cd $(CURDIR) && TESTDIR='$(TAP_DIR)' PATH="$(TEST_BINDIR):$(bindir):$$PATH" \
	  PG_REGRESS='$(pgxsdir)/src/test/regress/pg_regress' \
	  top_builddir='$(TAP_DIR)' \
	  $(PROVE) -I $(pgxsdir)/src/test/perl -I $(CURDIR)/t $(PROVE_FLAGS) \
	  $(if $(PROVE_TESTS),$(PROVE_TESTS),t/*.pl)

test: test-regress test-isolation test-tap

# The same suites with every server that preloads netrun_pool (postmaster,
# launcher, worker, backends) under valgrind memcheck, against a private
# copy of the install (so a concurrent "make install" cannot swap the
# library under a long run).  Slow: see docs/reliability.md, "Under valgrind".
# VG_SUITES picks suites (default "workload regress isolation tap"; the
# workload is a short script taking every call path), PROVE_TESTS TAP
# files, VG_OPTS adds valgrind options (e.g. --track-origins=yes).
VG_DIR = $(CURDIR)/build/valgrind
test-valgrind: all
	rm -rf $(VG_DIR)
	$(MAKE) -s install DESTDIR=$(VG_DIR)/root
	VG_DIR='$(VG_DIR)' PG_BINDIR='$(bindir)' PG_PKGLIBDIR='$(pkglibdir)' \
	  PG_SHAREDIR='$(datadir)' MAKE='$(MAKE)' \
	  $(CURDIR)/scripts/valgrind_suites.sh

clean: clean-tests
clean-tests:
	rm -rf build

.PHONY: test test-regress test-isolation test-tap test-valgrind clean-tests
