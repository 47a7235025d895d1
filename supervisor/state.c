/*
 * The session table across restarts, in the store (store.h): a session's
 * row is written when it changes, and a turn's end is committed before its
 * done line goes to the client, so whatever a client saw survives a crash.
 * A restarted hotplexd resumes each conversation (--resume) and keeps
 * counting.  The sessions.json of earlier versions is imported once and
 * renamed STATE_FILE.migrated.
 *
 * A shared store is connected to from the loop: until it answers the
 * table cannot be read, and until the hosts' channel listens no move can
 * be asked or heard; meanwhile the session ops are refused
 * (state_serving()) and /readyz says why.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/ident.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/census.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"

#define STATE_FILE		"sessions.json"	/* before the store */
#define STATE_MIGRATED_SUFFIX	".migrated"
#define STATE_VERSION		1	/* the last sessions.json format */
#define STATE_FILE_MAX		(64U * 1024 * 1024)	/* bytes read */
#define STATE_UID_MAX		((double)UINT32_MAX - 1)	/* -1 is no uid */

#define STATE_MAINTAIN_S	5	/* between two store_maintain() */

static int		 state_loading;	/* saves are no-ops meanwhile */
static int		 state_importing;	/* sessions.json: no leases */
static struct event	*state_timer;
static int		 state_loaded;	/* the table read from the store */
static int		 state_channel;	/* the hosts' channel listened once */
static int		 state_served;	/* both: said once in the log */
static uint64_t		 state_start_ms;	/* for that line */
static char		 state_host[STATE_HOST_ID_MAX + 1];

/* --- this host ---------------------------------------------------------- */

int
state_valid_host_id(const char *id)
{
	size_t	len = strlen(id);

	return len > 0 && len <= STATE_HOST_ID_MAX && strspn(id,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	    "._:-") == len;
}

/* host_id, else the host name (cut at the first dot if it is too long). */
static void
state_host_init(void)
{
	char	name[256];

	if (hp.conf->host_id != NULL) {
		snprintf(state_host, sizeof state_host, "%s", hp.conf->host_id);
		return;
	}
	if (gethostname(name, sizeof name) == -1) {
		log_warn("state: gethostname");
		snprintf(name, sizeof name, "localhost");
	}
	name[sizeof name - 1] = '\0';
	if (strlen(name) > STATE_HOST_ID_MAX)
		name[strcspn(name, ".")] = '\0';
	snprintf(state_host, sizeof state_host, "%s", name);
	if (!state_valid_host_id(state_host))
		fatalx("state: host name \"%s\" is not a valid host_id: set "
		    "host_id", name);
}

const char *
state_host_id(void)
{
	return state_host;
}

/* --- writing ------------------------------------------------------------ */

static char *
state_print(cJSON *o)
{
	char	*t;

	t = json_print(o);
	cJSON_Delete(o);
	return t;
}

int
state_session_save(struct session *s)
{
	struct store_session	 r;
	char			*opt, *st, *last;
	int			 rc;

	if (state_loading || !store_is_open())
		return 0;
	/* Not this host's to write (a shared store's lease is elsewhere). */
	if (store_shared() && s->lease_fence == 0 && !state_importing)
		return STORE_FENCED;
	opt = json_print(s->options);
	st = state_print(stats_to_json(&s->total));
	last = state_print(stats_to_json(&s->last));
	if (opt == NULL)
		fatalx("state: out of memory");
	memset(&r, 0, sizeof r);
	r.uid = s->uid;
	r.name = s->name;
	r.fence = state_importing ? 0 : s->lease_fence;
	r.workdir = s->workdir;
	r.cli_session_id = s->cli_session_id;
	r.has_conversation = s->has_conversation;
	r.ended = s->state == SESSION_ENDED;
	r.options = opt;
	r.stats = st;
	r.last_turn = last;
	r.run_uid = s->run_known ? (int64_t)s->run.uid : -1;
	if ((rc = store_session_put(&r)) == -1)
		log_warnx("session %s: not saved", s->name);
	cJSON_free(opt);
	cJSON_free(st);
	cJSON_free(last);
	if (rc == STORE_FENCED)
		lease_lost(s, "another host took the session's lease; this "
		    "host's change was not saved");
	/* Its last row is in: any host may take it up again. */
	else if (rc == 0 && s->state == SESSION_ENDED && !state_importing)
		lease_drop(s);
	return rc;
}

