/*
 * Prompt screening: compiles the firewall rules (built in, plus those
 * firewall_rules adds) once for the master and the workers, and writes the
 * audit log.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"
#include "supervisor/hotplexd.h"
#include "supervisor/screen.h"

#define SCREEN_AUDIT_FILE	"audit.log"
#define SCREEN_AUDIT_LINE_MAX	2048

/* Why the last glob could not read a directory (the master may not be root). */
static char	screen_glob_dir[512];
static int	screen_glob_errno;

static int
screen_glob_err(const char *path, int e)
{
	/* A missing directory is no match; an unreadable one is an error. */
	if (e == ENOENT || e == ENOTDIR)
		return 0;
	snprintf(screen_glob_dir, sizeof screen_glob_dir, "%s", path);
	screen_glob_errno = e;
	return 1;
}

/*
 * The files firewall_rules names, into g.  A directory on the way that
 * cannot be read is an error, not "no files": once the master has dropped
 * its privileges a reload reads as daemon_user, and a silent miss would
 * take the site's rules out of force.
 */
static int
screen_glob(const struct config *c, glob_t *g, char *err, size_t errlen)
{
	size_t	i;
	int	r;

	memset(g, 0, sizeof *g);
	for (i = 0; i < c->firewall_rules.n; i++) {
		screen_glob_errno = 0;
		r = glob(c->firewall_rules.v[i], i == 0 ? 0 : GLOB_APPEND,
		    screen_glob_err, g);
		if (r == GLOB_ABORTED && screen_glob_errno != 0) {
			snprintf(err, errlen, "firewall_rules %s: %s: %s (the "
			    "daemon reads it as uid %u)",
			    c->firewall_rules.v[i], screen_glob_dir,
			    strerror(screen_glob_errno), (unsigned)geteuid());
			return -1;
		}
		if (r != 0 && r != GLOB_NOMATCH) {
			snprintf(err, errlen, "firewall_rules %s: glob failed",
			    c->firewall_rules.v[i]);
			return -1;
		}
	}
	return 0;
}

/*
 * Whether what a reload reads (the rule files; the config file is the
 * caller's) can be read now: called once privileges are dropped, so that a
 * file only root may read is named at start, not at the first reload.
 */
int
screen_readable(const struct config *c, char *err, size_t errlen)
{
	glob_t	g;
	size_t	j;
	int	fd, rc = 0;

	if (!c->firewall)
		return 0;
	if (screen_glob(c, &g, err, errlen) == -1) {
		globfree(&g);
		return -1;
	}
	for (j = 0; j < g.gl_pathc && rc == 0; j++) {
		if ((fd = open(g.gl_pathv[j], O_RDONLY | O_CLOEXEC)) == -1) {
			snprintf(err, errlen, "%s: %s (the daemon reads it as "
			    "uid %u)", g.gl_pathv[j], strerror(errno),
			    (unsigned)geteuid());
			rc = -1;
		} else
			close(fd);
	}
	globfree(&g);
	return rc;
}

/* Rule sets put in force, counted: the generation status reports. */
static uint64_t	screen_generation;

/*
 * The rules in force: the built-in defaults, then the files firewall_rules
 * adds (globs, sorted within each), read and compiled here once.  Their
 * texts, kept here, go to every worker spawned while this screen is in
 * force (screen.h), so its tool calls meet the rules the prompts met,
 * whatever the files say since.
 */
