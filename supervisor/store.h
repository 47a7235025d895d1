/*
 * The durable store: the session table, the CLI's transcripts, the tool
 * audit and the session leases.  A narrow interface of plain records (text
 * and numbers, no daemon structures); store.c hands each call to a backend:
 * store-sqlite.c (one host, the default) or store-pg.c (PostgreSQL, shared
 * by several hosts).
 *
 * Every call is synchronous: when store_session_put() returns 0 the row is
 * committed (what the client sees next survives a crash of the daemon).
 * Failures are logged by the backend and returned as -1, never fatal.
 *
 * Leases: a session is served by one host at a time.  A host holds the
 * session's lease (its host_id, an expiry, a fencing counter) while it
 * serves it, renews it every lease_timeout/3, and every write of the
 * session's row carries the counter: a host whose lease another took can
 * never overwrite the new owner's state (STORE_FENCED).  With SQLite (one
 * host) every lease is granted at once and never lost.
 */
#ifndef HP_STORE_H
#define HP_STORE_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

/* A session's row, keyed by (uid, name). */
struct store_session {
	uid_t		 uid;
	const char	*name;
	int64_t		 fence;		/* put: the lease's counter; 0: none */
	const char	*host_id;	/* loaded: who wrote it last */
	const char	*holder;	/* sessions_all: lease holder or NULL */
	const char	*workdir;
	const char	*cli_session_id;
	int		 has_conversation;	/* --resume works */
	int		 ended;
	const char	*options;	/* JSON object */
	const char	*stats;		/* JSON object (common/stats.h) */
	const char	*last_turn;	/* JSON object */
	int64_t		 run_uid;	/* the uid it runs as; -1: not yet */
};

/* One audited event: a tool call, a firewall block, a denial. */
struct store_audit {
	int64_t		 time_ms;	/* Unix time */
	uid_t		 uid;		/* the session's owner */
	const char	*session;
	uint32_t	 turn;
	const char	*kind;		/* STORE_AUDIT_* */
	const char	*tool;		/* or NULL */
	const char	*digest;	/* SHA-256 of the input, hex, or NULL */
	const char	*excerpt;	/* bounded, or NULL */
	const char	*decision;	/* allow, deny, block, or NULL */
	const char	*decided_by;	/* rule, tool list, firewall, ... */
	int64_t		 duration_ms;	/* -1: unknown */
	int		 error;
	const char	*files;		/* JSON array of paths, or NULL */
	int		 overlapped;	/* a Bash call beside another: its
					   files may be the other's too */
	const char	*detail;	/* free text, or NULL */
	const char	*host_id;	/* loaded: who wrote it (shared store) */
};

#define STORE_AUDIT_TOOL	"tool"		/* a tool call */
#define STORE_AUDIT_FIREWALL	"firewall"	/* a prompt refused */
#define STORE_AUDIT_DENIAL	"denial"	/* a permission refused */

/* Which audit rows a query wants. */
struct store_audit_query {
	int		 any_uid;	/* administrators: every owner */
	uid_t		 uid;		/* else only this owner's rows */
	const char	*session;	/* or NULL: all */
	int64_t		 since_ms;	/* rows at or after */
	int64_t		 after_id;	/* rows with a larger id (paging) */
	int		 limit;
};

/* A row back from a query; id is the store's order. */
typedef int (*store_audit_cb)(void *arg, int64_t id,
    const struct store_audit *);
typedef void (*store_session_cb)(void *arg, const struct store_session *);
/* One stored piece of a transcript file, in file order per path. */
typedef int (*store_transcript_cb)(void *arg, const char *path,
    uint64_t offset, const void *data, size_t len);

struct event_base;

/* Where the store is and who this host is. */
struct store_params {
	const char	*url;		/* postgresql://...; NULL: SQLite */
	const char	*dir;		/* state_dir: the SQLite file's */
	int		 full_sync;	/* SQLite: fsync every commit */
	const char	*host_id;	/* this host's name in shared rows */
	uint64_t	 lease_ms;	/* a lease not renewed expires */
	struct event_base *base;	/* PostgreSQL: watched, reconnected
					   from this loop; NULL: in calls */
	/*
	 * PostgreSQL with a base: store_open() only starts connecting (a
	 * server down or paused must not hold the daemon's start); ready
	 * is called from the loop once the store first answers, the
	 * schema made and the statements prepared, and at each connection
	 * after until it returns 0.  Until then every call fails as with a
	 * store unreachable.
	 */
	int		(*ready)(void);
};

#define STORE_FENCED	1	/* a write refused: the lease is not ours */

