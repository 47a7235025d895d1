/*
 * The durable store: the session table, the CLI's transcripts and the tool
 * audit.  A narrow
 * interface of plain records (text and numbers, no daemon structures) so
 * that another backend can implement it; store-sqlite.c is the SQLite one.
 *
 * Every call is synchronous: when store_session_put() returns 0 the row is
 * committed (what the client sees next survives a crash of the daemon).
 * Failures are logged by the backend and returned as -1, never fatal.
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
	const char	*detail;	/* free text, or NULL */
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

/*
 * Opens (creates) the store in dir.  A database of a newer schema, or one
 * that is not a database, is renamed aside with a message and a new one
 * made.  full_sync: also survive a power loss (an fsync per commit).
 */
int	 store_open(const char *dir, int full_sync);
void	 store_close(void);
int	 store_is_open(void);
const char *store_path(void);

/*
 * Work that may wait, off the turns' path (SQLite: a WAL checkpoint, which
 * synchronizes the database); called every few seconds.
 */
void	 store_maintain(void);

int	 store_begin(void);		/* batch several puts (migration) */
int	 store_commit(void);

int	 store_session_put(const struct store_session *);
int	 store_session_delete(uid_t, const char *name);
/* Every session row, in the order they were first stored. */
int	 store_sessions_load(store_session_cb, void *);

/* The stats of the sessions that are no longer kept (JSON object). */
int	 store_totals_put(const char *json);
char	*store_totals_get(void);	/* caller frees; NULL: none */

/*
 * The CLI's transcript files of a session (paths relative to its config
 * dir), kept as the pieces the worker sent after each turn.  A piece at
 * offset 0 starts the file anew; any other must start where the stored
 * file ends: 1 if it does not (nothing is written), -1 on a failure.
 * store_session_delete() removes them too.
 */
int	 store_transcript_append(uid_t, const char *name, const char *path,
	    uint64_t offset, const void *data, size_t len);
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
