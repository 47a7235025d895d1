/*
 * The gate: answers the CLI's can_use_tool questions.  A tool call passes
 * when the tool lists allow it, its Bash command and file paths pass the
 * firewall rules, and a write stays inside the workdir.  Anything
 * malformed is denied.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/proto.h"
#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"
#include "worker/worker.h"

struct gate {
	const struct policy *policy;	/* gate_set's; NULL: no rules */
	int		 threshold;
	cJSON		*allow;		/* tool names; empty: any */
	cJSON		*deny;		/* tool names */
	char		 workdir[PATH_MAX];
};

/*
 * The worker's rules, from the master once (MSG_POLICY) while a spare:
 * compiled then, so that a session's open compiles nothing.  A spare of
 * a root daemon is root, and the master is not trusted with root: it
 * compiles as root only its own built-in texts (the master's byte for
 * byte), and leaves a site's rule files (firewall_rules) to
 * gate_rules_ready, once it is the session's user and confined.
 */
static struct {
	int		 loaded;
	struct policy	*policy;
	int		 threshold;
	char		 digest[POLICY_DIGEST_LEN + 1];
	struct policy_text texts[POLICY_MAX_FILES];	/* deferred */
	size_t		 ntexts;
	char		*copy;		/* their names and bytes */
} gate_set;

/* Are the texts the built-in ones, in order?  Then ours are compiled. */
static int
gate_rules_builtin(const struct msg_policy *p)
{
	size_t	i;

	if (p->nfiles != policy_nbuiltin)
		return 0;
	for (i = 0; i < p->nfiles; i++)
		if (strcmp(p->files[i].name, policy_builtin[i].name) != 0 ||
		    p->files[i].len != policy_builtin[i].len ||
		    memcmp(p->files[i].text, policy_builtin[i].text,
		    p->files[i].len) != 0)
			return 0;
	return 1;
}

int
gate_rules_load(const struct msg_policy *p, char *err, size_t errlen)
{
	struct policy_text	 t[MSG_POLICY_FILES_MAX];
	size_t			 i, need = 0;
	char			*at;

	if (gate_set.loaded) {
		snprintf(err, errlen, "rules sent twice");
		return -1;
	}
	gate_set.loaded = 1;
	gate_set.threshold = p->threshold > 0 ? p->threshold :
	    POLICY_DEFAULT_THRESHOLD;
	for (i = 0; i < p->nfiles; i++) {
		t[i].name = p->files[i].name;
		t[i].text = p->files[i].text;
		t[i].len = p->files[i].len;
		need += strlen(t[i].name) + 1 + t[i].len;
	}
	policy_digest(t, p->nfiles, gate_set.digest);
	if (strcmp(gate_set.digest, p->digest) != 0) {
		snprintf(err, errlen, "rules digest %.12s, the master says "
		    "%.12s", gate_set.digest, p->digest);
		return -1;
	}
	if (p->nfiles == 0)
		return 0;		/* firewall = off */
	if (geteuid() != 0 || gate_rules_builtin(p)) {
		gate_set.policy = policy_load_texts_again(geteuid() != 0 ?
		    t : policy_builtin, p->nfiles, err, errlen);
		if (gate_set.policy == NULL)
			return -1;
		log_debug("firewall: %zu rules loaded, each compiled on "
		    "first use (generation %llu)",
		    policy_nrules(gate_set.policy),
		    (unsigned long long)p->generation);
		return 0;
	}
	/* A site's rules: kept, compiled once we are not root. */
	at = gate_set.copy = xmalloc(need);
	for (i = 0; i < p->nfiles; i++) {
		gate_set.texts[i].name = memcpy(at, t[i].name,
		    strlen(t[i].name) + 1);
		at += strlen(t[i].name) + 1;
		gate_set.texts[i].text = memcpy(at, t[i].text, t[i].len);
		gate_set.texts[i].len = t[i].len;
		at += t[i].len;
	}
	gate_set.ntexts = p->nfiles;
	return 0;
}

int
gate_rules_ready(char *err, size_t errlen)
{
	if (gate_set.ntexts == 0)
		return 0;
	gate_set.policy = policy_load_texts_again(gate_set.texts,
	    gate_set.ntexts, err, errlen);
	gate_set.ntexts = 0;
	free(gate_set.copy);
	gate_set.copy = NULL;
	return gate_set.policy != NULL ? 0 : -1;
}

int
gate_rules_loaded(void)
{
	return gate_set.loaded;
}

const char *
gate_rules_digest(void)
{
	return gate_set.digest;
}

/* Input members that hold a path, for the path rules. */
static const char *gate_path_keys[] = {
	"file_path", "notebook_path", "path", NULL
};

static int
gate_listed(const cJSON *arr, const char *tool)
{
	const cJSON	*e;

	cJSON_ArrayForEach(e, arr)
		if (cJSON_IsString(e) && strcmp(e->valuestring, tool) == 0)
			return 1;
	return 0;
}