struct screen *
screen_load(const struct config *c, char *err, size_t errlen)
{
	struct screen		*sc = xcalloc(1, sizeof *sc);
	struct policy_text	 texts[POLICY_MAX_FILES];
	glob_t			 g;
	size_t			 i, j, n = 0;

	sc->refs = 1;
	sc->threshold = c->firewall_threshold;
	sc->msg.threshold = sc->threshold;
	sc->msg.digest = sc->digest;
	if (!c->firewall) {
		log_warnx("firewall = off: prompts and tool calls are not "
		    "screened");
		policy_digest(texts, 0, sc->digest);
		return sc;
	}
	for (i = 0; i < policy_nbuiltin; i++)
		texts[n++] = policy_builtin[i];
	if (screen_glob(c, &g, err, errlen) == -1)
		goto fail;
	if (c->firewall_rules.n > 0 && g.gl_pathc == 0)
		log_warnx("firewall: no rule files match firewall_rules; "
		    "the built-in rules only");
	for (j = 0; j < g.gl_pathc; j++) {
		if (n == POLICY_MAX_FILES) {
			snprintf(err, errlen, "more than %d rule files with "
			    "the built-in ones", POLICY_MAX_FILES);
			goto fail;
		}
		if (policy_read_file(g.gl_pathv[j], &sc->bufs[sc->nbufs],
		    &texts[n].len, err, errlen) == -1)
			goto fail;
		texts[n].text = sc->bufs[sc->nbufs++];
		/* Kept: the name outlives the glob. */
		texts[n].name = sc->bufs[sc->nbufs++] = xstrdup(g.gl_pathv[j]);
		n++;
	}
	if ((sc->policy = policy_load_texts(texts, n, err, errlen)) == NULL)
		goto fail;
	policy_digest(texts, n, sc->digest);
	for (i = 0; i < n; i++) {
		sc->msg.files[i].name = texts[i].name;
		sc->msg.files[i].text = texts[i].text;
		sc->msg.files[i].len = texts[i].len;
	}
	sc->msg.nfiles = n;
	log_info("firewall: %zu rules from %zu files (%zu built in), "
	    "threshold %d, digest %.12s", policy_nrules(sc->policy), n,
	    policy_nbuiltin, sc->threshold, sc->digest);
	globfree(&g);
	return sc;
fail:
	globfree(&g);
	screen_unref(sc);
	return NULL;
}

/*
 * Puts a new screen (consumed) in force at start or on a reload, unless it
 * holds the rules and threshold in force already.  Spares compiled the
 * old rules: they are let go, and new sessions wait for spares given the
 * new ones.  Sessions keep the screen they have, on both sides.
 */
void
screen_install(struct screen *ns)
{
	struct screen	*old = hp.screen;

	if (old != NULL && strcmp(old->digest, ns->digest) == 0 &&
	    old->threshold == ns->threshold) {
		screen_unref(ns);
		return;
	}
	ns->generation = ns->msg.generation = ++screen_generation;
	hp.screen = ns;
	if (old != NULL) {
		log_info("firewall: rules generation %llu (digest %.12s) for "
		    "new sessions", (unsigned long long)ns->generation,
		    ns->digest);
		screen_unref(old);
		pool_screen_changed();
	}
}

struct screen *
screen_ref(struct screen *sc)
{
	sc->refs++;
	return sc;
}

void
screen_unref(struct screen *sc)
{
	size_t	i;

	if (sc == NULL || --sc->refs > 0)
		return;
	policy_free(sc->policy);
	for (i = 0; i < sc->nbufs; i++)
		free(sc->bufs[i]);
	free(sc);
}

/* One JSON line per block in state_dir/audit.log; best effort, logged. */
void
screen_audit(uid_t uid, pid_t pid, const char *session,
    const struct policy_verdict *v)
{
	char	 path[1024], ts[32];
	cJSON	*o, *a;
	char	*s;
	size_t	 i;
	time_t	 now = time(NULL);
	struct tm tm;
	int	 fd;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "time", ts);
	cJSON_AddNumberToObject(o, "uid", uid);
	cJSON_AddNumberToObject(o, "pid", pid);
	cJSON_AddStringToObject(o, "session", session);
	cJSON_AddNumberToObject(o, "score", v->score);
	a = cJSON_AddArrayToObject(o, "rules");
	for (i = 0; i < v->nmatches; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(v->matches[i].rule));
	cJSON_AddStringToObject(o, "excerpt", v->excerpt);
	s = json_print(o);
	cJSON_Delete(o);
	log_warnx("firewall: blocked a prompt of uid %ld in session %s: %s",
	    (long)uid, session, s);
	if (util_mkdirs(hp.conf->state_dir, 0700) == -1) {
		log_warn("audit: %s", hp.conf->state_dir);
		cJSON_free(s);
		return;
	}
	snprintf(path, sizeof path, "%s/%s", hp.conf->state_dir,
	    SCREEN_AUDIT_FILE);
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0600)) == -1) {
		log_warn("audit: %s", path);
		cJSON_free(s);
		return;
	}
	if (dprintf(fd, "%.*s\n", SCREEN_AUDIT_LINE_MAX, s) < 0)
		log_warn("audit: %s", path);
	close(fd);
	cJSON_free(s);
}