void
state_session_forget(const struct session *s)
{
	if (!state_loading && store_is_open())
		store_session_delete(s->uid, s->name, s->lease_fence);
}

void
state_totals_save(void)
{
	char	*t;
	cJSON	*j;

	if (state_loading || !store_is_open())
		return;
	j = stats_to_json(&hp.ended_total);
	/* What forgotten sessions cost, per uid (uid_budget_usd). */
	cJSON_AddItemToObject(j, "uid_cost_usd", budget_totals_json());
	t = state_print(j);
	store_totals_put(t);
	cJSON_free(t);
}

static void
state_maintain(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv = { STATE_MAINTAIN_S, 0 };

	store_maintain();
	evtimer_add(state_timer, &tv);
}

void
state_close(void)
{
	if (state_timer != NULL)
		event_free(state_timer);
	state_timer = NULL;
	move_close();
	lease_close();
	store_close();
}

/* --- reading ------------------------------------------------------------ */

/*
 * The file's text, NUL-terminated, or NULL with *aside set when the file
 * is there but unusable (not a regular file, too big), clear when it is
 * missing (why empty) or we may not read it.
 */
static char *
state_read(const char *path, int *aside, char *why, size_t whylen)
{
	struct stat	 st;
	char		*buf;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd;

	*aside = 0;
	why[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ELOOP)	/* a symbolic link: not ours */
			*aside = 1;
		if (errno != ENOENT)
			snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	*aside = 1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (uintmax_t)st.st_size > STATE_FILE_MAX) {
		snprintf(why, whylen, "not a regular file of at most %u bytes",
		    STATE_FILE_MAX);
		close(fd);
		return NULL;
	}
	/* One byte more than the limit tells a file that grew meanwhile. */
	buf = xmalloc(STATE_FILE_MAX + 2);
	while (len <= STATE_FILE_MAX) {
		n = read(fd, buf + len, STATE_FILE_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(why, whylen, "read: %s", strerror(errno));
			*aside = 0;
			goto bad;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > STATE_FILE_MAX) {
		snprintf(why, whylen, "over %u bytes", STATE_FILE_MAX);
		goto bad;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
bad:
	close(fd);
	free(buf);
	return NULL;
}

/* What we pass to the CLI after --resume: a UUID-like word. */
static int
state_valid_cli_id(const char *id)
{
	size_t	len = strlen(id);

	if (len == 0 || len > UUID_STR_LEN || id[0] == '-')
		return 0;
	return strspn(id, "0123456789abcdefABCDEF-") == len;
}

/*
 * A session row, from the store or from sessions.json (one decoder for
 * both): its options and stats parsed and checked.
 */
struct state_row {
	const struct store_session	*r;
	cJSON				*options;
	struct stats			 total;
	struct stats			 last;
};

static void
state_row_clear(struct state_row *d)
{
	cJSON_Delete(d->options);
	stats_clear(&d->total);
	stats_clear(&d->last);
}

/* Decodes r into d (clear it after); 0, or -1 with why. */
static int
state_decode(const struct store_session *r, struct state_row *d, char *why,
    size_t whylen)
{
	cJSON	*st, *last;
	int	 rc;

	memset(d, 0, sizeof *d);
	d->r = r;
	stats_init(&d->total);
	stats_init(&d->last);
	if (r->name == NULL || !proto_valid_session(r->name)) {
		snprintf(why, whylen, "a session without a valid name");
		return -1;
	}
	if (r->workdir == NULL || r->workdir[0] != '/' ||
	    strlen(r->workdir) >= PATH_MAX || r->cli_session_id == NULL ||
	    !state_valid_cli_id(r->cli_session_id) || r->options == NULL ||
	    !cJSON_IsObject(d->options = cJSON_Parse(r->options))) {
		snprintf(why, whylen, "session %s of uid %ld: bad workdir, "
		    "cli_session_id or options", r->name, (long)r->uid);
		return -1;
	}
	st = r->stats != NULL ? cJSON_Parse(r->stats) : NULL;
	last = r->last_turn != NULL ? cJSON_Parse(r->last_turn) : NULL;
	rc = stats_from_json(&d->total, st) == -1 ||
	    stats_from_json(&d->last, last) == -1 ? -1 : 0;
	cJSON_Delete(st);
	cJSON_Delete(last);
	if (rc == -1)
		snprintf(why, whylen, "session %s of uid %ld: bad stats",
		    r->name, (long)r->uid);
	return rc;
}

/*
 * A sessions.json entry as a row: its JSON members checked for type,
 * options and stats printed into text[] (the caller frees them); the
 * values are state_decode's to check.
 */
static int
state_entry(const cJSON *e, struct store_session *r, char *text[3],
    char *why, size_t whylen)
{
	static const char *const keys[3] = { "options", "stats", "last_turn" };
	const cJSON	*uid = cJSON_GetObjectItemCaseSensitive(e, "uid");
	const cJSON	*conv = cJSON_GetObjectItemCaseSensitive(e,
			    "has_conversation");
	const cJSON	*ended = cJSON_GetObjectItemCaseSensitive(e, "ended");
	const char	*name = json_str(e, "session");
	const cJSON	*v;
	int		 i;

	memset(r, 0, sizeof *r);
	for (i = 0; i < 3; i++)
		text[i] = NULL;
	if (!cJSON_IsObject(e) || name == NULL || !proto_valid_session(name)) {
		snprintf(why, whylen, "a session without a valid name");
		return -1;
	}
	if (!cJSON_IsNumber(uid) || uid->valuedouble < 0 ||
	    uid->valuedouble > STATE_UID_MAX ||
	    uid->valuedouble != floor(uid->valuedouble) ||
	    !cJSON_IsBool(conv) || !cJSON_IsBool(ended)) {
		snprintf(why, whylen, "session %s: bad uid, has_conversation "
		    "or ended", name);
		return -1;
	}
	r->uid = (uid_t)uid->valuedouble;
	r->name = name;
	r->workdir = json_str(e, "workdir");
	r->cli_session_id = json_str(e, "cli_session_id");
	r->has_conversation = cJSON_IsTrue(conv);
	r->ended = cJSON_IsTrue(ended);
	for (i = 0; i < 3; i++)
		if ((v = cJSON_GetObjectItemCaseSensitive(e, keys[i])) != NULL)
			text[i] = json_print(v);
	r->options = text[0];
	r->stats = text[1];
	r->last_turn = text[2];
	r->run_uid = -1;	/* sessions.json did not keep it */
	return 0;
}

/* One entry of "sessions"; 0 if it decodes. */
static int
state_check_entry(const cJSON *e, char *why, size_t whylen)
{
	struct store_session	 r;
	struct state_row	 d;
	char			*text[3];
	int			 rc, i;

	if ((rc = state_entry(e, &r, text, why, whylen)) == 0) {
		rc = state_decode(&r, &d, why, whylen);
		state_row_clear(&d);
	}
	for (i = 0; i < 3; i++)
		cJSON_free(text[i]);
	return rc;
}

/* The whole document; 1 if it is of a newer version, -1 if bad. */
static int
state_check(const cJSON *root, char *why, size_t whylen)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(root, "version");
	const cJSON	*a = cJSON_GetObjectItemCaseSensitive(root, "sessions");
	const cJSON	*e, *f;
	struct stats	 st;
	int		 rc;

	if (!cJSON_IsObject(root) || !cJSON_IsNumber(v) ||
	    v->valuedouble < 1 || v->valuedouble != floor(v->valuedouble)) {
		snprintf(why, whylen, "no valid \"version\"");
		return -1;
	}
	if (v->valuedouble > STATE_VERSION) {
		snprintf(why, whylen, "format version %.0f is newer than %d",
		    v->valuedouble, STATE_VERSION);
		return 1;
	}
	if (!cJSON_IsArray(a)) {
		snprintf(why, whylen, "no \"sessions\" array");
		return -1;
	}
	/* Optional: stats of sessions that max_ended_sessions dropped. */
	f = cJSON_GetObjectItemCaseSensitive(root, "ended_total");
	stats_init(&st);
	rc = f != NULL ? stats_from_json(&st, f) : 0;
	stats_clear(&st);
	if (rc == -1) {
		snprintf(why, whylen, "bad \"ended_total\"");
		return -1;
	}
	cJSON_ArrayForEach(e, a) {
		if (state_check_entry(e, why, whylen) == -1)
			return -1;
		/* (uid, name) is the table's key: names are per uid. */
		for (f = a->child; f != e; f = f->next)
			if (strcmp(json_str(f, "session"),
			    json_str(e, "session")) == 0 &&
			    cJSON_GetObjectItemCaseSensitive(f, "uid")->valuedouble
			    == cJSON_GetObjectItemCaseSensitive(e, "uid")->valuedouble) {
				snprintf(why, whylen, "session %s of uid %.0f "
				    "twice", json_str(e, "session"),
				    cJSON_GetObjectItemCaseSensitive(e,
				    "uid")->valuedouble);
				return -1;
			}
	}
	return 0;
}

