/*
 * store.h on SQLite (one host): one database file in state_dir, in WAL mode, written
 * by the master only.  A commit is a write to the WAL (no fsync unless
 * store_sync is full): it survives any death of the daemon, and readers
 * (sqlite3(1), the tests) never block it.
 *
 * Checkpoints (copying the WAL back into the database, each with an
 * fdatasync of both files) run on a thread of their own with a connection
 * of its own: on the loop, every session's turn waited for the disk each
 * STATE_MAINTAIN_S (40-230 ms on a busy disk, measured); in WAL mode a
 * checkpoint and the loop's commits go on side by side.  The thread does
 * nothing else and says nothing: the loop asks for the next checkpoint and
 * logs how the last one went (sq_maintain).
 *
 * The schema is versioned with PRAGMA user_version.  A file that is not a
 * database, or one of a newer schema, is renamed aside (with its WAL) and a
 * new one made: a newer hotplexd may want it back, and a human can look.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/store-backend.h"
#include "supervisor/store.h"

#define STORE_FILE		"hotplex.db"
#define STORE_SCHEMA		4	/* bump with a migration below */
#define STORE_FILE_MODE		0600
#define STORE_DIR_MODE		0711	/* the workers' tmp/, claude/ are inside */
#define STORE_BUSY_MS		5000	/* a reader holding a lock (sqlite3(1)) */
#define STORE_QUERY_MAX		1000	/* audit rows per query */
#define STORE_SQL_MAX		1024	/* a migration's statements */
#define STORE_CKPT_COMM		"hotplexd-ckpt"	/* the checkpoint thread */

static const char *store_schema_v1 =
    "CREATE TABLE sessions ("
    " uid INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " workdir TEXT NOT NULL,"
    " cli_session_id TEXT NOT NULL,"
    " has_conversation INTEGER NOT NULL,"
    " ended INTEGER NOT NULL,"
    " options TEXT NOT NULL,"
    " stats TEXT NOT NULL,"
    " last_turn TEXT NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY (uid, name));"
    "CREATE TABLE totals ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " ended_total TEXT NOT NULL);"
    "CREATE TABLE audit ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time_ms INTEGER NOT NULL,"
    " uid INTEGER NOT NULL,"
    " session TEXT NOT NULL,"
    " turn INTEGER NOT NULL,"
    " kind TEXT NOT NULL,"
    " tool TEXT,"
    " digest TEXT,"
    " excerpt TEXT,"
    " decision TEXT,"
    " decided_by TEXT,"
    " duration_ms INTEGER,"
    " error INTEGER NOT NULL DEFAULT 0,"
    " files TEXT,"
    " detail TEXT);"
    "CREATE INDEX audit_time ON audit (time_ms);"
    "CREATE INDEX audit_owner ON audit (uid, session, id);";

/*
 * Migrations: store_migrations[v - 1] takes schema v to v + 1, in the
 * transaction that sets user_version.
 */
static const char *const store_migrations[] = {
	/* 2: the uid a session runs as (session_user = dynamic keeps it). */
	"ALTER TABLE sessions ADD COLUMN run_uid INTEGER;",
	/*
	 * 3: the CLI's transcript files, one row per piece a worker sent
	 * after a turn (appending a row is cheap; a file is never rewritten).
	 */
	"CREATE TABLE transcripts ("
	" uid INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" path TEXT NOT NULL,"
	" pos INTEGER NOT NULL,"
	" data BLOB NOT NULL,"
	" PRIMARY KEY (uid, name, path, pos));",
	/*
	 * 4: a Bash call that overlapped another of its session (its files
	 * may be the other's too: inotify does not say who wrote).
	 */
	"ALTER TABLE audit ADD COLUMN overlapped INTEGER NOT NULL DEFAULT 0;",
};

enum store_stmt {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_SESSION_PUT, ST_SESSION_DELETE, ST_SESSIONS, ST_SESSION_GET,
	ST_TOTALS_PUT, ST_TOTALS_GET,
	ST_AUDIT_ADD, ST_AUDIT_EXPIRE,
	ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
	ST_TX_SIZE, ST_TX_ADD, ST_TX_CLEAR, ST_TX_LOAD, ST_TX_DELETE,
	ST_N
};

