/*-------------------------------------------------------------------------
 *
 * module.c
 *	  The loadable module's entry point: _PG_init.
 *
 * Owns the order in which netrun_pool hooks itself into the server.  It
 * must stay tiny: every real decision lives in the file that owns it
 * (GUCs in guc.c, shared memory in shmem.c, processes in launcher.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "netrun_pool.h"
#include "tenant.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * pg_upgrade starts the server with our library preloaded; nothing of
	 * ours may run then, not even a worker registration.
	 */
	if (IsBinaryUpgrade)
		return;

	netrun_define_gucs();

	/* Statements may carry passwords, preloaded or not. */
	netrun_redact_install_hook();

	/* The tenant setting is guarded wherever the library is loaded. */
	tenant_install_hooks();

	/*
	 * Loaded on demand (CREATE EXTENSION or a function call without
	 * shared_preload_libraries): the SQL objects still work, but there is
	 * no shared memory and no worker.  Functions that need them say so via
	 * netrun_require_shared().
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	netrun_shmem_install_hooks();
	netrun_register_launcher();
}