/* The table's session of that owner and name, if any. */
static struct session *
state_find(uid_t uid, const char *name)
{
	struct session	*s;

	TAILQ_FOREACH(s, &hp.sessions, entry)
		if (s->uid == uid && strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

/*
 * session_user = dynamic: a session runs as the uid it had before the
 * restart (its HOME, config dir and transcripts are that uid's), if the
 * range still holds it and no other session took it.
 */
static void
state_dynamic_uid(struct session *s, int64_t run_uid)
{
	uid_t		 lo, hi;
	char		 why[256];

	if (run_uid <= 0 || s->state == SESSION_ENDED ||
	    hp.conf->session_user == NULL ||
	    strcmp(hp.conf->session_user, "dynamic") != 0 ||
	    ident_range_parse(hp.conf->dynamic_uids, &lo, &hi) == -1 ||
	    run_uid < lo || run_uid > hi)
		return;
	if (census_run_held((uid_t)run_uid) > 0) {
		log_warnx("session %s: uid %lld is held by another session; "
		    "it gets another", s->name, (long long)run_uid);
		return;
	}
	if (isolation_ident(s->uid, (gid_t)s->uid, NULL, 0, (uid_t)run_uid,
	    &s->run, why, sizeof why) == -1) {
		log_warnx("session %s: uid %lld: %s", s->name,
		    (long long)run_uid, why);
		return;
	}
	s->run_known = 1;
	session_run_count(s);
}

/*
 * A row into the table, from the store or sessions.json (from), unless
 * its session is there already (the store's rows are read first and win);
 * 1 if added.  A row we cannot use is skipped.
 */
static int
state_restore_row(const struct store_session *r, const char *from)
{
	struct state_row	 d;
	struct session		*s;
	char			 why[256];
	int			 rc = 0;

	if (state_decode(r, &d, why, sizeof why) == -1) {
		log_warnx("state: %s: %s; skipped", from, why);
		goto out;
	}
	if (state_find(r->uid, r->name) != NULL)
		goto out;
	s = session_new(r->name, r->uid, r->workdir, d.options);
	snprintf(s->cli_session_id, sizeof s->cli_session_id, "%s",
	    r->cli_session_id);
	s->has_conversation = r->has_conversation != 0;
	if (r->ended)
		session_end(s);
	stats_copy(&s->total, &d.total);
	stats_copy(&s->last, &d.last);
	state_dynamic_uid(s, r->run_uid);
	log_info("session %s restored %s from %s: cli session %s%s, %llu "
	    "turns%s", s->name, proto_state_name(s->state), from,
	    s->cli_session_id, s->has_conversation ? " (resumable)" : "",
	    (unsigned long long)s->total.turns, s->run_known ?
	    ", its dynamic uid kept" : "");
	rc = 1;
out:
	state_row_clear(&d);
	return rc;
}

static void
state_restore_stored(void *arg, const struct store_session *r)
{
	int	*n = arg;

	*n += state_restore_row(r, "the store");
}

/*
 * A shared store's row onto a session (made when *sp is NULL): a session
 * another host served, taken over, or this host's own brought up to date.
 */
static void
state_adopt_row(void *arg, const struct store_session *r)
{
	struct session		**sp = arg, *s = *sp;
	struct state_row	 d;
	char			 why[256];

	if (state_decode(r, &d, why, sizeof why) == -1) {
		log_warnx("state: the store: %s; skipped", why);
		goto out;
	}
	if (s == NULL)
		s = *sp = session_new(r->name, r->uid, r->workdir, d.options);
	snprintf(s->cli_session_id, sizeof s->cli_session_id, "%s",
	    r->cli_session_id);
	s->has_conversation = r->has_conversation != 0;
	if (r->ended && s->state != SESSION_ENDED)
		session_end(s);
	if (!s->run_known)
		state_dynamic_uid(s, r->run_uid);
	stats_clear(&s->total);
	stats_clear(&s->last);
	stats_init(&s->total);
	stats_init(&s->last);
	stats_copy(&s->total, &d.total);
	stats_copy(&s->last, &d.last);
	log_info("session %s of uid %ld: as host %s left it: cli session %s%s, "
	    "%llu turns", s->name, (long)r->uid, r->host_id != NULL ?
	    r->host_id : "?", s->cli_session_id, s->has_conversation ?
	    " (resumable)" : "", (unsigned long long)s->total.turns);
out:
	state_row_clear(&d);
}

struct session *
state_session_adopt(uid_t uid, const char *name)
{
	struct session	*s = NULL;

	state_loading = 1;	/* nothing written back meanwhile */
	store_session_get(uid, name, state_adopt_row, &s);
	state_loading = 0;
	return s;
}

int
state_session_refresh(struct session *s)
{
	int	rc;

	state_loading = 1;
	rc = store_session_get(s->uid, s->name, state_adopt_row, &s);
	state_loading = 0;
	return rc == -1 ? -1 : 0;
}

/* A checked sessions.json entry into the table. */
static void
state_restore(const cJSON *e)
{
	struct store_session	 r;
	char			*text[3], why[256];
	int			 i;

	if (state_entry(e, &r, text, why, sizeof why) == 0)
		state_restore_row(&r, STATE_FILE);
	for (i = 0; i < 3; i++)
		cJSON_free(text[i]);
}

/*
 * Keeps a file we cannot use for a human to look at (a newer hotplexd may
 * want it back), under a name no earlier one has.
 */
static void
state_set_aside(const char *path)
{
	char	*bad;

	if ((bad = util_set_aside(path)) == NULL) {
		log_warn("state: %s not renamed aside", path);
		return;
	}
	log_warnx("state: %s renamed to %s; starting with no sessions", path,
	    bad);
	free(bad);
}

/*
 * sessions.json of an earlier hotplexd: its sessions join the table (the
 * store's rows win), are written to the store, and the file is renamed so
 * that it is imported once.  A file we cannot use is set aside.
 */
static void
state_migrate(void)
{
	char		*path, *done, *text, why[256];
	cJSON		*root;
	const cJSON	*e;
	struct session	*s;
	struct stats	 et;
	int		 aside, rc, n = 0;

	xasprintf(&path, "%s/%s", hp.conf->state_dir, STATE_FILE);
	if ((text = state_read(path, &aside, why, sizeof why)) == NULL) {
		if (why[0] != '\0')
			log_warnx("state: %s: %s", path, why);
		if (aside)
			state_set_aside(path);
		free(path);
		return;
	}
	if ((root = cJSON_Parse(text)) == NULL) {
		snprintf(why, sizeof why, "not JSON");
		rc = -1;
	} else
		rc = state_check(root, why, sizeof why);
	free(text);
	if (rc != 0) {
		log_warnx("state: %s: %s", path, why);
		state_set_aside(path);
		cJSON_Delete(root);
		free(path);
		return;
	}
	state_loading = 1;
	stats_init(&et);
	if ((e = cJSON_GetObjectItemCaseSensitive(root, "ended_total")) != NULL &&
	    stats_from_json(&et, e) == 0)
		stats_add(&hp.ended_total, &et);
	stats_clear(&et);
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "sessions")) {
		state_restore(e);
		n++;
	}
	state_loading = 0;
	cJSON_Delete(root);
	if (!store_is_open()) {
		log_info("state: %d sessions read from %s", n, path);
		free(path);
		return;
	}
	/* One transaction: all of the file is in the store, or none. */
	rc = store_begin();
	state_importing = 1;
	TAILQ_FOREACH(s, &hp.sessions, entry)
		state_session_save(s);
	state_importing = 0;
	state_totals_save();
	if (rc == 0 && store_commit() == 0) {
		xasprintf(&done, "%s%s", path, STATE_MIGRATED_SUFFIX);
		if (rename(path, done) == -1)
			log_warn("state: rename %s to %s", path, done);
		else
			log_info("state: %d sessions of %s imported into %s; the "
			    "file is now %s", n, path, store_path(), done);
		free(done);
	}
	free(path);
}