static const char *store_sql[ST_N] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SESSION_PUT] = "INSERT INTO sessions (uid, name, workdir, "
	    "cli_session_id, has_conversation, ended, options, stats, "
	    "last_turn, updated_ms, run_uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8, ?9, ?10, ?11) ON CONFLICT (uid, name) DO UPDATE SET "
	    "workdir = ?3, cli_session_id = ?4, has_conversation = ?5, "
	    "ended = ?6, options = ?7, stats = ?8, last_turn = ?9, "
	    "updated_ms = ?10, run_uid = ?11",
	[ST_SESSION_DELETE] = "DELETE FROM sessions WHERE uid = ?1 AND "
	    "name = ?2",
	[ST_SESSIONS] = "SELECT uid, name, workdir, cli_session_id, "
	    "has_conversation, ended, options, stats, last_turn, run_uid "
	    "FROM sessions ORDER BY rowid",
	[ST_SESSION_GET] = "SELECT uid, name, workdir, cli_session_id, "
	    "has_conversation, ended, options, stats, last_turn, run_uid "
	    "FROM sessions WHERE uid = ?1 AND name = ?2",
	[ST_TOTALS_PUT] = "INSERT OR REPLACE INTO totals (id, ended_total) "
	    "VALUES (1, ?1)",
	[ST_TOTALS_GET] = "SELECT ended_total FROM totals WHERE id = 1",
	[ST_AUDIT_ADD] = "INSERT INTO audit (time_ms, uid, session, turn, "
	    "kind, tool, digest, excerpt, decision, decided_by, duration_ms, "
	    "error, files, detail, overlapped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
	[ST_AUDIT_EXPIRE] = "DELETE FROM audit WHERE time_ms < ?1",
	/* Nests in sq_begin()'s batch, unlike BEGIN. */
	[ST_SAVEPOINT] = "SAVEPOINT piece",
	[ST_RELEASE] = "RELEASE piece",
	[ST_ROLLBACK_TO] = "ROLLBACK TO piece",
	[ST_TX_SIZE] = "SELECT coalesce(sum(length(data)), 0) FROM transcripts "
	    "WHERE uid = ?1 AND name = ?2 AND path = ?3",
	[ST_TX_ADD] = "INSERT INTO transcripts (uid, name, path, pos, data) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_TX_CLEAR] = "DELETE FROM transcripts WHERE uid = ?1 AND name = ?2 "
	    "AND path = ?3",
	[ST_TX_LOAD] = "SELECT path, pos, data FROM transcripts WHERE "
	    "uid = ?1 AND name = ?2 ORDER BY path, pos",
	[ST_TX_DELETE] = "DELETE FROM transcripts WHERE uid = ?1 AND name = ?2",
};

static int	 sq_transcript_delete(uid_t, const char *);
static int	 store_ckpt_start(const char *, int);

static sqlite3		*store_db;
static sqlite3_stmt	*store_stmts[ST_N];
static char		*store_file;

/* The checkpoint thread; what it shares with the loop is under lock. */
static struct {
	pthread_t	 thread;
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	sqlite3		*db;		/* its own connection */
	int		 running;
	int		 asked;		/* a checkpoint to do */
	int		 quit;
	unsigned	 ran;		/* checkpoints done */
	unsigned	 told;		/* of them, logged */
	int		 rc, log, done;	/* the last one's answer */
	char		 err[128];
} ckpt = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void
store_err(const char *what)
{
	log_warnx("store: %s: %s", what, store_db != NULL ?
	    sqlite3_errmsg(store_db) : "not open");
}

/* Runs a prepared statement that returns no row; resets it. */
static int
store_run(enum store_stmt i, const char *what)
{
	sqlite3_stmt	*st = store_stmts[i];
	int		 rc;

	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_err(what);
		return -1;
	}
	return 0;
}

