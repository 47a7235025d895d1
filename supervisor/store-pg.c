/*
 * store.h on PostgreSQL (libpq): one database that several hosts share,
 * each naming itself by host_id.  The master alone talks to it, on one
 * dedicated connection, synchronously: a commit on loopback costs a round
 * trip (hotplexd(8) gives the figure), and the daemon's other work waits
 * meanwhile, as with SQLite's.
 *
 * The tables are SQLite's (store-sqlite.c), with a host_id where rows of
 * several hosts meet, plus the leases.  The schema is versioned in
 * schema_version and created or migrated under an advisory lock, so two
 * hosts starting at once do it once.  A database of a newer schema is
 * never touched: other hosts use it.
 *
 * Fencing: a session's row is written only while this host holds its lease
 * with the same counter.  The write locks the lease row (FOR SHARE), so a
 * host taking the lease meanwhile waits for the write, and a write after
 * the take matches no lease row and changes nothing (STORE_FENCED).
 *
 * Times of leases are the database's clock, never a host's: hosts whose
 * clocks differ agree on expiry.
 *
 * Every statement waits at most PG_QUERY_TIMEOUT_MS for its answer: a
 * server that stopped answering (paused, cut off) costs a turn that long,
 * never the daemon.  The connection is then dropped, and made again after
 * PG_RETRY_MS, doubled on every failure up to PG_RETRY_MAX_MS (calls fail
 * meanwhile).
 *
 * In the daemon (store_params.base set) the store's loss is noticed
 * without waiting for a statement: the idle connection's socket is
 * watched from the event loop (a server that stops or restarts closes
 * it), and a connection idle for PG_PROBE_MS is probed with a statement
 * of its own, sent without waiting (a server that stopped answering is
 * dropped once the probe is PG_QUERY_TIMEOUT_MS old).  Reconnecting is
 * asynchronous (PQconnectStart, PQconnectPoll from the loop, bounded by
 * PG_CONNECT_TIMEOUT_MS): a server that accepts but never answers costs
 * the master nothing.  The first connection, at start, is made the same
 * way: the daemon serves (refusing sessions, store_params.ready) while a
 * server not yet started or paused keeps it waiting.
 */
#include <sys/types.h>

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/store-backend.h"
#include "supervisor/store.h"

#define PG_SCHEMA		2	/* bump with a migration below */
#define PG_LOCK_KEY		"7526411003240751176"	/* schema changes */
#define PG_CONNECT_TIMEOUT	"5"	/* seconds, unless the URL says */
#define PG_CONNECT_TIMEOUT_MS	5000	/* the same, connecting from the loop */
#define PG_PROBE_MS		1000	/* an idle connection is probed */
#define PG_RETRY_MS		1000	/* between two reconnections, */
#define PG_RETRY_MAX_MS		30000	/* ... doubled up to this */
#define PG_QUERY_TIMEOUT_MS	5000	/* a statement's answer */
#define PG_QUERY_MAX		1000	/* audit rows per query */
#define PG_QUERY_MAX_S		"1000"	/* ... and session rows, as SQL */
#define PG_NUM_MAX		24	/* a 64-bit number as text */
#define PG_SQL_MAX		1024	/* a migration's statements */

static const char *pg_schema_v1 =
    "CREATE TABLE schema_version ("
    " version INTEGER NOT NULL);"
    "CREATE TABLE sessions ("
    " uid BIGINT NOT NULL,"
    " name TEXT NOT NULL,"
    " workdir TEXT NOT NULL,"
    " cli_session_id TEXT NOT NULL,"
    " has_conversation INTEGER NOT NULL,"
    " ended INTEGER NOT NULL,"
    " options TEXT NOT NULL,"
    " stats TEXT NOT NULL,"
    " last_turn TEXT NOT NULL,"
    " updated_ms BIGINT NOT NULL,"
    " host_id TEXT NOT NULL,"
    " run_uid BIGINT,"		/* SQLite's schema 2 */
    " seq BIGSERIAL,"		/* SQLite's rowid: the order first stored */
    " PRIMARY KEY (uid, name));"
    "CREATE INDEX sessions_host ON sessions (host_id, seq);"
    "CREATE TABLE totals ("
    " host_id TEXT PRIMARY KEY,"
    " ended_total TEXT NOT NULL);"
    "CREATE TABLE audit ("
    " id BIGSERIAL PRIMARY KEY,"
    " time_ms BIGINT NOT NULL,"
    " uid BIGINT NOT NULL,"
    " session TEXT NOT NULL,"
    " turn BIGINT NOT NULL,"
    " kind TEXT NOT NULL,"
    " tool TEXT,"
    " digest TEXT,"
    " excerpt TEXT,"
    " decision TEXT,"
    " decided_by TEXT,"
    " duration_ms BIGINT,"
    " error INTEGER NOT NULL DEFAULT 0,"
    " files TEXT,"
    " detail TEXT,"
    " host_id TEXT NOT NULL);"
    "CREATE INDEX audit_time ON audit (time_ms);"
    "CREATE INDEX audit_owner ON audit (uid, session, id);"
    "CREATE TABLE leases ("
    " uid BIGINT NOT NULL,"
    " name TEXT NOT NULL,"
    " host_id TEXT NOT NULL,"
    " expires TIMESTAMPTZ NOT NULL,"	/* -infinity: released */
    " fence BIGINT NOT NULL,"
    " PRIMARY KEY (uid, name));"
    "CREATE INDEX leases_host ON leases (host_id);"
    "CREATE TABLE transcripts ("	/* SQLite's schema 3 */
    " uid BIGINT NOT NULL,"
    " name TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " pos BIGINT NOT NULL,"
    " data BYTEA NOT NULL,"
    " PRIMARY KEY (uid, name, path, pos));"
    "INSERT INTO schema_version (version) VALUES (1);";

/*
 * Migrations: pg_migrations[v - 1] takes schema v to v + 1, in the
 * transaction that holds the advisory lock.
 */
static const char *const pg_migrations[] = {
	/* 2: a Bash call that overlapped another (SQLite's schema 4). */
	"ALTER TABLE audit ADD COLUMN overlapped INTEGER NOT NULL DEFAULT 0;",
};

enum pg_stmt {
	PS_SESSION_PUT, PS_SESSION_CREATE, PS_SESSION_DELETE, PS_SESSIONS,
	PS_SESSION_GET, PS_TOTALS_PUT, PS_TOTALS_GET, PS_AUDIT_ADD,
	PS_AUDIT_QUERY, PS_AUDIT_EXPIRE, PS_LEASE_ACQUIRE, PS_LEASE_HOLDER,
	PS_LEASE_RELEASE, PS_LEASE_RENEW, PS_TX_SIZE, PS_TX_CLEAR, PS_TX_ADD,
	PS_TX_LOAD, PS_TX_DELETE, PS_SESSIONS_ALL, PS_TOTALS_ALL,
	PS_SESSIONS_STATS,
	PS_N
};

/* The lease this host holds with that fence, locked against a take. */
#define PG_FENCE_CTE "WITH l AS (SELECT 1 FROM leases WHERE uid = $1::bigint " \
	"AND name = $2::text AND host_id = $11::text AND fence = $12::bigint " \
	"FOR SHARE) "