/* /metrics' running totals start from what was restored: one walk. */
static void
state_all_total(void)
{
	struct session	*s;

	stats_clear(&hp.all_total);
	stats_add(&hp.all_total, &hp.ended_total);
	hp.rate_limits = 0;
	TAILQ_FOREACH(s, &hp.sessions, entry) {
		stats_add(&hp.all_total, &s->total);
		hp.rate_limits += s->rate_limits;
	}
}

/* Sessions are served once the table is read and the channel listens. */
static void
state_serve_check(void)
{
	if (state_served || !state_loaded || (store_shared() &&
	    !state_channel))
		return;
	state_served = 1;
	if (store_shared())
		log_info("state: serving sessions: the store and the hosts' "
		    "channel are up (%llu ms after start)",
		    (unsigned long long)(util_now_ms() - state_start_ms));
}

/* move.c: the hosts' channel listens (again). */
void
state_channel_up(void)
{
	state_channel = 1;
	state_serve_check();
}

/*
 * 1 when the session ops may run; 0 with why, while a host just started
 * waits for its shared store or the hosts' channel.
 */
int
state_serving(char *why, size_t len)
{
	char	detail[256];

	if (state_served)
		return 1;
	if (!state_loaded) {
		store_reachable(detail, sizeof detail);
		snprintf(why, len, "this host is starting: the store is not "
		    "open yet (%s)", detail);
	} else
		snprintf(why, len, "this host is starting: the hosts' channel "
		    "is not listening yet");
	return 0;
}

