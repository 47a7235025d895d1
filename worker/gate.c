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

#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"
#include "worker/worker.h"

struct gate {
	struct policy	*policy;	/* NULL: no rules */
	int		 threshold;
	cJSON		*allow;		/* tool names; empty: any */
	cJSON		*deny;		/* tool names */
	char		 workdir[PATH_MAX];
};

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
	const cJSON	*fw = cJSON_GetObjectItemCaseSensitive(o, "firewall");
	const cJSON	*opt = cJSON_GetObjectItemCaseSensitive(o, "options");
	const cJSON	*rules, *th, *e;
	struct policy_text texts[POLICY_MAX_FILES];
	struct gate	*g = xcalloc(1, sizeof *g);
	size_t		 n = 0;

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

	/*
	 * The rule texts the master compiled for prompts: tool calls are
	 * screened by the same rules, whatever the files say now.
	 */
	rules = cJSON_GetObjectItemCaseSensitive(fw, "rules");
	th = cJSON_GetObjectItemCaseSensitive(fw, "threshold");
	g->threshold = cJSON_IsNumber(th) ? th->valueint :
	    POLICY_DEFAULT_THRESHOLD;
	cJSON_ArrayForEach(e, rules) {
		if (n == POLICY_MAX_FILES || json_str(e, "name") == NULL ||
		    json_str(e, "text") == NULL) {
			snprintf(err, errlen, "bad firewall rules in the open "
			    "message");
			gate_free(g);
			return NULL;
		}
		texts[n].name = json_str(e, "name");
		texts[n].text = json_str(e, "text");
		texts[n].len = strlen(texts[n].text);
		n++;
	}
	if (n > 0 && (g->policy = policy_load_texts_again(texts, n, err,
	    errlen)) == NULL) {
		gate_free(g);
		return NULL;
	}
	return g;
}

void
gate_free(struct gate *g)
{
	if (g == NULL)
		return;
	policy_free(g->policy);
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
