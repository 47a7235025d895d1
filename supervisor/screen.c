/*
 * Prompt screening: loads the firewall rules named by firewall_rules
 * (globs, sorted within each), and writes the audit log.
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
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/policy.h"
#include "supervisor/hotplexd.h"
#include "supervisor/screen.h"

#define SCREEN_AUDIT_FILE	"audit.log"
#define SCREEN_AUDIT_LINE_MAX	2048

struct screen *
screen_load(const struct config *c, char *err, size_t errlen)
{
	struct screen	*sc = xcalloc(1, sizeof *sc);
	const char	*files[SCREEN_FILES_MAX];
	glob_t		 g;
	size_t		 i, j, n = 0;
	int		 r;

	sc->threshold = c->firewall_threshold;
	sc->files = cJSON_CreateArray();
	memset(&g, 0, sizeof g);
	for (i = 0; i < c->firewall_rules.n; i++) {
		r = glob(c->firewall_rules.v[i], i == 0 ? 0 : GLOB_APPEND,
		    NULL, &g);
		if (r != 0 && r != GLOB_NOMATCH) {
			snprintf(err, errlen, "firewall_rules %s: glob failed",
			    c->firewall_rules.v[i]);
			globfree(&g);
			screen_free(sc);
			return NULL;
		}
	}
	for (j = 0; j < g.gl_pathc; j++) {
		if (n == SCREEN_FILES_MAX) {
			snprintf(err, errlen, "more than %d rule files",
			    SCREEN_FILES_MAX);
			globfree(&g);
			screen_free(sc);
			return NULL;
		}
		files[n++] = g.gl_pathv[j];
		cJSON_AddItemToArray(sc->files,
		    cJSON_CreateString(g.gl_pathv[j]));
	}
	if (n == 0) {
		if (c->firewall_rules.n > 0)
			log_warnx("firewall: no rule files match firewall_rules; "
			    "prompts and tool calls are not screened");
		globfree(&g);
		return sc;
	}
	sc->policy = policy_load(files, n, err, errlen);
	globfree(&g);
	if (sc->policy == NULL) {
		screen_free(sc);
		return NULL;
	}
	log_info("firewall: %zu rules from %zu files, threshold %d",
	    policy_nrules(sc->policy), n, sc->threshold);
	return sc;
}

void
screen_free(struct screen *sc)
{
	if (sc == NULL)
		return;
	policy_free(sc->policy);
	cJSON_Delete(sc->files);
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
	s = cJSON_PrintUnformatted(o);
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