#define PG_SESSION_COLS "uid, name, workdir, cli_session_id, " \
	"has_conversation, ended, options, stats, last_turn, host_id, run_uid"

static const char *pg_sql[PS_N] = {
	[PS_SESSION_PUT] = PG_FENCE_CTE
	    "INSERT INTO sessions (uid, name, workdir, cli_session_id, "
	    "has_conversation, ended, options, stats, last_turn, updated_ms, "
	    "host_id, run_uid) SELECT $1::bigint, $2::text, $3::text, "
	    "$4::text, $5::integer, $6::integer, $7::text, $8::text, $9::text, "
	    "$10::bigint, $11::text, $13::bigint FROM l ON CONFLICT (uid, "
	    "name) DO UPDATE "
	    "SET workdir = EXCLUDED.workdir, cli_session_id = "
	    "EXCLUDED.cli_session_id, has_conversation = "
	    "EXCLUDED.has_conversation, ended = EXCLUDED.ended, options = "
	    "EXCLUDED.options, stats = EXCLUDED.stats, last_turn = "
	    "EXCLUDED.last_turn, updated_ms = EXCLUDED.updated_ms, host_id = "
	    "EXCLUDED.host_id, run_uid = EXCLUDED.run_uid",
	/* No lease (an import): makes a row, never overwrites one. */
	[PS_SESSION_CREATE] = "INSERT INTO sessions (uid, name, workdir, "
	    "cli_session_id, has_conversation, ended, options, stats, "
	    "last_turn, updated_ms, host_id, run_uid) VALUES ($1::bigint, "
	    "$2::text, $3::text, $4::text, $5::integer, $6::integer, $7::text, "
	    "$8::text, $9::text, $10::bigint, $11::text, $12::bigint) ON "
	    "CONFLICT (uid, name) DO NOTHING",
	/*
	 * With the lease; or, without one (0: given back when it ended), an
	 * ended row this host wrote last.
	 */
	[PS_SESSION_DELETE] = "WITH l AS (SELECT 1 FROM leases WHERE uid = "
	    "$1::bigint AND name = $2::text AND host_id = $3::text AND fence = "
	    "$4::bigint FOR SHARE) DELETE FROM sessions WHERE uid = $1::bigint "
	    "AND name = $2::text AND (EXISTS (SELECT 1 FROM l) OR ($4::bigint "
	    "= 0 AND host_id = $3::text AND ended = 1))",
	[PS_SESSIONS] = "SELECT " PG_SESSION_COLS " FROM sessions WHERE "
	    "host_id = $1::text ORDER BY seq",
	/* Every host's rows and their live lease's holder (the last column). */
	[PS_SESSIONS_ALL] = "SELECT " PG_SESSION_COLS ", (SELECT l.host_id "
	    "FROM leases l WHERE l.uid = sessions.uid AND l.name = "
	    "sessions.name AND l.expires > clock_timestamp()) FROM sessions "
	    "ORDER BY seq LIMIT " PG_QUERY_MAX_S,
	/* One more than the bound: the caller learns there were more. */
	[PS_SESSIONS_STATS] = "SELECT uid, name, host_id, stats FROM sessions "
	    "ORDER BY seq LIMIT $1::bigint",
	[PS_SESSION_GET] = "SELECT " PG_SESSION_COLS " FROM sessions WHERE "
	    "uid = $1::bigint AND name = $2::text",
	[PS_TOTALS_PUT] = "INSERT INTO totals (host_id, ended_total) VALUES "
	    "($1::text, $2::text) ON CONFLICT (host_id) DO UPDATE SET "
	    "ended_total = EXCLUDED.ended_total",
	[PS_TOTALS_GET] = "SELECT ended_total FROM totals WHERE host_id = "
	    "$1::text",
	[PS_TOTALS_ALL] = "SELECT host_id, ended_total FROM totals ORDER BY "
	    "host_id",
	[PS_AUDIT_ADD] = "INSERT INTO audit (time_ms, uid, session, turn, "
	    "kind, tool, digest, excerpt, decision, decided_by, duration_ms, "
	    "error, files, detail, host_id, overlapped) VALUES ($1::bigint, "
	    "$2::bigint, $3::text, $4::bigint, $5::text, $6::text, $7::text, "
	    "$8::text, $9::text, $10::text, $11::bigint, $12::integer, "
	    "$13::text, $14::text, $15::text, $16::integer)",
	/* A NULL parameter matches everything. */
	[PS_AUDIT_QUERY] = "SELECT id, time_ms, uid, session, turn, kind, "
	    "tool, digest, excerpt, decision, decided_by, duration_ms, error, "
	    "files, detail, host_id, overlapped FROM audit WHERE id > "
	    "$1::bigint AND time_ms >= $2::bigint AND ($3::bigint IS NULL OR "
	    "uid = $3::bigint) AND ($4::text IS NULL OR session = $4::text) "
	    "ORDER BY id LIMIT $5::integer",
	[PS_AUDIT_EXPIRE] = "DELETE FROM audit WHERE time_ms < $1::bigint",
	/*
	 * Free (no row), expired, released, or ours already (this host
	 * restarted): ours, with the next counter.
	 */
	[PS_LEASE_ACQUIRE] = "INSERT INTO leases AS o (uid, name, host_id, "
	    "expires, fence) VALUES ($1::bigint, $2::text, $3::text, "
	    "clock_timestamp() + $4::bigint * interval '1 millisecond', 1) "
	    "ON CONFLICT (uid, name) DO UPDATE SET host_id = EXCLUDED.host_id, "
	    "expires = EXCLUDED.expires, fence = o.fence + 1 WHERE o.host_id = "
	    "EXCLUDED.host_id OR o.expires < clock_timestamp() RETURNING fence",
	[PS_LEASE_HOLDER] = "SELECT host_id, ceil(extract(epoch FROM expires "
	    "- clock_timestamp()) * 1000)::bigint FROM leases WHERE uid = "
	    "$1::bigint AND name = $2::text",
	[PS_LEASE_RELEASE] = "UPDATE leases SET expires = '-infinity' WHERE "
	    "uid = $1::bigint AND name = $2::text AND host_id = $3::text AND "
	    "fence = $4::bigint",
	/*
	 * Transcripts: written only while this host holds the session's
	 * lease with the writer's fence (locked against a take, as a row's
	 * write): the same host's earlier holding of it writes nothing.
	 */
	[PS_TX_SIZE] = "SELECT coalesce(sum(length(data)), 0) FROM "
	    "transcripts WHERE uid = $1::bigint AND name = $2::text AND path = "
	    "$3::text",
	[PS_TX_CLEAR] = "WITH l AS (SELECT 1 FROM leases WHERE uid = "
	    "$1::bigint AND name = $2::text AND host_id = $4::text AND fence = "
	    "$5::bigint FOR SHARE) "
	    "DELETE FROM transcripts WHERE uid = $1::bigint AND name = $2::text "
	    "AND path = $3::text AND EXISTS (SELECT 1 FROM l)",
	[PS_TX_ADD] = "WITH l AS (SELECT 1 FROM leases WHERE uid = $1::bigint "
	    "AND name = $2::text AND host_id = $4::text AND fence = $5::bigint "
	    "FOR SHARE) INSERT INTO transcripts (uid, name, path, pos, data) "
	    "SELECT $1::bigint, $2::text, $3::text, $6::bigint, $7::bytea FROM "
	    "l",
	[PS_TX_LOAD] = "SELECT path, pos, data FROM transcripts WHERE uid = "
	    "$1::bigint AND name = $2::text ORDER BY path, pos",
	[PS_TX_DELETE] = "DELETE FROM transcripts WHERE uid = $1::bigint AND "
	    "name = $2::text",
	/* Released leases stay released. */
	[PS_LEASE_RENEW] = "UPDATE leases SET expires = clock_timestamp() + "
	    "$2::bigint * interval '1 millisecond' WHERE host_id = $1::text "
	    "AND expires > '-infinity' RETURNING uid, name, fence",
};