static void
store_text(sqlite3_stmt *st, int col, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

/* --- opening ------------------------------------------------------------ */

/* Renames path (and its WAL and shared memory) aside; 0 when done. */
static int
store_set_aside(const char *path)
{
	static const char *const tails[] = { "-wal", "-shm" };
	char	*bad, *from, *to;
	size_t	 j;

	if ((bad = util_set_aside(path)) == NULL) {
		log_warn("store: %s not renamed aside", path);
		return -1;
	}
	/* Its journal goes with it, under the same name. */
	for (j = 0; j < sizeof tails / sizeof tails[0]; j++) {
		xasprintf(&from, "%s%s", path, tails[j]);
		xasprintf(&to, "%s%s", bad, tails[j]);
		if (rename(from, to) == -1 && errno != ENOENT)
			log_warn("store: rename %s", from);
		free(from);
		free(to);
	}
	log_warnx("store: %s renamed to %s; starting with no sessions", path,
	    bad);
	free(bad);
	return 0;
}

static void
store_finalize(void)
{
	int	i;

	for (i = 0; i < ST_N; i++) {
		sqlite3_finalize(store_stmts[i]);
		store_stmts[i] = NULL;
	}
	if (store_db != NULL)
		sqlite3_close(store_db);
	store_db = NULL;
}

static int
store_pragma_int(const char *sql, int *v)
{
	sqlite3_stmt	*st;
	int		 rc;

	if (sqlite3_prepare_v2(store_db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -1;
}

/*
 * The file is ours, a regular file of mode 0600 (made so before SQLite
 * opens it, whatever the umask); 1 if it is something else.
 */
static int
store_create_file(const char *path)
{
	struct stat	st;
	int		fd;

	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    STORE_FILE_MODE);
	if (fd == -1)
		return errno == ELOOP ? 1 : -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 1;
	}
	close(fd);
	return 0;
}

/*
 * One attempt; 1 if the file should be set aside (why says so), -1 on
 * another failure.
 */
static int
store_try_open(const char *path, int full_sync, char *why, size_t whylen)
{
	const char	*mode = NULL;
	char		 sql[STORE_SQL_MAX];
	sqlite3_stmt	*st;
	int		 version, n, i, rc;

	if ((rc = store_create_file(path)) != 0) {
		snprintf(why, whylen, "%s", rc == 1 ? "not a regular file" :
		    strerror(errno));
		return rc;
	}
	if (sqlite3_open_v2(path, &store_db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(why, whylen, "%s", store_db != NULL ?
		    sqlite3_errmsg(store_db) : "out of memory");
		return -1;
	}
	sqlite3_busy_timeout(store_db, STORE_BUSY_MS);
	/*
	 * The first read of the file, before anything is written to it: a
	 * file that is not a database, or of a newer schema, is kept intact.
	 */
	if (store_pragma_int("PRAGMA user_version", &version) == -1) {
		snprintf(why, whylen, "not a database: %s",
		    sqlite3_errmsg(store_db));
		return 1;
	}
	if (version > STORE_SCHEMA) {
		snprintf(why, whylen, "schema version %d is newer than %d",
		    version, STORE_SCHEMA);
		return 1;
	}
	if (version == 0 && (store_pragma_int("SELECT count(*) FROM "
	    "sqlite_master", &n) == -1 || n != 0)) {
		snprintf(why, whylen, "a database of no hotplexd schema");
		return 1;
	}
	if (sqlite3_prepare_v2(store_db, "PRAGMA journal_mode = WAL", -1, &st,
	    NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW ||
	    (mode = (const char *)sqlite3_column_text(st, 0)) == NULL ||
	    strcmp(mode, "wal") != 0) {
		snprintf(why, whylen, "cannot use WAL: %s",
		    sqlite3_errmsg(store_db));
		sqlite3_finalize(st);
		return 1;
	}
	sqlite3_finalize(st);
	/*
	 * No checkpoint inside a commit (it synchronizes the database: a turn
	 * would wait for the disk): sq_maintain() does them.
	 */
	if (sqlite3_exec(store_db, full_sync ? "PRAGMA synchronous = FULL" :
	    "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_wal_autocheckpoint(store_db, 0) != SQLITE_OK) {
		snprintf(why, whylen, "%s", sqlite3_errmsg(store_db));
		return 1;
	}
	if (version == 0) {
		if (sqlite3_exec(store_db, "BEGIN", NULL, NULL, NULL) !=
		    SQLITE_OK ||
		    sqlite3_exec(store_db, store_schema_v1, NULL, NULL, NULL) !=
		    SQLITE_OK ||
		    sqlite3_exec(store_db, "PRAGMA user_version = 1; COMMIT",
		    NULL, NULL, NULL) != SQLITE_OK) {
			snprintf(why, whylen, "creating the schema: %s",
			    sqlite3_errmsg(store_db));
			return -1;
		}
		log_info("store: created %s (schema 1)", path);
		version = 1;
	}
	for (; version < STORE_SCHEMA; version++) {
		snprintf(sql, sizeof sql, "BEGIN; %s PRAGMA user_version = %d; "
		    "COMMIT", store_migrations[version - 1], version + 1);
		if (sqlite3_exec(store_db, sql, NULL, NULL, NULL) != SQLITE_OK) {
			snprintf(why, whylen, "migrating schema %d to %d: %s",
			    version, version + 1, sqlite3_errmsg(store_db));
			sqlite3_exec(store_db, "ROLLBACK", NULL, NULL, NULL);
			return 1;
		}
		log_info("store: %s migrated to schema %d", path, version + 1);
	}
	for (i = 0; i < ST_N; i++) {
		if (sqlite3_prepare_v3(store_db, store_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &store_stmts[i], NULL) !=
		    SQLITE_OK) {
			snprintf(why, whylen, "a table of the wrong shape: %s",
			    sqlite3_errmsg(store_db));
			return 1;
		}
	}
	/* Reads every session page: a damaged table shows now. */
	if (store_pragma_int("SELECT count(*) FROM sessions", &n) == -1) {
		snprintf(why, whylen, "%s", sqlite3_errmsg(store_db));
		return 1;
	}
	return 0;
}

static int
sq_open(const struct store_params *p)
{
	const char	*dir = p->dir;
	int		 full_sync = p->full_sync;
	char		 why[256];
	int		 rc, tries;

	if (util_mkdirs(dir, STORE_DIR_MODE) == -1) {
		log_warn("store: mkdir %s", dir);
		return -1;
	}
	free(store_file);
	xasprintf(&store_file, "%s/%s", dir, STORE_FILE);
	for (tries = 0; tries < 2; tries++) {
		rc = store_try_open(store_file, full_sync, why, sizeof why);
		if (rc == 0) {
			log_info("store: %s open (WAL, synchronous %s)",
			    store_file, full_sync ? "full" : "normal");
			(void)store_ckpt_start(store_file, full_sync);
			return 0;
		}
		store_finalize();
		log_warnx("store: %s: %s", store_file, why);
		if (rc == -1 || store_set_aside(store_file) == -1)
			break;
	}
	log_warnx("store: running without a store: sessions and the audit "
	    "are not kept");
	return -1;
}

/* --- checkpoints --------------------------------------------------------- */

static void *
store_ckpt_main(void *arg)
{
	int	rc, log, done;

	pthread_mutex_lock(&ckpt.lock);
	for (;;) {
		while (!ckpt.asked && !ckpt.quit)
			pthread_cond_wait(&ckpt.cond, &ckpt.lock);
		if (ckpt.quit)
			break;
		ckpt.asked = 0;
		pthread_mutex_unlock(&ckpt.lock);
		log = done = 0;
		rc = sqlite3_wal_checkpoint_v2(ckpt.db, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		pthread_mutex_lock(&ckpt.lock);
		ckpt.rc = rc;
		ckpt.log = log;
		ckpt.done = done;
		if (rc != SQLITE_OK)
			snprintf(ckpt.err, sizeof ckpt.err, "%s",
			    sqlite3_errmsg(ckpt.db));
		ckpt.ran++;
	}
	pthread_mutex_unlock(&ckpt.lock);
	return NULL;
}

/*
 * The thread and its connection, once the store is open; -1 if either
 * cannot be had (the loop then checkpoints itself, as before).  It takes
 * no signal: they are the loop's (libevent's handlers).
 */
static int
store_ckpt_start(const char *path, int full_sync)
{
	sigset_t	 all, old;
	sqlite3_stmt	*st = NULL;
	const char	*mode;
	int		 e;

	if (sqlite3_threadsafe() == 0) {
		log_warnx("store: SQLite built without threads: checkpoints "
		    "on the loop");
		return -1;
	}
	/*
	 * Synchronized as the loop's connection (a checkpoint follows its
	 * connection's setting), and the file read once: a connection that
	 * has not seen it in WAL mode checkpoints nothing.
	 */
	if (sqlite3_open_v2(path, &ckpt.db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(ckpt.db, full_sync ? "PRAGMA synchronous = FULL" :
	    "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(ckpt.db, "PRAGMA journal_mode", -1, &st,
	    NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW ||
	    (mode = (const char *)sqlite3_column_text(st, 0)) == NULL ||
	    strcmp(mode, "wal") != 0) {
		sqlite3_finalize(st);
		log_warnx("store: a checkpoint connection: %s: checkpoints on "
		    "the loop", ckpt.db != NULL ? sqlite3_errmsg(ckpt.db) :
		    "out of memory");
		sqlite3_close(ckpt.db);
		ckpt.db = NULL;
		return -1;
	}
	sqlite3_finalize(st);
	ckpt.asked = ckpt.quit = 0;
	ckpt.ran = ckpt.told = 0;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e = pthread_create(&ckpt.thread, NULL, store_ckpt_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		log_warnx("store: a checkpoint thread: %s: checkpoints on the "
		    "loop", strerror(e));
		sqlite3_close(ckpt.db);
		ckpt.db = NULL;
		return -1;
	}
	/* Named apart in ps -L and /proc/PID/task. */
	(void)pthread_setname_np(ckpt.thread, STORE_CKPT_COMM);
	ckpt.running = 1;
	return 0;
}

static void
store_ckpt_stop(void)
{
	if (!ckpt.running)
		return;
	pthread_mutex_lock(&ckpt.lock);
	ckpt.quit = 1;
	pthread_cond_signal(&ckpt.cond);
	pthread_mutex_unlock(&ckpt.lock);
	pthread_join(ckpt.thread, NULL);
	ckpt.running = 0;
	sqlite3_close(ckpt.db);
	ckpt.db = NULL;
}

/* How the last checkpoint went (logged once), and the next one asked. */
static void
sq_maintain(void)
{
	int	log = 0, done = 0, rc;
	char	err[sizeof ckpt.err];

	if (store_db == NULL)
		return;
	if (!ckpt.running) {
		if (sqlite3_wal_checkpoint_v2(store_db, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK)
			store_err("checkpoint");
		else if (log > 0)
			log_debug("store: checkpoint, %d of %d WAL frames",
			    done, log);
		return;
	}
	pthread_mutex_lock(&ckpt.lock);
	rc = SQLITE_OK;
	if (ckpt.told != ckpt.ran) {
		ckpt.told = ckpt.ran;
		rc = ckpt.rc;
		log = ckpt.log;
		done = ckpt.done;
		memcpy(err, ckpt.err, sizeof err);
	}
	ckpt.asked = 1;
	pthread_cond_signal(&ckpt.cond);
	pthread_mutex_unlock(&ckpt.lock);
	if (rc != SQLITE_OK)
		log_warnx("store: checkpoint: %s", err);
	else if (log > 0)
		log_debug("store: checkpoint, %d of %d WAL frames", done, log);
}

static void
sq_close(void)
{
	store_ckpt_stop();
	if (store_db != NULL) {
		/* Leaves no WAL behind for the next start to replay. */
		if (sqlite3_wal_checkpoint_v2(store_db, NULL,
		    SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) != SQLITE_OK)
			store_err("checkpoint");
	}
	store_finalize();
	free(store_file);
	store_file = NULL;
}

static int
sq_is_open(void)
{
	return store_db != NULL;
}

static const char *
sq_path(void)
{
	return store_file;
}

static int
sq_begin(void)
{
	return store_db == NULL ? -1 : store_run(ST_BEGIN, "begin");
}

static int
sq_commit(void)
{
	if (store_db == NULL)
		return -1;
	if (store_run(ST_COMMIT, "commit") == -1) {
		store_run(ST_ROLLBACK, "rollback");
		return -1;
	}
	return 0;
}

/* --- sessions ----------------------------------------------------------- */

static int
sq_session_put(const struct store_session *s)
{
	sqlite3_stmt	*st = store_stmts[ST_SESSION_PUT];

	if (store_db == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)s->uid);
	store_text(st, 2, s->name);
	store_text(st, 3, s->workdir);
	store_text(st, 4, s->cli_session_id);
	sqlite3_bind_int(st, 5, s->has_conversation != 0);
	sqlite3_bind_int(st, 6, s->ended != 0);
	store_text(st, 7, s->options);
	store_text(st, 8, s->stats);
	store_text(st, 9, s->last_turn);
	sqlite3_bind_int64(st, 10, util_wall_ms());
	if (s->run_uid >= 0)
		sqlite3_bind_int64(st, 11, s->run_uid);
	else
		sqlite3_bind_null(st, 11);
	return store_run(ST_SESSION_PUT, "saving a session");
}

static int
sq_session_delete(uid_t uid, const char *name, int64_t fence)
{
	sqlite3_stmt	*st = store_stmts[ST_SESSION_DELETE];

	if (store_db == NULL)
		return -1;
	if (sq_transcript_delete(uid, name) == -1)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)uid);
	store_text(st, 2, name);
	return store_run(ST_SESSION_DELETE, "deleting a session");
}

static const char *
store_col(sqlite3_stmt *st, int i)
{
	const char	*s = (const char *)sqlite3_column_text(st, i);

	return s != NULL ? s : "";
}

/* The current row of a sessions query; -1 if its uid is not one. */
static int
sq_session_row(sqlite3_stmt *st, struct store_session *s)
{
	sqlite3_int64	uid;

	memset(s, 0, sizeof *s);
	uid = sqlite3_column_int64(st, 0);
	if (uid < 0 || uid >= (sqlite3_int64)UINT32_MAX)
		return -1;
	s->uid = (uid_t)uid;
	s->name = store_col(st, 1);
	s->workdir = store_col(st, 2);
	s->cli_session_id = store_col(st, 3);
	s->has_conversation = sqlite3_column_int(st, 4);
	s->ended = sqlite3_column_int(st, 5);
	s->options = store_col(st, 6);
	s->stats = store_col(st, 7);
	s->last_turn = store_col(st, 8);
	s->run_uid = sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 :
	    sqlite3_column_int64(st, 9);
	return 0;
}

static int
sq_sessions_load(store_session_cb cb, void *arg)
{
	sqlite3_stmt		*st = store_stmts[ST_SESSIONS];
	struct store_session	 s;
	int			 rc;

	if (store_db == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (sq_session_row(st, &s) == 0)
			cb(arg, &s);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_err("reading the sessions");
		return -1;
	}
	return 0;
}

static int
sq_session_get(uid_t uid, const char *name, store_session_cb cb, void *arg)
{
	sqlite3_stmt		*st = store_stmts[ST_SESSION_GET];
	struct store_session	 s;
	int			 rc, found = 0;

	if (store_db == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)uid);
	store_text(st, 2, name);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW &&
	    sq_session_row(st, &s) == 0) {
		cb(arg, &s);
		found = 1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_err("reading a session");
		return -1;
	}
	return found;
}

static int
sq_totals_put(const char *json)
{
	if (store_db == NULL)
		return -1;
	store_text(store_stmts[ST_TOTALS_PUT], 1, json);
	return store_run(ST_TOTALS_PUT, "saving the totals");
}

static char *
sq_totals_get(void)
{
	sqlite3_stmt	*st = store_stmts[ST_TOTALS_GET];
	char		*s = NULL;

	if (store_db == NULL)
		return NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		s = xstrdup(store_col(st, 0));
	sqlite3_reset(st);
	return s;
}

/* --- transcripts -------------------------------------------------------- */

static void
store_tx_key(enum store_stmt i, uid_t uid, const char *name, const char *path)
{
	sqlite3_stmt	*st = store_stmts[i];

	sqlite3_bind_int64(st, 1, (sqlite3_int64)uid);
	store_text(st, 2, name);
	if (path != NULL)
		store_text(st, 3, path);
}

static int64_t
sq_transcript_size(uid_t uid, const char *name, const char *path)
{
	sqlite3_stmt	*st = store_stmts[ST_TX_SIZE];
	int64_t		 n = -1;

	if (store_db == NULL)
		return -1;
	store_tx_key(ST_TX_SIZE, uid, name, path);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	else
		store_err("transcript size");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return n;
}

static int
sq_transcript_append(uid_t uid, const char *name, int64_t fence,
    const char *path, uint64_t offset, const void *data, size_t len)
{
	sqlite3_stmt	*st = store_stmts[ST_TX_ADD];
	int		 rc = -1;

	if (store_db == NULL || offset > INT64_MAX || len > INT_MAX)
		return -1;
	if (store_run(ST_SAVEPOINT, "savepoint") == -1)
		return -1;
	if (offset == 0) {
		store_tx_key(ST_TX_CLEAR, uid, name, path);
		if (store_run(ST_TX_CLEAR, "clearing a transcript") == -1)
			goto out;
	} else if ((rc = store_transcript_follows(uid, name, path,
	    offset)) != 0)
		goto out;
	if (len == 0) {
		rc = 0;
		goto out;
	}
	store_tx_key(ST_TX_ADD, uid, name, path);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)offset);
	sqlite3_bind_blob(st, 5, data, (int)len, SQLITE_STATIC);
	rc = store_run(ST_TX_ADD, "saving a transcript");
out:
	if (rc != 0)
		store_run(ST_ROLLBACK_TO, "rollback to savepoint");
	if (store_run(ST_RELEASE, "release") == -1 && rc == 0)
		rc = -1;
	return rc;
}

static int
sq_transcript_load(uid_t uid, const char *name, store_transcript_cb cb,
    void *arg)
{
	sqlite3_stmt	*st = store_stmts[ST_TX_LOAD];
	const void	*data;
	int		 rc;

	if (store_db == NULL)
		return -1;
	store_tx_key(ST_TX_LOAD, uid, name, NULL);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		data = sqlite3_column_blob(st, 2);
		if (cb(arg, store_col(st, 0),
		    (uint64_t)sqlite3_column_int64(st, 1),
		    data != NULL ? data : "",
		    (size_t)sqlite3_column_bytes(st, 2)) == -1) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		store_err("reading a transcript");
		return -1;
	}
	return 0;
}