/*
 * The table from the store, once it answers; then leases and moves.  -1
 * if a shared store failed to give the rows (nothing changed: tried
 * again at its next connection).
 */
static int
state_load_stored(void)
{
	char			*t;
	cJSON			*j;
	int			 n = 0;

	state_loading = 1;
	/* Rows come whole or not at all: the table is still empty. */
	if (store_sessions_load(state_restore_stored, &n) == -1 &&
	    store_shared()) {
		state_loading = 0;
		log_warnx("state: the sessions of %s not read; again at the "
		    "next connection", store_path());
		return -1;
	}
	if ((t = store_totals_get()) != NULL) {
		if ((j = cJSON_Parse(t)) == NULL ||
		    stats_from_json(&hp.ended_total, j) == -1)
			log_warnx("store: bad totals; ignored");
		else
			budget_totals_load(cJSON_GetObjectItemCaseSensitive(j,
			    "uid_cost_usd"));
		cJSON_Delete(j);
		free(t);
	}
	state_loading = 0;
	state_all_total();
	if (store_is_open())
		log_info("state: %d sessions restored from %s", n,
		    store_path());
	state_migrate();
	lease_init();
	move_init();
	if ((state_timer = evtimer_new(hp.base, state_maintain, NULL)) == NULL)
		fatalx("state: evtimer_new");
	event_priority_set(state_timer, HP_PRIO_BULK);
	state_maintain(-1, 0, NULL);
	state_loaded = 1;
	state_serve_check();
	return 0;
}

void
state_load(void)
{
	struct store_params	 p;

	state_host_init();
	state_start_ms = util_now_ms();
	memset(&p, 0, sizeof p);
	p.url = hp.conf->store;
	p.dir = hp.conf->state_dir;
	p.full_sync = hp.conf->store_sync != NULL &&
	    strcmp(hp.conf->store_sync, "full") == 0;
	p.host_id = state_host;
	p.lease_ms = hp.conf->lease_timeout_ms;
	p.base = hp.base;
	p.ready = state_load_stored;
	/* Hosts share it: serving without it could run a session twice. */
	if (store_open(&p) == -1 && store_url_is_pg(p.url))
		fatalx("store: cannot use the shared store; not starting");
	if (store_shared()) {
		log_info("state: no session served until %s answers and the "
		    "hosts' channel listens", store_path());
		return;
	}
	state_load_stored();
}
