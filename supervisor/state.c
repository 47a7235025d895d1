/*
 * The session table in state_dir, across restarts: STATE_FILE holds every
 * session's name, owner, workdir, CLI session id, options and stats, so a
 * restarted hotplexd resumes each conversation (--resume) and keeps
 * counting.  Writes are atomic (temp file, fsync, rename, fsync of the
 * directory) and coalesced: state_dirty() arms a short timer, so a burst of
 * changes is one write and a crash loses at most STATE_SAVE_DELAY_MS.
 * A file we cannot use is renamed aside, never fatal.
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

#include "common/log.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"

#define STATE_FILE		"sessions.json"
#define STATE_TMP_SUFFIX	".tmp"
#define STATE_BAD_SUFFIX	".bad-"	/* then the time, maybe .N */
#define STATE_BAD_TRIES		100
#define STATE_VERSION		1	/* bump when the shape changes */
#define STATE_SAVE_DELAY_MS	200	/* coalescing window of state_dirty */
#define STATE_FILE_MAX		(64U * 1024 * 1024)	/* bytes read or written */
#define STATE_DIR_MODE		0711	/* the workers' tmp/, claude/ are inside */
#define STATE_FILE_MODE		0600
#define STATE_UID_MAX		((double)UINT32_MAX - 1)	/* -1 is no uid */

static struct event	*state_timer;
static int		 state_loading;	/* state_dirty() is a no-op meanwhile */

/* --- writing ------------------------------------------------------------ */

static cJSON *
state_session_json(const struct session *s)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "session", s->name);
	cJSON_AddNumberToObject(o, "uid", (double)s->uid);
	cJSON_AddStringToObject(o, "workdir", s->workdir);
	cJSON_AddStringToObject(o, "cli_session_id", s->cli_session_id);
	cJSON_AddBoolToObject(o, "has_conversation", s->has_conversation);
	cJSON_AddBoolToObject(o, "ended", s->state == SESSION_ENDED);
	cJSON_AddItemToObject(o, "options", cJSON_Duplicate(s->options, 1));
	cJSON_AddItemToObject(o, "stats", stats_to_json(&s->total));
	cJSON_AddItemToObject(o, "last_turn", stats_to_json(&s->last));
	return o;
}

/* The whole file's text; the caller frees it with cJSON_free. */
static char *
state_text(void)
{
	cJSON		*root = cJSON_CreateObject(), *a;
	struct session	*s;
	char		*text;

	cJSON_AddNumberToObject(root, "version", STATE_VERSION);
	cJSON_AddNumberToObject(root, "saved", (double)time(NULL));
	cJSON_AddItemToObject(root, "ended_total",
	    stats_to_json(&hp.ended_total));
	a = cJSON_AddArrayToObject(root, "sessions");
	TAILQ_FOREACH(s, &hp.sessions, entry)
		cJSON_AddItemToArray(a, state_session_json(s));
	if ((text = cJSON_PrintUnformatted(root)) == NULL)
		fatalx("state: out of memory");
	cJSON_Delete(root);
	return text;
}

static int
state_write_all(int fd, const char *p, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The rename is durable only once the directory is on disk too. */
static int
state_sync_dir(const char *dir)
{
	int	fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
state_mkdir(const char *dir)
{
	if (util_mkdirs(dir, STATE_DIR_MODE) == -1) {
		log_warn("state: mkdir %s", dir);
		return -1;
	}
	return 0;
}

/* Writes the table now: temp file, fsync, rename, fsync the directory. */
static void
state_write(void)
{
	const char	*dir = hp.conf->state_dir;
	char		*text, *path, *tmp;
	size_t		 len;
	int		 fd;

	if (state_mkdir(dir) == -1)
		return;
	text = state_text();
	len = strlen(text);
	if (len > STATE_FILE_MAX) {
		log_warnx("state: %zu bytes is over the limit of %u: not saved",
		    len, STATE_FILE_MAX);
		cJSON_free(text);
		return;
	}
	xasprintf(&path, "%s/%s", dir, STATE_FILE);
	xasprintf(&tmp, "%s%s", path, STATE_TMP_SUFFIX);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    STATE_FILE_MODE);
	if (fd == -1) {
		log_warn("state: %s", tmp);
		goto out;
	}
	if (state_write_all(fd, text, len) == -1 || fsync(fd) == -1) {
		log_warn("state: write %s", tmp);
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) == -1) {
		log_warn("state: close %s", tmp);
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) == -1) {
		log_warn("state: rename %s to %s", tmp, path);
		unlink(tmp);
		goto out;
	}
	if (state_sync_dir(dir) == -1)
		log_warn("state: fsync %s", dir);
	log_debug("state: saved %zu bytes to %s", len, path);
out:
	cJSON_free(text);
	free(tmp);
	free(path);
}

static void
state_timer_fire(evutil_socket_t fd, short what, void *arg)
{
	state_write();
}

void
state_dirty(void)
{
	struct timeval	tv = { 0, STATE_SAVE_DELAY_MS * 1000 };

	if (state_loading || hp.base == NULL)
		return;
	if (state_timer == NULL &&
	    (state_timer = evtimer_new(hp.base, state_timer_fire, NULL)) == NULL)
		fatalx("state: evtimer_new");
	/* Not pushed back by later changes: a crash loses one window at most. */
	if (!evtimer_pending(state_timer, NULL))
		evtimer_add(state_timer, &tv);
}