static int
sq_transcript_delete(uid_t uid, const char *name)
{
	if (store_db == NULL)
		return -1;
	store_tx_key(ST_TX_DELETE, uid, name, NULL);
	return store_run(ST_TX_DELETE, "deleting transcripts");
}

/* --- audit -------------------------------------------------------------- */

static int
sq_audit_add(const struct store_audit *a)
{
	sqlite3_stmt	*st = store_stmts[ST_AUDIT_ADD];

	if (store_db == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, a->time_ms);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)a->uid);
	store_text(st, 3, a->session);
	sqlite3_bind_int64(st, 4, a->turn);
	store_text(st, 5, a->kind);
	store_text(st, 6, a->tool);
	store_text(st, 7, a->digest);
	store_text(st, 8, a->excerpt);
	store_text(st, 9, a->decision);
	store_text(st, 10, a->decided_by);
	if (a->duration_ms >= 0)
		sqlite3_bind_int64(st, 11, a->duration_ms);
	else
		sqlite3_bind_null(st, 11);
	sqlite3_bind_int(st, 12, a->error != 0);
	store_text(st, 13, a->files);
	store_text(st, 14, a->detail);
	sqlite3_bind_int(st, 15, a->overlapped != 0);
	return store_run(ST_AUDIT_ADD, "saving an audit row");
}