static int	 pg_transcript_delete(uid_t, const char *);

static PGconn		*pg_conn;
static char		*pg_url;	/* with its password: never logged */
static char		*pg_display;	/* store_path(): host, port, db */
static char		*pg_host_id;
static char		*pg_appname;	/* "hotplexd HOST" in pg_stat_activity */
static uint64_t		 pg_lease_ms;
static int		 pg_ok;		/* connected, statements prepared */
static int64_t		 pg_last_try;	/* CLOCK_MONOTONIC ms */
static int64_t		 pg_retry_ms = PG_RETRY_MS;
static struct event_base *pg_base;	/* NULL: no loop, reconnect in calls */
static struct event	*pg_sock_ev;	/* the connection's socket */
static struct event	*pg_tick_ev;	/* probes and reconnections */
static int		 pg_connecting;	/* PQconnectPoll under way */
static int		 pg_probe_pending;	/* its answer not read yet */
static int64_t		 pg_probe_sent;	/* CLOCK_MONOTONIC ms */
static int64_t		 pg_last_answer;	/* ... the server's last answer */
static int		 pg_ever_ok;	/* the first connection was made */
static int		(*pg_ready_cb)(void);	/* ... told here until 0 */

static int	pg_connect_setup(void);
static void	pg_opened(void);

/* util_now_ms, signed: the deadlines here are differences. */
static int64_t
pg_mono_ms(void)
{
	return (int64_t)util_now_ms();
}

/* libpq's message without its trailing newline. */
static void
pg_err(const char *what, const char *msg)
{
	size_t	len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	log_warnx("store: %s: %.*s", what, (int)len, msg);
}

/* The connection is no good: dropped, made again later (pg_tick()). */
static void
pg_drop(void)
{
	if (pg_sock_ev != NULL)
		event_free(pg_sock_ev);
	pg_sock_ev = NULL;
	if (pg_conn != NULL)
		PQfinish(pg_conn);
	pg_conn = NULL;
	pg_ok = 0;
	pg_connecting = 0;
	pg_probe_pending = 0;
}

/*
 * The answer to what was just sent: its last result, or NULL when the
 * server did not answer within PG_QUERY_TIMEOUT_MS or the connection
 * broke (then dropped).
 */
static PGresult *
pg_result(const char *what)
{
	struct pollfd	 pfd;
	PGresult	*r, *last = NULL;
	int64_t		 deadline = pg_mono_ms() + PG_QUERY_TIMEOUT_MS, left;

	for (;;) {
		while (PQisBusy(pg_conn)) {
			if ((left = deadline - pg_mono_ms()) <= 0) {
				log_warnx("store: %s: no answer from %s in %d "
				    "ms; dropping the connection", what,
				    pg_display, PG_QUERY_TIMEOUT_MS);
				goto fail;
			}
			pfd.fd = PQsocket(pg_conn);
			pfd.events = POLLIN;
			if (poll(&pfd, 1, (int)left) == -1 && errno != EINTR) {
				log_warn("store: poll");
				goto fail;
			}
			if (PQconsumeInput(pg_conn) == 0) {
				pg_err(what, PQerrorMessage(pg_conn));
				goto fail;
			}
		}
		if ((r = PQgetResult(pg_conn)) == NULL) {
			pg_last_answer = pg_mono_ms();
			return last;
		}
		PQclear(last);
		last = r;
	}
fail:
	PQclear(last);
	pg_drop();
	return NULL;
}

/*
 * A probe sent from the loop is answered before the connection takes a
 * statement (its answer read and dropped); -1 if it never came.
 */
static int
pg_probe_finish(void)
{
	if (!pg_probe_pending)
		return 0;
	pg_probe_pending = 0;
	PQclear(pg_result("probe"));
	return pg_conn != NULL ? 0 : -1;
}

/* sql without parameters, sent and answered; NULL as pg_result(). */
static PGresult *
pg_exec_sql(const char *sql, const char *what)
{
	if (pg_conn == NULL || pg_probe_finish() == -1)
		return NULL;
	if (PQsendQuery(pg_conn, sql) == 0) {
		pg_err(what, PQerrorMessage(pg_conn));
		pg_drop();
		return NULL;
	}
	return pg_result(what);
}

/* A prepared statement (i), sent and answered; NULL as pg_result(). */
static PGresult *
pg_exec_prepared(int i, int n, const char *const *vals, const int *lens,
    const int *fmts, int binary, const char *what)
{
	char	name[16];

	if (pg_conn == NULL || pg_probe_finish() == -1)
		return NULL;
	snprintf(name, sizeof name, "hp%d", i);
	if (PQsendQueryPrepared(pg_conn, name, n, vals, lens, fmts,
	    binary) == 0) {
		pg_err(what, PQerrorMessage(pg_conn));
		pg_drop();
		return NULL;
	}
	return pg_result(what);
}

/* Runs sql with no parameters; 0 if it did what want says. */
static int
pg_simple(const char *sql, ExecStatusType want, const char *what)
{
	PGresult	*r;
	int		 rc = 0;

	if ((r = pg_exec_sql(sql, what)) == NULL)
		return -1;
	if (PQresultStatus(r) != want) {
		pg_err(what, PQresultErrorMessage(r));
		rc = -1;
	}
	PQclear(r);
	return rc;
}