/* Adds the strings of src (may be NULL) to dst. */
static void
gate_merge(cJSON *dst, const cJSON *src)
{
	const cJSON	*e;

	cJSON_ArrayForEach(e, src)
		if (cJSON_IsString(e) && !gate_listed(dst, e->valuestring))
			cJSON_AddItemToArray(dst,
			    cJSON_CreateString(e->valuestring));
}

struct gate *
gate_new(const cJSON *o, const char *workdir, char *err, size_t errlen)
{
	const cJSON	*opt = cJSON_GetObjectItemCaseSensitive(o, "options");
	struct gate	*g = xcalloc(1, sizeof *g);

	snprintf(g->workdir, sizeof g->workdir, "%s", workdir);
	g->allow = cJSON_CreateArray();
	g->deny = cJSON_CreateArray();
	/* The daemon's lists bound every session; a session narrows them. */
	gate_merge(g->allow, cJSON_GetObjectItemCaseSensitive(o, "allowed_tools"));
	gate_merge(g->deny, cJSON_GetObjectItemCaseSensitive(o,
	    "disallowed_tools"));
	if (cJSON_GetArraySize(g->allow) == 0)
		gate_merge(g->allow, cJSON_GetObjectItemCaseSensitive(opt,
		    "allowed_tools"));
	gate_merge(g->deny, cJSON_GetObjectItemCaseSensitive(opt,
	    "disallowed_tools"));

	g->policy = gate_set.policy;
	g->threshold = gate_set.threshold;
	return g;
}

void
gate_free(struct gate *g)
{
	if (g == NULL)
		return;
	cJSON_Delete(g->allow);
	cJSON_Delete(g->deny);
	free(g);
}

/* Does a path to be written (relative to the workdir) stay inside it? */
static int
gate_inside(const struct gate *g, const char *path)
{
	char	 buf[PATH_MAX], real[PATH_MAX], *slash;
	size_t	 n = strlen(g->workdir);
	struct stat st;

	if (path[0] == '/')
		snprintf(buf, sizeof buf, "%s", path);
	else if ((size_t)snprintf(buf, sizeof buf, "%s/%s", g->workdir,
	    path) >= sizeof buf)
		return 0;
	/* The deepest existing ancestor decides (symlinks resolved). */
	while (lstat(buf, &st) == -1) {
		if ((slash = strrchr(buf, '/')) == NULL || slash == buf)
			return 0;
		*slash = '\0';
	}
	if (realpath(buf, real) == NULL)
		return 0;
	return strncmp(real, g->workdir, n) == 0 &&
	    (real[n] == '\0' || real[n] == '/');
}

static int
gate_rules(const struct gate *g, enum policy_target target, const char *text,
    const char **by, char *reason, size_t len)
{
	struct policy_verdict	v;

	if (g->policy == NULL)
		return 0;
	if (policy_check(g->policy, target, text, strlen(text), g->threshold,
	    &v) == 0 && !v.blocked) {
		if (v.nmatches > 0)
			log_info("firewall: %s allowed with score %d (%s)",
			    policy_target_name(target), v.score,
			    v.matches[0].rule);
		return 0;
	}
	*by = "firewall";
	snprintf(reason, len, "blocked by rule %s (%s): %s",
	    v.nmatches > 0 ? v.matches[0].rule : "?",
	    v.nmatches > 0 ? v.matches[0].category : "?",
	    v.nmatches > 0 ? v.matches[0].message : "input refused");
	log_warnx("firewall: denied %s \"%.80s\" score %d: %s",
	    policy_target_name(target), text, v.score, reason);
	return -1;
}

int
gate_check(struct gate *g, const char *tool, const cJSON *input,
    const char **by, char *reason, size_t len)
{
	const cJSON	*cmd, *p;
	size_t		 i;

	*by = "policy";
	if (tool == NULL || !cJSON_IsObject(input)) {
		snprintf(reason, len, "malformed permission request");
		return -1;
	}
	if (gate_listed(g->deny, tool) || (cJSON_GetArraySize(g->allow) > 0 &&
	    !gate_listed(g->allow, tool))) {
		snprintf(reason, len, "tool %s is not allowed in this session",
		    tool);
		return -1;
	}
	if (strcmp(tool, "Bash") == 0) {
		cmd = cJSON_GetObjectItemCaseSensitive(input, "command");
		if (!cJSON_IsString(cmd)) {
			snprintf(reason, len, "Bash call without a command");
			return -1;
		}
		if (gate_rules(g, POLICY_BASH, cmd->valuestring, by, reason,
		    len) == -1)
			return -1;
	}
	for (i = 0; gate_path_keys[i] != NULL; i++) {
		p = cJSON_GetObjectItemCaseSensitive(input, gate_path_keys[i]);
		if (p == NULL)
			continue;
		if (!cJSON_IsString(p)) {
			snprintf(reason, len, "%s is not a string",
			    gate_path_keys[i]);
			return -1;
		}
		if (gate_rules(g, POLICY_PATH, p->valuestring, by, reason,
		    len) == -1)
			return -1;
		if (proto_tool_writes(tool) && !gate_inside(g,
		    p->valuestring)) {
			*by = "policy";
			snprintf(reason, len, "%s outside the workdir is not "
			    "allowed", p->valuestring);
			return -1;
		}
	}
	return 0;
}