static const char *
store_col_null(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int
sq_audit_query(const struct store_audit_query *q, store_audit_cb cb,
    void *arg)
{
	sqlite3_stmt		*st;
	struct store_audit	 a;
	int			 rc, n = 0, limit;

	if (store_db == NULL)
		return -1;
	limit = q->limit > 0 && q->limit < STORE_QUERY_MAX ? q->limit :
	    STORE_QUERY_MAX;
	/* Bound as parameters; a NULL one matches everything. */
	if (sqlite3_prepare_v2(store_db, "SELECT id, time_ms, uid, session, "
	    "turn, kind, tool, digest, excerpt, decision, decided_by, "
	    "duration_ms, error, files, detail, overlapped FROM audit WHERE "
	    "id > ?1 AND time_ms >= ?2 AND (?3 IS NULL OR uid = ?3) AND (?4 "
	    "IS NULL OR session = ?4) ORDER BY id LIMIT ?5", -1, &st, NULL) != SQLITE_OK) {
		store_err("audit query");
		return -1;
	}
	sqlite3_bind_int64(st, 1, q->after_id);
	sqlite3_bind_int64(st, 2, q->since_ms);
	if (!q->any_uid)
		sqlite3_bind_int64(st, 3, (sqlite3_int64)q->uid);
	store_text(st, 4, q->session);
	sqlite3_bind_int(st, 5, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&a, 0, sizeof a);
		a.time_ms = sqlite3_column_int64(st, 1);
		a.uid = (uid_t)sqlite3_column_int64(st, 2);
		a.session = store_col(st, 3);
		a.turn = (uint32_t)sqlite3_column_int64(st, 4);
		a.kind = store_col(st, 5);
		a.tool = store_col_null(st, 6);
		a.digest = store_col_null(st, 7);
		a.excerpt = store_col_null(st, 8);
		a.decision = store_col_null(st, 9);
		a.decided_by = store_col_null(st, 10);
		a.duration_ms = sqlite3_column_type(st, 11) == SQLITE_NULL ?
		    -1 : sqlite3_column_int64(st, 11);
		a.error = sqlite3_column_int(st, 12);
		a.files = store_col_null(st, 13);
		a.detail = store_col_null(st, 14);
		a.overlapped = sqlite3_column_int(st, 15);
		n++;
		if (cb(arg, sqlite3_column_int64(st, 0), &a) == -1) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		store_err("audit query");
		return -1;
	}
	return n;
}

static long
sq_audit_expire(int64_t before_ms)
{
	if (store_db == NULL)
		return -1;
	sqlite3_bind_int64(store_stmts[ST_AUDIT_EXPIRE], 1, before_ms);
	if (store_run(ST_AUDIT_EXPIRE, "expiring audit rows") == -1)
		return -1;
	return (long)sqlite3_changes(store_db);
}

const struct store_backend store_sqlite_backend = {
	.name = "sqlite",
	.shared = 0,
	.open = sq_open,
	.close = sq_close,
	.is_open = sq_is_open,
	.path = sq_path,
	.maintain = sq_maintain,
	.begin = sq_begin,
	.commit = sq_commit,
	.session_put = sq_session_put,
	.session_delete = sq_session_delete,
	.sessions_load = sq_sessions_load,
	.session_get = sq_session_get,
	.totals_put = sq_totals_put,
	.totals_get = sq_totals_get,
	.transcript_append = sq_transcript_append,
	.transcript_size = sq_transcript_size,
	.transcript_load = sq_transcript_load,
	.transcript_delete = sq_transcript_delete,
	.audit_add = sq_audit_add,
	.audit_query = sq_audit_query,
	.audit_expire = sq_audit_expire,
};