/* 1 if url names a PostgreSQL database (postgresql:// or postgres://). */
int	 store_url_is_pg(const char *url);
/* hotplexd -n: connects once; 0 with what it found, -1 with why. */
int	 store_pg_check(const char *url, char *out, size_t outlen);

/*
 * Opens the store.  SQLite: creates it in dir; a database of a newer
 * schema, or one that is not a database, is renamed aside with a message
 * and a new one made.  PostgreSQL: connects and creates or migrates the
 * schema (one host at a time); -1 if it cannot (never renamed aside: other
 * hosts use it).  With a base it connects from the loop (ready above):
 * -1 only for a URL that does not parse; a database of a newer schema
 * found at the first connection ends the daemon (fatalx: no wait mends it).
 */
int	 store_open(const struct store_params *);
void	 store_close(void);
int	 store_is_open(void);
/* 1 if several hosts share the store: leases and fences matter. */
int	 store_shared(void);
/*
 * 1 when the store answers statements; detail names it and, if not, when
 * it is tried again.
 */
int	 store_reachable(char *detail, size_t len);
const char *store_path(void);	/* for messages: no password */

/*
 * Work that may wait, off the turns' path (SQLite: a WAL checkpoint, which
 * synchronizes the database); called every few seconds.
 */
void	 store_maintain(void);

int	 store_begin(void);		/* batch several puts (migration) */
int	 store_commit(void);

/*
 * 0 when committed, STORE_FENCED when the row's lease has another counter
 * or another host (nothing written), -1 on failure.  A put with fence 0
 * only creates a row that is not there (sessions.json import).
 */
int	 store_session_put(const struct store_session *);
int	 store_session_delete(uid_t, const char *name, int64_t fence);
/* This host's session rows, in the order they were first stored. */
int	 store_sessions_load(store_session_cb, void *);
/* Every host's rows, with their lease holders (a shared store only). */
int	 store_sessions_all(store_session_cb, void *);
/*
 * Every host's rows for summing: uid, name, host_id and stats only, at
 * most STORE_STATS_MAX; 1 when there were more (the rest not given), 0,
 * or -1 (a shared store only).
 */
#define STORE_STATS_MAX	100000
int	 store_sessions_stats(store_session_cb, void *);
/* One row, whichever host wrote it: 1 and cb called, 0 none, -1 failure. */
int	 store_session_get(uid_t, const char *name, store_session_cb, void *);

/*
 * Takes the session's lease for this host: 0 with a new *fence when it was
 * free, expired, released or already this host's; 1 when another host
 * holds it (named in holder); -1 on failure.
 */
int	 store_lease_acquire(uid_t, const char *name, int64_t *fence,
	    char *holder, size_t holderlen);
/* Gives it up (if still ours with that fence): another host may take it. */
int	 store_lease_release(uid_t, const char *name, int64_t fence);
/*
 * Renews every lease this host holds; cb is called for each one still
 * ours (with its fence).  A lease the caller holds and cb was not called
 * for is lost.  The count, or -1 (nothing known: keep trying).
 */
typedef void (*store_lease_cb)(void *arg, uid_t, const char *name,
    int64_t fence);
int	 store_lease_renew(store_lease_cb, void *);

/* The stats of the sessions that are no longer kept (JSON object). */
int	 store_totals_put(const char *json);
char	*store_totals_get(void);	/* caller frees; NULL: none */
/* Every host's totals (a shared store only); 0, or -1. */
typedef void (*store_totals_cb)(void *arg, const char *host_id,
    const char *json);
int	 store_totals_all(store_totals_cb, void *);

/*
 * The CLI's transcript files of a session (paths relative to its config
 * dir), kept as the pieces the worker sent after each turn.  A piece at
 * offset 0 starts the file anew; any other must start where the stored
 * file ends: 1 if it does not (nothing is written), -1 on a failure.
 * A shared store writes only while the lease has that fence (1 if not).
 * store_session_delete() removes them too.
 */
int	 store_transcript_append(uid_t, const char *name, int64_t fence,
	    const char *path, uint64_t offset, const void *data, size_t len);
/* The bytes stored of one file, or -1. */
int64_t	 store_transcript_size(uid_t, const char *name, const char *path);
/* Every piece in path then offset order; cb returns -1 to stop. */
int	 store_transcript_load(uid_t, const char *name, store_transcript_cb,
	    void *);
int	 store_transcript_delete(uid_t, const char *name);

int	 store_audit_add(const struct store_audit *);
/* Rows in id order; cb returns -1 to stop. */
int	 store_audit_query(const struct store_audit_query *, store_audit_cb,
	    void *);
/* Removes the rows older than before_ms; the count, or -1. */
long	 store_audit_expire(int64_t before_ms);

#endif