void
state_save(void)
{
	if (state_timer != NULL) {
		event_free(state_timer);
		state_timer = NULL;
	}
	state_write();
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

static const char *
state_jstr(const cJSON *o, const char *k)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
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

/* One entry of "sessions"; 0 if its shape is right. */
static int
state_check_entry(const cJSON *e, char *why, size_t whylen)
{
	const char	*name = state_jstr(e, "session");
	const char	*wd = state_jstr(e, "workdir");
	const char	*id = state_jstr(e, "cli_session_id");
	const cJSON	*uid = cJSON_GetObjectItemCaseSensitive(e, "uid");
	struct stats	 st;
	int		 rc;

	if (!cJSON_IsObject(e) || name == NULL || !proto_valid_session(name)) {
		snprintf(why, whylen, "a session without a valid name");
		return -1;
	}
	if (!cJSON_IsNumber(uid) || uid->valuedouble < 0 ||
	    uid->valuedouble > STATE_UID_MAX ||
	    uid->valuedouble != floor(uid->valuedouble) ||
	    wd == NULL || wd[0] != '/' || strlen(wd) >= PATH_MAX ||
	    id == NULL || !state_valid_cli_id(id) ||
	    !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(e,
	    "has_conversation")) ||
	    !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(e, "ended")) ||
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(e, "options"))) {
		snprintf(why, whylen, "session %s: bad uid, workdir, "
		    "cli_session_id, has_conversation, ended or options", name);
		return -1;
	}
	stats_init(&st);
	rc = stats_from_json(&st, cJSON_GetObjectItemCaseSensitive(e, "stats"));
	if (rc == 0)
		rc = stats_from_json(&st,
		    cJSON_GetObjectItemCaseSensitive(e, "last_turn"));
	stats_clear(&st);
	if (rc == -1) {
		snprintf(why, whylen, "session %s: bad stats", name);
		return -1;
	}
	return 0;
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
		/* Names are the table's key. */
		for (f = a->child; f != e; f = f->next)
			if (strcmp(state_jstr(f, "session"),
			    state_jstr(e, "session")) == 0) {
				snprintf(why, whylen, "session %s twice",
				    state_jstr(e, "session"));
				return -1;
			}
	}
	return 0;
}

/* A checked entry back into the table, dormant or ended. */
static void
state_restore(const cJSON *e)
{
	struct session	*s;

	s = session_new(state_jstr(e, "session"),
	    (uid_t)cJSON_GetObjectItemCaseSensitive(e, "uid")->valuedouble,
	    state_jstr(e, "workdir"),
	    cJSON_GetObjectItemCaseSensitive(e, "options"));
	snprintf(s->cli_session_id, sizeof s->cli_session_id, "%s",
	    state_jstr(e, "cli_session_id"));
	s->has_conversation = cJSON_IsTrue(
	    cJSON_GetObjectItemCaseSensitive(e, "has_conversation"));
	s->state = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ended")) ?
	    SESSION_ENDED : SESSION_DORMANT;
	stats_from_json(&s->total, cJSON_GetObjectItemCaseSensitive(e, "stats"));
	stats_from_json(&s->last,
	    cJSON_GetObjectItemCaseSensitive(e, "last_turn"));
	log_info("session %s restored %s: cli session %s%s, %llu turns",
	    s->name, proto_state_name(s->state), s->cli_session_id,
	    s->has_conversation ? " (resumable)" : "",
	    (unsigned long long)s->total.turns);
}

/*
 * Keeps a file we cannot use for a human to look at (a newer hotplexd may
 * want it back), under a name no earlier one has.
 */
static void
state_set_aside(const char *path)
{
	char	*bad;
	int	 i, rc;

	for (i = 0; i < STATE_BAD_TRIES; i++) {
		if (i == 0)
			xasprintf(&bad, "%s%s%lld", path, STATE_BAD_SUFFIX,
			    (long long)time(NULL));
		else
			xasprintf(&bad, "%s%s%lld.%d", path, STATE_BAD_SUFFIX,
			    (long long)time(NULL), i);
		rc = renameat2(AT_FDCWD, path, AT_FDCWD, bad, RENAME_NOREPLACE);
		if (rc == -1 && errno == EINVAL)	/* no NOREPLACE here */
			rc = rename(path, bad);
		if (rc == 0) {
			log_warnx("state: %s renamed to %s; starting with no "
			    "sessions", path, bad);
			free(bad);
			return;
		}
		if (errno != EEXIST) {
			log_warn("state: rename %s to %s", path, bad);
			free(bad);
			return;
		}
		free(bad);
	}
	log_warnx("state: %s: %d names taken, not renamed", path,
	    STATE_BAD_TRIES);
}

void
state_load(void)
{
	char		*path, *text, why[256];
	cJSON		*root;
	const cJSON	*e;
	int		 aside, rc, n = 0;

	if (state_mkdir(hp.conf->state_dir) == -1)
		return;
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
	if ((e = cJSON_GetObjectItemCaseSensitive(root, "ended_total")) != NULL)
		stats_from_json(&hp.ended_total, e);
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "sessions")) {
		state_restore(e);
		n++;
	}
	state_loading = 0;
	log_info("state: %d sessions restored from %s", n, path);
	cJSON_Delete(root);
	free(path);
}