/* The schema at PG_SCHEMA, made or migrated under the advisory lock. */
static int
pg_schema(void)
{
	PGresult	*r;
	char		 sql[PG_SQL_MAX];
	int		 version = 0, v;

	if (pg_simple("BEGIN", PGRES_COMMAND_OK, "begin") == -1)
		return -1;
	if (pg_simple("SELECT pg_advisory_xact_lock(" PG_LOCK_KEY ")",
	    PGRES_TUPLES_OK, "locking the schema") == -1)
		goto fail;
	r = pg_exec_sql("SELECT to_regclass('schema_version') IS NOT NULL",
	    "reading the schema");
	if (r == NULL)
		return -1;
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		pg_err("reading the schema", PQresultErrorMessage(r));
		PQclear(r);
		goto fail;
	}
	if (strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
		PQclear(r);
		r = pg_exec_sql("SELECT max(version) FROM schema_version",
		    "reading schema_version");
		if (r == NULL)
			return -1;
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
		    PQgetisnull(r, 0, 0)) {
			pg_err("reading schema_version", PQresultStatus(r) ==
			    PGRES_TUPLES_OK ? "no version" :
			    PQresultErrorMessage(r));
			PQclear(r);
			goto fail;
		}
		version = atoi(PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	if (version > PG_SCHEMA) {
		log_warnx("store: %s: schema version %d is newer than %d; not "
		    "touched", pg_display, version, PG_SCHEMA);
		/* At start no wait mends it: another hotplexd's database. */
		if (pg_base != NULL && !pg_ever_ok)
			fatalx("store: cannot use the shared store; not "
			    "starting");
		goto fail;
	}
	if (version == 0 && pg_simple(pg_schema_v1, PGRES_COMMAND_OK,
	    "creating the schema") == -1)
		goto fail;
	for (v = version > 0 ? version : 1; v < PG_SCHEMA; v++) {
		snprintf(sql, sizeof sql, "%s UPDATE schema_version SET "
		    "version = %d;", pg_migrations[v - 1], v + 1);
		if (pg_simple(sql, PGRES_COMMAND_OK, "migrating the schema") ==
		    -1)
			goto fail;
		if (version > 0)
			log_info("store: %s migrated to schema %d", pg_display,
			    v + 1);
	}
	if (version == 0)
		log_info("store: created the schema (version %d) in %s",
		    PG_SCHEMA, pg_display);
	return pg_simple("COMMIT", PGRES_COMMAND_OK, "commit");
fail:
	pg_simple("ROLLBACK", PGRES_COMMAND_OK, "rollback");
	return -1;
}

static int
pg_prepare(void)
{
	PGresult	*r;
	char		 name[16];
	int		 i;

	for (i = 0; i < PS_N; i++) {
		snprintf(name, sizeof name, "hp%d", i);
		/* Sent, and its answer waited for as a statement's. */
		if (PQsendPrepare(pg_conn, name, pg_sql[i], 0, NULL) == 0) {
			pg_err("preparing a statement", PQerrorMessage(pg_conn));
			return -1;
		}
		if ((r = pg_result("preparing a statement")) == NULL)
			return -1;
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg_err("preparing a statement (a table of the wrong "
			    "shape?)", PQresultErrorMessage(r));
			PQclear(r);
			return -1;
		}
		PQclear(r);
	}
	return 0;
}

/* Connects (again); 0 when ready for statements. */
static int
pg_connect(void)
{
	/* The URL's own values win: it comes last (expand_dbname). */
	static const char *const keys[] = { "connect_timeout",
	    "application_name", "dbname", NULL };
	const char	*vals[] = { PG_CONNECT_TIMEOUT, pg_appname, pg_url, NULL };

	pg_drop();
	pg_last_try = pg_mono_ms();
	pg_conn = PQconnectdbParams(keys, vals, 1);
	if (pg_conn == NULL || PQstatus(pg_conn) != CONNECTION_OK) {
		pg_err(pg_display, pg_conn != NULL ? PQerrorMessage(pg_conn) :
		    "out of memory");
		return -1;
	}
	return pg_connect_setup();
}

/* --- from the loop: the socket, probes, reconnecting -------------------- */

static void	pg_sock_fire(evutil_socket_t, short, void *);

/* The socket watched for what (EV_READ, EV_WRITE; EV_PERSIST: idle). */
static void
pg_sock_arm(short what)
{
	if (pg_sock_ev != NULL)
		event_free(pg_sock_ev);
	pg_sock_ev = NULL;
	if (pg_base == NULL || pg_conn == NULL || PQsocket(pg_conn) == -1)
		return;
	if ((pg_sock_ev = event_new(pg_base, PQsocket(pg_conn), what,
	    pg_sock_fire, NULL)) == NULL)
		fatalx("store: event_new");
	event_add(pg_sock_ev, NULL);
}

/* Connected: our settings, the schema, the statements; 0 when ready. */
static int
pg_connect_setup(void)
{
	/* Our statements' times are UTC milliseconds; no surprise here. */
	if (pg_simple("SET TIME ZONE 'UTC'", PGRES_COMMAND_OK, "set") == -1 ||
	    pg_schema() == -1 || pg_prepare() == -1) {
		pg_drop();
		return -1;
	}
	pg_ok = 1;
	pg_retry_ms = PG_RETRY_MS;
	pg_last_answer = pg_mono_ms();
	/* Idle, a readable socket is the server closing it. */
	pg_sock_arm(EV_READ | EV_PERSIST);
	return 0;
}

/* A reconnection failed: the next one waits twice as long. */
static void
pg_connect_failed(void)
{
	pg_drop();
	pg_retry_ms = pg_retry_ms * 2 < PG_RETRY_MAX_MS ? pg_retry_ms * 2 :
	    PG_RETRY_MAX_MS;
	log_warnx("store: %s: trying again in %lld ms", pg_display,
	    (long long)pg_retry_ms);
}

/* The connection is gone (closed by the server, or no answer). */
static void
pg_lost(const char *why)
{
	log_warnx("store: lost the connection to %s: %s; trying again",
	    pg_display, why);
	pg_drop();
}

/* A step of PQconnectPoll: the socket is ready for what it waited for. */
static void
pg_connect_step(void)
{
	int	first = !pg_ever_ok;
	int	(*cb)(void) = pg_ready_cb;

	switch (PQconnectPoll(pg_conn)) {
	case PGRES_POLLING_READING:
		pg_sock_arm(EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		pg_sock_arm(EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		pg_connecting = 0;
		if (pg_connect_setup() == 0) {
			if (first)
				pg_opened();
			else
				log_info("store: connected again to %s",
				    pg_display);
			/* Last: its statements may drop the connection. */
			if (cb != NULL && cb() == 0 && pg_ready_cb == cb)
				pg_ready_cb = NULL;
			return;
		}
		break;
	default:
		pg_err(pg_display, PQerrorMessage(pg_conn));
		break;
	}
	pg_connect_failed();
}

/* Starts connecting; the loop goes on (pg_connect_step, pg_tick). */
static void
pg_connect_start(void)
{
	/* The URL's own values win: it comes last (expand_dbname). */
	static const char *const keys[] = { "application_name", "dbname",
	    NULL };
	const char	*vals[] = { pg_appname, pg_url, NULL };

	pg_drop();
	pg_last_try = pg_mono_ms();
	log_info("store: connecting to %s", pg_display);
	pg_conn = PQconnectStartParams(keys, vals, 1);
	if (pg_conn == NULL || PQstatus(pg_conn) == CONNECTION_BAD) {
		pg_err(pg_display, pg_conn != NULL ? PQerrorMessage(pg_conn) :
		    "out of memory");
		pg_connect_failed();
		return;
	}
	pg_connecting = 1;
	/* As if PQconnectPoll had said PGRES_POLLING_WRITING. */
	pg_sock_arm(EV_WRITE);
}

static void
pg_sock_fire(evutil_socket_t fd, short what, void *arg)
{
	PGresult	*r;

	if (pg_conn == NULL)
		return;
	if (pg_connecting) {
		pg_connect_step();
		return;
	}
	if (PQconsumeInput(pg_conn) == 0 || PQstatus(pg_conn) != CONNECTION_OK) {
		pg_lost(PQerrorMessage(pg_conn));
		return;
	}
	/* The probe's answer, read whole (nothing else is sent idle). */
	while (pg_probe_pending && !PQisBusy(pg_conn)) {
		if ((r = PQgetResult(pg_conn)) == NULL) {
			pg_probe_pending = 0;
			pg_last_answer = pg_mono_ms();
			break;
		}
		PQclear(r);
	}
}

/*
 * Every PG_PROBE_MS: a connection that is due is made again; a probe
 * unanswered for PG_QUERY_TIMEOUT_MS drops the connection; one idle for
 * PG_PROBE_MS gets a probe.
 */
static void
pg_tick(evutil_socket_t fd, short what, void *arg)
{
	int64_t	now = pg_mono_ms();

	if (pg_url == NULL)
		return;
	if (pg_connecting) {
		if (now - pg_last_try >= PG_CONNECT_TIMEOUT_MS) {
			log_warnx("store: no answer from %s in %d ms while "
			    "connecting", pg_display, PG_CONNECT_TIMEOUT_MS);
			pg_connect_failed();
		}
		return;
	}
	if (!pg_ok) {
		if (now - pg_last_try >= pg_retry_ms)
			pg_connect_start();
		return;
	}
	if (pg_probe_pending) {
		if (now - pg_probe_sent >= PG_QUERY_TIMEOUT_MS) {
			log_warnx("store: probe: no answer from %s in %d ms; "
			    "dropping the connection", pg_display,
			    PG_QUERY_TIMEOUT_MS);
			pg_drop();
		}
		return;
	}
	if (now - pg_last_answer < PG_PROBE_MS)
		return;
	if (PQsendQuery(pg_conn, "SELECT 1") == 0) {
		pg_lost(PQerrorMessage(pg_conn));
		return;
	}
	pg_probe_pending = 1;
	pg_probe_sent = now;
}

/*
 * Connected (1) or not (0), with what /readyz and the status op say: the
 * server, and when not connected when the next statement tries again.
 */
static int
pg_reachable(char *detail, size_t len)
{
	int64_t	wait;

	if (pg_url == NULL) {
		snprintf(detail, len, "not open");
		return 0;
	}
	if (pg_ok && pg_conn != NULL && PQstatus(pg_conn) == CONNECTION_OK) {
		snprintf(detail, len, "%s connected", pg_display);
		return 1;
	}
	if (pg_connecting) {
		snprintf(detail, len, "%s %s, next try in 0 ms (one "
		    "running for %lld ms)", pg_display, pg_ever_ok ?
		    "reconnecting" : "not connected yet",
		    (long long)(pg_mono_ms() - pg_last_try));
		return 0;
	}
	wait = pg_last_try + pg_retry_ms - pg_mono_ms();
	snprintf(detail, len, "%s %s, next try in %lld ms", pg_display,
	    pg_ever_ok ? "reconnecting" : "not connected yet",
	    (long long)(wait > 0 ? wait : 0));
	return 0;
}

/* Ready for a statement, reconnecting when due; 0 if so. */
static int
pg_ready(void)
{
	if (pg_url == NULL)
		return -1;
	if (pg_ok && pg_conn != NULL && PQstatus(pg_conn) == CONNECTION_OK)
		return 0;
	/* The loop reconnects (pg_tick): a call never waits for it. */
	if (pg_base != NULL || pg_mono_ms() - pg_last_try < pg_retry_ms)
		return -1;
	if (pg_connect() == -1) {
		pg_retry_ms = pg_retry_ms * 2 < PG_RETRY_MAX_MS ?
		    pg_retry_ms * 2 : PG_RETRY_MAX_MS;
		log_warnx("store: %s: trying again in %lld ms", pg_display,
		    (long long)pg_retry_ms);
		return -1;
	}
	log_info("store: connected again to %s", pg_display);
	return 0;
}

/*
 * Runs a prepared statement; its result when its status is want, else
 * NULL (logged).  vals: n parameters as text, NULL for SQL NULL.
 */
static PGresult *
pg_run(enum pg_stmt i, int n, const char *const *vals, ExecStatusType want,
    const char *what)
{
	PGresult	*r;

	if (pg_ready() == -1)
		return NULL;
	if ((r = pg_exec_prepared((int)i, n, vals, NULL, NULL, 0, what)) ==
	    NULL)
		return NULL;
	if (PQresultStatus(r) == want)
		return r;
	pg_err(what, PQresultErrorMessage(r));
	PQclear(r);
	if (PQstatus(pg_conn) != CONNECTION_OK) {
		log_warnx("store: lost the connection to %s; trying again",
		    pg_display);
		pg_drop();
	}
	return NULL;
}

/* Rows a command changed (INSERT, UPDATE, DELETE), or -1. */
static long
pg_changed(enum pg_stmt i, int n, const char *const *vals, const char *what)
{
	PGresult	*r;
	long		 c;

	if ((r = pg_run(i, n, vals, PGRES_COMMAND_OK, what)) == NULL)
		return -1;
	c = strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return c;
}

/* --- opening ------------------------------------------------------------ */

/* host:port/db for messages: the URL may hold a password. */
static char *
pg_display_name(void)
{
	PQconninfoOption	*o, *opts;
	const char		*host = NULL, *port = NULL, *db = NULL;
	char			*s;

	if ((opts = PQconninfoParse(pg_url, NULL)) == NULL)
		return xstrdup("postgresql");
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
	}
	xasprintf(&s, "postgresql://%s%s%s/%s", host != NULL ? host : "",
	    port != NULL ? ":" : "", port != NULL ? port : "",
	    db != NULL ? db : "");
	PQconninfoFree(opts);
	return s;
}

static void
pg_close(void)
{
	pg_drop();
	if (pg_tick_ev != NULL)
		event_free(pg_tick_ev);
	pg_tick_ev = NULL;
	pg_base = NULL;
	pg_ever_ok = 0;
	pg_ready_cb = NULL;
	pg_retry_ms = PG_RETRY_MS;
	free(pg_url);
	free(pg_display);
	free(pg_host_id);
	free(pg_appname);
	pg_url = pg_display = pg_host_id = pg_appname = NULL;
}

static int
pg_open(const struct store_params *p)
{
	char		*err = NULL;
	PQconninfoOption *opts;
	struct timeval	 tv;

	pg_close();
	if ((opts = PQconninfoParse(p->url, &err)) == NULL) {
		pg_err("store URL", err != NULL ? err : "out of memory");
		PQfreemem(err);
		return -1;
	}
	PQconninfoFree(opts);
	pg_url = xstrdup(p->url);
	pg_display = pg_display_name();
	pg_host_id = xstrdup(p->host_id);
	xasprintf(&pg_appname, "hotplexd %s", p->host_id);
	pg_lease_ms = p->lease_ms;
	if (p->base == NULL) {
		if (pg_connect() == -1) {
			pg_close();
			return -1;
		}
		pg_opened();
		return 0;
	}
	/* From the loop: pg_connect_step() says when it is open. */
	pg_base = p->base;
	pg_ready_cb = p->ready;
	if ((pg_tick_ev = event_new(pg_base, -1, EV_PERSIST, pg_tick,
	    NULL)) == NULL)
		fatalx("store: event_new");
	tv.tv_sec = PG_PROBE_MS / 1000;
	tv.tv_usec = (PG_PROBE_MS % 1000) * 1000;
	event_add(pg_tick_ev, &tv);
	pg_connect_start();
	return 0;
}

/* The first connection made. */
static void
pg_opened(void)
{
	pg_ever_ok = 1;
	log_info("store: %s open (host_id %s, libpq %d, server %d)",
	    pg_display, pg_host_id, PQlibVersion(),
	    PQserverVersion(pg_conn));
}

static int
pg_is_open(void)
{
	return pg_url != NULL;
}

static const char *
pg_path(void)
{
	return pg_display;
}

/* Off the turns' path: a connection lost while idle comes back here. */
static void
pg_maintain(void)
{
	if (pg_url != NULL)
		pg_ready();
}

static int
pg_begin(void)
{
	if (pg_ready() == -1)
		return -1;
	return pg_simple("BEGIN", PGRES_COMMAND_OK, "begin");
}

static int
pg_commit(void)
{
	if (pg_ready() == -1)
		return -1;
	if (pg_simple("COMMIT", PGRES_COMMAND_OK, "commit") == -1) {
		pg_simple("ROLLBACK", PGRES_COMMAND_OK, "rollback");
		return -1;
	}
	return 0;
}

/* --- sessions ----------------------------------------------------------- */

static int
pg_session_put(const struct store_session *s)
{
	char		 uid[PG_NUM_MAX], now[PG_NUM_MAX], fence[PG_NUM_MAX];
	char		 run[PG_NUM_MAX];
	const char	*v[13];
	long		 n;

	snprintf(uid, sizeof uid, "%lu", (unsigned long)s->uid);
	snprintf(now, sizeof now, "%" PRId64, util_wall_ms());
	snprintf(fence, sizeof fence, "%" PRId64, s->fence);
	v[0] = uid;
	v[1] = s->name;
	v[2] = s->workdir;
	v[3] = s->cli_session_id;
	v[4] = s->has_conversation ? "1" : "0";
	v[5] = s->ended ? "1" : "0";
	v[6] = s->options;
	v[7] = s->stats;
	v[8] = s->last_turn;
	v[9] = now;
	v[10] = pg_host_id;
	v[11] = fence;
	snprintf(run, sizeof run, "%" PRId64, s->run_uid);
	v[12] = s->run_uid >= 0 ? run : NULL;
	if (s->fence == 0) {
		v[11] = v[12];	/* no fence: run_uid is $12 */
		return pg_changed(PS_SESSION_CREATE, 12, v,
		    "creating a session") == -1 ? -1 : 0;
	}
	if ((n = pg_changed(PS_SESSION_PUT, 13, v, "saving a session")) == -1)
		return -1;
	if (n == 0) {
		log_warnx("store: session %s of uid %s: not saved: lease %s "
		    "is no longer this host's", s->name, uid, fence);
		return STORE_FENCED;
	}
	return 0;
}

static int
pg_session_delete(uid_t uid, const char *name, int64_t fence)
{
	char		 u[PG_NUM_MAX], f[PG_NUM_MAX];
	const char	*v[4] = { u, name, pg_host_id, f };

	long		 n;

	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	snprintf(f, sizeof f, "%" PRId64, fence);
	if ((n = pg_changed(PS_SESSION_DELETE, 4, v, "deleting a session")) ==
	    -1)
		return -1;
	/* Its transcripts go with it (not those of another host's row). */
	return n > 0 ? pg_transcript_delete(uid, name) : 0;
}

/* Row i of a PG_SESSION_COLS result; -1 if its uid is not one. */
static int
pg_session_row(PGresult *r, int i, struct store_session *s)
{
	long long	uid;

	memset(s, 0, sizeof *s);
	uid = strtoll(PQgetvalue(r, i, 0), NULL, 10);
	if (uid < 0 || uid >= (long long)UINT32_MAX)
		return -1;
	s->uid = (uid_t)uid;
	s->name = PQgetvalue(r, i, 1);
	s->workdir = PQgetvalue(r, i, 2);
	s->cli_session_id = PQgetvalue(r, i, 3);
	s->has_conversation = atoi(PQgetvalue(r, i, 4));
	s->ended = atoi(PQgetvalue(r, i, 5));
	s->options = PQgetvalue(r, i, 6);
	s->stats = PQgetvalue(r, i, 7);
	s->last_turn = PQgetvalue(r, i, 8);
	s->host_id = PQgetvalue(r, i, 9);
	s->run_uid = PQgetisnull(r, i, 10) ? -1 :
	    strtoll(PQgetvalue(r, i, 10), NULL, 10);
	return 0;
}

static int
pg_sessions_load(store_session_cb cb, void *arg)
{
	const char		*v[1] = { pg_host_id };
	struct store_session	 s;
	PGresult		*r;
	int			 i;

	if ((r = pg_run(PS_SESSIONS, 1, v, PGRES_TUPLES_OK,
	    "reading the sessions")) == NULL)
		return -1;
	for (i = 0; i < PQntuples(r); i++)
		if (pg_session_row(r, i, &s) == 0)
			cb(arg, &s);
	PQclear(r);
	return 0;
}

static int
pg_sessions_all(store_session_cb cb, void *arg)
{
	struct store_session	 s;
	PGresult		*r;
	int			 i;

	if ((r = pg_run(PS_SESSIONS_ALL, 0, NULL, PGRES_TUPLES_OK,
	    "reading every host's sessions")) == NULL)
		return -1;
	for (i = 0; i < PQntuples(r); i++)
		if (pg_session_row(r, i, &s) == 0) {
			s.holder = PQgetisnull(r, i, 11) ? NULL :
			    PQgetvalue(r, i, 11);
			cb(arg, &s);
		}
	PQclear(r);
	return 0;
}

static int
pg_sessions_stats(store_session_cb cb, void *arg)
{
	char			 lim[PG_NUM_MAX];
	const char		*v[1] = { lim };
	struct store_session	 s;
	PGresult		*r;
	long long		 uid;
	int			 i, n;

	snprintf(lim, sizeof lim, "%d", STORE_STATS_MAX + 1);
	if ((r = pg_run(PS_SESSIONS_STATS, 1, v, PGRES_TUPLES_OK,
	    "reading every host's stats")) == NULL)
		return -1;
	n = PQntuples(r);
	for (i = 0; i < n && i < STORE_STATS_MAX; i++) {
		uid = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		if (uid < 0 || uid >= (long long)UINT32_MAX)
			continue;
		memset(&s, 0, sizeof s);
		s.uid = (uid_t)uid;
		s.name = PQgetvalue(r, i, 1);
		s.host_id = PQgetvalue(r, i, 2);
		s.stats = PQgetvalue(r, i, 3);
		s.run_uid = -1;
		cb(arg, &s);
	}
	PQclear(r);
	return n > STORE_STATS_MAX;
}

static int
pg_session_get(uid_t uid, const char *name, store_session_cb cb, void *arg)
{
	char			 u[PG_NUM_MAX];
	const char		*v[2] = { u, name };
	struct store_session	 s;
	PGresult		*r;
	int			 found = 0;

	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	if ((r = pg_run(PS_SESSION_GET, 2, v, PGRES_TUPLES_OK,
	    "reading a session")) == NULL)
		return -1;
	if (PQntuples(r) == 1 && pg_session_row(r, 0, &s) == 0) {
		cb(arg, &s);
		found = 1;
	}
	PQclear(r);
	return found;
}

static int
pg_totals_put(const char *json)
{
	const char	*v[2] = { pg_host_id, json };

	return pg_changed(PS_TOTALS_PUT, 2, v, "saving the totals") == -1 ?
	    -1 : 0;
}

static char *
pg_totals_get(void)
{
	const char	*v[1] = { pg_host_id };
	PGresult	*r;
	char		*s = NULL;

	if ((r = pg_run(PS_TOTALS_GET, 1, v, PGRES_TUPLES_OK,
	    "reading the totals")) == NULL)
		return NULL;
	if (PQntuples(r) == 1)
		s = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return s;
}

static int
pg_totals_all(store_totals_cb cb, void *arg)
{
	PGresult	*r;
	int		 i;

	if ((r = pg_run(PS_TOTALS_ALL, 0, NULL, PGRES_TUPLES_OK,
	    "reading every host's totals")) == NULL)
		return -1;
	for (i = 0; i < PQntuples(r); i++)
		cb(arg, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
	PQclear(r);
	return 0;
}

/* --- transcripts -------------------------------------------------------- */

static int64_t
pg_transcript_size(uid_t uid, const char *name, const char *path)
{
	char		 u[PG_NUM_MAX];
	const char	*v[3] = { u, name, path };
	PGresult	*r;
	int64_t		 n = -1;

	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	if ((r = pg_run(PS_TX_SIZE, 3, v, PGRES_TUPLES_OK,
	    "transcript size")) == NULL)
		return -1;
	if (PQntuples(r) == 1)
		n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

static int
pg_transcript_append(uid_t uid, const char *name, int64_t fence,
    const char *path, uint64_t offset, const void *data, size_t len)
{
	char		 u[PG_NUM_MAX], pos[PG_NUM_MAX], f[PG_NUM_MAX];
	const char	*v[7] = { u, name, path, pg_host_id, f, pos, data };
	int		 lens[7] = { 0, 0, 0, 0, 0, 0, 0 };
	int		 fmts[7] = { 0, 0, 0, 0, 0, 0, 1 };	/* data: bytes */
	PGresult	*r;
	long		 n;
	int		 follows, rc = -1;

	if (offset > INT64_MAX || len > INT_MAX || pg_begin() == -1)
		return -1;
	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	snprintf(pos, sizeof pos, "%" PRIu64, offset);
	snprintf(f, sizeof f, "%" PRId64, fence);
	if (offset == 0) {
		if (pg_changed(PS_TX_CLEAR, 5, v, "clearing a transcript") == -1)
			goto out;
	} else if ((follows = store_transcript_follows(uid, name, path,
	    offset)) != 0) {
		rc = follows;
		goto out;
	}
	if (len == 0) {
		rc = 0;
		goto out;
	}
	lens[6] = (int)len;
	if ((r = pg_exec_prepared(PS_TX_ADD, 7, v, lens, fmts, 0,
	    "saving a transcript")) == NULL)
		goto out;
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		pg_err("saving a transcript", PQresultErrorMessage(r));
		PQclear(r);
		goto out;
	}
	n = strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	if (n == 0) {
		log_warnx("store: transcript %s of %s: not saved: lease %s is "
		    "no longer this host's", path, name, f);
		rc = 1;
		goto out;
	}
	rc = 0;
out:
	if (rc == 0)
		return pg_commit();
	pg_simple("ROLLBACK", PGRES_COMMAND_OK, "rollback");
	return rc;
}

static int
pg_transcript_load(uid_t uid, const char *name, store_transcript_cb cb,
    void *arg)
{
	char		 u[PG_NUM_MAX];
	const char	*v[2] = { u, name };
	PGresult	*r;
	uint64_t	 pos;
	int		 i;

	if (pg_ready() == -1)
		return -1;
	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	/* Binary results: the data as it was, no escaping. */
	if ((r = pg_exec_prepared(PS_TX_LOAD, 2, v, NULL, NULL, 1,
	    "reading a transcript")) == NULL)
		return -1;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err("reading a transcript", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	for (i = 0; i < PQntuples(r); i++) {
		if (PQgetlength(r, i, 1) != (int)sizeof pos)
			break;
		memcpy(&pos, PQgetvalue(r, i, 1), sizeof pos);
		if (cb(arg, PQgetvalue(r, i, 0), be64toh(pos),
		    PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2)) == -1)
			break;
	}
	PQclear(r);
	return 0;
}

static int
pg_transcript_delete(uid_t uid, const char *name)
{
	char		 u[PG_NUM_MAX];
	const char	*v[2] = { u, name };

	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	return pg_changed(PS_TX_DELETE, 2, v, "deleting transcripts") == -1 ?
	    -1 : 0;
}

/* --- audit -------------------------------------------------------------- */

static int
pg_audit_add(const struct store_audit *a)
{
	char		 t[PG_NUM_MAX], u[PG_NUM_MAX], turn[PG_NUM_MAX];
	char		 d[PG_NUM_MAX];
	const char	*v[16];

	snprintf(t, sizeof t, "%" PRId64, a->time_ms);
	snprintf(u, sizeof u, "%lu", (unsigned long)a->uid);
	snprintf(turn, sizeof turn, "%" PRIu32, a->turn);
	snprintf(d, sizeof d, "%" PRId64, a->duration_ms);
	v[0] = t;
	v[1] = u;
	v[2] = a->session;
	v[3] = turn;
	v[4] = a->kind;
	v[5] = a->tool;
	v[6] = a->digest;
	v[7] = a->excerpt;
	v[8] = a->decision;
	v[9] = a->decided_by;
	v[10] = a->duration_ms >= 0 ? d : NULL;
	v[11] = a->error ? "1" : "0";
	v[12] = a->files;
	v[13] = a->detail;
	v[14] = pg_host_id;
	v[15] = a->overlapped ? "1" : "0";
	return pg_changed(PS_AUDIT_ADD, 16, v, "saving an audit row") == -1 ?
	    -1 : 0;
}

static const char *
pg_col_null(PGresult *r, int i, int col)
{
	return PQgetisnull(r, i, col) ? NULL : PQgetvalue(r, i, col);
}

static int
pg_audit_query(const struct store_audit_query *q, store_audit_cb cb,
    void *arg)
{
	char			 after[PG_NUM_MAX], since[PG_NUM_MAX];
	char			 uid[PG_NUM_MAX], lim[PG_NUM_MAX];
	const char		*v[5];
	struct store_audit	 a;
	PGresult		*r;
	int			 i, n = 0, limit;

	limit = q->limit > 0 && q->limit < PG_QUERY_MAX ? q->limit :
	    PG_QUERY_MAX;
	snprintf(after, sizeof after, "%" PRId64, q->after_id);
	snprintf(since, sizeof since, "%" PRId64, q->since_ms);
	snprintf(uid, sizeof uid, "%lu", (unsigned long)q->uid);
	snprintf(lim, sizeof lim, "%d", limit);
	v[0] = after;
	v[1] = since;
	v[2] = q->any_uid ? NULL : uid;
	v[3] = q->session;
	v[4] = lim;
	if ((r = pg_run(PS_AUDIT_QUERY, 5, v, PGRES_TUPLES_OK,
	    "audit query")) == NULL)
		return -1;
	for (i = 0; i < PQntuples(r); i++) {
		memset(&a, 0, sizeof a);
		a.time_ms = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		a.uid = (uid_t)strtoll(PQgetvalue(r, i, 2), NULL, 10);
		a.session = PQgetvalue(r, i, 3);
		a.turn = (uint32_t)strtoll(PQgetvalue(r, i, 4), NULL, 10);
		a.kind = PQgetvalue(r, i, 5);
		a.tool = pg_col_null(r, i, 6);
		a.digest = pg_col_null(r, i, 7);
		a.excerpt = pg_col_null(r, i, 8);
		a.decision = pg_col_null(r, i, 9);
		a.decided_by = pg_col_null(r, i, 10);
		a.duration_ms = PQgetisnull(r, i, 11) ? -1 :
		    strtoll(PQgetvalue(r, i, 11), NULL, 10);
		a.error = atoi(PQgetvalue(r, i, 12));
		a.files = pg_col_null(r, i, 13);
		a.detail = pg_col_null(r, i, 14);
		a.host_id = pg_col_null(r, i, 15);
		a.overlapped = atoi(PQgetvalue(r, i, 16));
		n++;
		if (cb(arg, strtoll(PQgetvalue(r, i, 0), NULL, 10), &a) == -1)
			break;
	}
	PQclear(r);
	return n;
}

static long
pg_audit_expire(int64_t before_ms)
{
	char		 b[PG_NUM_MAX];
	const char	*v[1] = { b };

	snprintf(b, sizeof b, "%" PRId64, before_ms);
	return pg_changed(PS_AUDIT_EXPIRE, 1, v, "expiring audit rows");
}

/* --- leases ------------------------------------------------------------- */

static int
pg_lease_acquire(uid_t uid, const char *name, int64_t *fence, char *holder,
    size_t holderlen)
{
	char		 u[PG_NUM_MAX], ms[PG_NUM_MAX];
	const char	*v[4] = { u, name, pg_host_id, ms };
	PGresult	*r;

	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	snprintf(ms, sizeof ms, "%" PRIu64, pg_lease_ms);
	if ((r = pg_run(PS_LEASE_ACQUIRE, 4, v, PGRES_TUPLES_OK,
	    "taking a lease")) == NULL)
		return -1;
	if (PQntuples(r) == 1) {
		*fence = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		return 0;
	}
	PQclear(r);
	/* Who has it, for the message (it may have changed since). */
	if ((r = pg_run(PS_LEASE_HOLDER, 2, v, PGRES_TUPLES_OK,
	    "reading a lease")) == NULL)
		return -1;
	if (PQntuples(r) == 1)
		snprintf(holder, holderlen, "%s (for %s ms more)",
		    PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	else
		snprintf(holder, holderlen, "another host");
	PQclear(r);
	return 1;
}

static int
pg_lease_release(uid_t uid, const char *name, int64_t fence)
{
	char		 u[PG_NUM_MAX], f[PG_NUM_MAX];
	const char	*v[4] = { u, name, pg_host_id, f };

	snprintf(u, sizeof u, "%lu", (unsigned long)uid);
	snprintf(f, sizeof f, "%" PRId64, fence);
	return pg_changed(PS_LEASE_RELEASE, 4, v, "releasing a lease") == -1 ?
	    -1 : 0;
}

static int
pg_lease_renew(store_lease_cb cb, void *arg)
{
	char		 ms[PG_NUM_MAX];
	const char	*v[2] = { pg_host_id, ms };
	PGresult	*r;
	long long	 uid;
	int		 i, n;

	snprintf(ms, sizeof ms, "%" PRIu64, pg_lease_ms);
	if ((r = pg_run(PS_LEASE_RENEW, 2, v, PGRES_TUPLES_OK,
	    "renewing the leases")) == NULL)
		return -1;
	n = PQntuples(r);
	for (i = 0; i < n; i++) {
		uid = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		if (uid < 0 || uid >= (long long)UINT32_MAX)
			continue;
		cb(arg, (uid_t)uid, PQgetvalue(r, i, 1),
		    strtoll(PQgetvalue(r, i, 2), NULL, 10));
	}
	PQclear(r);
	return n;
}

int
store_pg_check(const char *url, char *out, size_t outlen)
{
	static const char *const keys[] = { "connect_timeout",
	    "application_name", "dbname", NULL };
	const char	*vals[] = { PG_CONNECT_TIMEOUT, "hotplexd -n", url, NULL };
	PGconn		*c;
	PGresult	*r;
	char		 schema[64];
	int		 rc = -1;

	c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		snprintf(out, outlen, "%s", c != NULL ? PQerrorMessage(c) :
		    "out of memory");
		out[strcspn(out, "\n")] = '\0';
		goto done;
	}
	r = PQexec(c, "SELECT CASE WHEN to_regclass('schema_version') IS NULL "
	    "THEN NULL ELSE (SELECT max(version) FROM schema_version) END");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		snprintf(out, outlen, "%s", PQresultErrorMessage(r));
		out[strcspn(out, "\n")] = '\0';
		PQclear(r);
		goto done;
	}
	if (PQgetisnull(r, 0, 0))
		snprintf(schema, sizeof schema, "no tables yet (made at start)");
	else if (atoi(PQgetvalue(r, 0, 0)) > PG_SCHEMA)
		snprintf(schema, sizeof schema, "schema %s, newer than %d",
		    PQgetvalue(r, 0, 0), PG_SCHEMA);
	else
		snprintf(schema, sizeof schema, "schema %s", PQgetvalue(r, 0, 0));
	rc = PQgetisnull(r, 0, 0) || atoi(PQgetvalue(r, 0, 0)) <= PG_SCHEMA ?
	    0 : -1;
	snprintf(out, outlen, "server %d, %s", PQserverVersion(c), schema);
	PQclear(r);
done:
	PQfinish(c);
	return rc;
}

const struct store_backend store_pg_backend = {
	.name = "postgresql",
	.shared = 1,
	.open = pg_open,
	.close = pg_close,
	.is_open = pg_is_open,
	.path = pg_path,
	.maintain = pg_maintain,
	.begin = pg_begin,
	.commit = pg_commit,
	.session_put = pg_session_put,
	.session_delete = pg_session_delete,
	.sessions_load = pg_sessions_load,
	.session_get = pg_session_get,
	.totals_put = pg_totals_put,
	.totals_get = pg_totals_get,
	.transcript_append = pg_transcript_append,
	.transcript_size = pg_transcript_size,
	.transcript_load = pg_transcript_load,
	.transcript_delete = pg_transcript_delete,
	.audit_add = pg_audit_add,
	.audit_query = pg_audit_query,
	.audit_expire = pg_audit_expire,
	.lease_acquire = pg_lease_acquire,
	.lease_release = pg_lease_release,
	.lease_renew = pg_lease_renew,
	.reachable = pg_reachable,
	.sessions_all = pg_sessions_all,
	.totals_all = pg_totals_all,
	.sessions_stats = pg_sessions_stats,
};
