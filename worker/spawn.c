/*
 * The CLI's spec from the open message: its argv, its scrubbed
 * environment, the session's identity and directories, its sandbox.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/xmalloc.h"
#include "worker/worker.h"

#define SPAWN_PRIVATE_MODE	0700	/* the CLI's config dir */
#define SPAWN_CONFIG_DIR	".claude"	/* in the session's HOME */

/*
 * With the sandbox on, the CLI's own bubblewrap sandbox (Bash tool) must
 * stay off: it needs user and mount namespaces, which our seccomp profile
 * and Landlock refuse.  The flag wins over a .claude/settings.json in the
 * (user-controlled) workdir; IS_SANDBOX=1 tells it truthfully that it runs
 * in a sandbox, which turns off the gate that could force its own on.
 */
#define SPAWN_CLI_SETTINGS	"{\"sandbox\":{\"enabled\":false}}"

static int	spawn_env_set(const char **, char **, size_t *, const char *,
		    const char *);
static int	spawn_argv_options(struct spawn_argv *, const cJSON *,
		    const cJSON *);

/* Joins a JSON array of strings with commas into "--flag=a,b". */
static char *
spawn_flag_list(const char *flag, const cJSON *arr)
{
	const cJSON	*e;
	size_t		 len = strlen(flag) + 2;
	char		*s;

	cJSON_ArrayForEach(e, arr)
		if (cJSON_IsString(e))
			len += strlen(e->valuestring) + 1;
	s = xmalloc(len);
	snprintf(s, len, "%s=", flag);
	cJSON_ArrayForEach(e, arr) {
		if (!cJSON_IsString(e))
			continue;
		if (s[strlen(s) - 1] != '=')
			strcat(s, ",");
		strcat(s, e->valuestring);
	}
	return s;
}

static int
spawn_argv_add(struct spawn_argv *a, const char *s, int owned)
{
	if (a->n == WORKER_ARGV_MAX) {
		if (owned)
			free((char *)s);
		return -1;
	}
	a->v[a->n++] = s;
	if (owned)
		a->owned[a->nowned++] = (char *)s;
	a->v[a->n] = NULL;
	return 0;
}

void
spawn_argv_free(struct spawn_argv *a)
{
	size_t	i;

	for (i = 0; i < a->nowned; i++)
		free(a->owned[i]);
}

/*
 * The CLI's argv from the open message o: the stream-json flags, the
 * gate, --resume or --session-id, the session's options, its MCP config
 * file (or NULL), and with the sandbox on the settings that keep the
 * CLI's own sandbox off.  0, or -1 (nothing held) if there would be more
 * than WORKER_ARGV_MAX.
 */
int
spawn_argv_build(struct spawn_argv *a, const cJSON *o, const char *cli,
    const char *cli_session_id, int resume, const char *mcp_path,
    int sandboxed)
{
	const cJSON	*opt = cJSON_GetObjectItemCaseSensitive(o, "options");
	const cJSON	*args = cJSON_GetObjectItemCaseSensitive(o, "cli_args");
	const cJSON	*e;
	int		 rc = 0;
	char		*num;

	memset(a, 0, sizeof *a);
	rc |= spawn_argv_add(a, cli, 0);
	cJSON_ArrayForEach(e, args)
		if (cJSON_IsString(e))
			rc |= spawn_argv_add(a, e->valuestring, 0);
	rc |= spawn_argv_add(a, "--input-format", 0);
	rc |= spawn_argv_add(a, "stream-json", 0);
	rc |= spawn_argv_add(a, "--output-format", 0);
	rc |= spawn_argv_add(a, "stream-json", 0);
	rc |= spawn_argv_add(a, "--verbose", 0);
	rc |= spawn_argv_add(a, "--include-partial-messages", 0);
	/*
	 * The CLI asks us before a tool runs (the gate: tool lists, firewall,
	 * writes kept in the workdir).  Measured: ~4 ms per warm turn of the
	 * CLI's own; tool_gate = off trades the gate for it.
	 */
	if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "tool_gate"))) {
		rc |= spawn_argv_add(a, "--permission-prompt-tool", 0);
		rc |= spawn_argv_add(a, "stdio", 0);
	}
	rc |= spawn_argv_add(a, resume ? "--resume" : "--session-id", 0);
	rc |= spawn_argv_add(a, cli_session_id, 0);
	if (cJSON_IsObject(opt))
		rc |= spawn_argv_options(a, o, opt);
	if (mcp_path != NULL) {
		/* Its servers only, none from elsewhere; --flag=value. */
		xasprintf(&num, "--mcp-config=%s", mcp_path);
		rc |= spawn_argv_add(a, num, 1);
		rc |= spawn_argv_add(a, "--strict-mcp-config", 0);
	}
	if (sandboxed) {
		/* Last, so that it wins over cli_args. */
		rc |= spawn_argv_add(a, "--settings", 0);
		rc |= spawn_argv_add(a, SPAWN_CLI_SETTINGS, 0);
	}
	if (rc != 0) {
		spawn_argv_free(a);
		return -1;
	}
	return 0;
}

/* The session's options as flags. */
static int
spawn_argv_options(struct spawn_argv *a, const cJSON *o, const cJSON *opt)
{
	const char	*s;
	char		*num;
	int		 rc = 0;

	if ((s = json_str(opt, "model")) != NULL) {
		rc |= spawn_argv_add(a, "--model", 0);
		rc |= spawn_argv_add(a, s, 0);
	}
	if ((s = json_str(opt, "permission_mode")) != NULL) {
		rc |= spawn_argv_add(a, "--permission-mode", 0);
		rc |= spawn_argv_add(a, s, 0);
	}
	/* --flag=value: the variadic flags would swallow what follows. */
	/*
	 * The CLI runs --allowedTools without asking: with the firewall on,
	 * the gate enforces the list instead, so every call is screened.
	 */
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(opt,
	    "allowed_tools")) > 0 && !json_bool(o, "firewall"))
		rc |= spawn_argv_add(a, spawn_flag_list("--allowedTools",
		    cJSON_GetObjectItemCaseSensitive(opt, "allowed_tools")), 1);
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(opt,
	    "disallowed_tools")) > 0)
		rc |= spawn_argv_add(a, spawn_flag_list("--disallowedTools",
		    cJSON_GetObjectItemCaseSensitive(opt, "disallowed_tools")), 1);
	if ((s = json_str(opt, "append_system_prompt")) != NULL) {
		rc |= spawn_argv_add(a, "--append-system-prompt", 0);
		rc |= spawn_argv_add(a, s, 0);
	}
	if (json_num(opt, "max_turns", 0) > 0) {
		xasprintf(&num, "%d", (int)json_num(opt, "max_turns", 0));
		rc |= spawn_argv_add(a, "--max-turns", 0);
		rc |= spawn_argv_add(a, num, 1);
	}
	return rc;
}

/*
 * The gateway's URL and this CLI's token in place of the API's; with an
 * egress proxy, HTTPS_PROXY for the tools (the API itself is plain http
 * on loopback, so the CLI's own requests never take the proxy).
 */
static int
spawn_gateway_env(const char **envp, char **owned, size_t *n,
    const cJSON *g)
{
	const char	*url, *tok, *proxy;

	if (!cJSON_IsObject(g))
		return 0;
	if ((url = json_str(g, "url")) == NULL ||
	    (tok = json_str(g, "token")) == NULL)
		return -1;
	if (spawn_env_set(envp, owned, n, "ANTHROPIC_BASE_URL", url) == -1 ||
	    spawn_env_set(envp, owned, n, "ANTHROPIC_API_KEY", tok) == -1 ||
	    spawn_env_set(envp, owned, n, "NO_PROXY",
	    "127.0.0.1,localhost,::1") == -1)
		return -1;
	if ((proxy = json_str(g, "proxy")) != NULL &&
	    (spawn_env_set(envp, owned, n, "HTTPS_PROXY", proxy) == -1 ||
	    spawn_env_set(envp, owned, n, "https_proxy", proxy) == -1))
		return -1;
	return 0;
}

/* The CLI sees only the allowlisted names of our environment. */
static size_t
spawn_env_allowlist(const char **envp, char **owned, const cJSON *names)
{
	const cJSON	*e;
	const char	*v;
	size_t		 n = 0;

	cJSON_ArrayForEach(e, names) {
		if (!cJSON_IsString(e) || n == WORKER_ENV_MAX)
			continue;
		if (strcmp(e->valuestring, "CLAUDECODE") == 0 ||
		    strchr(e->valuestring, '=') != NULL)
			continue;
		if ((v = getenv(e->valuestring)) == NULL)
			continue;
		xasprintf(&owned[n], "%s=%s", e->valuestring, v);
		envp[n] = owned[n];
		n++;
	}
	envp[n] = NULL;
	return n;
}

/* Sets name=value in the CLI's environment, replacing what was there. */
static int
spawn_env_set(const char **envp, char **owned, size_t *n, const char *name,
    const char *value)
{
	size_t	 i, len = strlen(name);
	char	*s;

	xasprintf(&s, "%s=%s", name, value);
	for (i = 0; i < *n; i++) {
		if (strncmp(owned[i], name, len) == 0 && owned[i][len] == '=') {
			free(owned[i]);
			owned[i] = s;
			envp[i] = s;
			return 0;
		}
	}
	if (*n == WORKER_ENV_MAX) {
		free(s);
		return -1;
	}
	owned[*n] = s;
	envp[(*n)++] = s;
	envp[*n] = NULL;
	return 0;
}

/*
 * Whether the CLI keeps a transcript of session id for this workdir in
 * its config dir (PROTOCOL.md 18, 20): <config>/projects/<cwd-key>/<id>.jsonl,
 * the key being the workdir with every byte but [A-Za-z0-9] made '-'.
 * The CLI's own record is the truth on "has a conversation": the master's
 * may lag it (killed between the CLI's first write and its commit).
 */
int
spawn_transcript_exists(const char *config_dir, const char *workdir,
    const char *id)
{
	char		 path[PATH_MAX];
	const char	*p;
	struct stat	 st;
	int		 n;

	if (config_dir == NULL || config_dir[0] != '/')
		return 0;
	n = snprintf(path, sizeof path, "%s/projects/", config_dir);
	if (n < 0 || (size_t)n >= sizeof path)
		return 0;
	for (p = workdir; *p != '\0' && (size_t)n < sizeof path - 1; p++)
		path[n++] = isalnum((unsigned char)*p) ? *p : '-';
	if (*p != '\0' || (size_t)snprintf(path + n, sizeof path - (size_t)n,
	    "/%s.jsonl", id) >= sizeof path - (size_t)n)
		return 0;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* "what path: errno text"; a long path is cut, not the point. */
static void
spawn_path_err(char *err, size_t errlen, const char *what,
    const char *path)
{
	if (snprintf(err, errlen, "%s%s%s: %s", what, *what != '\0' ? " " : "",
	    path, strerror(errno)) < 0 && errlen > 0)
		err[0] = '\0';
}

/* The real directory of the CLI binary, found as execvpe finds it. */
static int
spawn_cli_dir(const char *cli, char *out, size_t outlen, char *err,
    size_t errlen)
{
	char		 path[PATH_MAX], real[PATH_MAX];
	const char	*p, *end, *search = getenv("PATH");
	int		 found = 0;

	if (strchr(cli, '/') != NULL)
		found = realpath(cli, real) != NULL;
	else {
		if (search == NULL)
			search = "/bin:/usr/bin";
		for (p = search; !found && *p != '\0'; p = *end ? end + 1 : end) {
			if ((end = strchr(p, ':')) == NULL)
				end = p + strlen(p);
			snprintf(path, sizeof path, "%.*s%s%s", (int)(end - p),
			    p, end == p ? "." : "", "/");
			if (strlen(path) + strlen(cli) >= sizeof path)
				continue;
			strcat(path, cli);
			found = access(path, X_OK) == 0 &&
			    realpath(path, real) != NULL;
		}
	}
	if (!found) {
		snprintf(err, errlen, "cli_path %s: not found", cli);
		return -1;
	}
	snprintf(out, outlen, "%s", dirname(real));
	return 0;
}

static int
spawn_landlock_mode(const char *s, enum sandbox_landlock *mode)
{
	if (s == NULL || strcmp(s, "off") == 0)
		*mode = SANDBOX_LANDLOCK_OFF;
	else if (strcmp(s, "best_effort") == 0)
		*mode = SANDBOX_LANDLOCK_BEST_EFFORT;
	else if (strcmp(s, "required") == 0)
		*mode = SANDBOX_LANDLOCK_REQUIRED;
	else
		return -1;
	return 0;
}

/*
 * The session's identity and private directories from the open message:
 * "identity" {uid, gid, groups, unprivileged}, "dirs" {parents[], home,
 * tmpdir}, all absolute paths the master made (DESIGN.md section 6.3).
 */
int
spawn_become_parse(const cJSON *o, struct become *b, char *err,
    size_t errlen)
{
	const cJSON	*id = cJSON_GetObjectItemCaseSensitive(o, "identity");
	const cJSON	*d = cJSON_GetObjectItemCaseSensitive(o, "dirs");
	const cJSON	*g, *e;
	const char	*p;

	memset(b, 0, sizeof *b);
	if (!cJSON_IsObject(id) || !cJSON_IsObject(d)) {
		snprintf(err, errlen, "open message without identity");
		return -1;
	}
	b->id.uid = (uid_t)json_num(id, "uid", 0);
	b->id.gid = (gid_t)json_num(id, "gid", 0);
	b->id.unprivileged_daemon = json_bool(id, "unprivileged");
	g = cJSON_GetObjectItemCaseSensitive(id, "groups");
	cJSON_ArrayForEach(e, g)
		if (cJSON_IsNumber(e) && b->id.ngroups < IDENT_GROUPS_MAX)
			b->id.groups[b->id.ngroups++] = (gid_t)e->valuedouble;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "parents")) {
		if (!cJSON_IsString(e) || e->valuestring[0] != '/' ||
		    b->nparents == BECOME_DIRS_MAX) {
			snprintf(err, errlen, "bad dirs in the open message");
			return -1;
		}
		b->parents[b->nparents++] = e->valuestring;
	}
	if ((p = json_str(d, "home")) == NULL || p[0] != '/')
		goto bad;
	b->private[b->nprivate++] = p;
	if ((p = json_str(d, "tmpdir")) == NULL || p[0] != '/')
		goto bad;
	b->private[b->nprivate++] = p;
	return 0;
bad:
	snprintf(err, errlen, "bad dirs in the open message");
	return -1;
}

/*
 * Fills the CLI's sandbox from the open message's "sandbox" object.  We
 * already are the session's identity: the CLI keeps it (no drop in the
 * child); its HOME holds its config dir, HOME/.claude.
 */
/* The gateway's ports are the only ones the CLI may connect to. */
static int
spawn_egress(struct spawn_sandbox *sb, const cJSON *g, char *err,
    size_t errlen)
{
	const char	*mode;

	if (!cJSON_IsObject(g))
		return 0;
	mode = json_str(g, "egress");
	if (mode == NULL || strcmp(mode, "on") == 0)
		sb->sc.egress = SANDBOX_EGRESS_ON;
	else if (strcmp(mode, "required") == 0)
		sb->sc.egress = SANDBOX_EGRESS_REQUIRED;
	else if (strcmp(mode, "off") == 0)
		sb->sc.egress = SANDBOX_EGRESS_OFF;
	else {
		snprintf(err, errlen, "unknown egress mode");
		return -1;
	}
	sb->sc.egress_ports[0] = (unsigned short)json_num(g, "port", 0);
	sb->sc.egress_ports[1] = (unsigned short)json_num(g, "proxy_port",
	    0);
	return 0;
}

int
spawn_sandbox_setup(struct spawn_sandbox *sb, const cJSON *o,
    const char *workdir, const char *home, const char *tmpdir,
    const char *cli, char *err, size_t errlen)
{
	const cJSON	*j = cJSON_GetObjectItemCaseSensitive(o, "sandbox");
	struct sandbox_conf *sc = &sb->sc;

	memset(sb, 0, sizeof *sb);
	sc->workdir = workdir;
	if (spawn_egress(sb, cJSON_GetObjectItemCaseSensitive(o, "gateway"),
	    err, errlen) == -1)
		return -1;
	sc->uid = geteuid();
	sc->gid = getegid();
	if ((size_t)snprintf(sb->tmpdir, sizeof sb->tmpdir, "%s", tmpdir) >=
	    sizeof sb->tmpdir || (size_t)snprintf(sb->config_dir,
	    sizeof sb->config_dir, "%s/%s", home, SPAWN_CONFIG_DIR) >=
	    sizeof sb->config_dir) {
		snprintf(err, errlen, "private dir path too long");
		return -1;
	}
	if (mkdir(sb->config_dir, SPAWN_PRIVATE_MODE) == -1 &&
	    errno != EEXIST) {
		spawn_path_err(err, errlen, "mkdir", sb->config_dir);
		return -1;
	}
	sc->tmpdir = sb->tmpdir;
	sc->config_dir = home;		/* HOME, and the config dir in it */
	if (!cJSON_IsObject(j))
		return 0;
	if (spawn_landlock_mode(json_str(j, "landlock"), &sc->landlock) ==
	    -1) {
		snprintf(err, errlen, "unknown landlock mode");
		return -1;
	}
	sc->seccomp_profile = json_str(j, "seccomp");
	sc->nofile = (rlim_t)json_num(j, "rlimit_nofile", 0);
	sc->nproc = (rlim_t)json_num(j, "rlimit_nproc", 0);
	sc->cpu = (rlim_t)json_num(j, "rlimit_cpu", 0);
	sc->fsize = (rlim_t)json_num(j, "rlimit_fsize", 0);
	sb->on = sc->landlock != SANDBOX_LANDLOCK_OFF ||
	    sc->seccomp_profile != NULL;
	sb->apply = sb->on || sc->nofile != 0 || sc->nproc != 0 ||
	    sc->cpu != 0 || sc->fsize != 0 || sc->egress != SANDBOX_EGRESS_OFF;
	if (!sb->on)
		return 0;
	if (spawn_cli_dir(cli, sb->clidir, sizeof sb->clidir, err,
	    errlen) == -1)
		return -1;
	sb->rx[0] = sb->clidir;
	sb->rx[1] = NULL;
	sc->rx_paths = sb->rx;
	return 0;
}

/*
 * The CLI's environment: the allowlisted names of ours (cli_env), the
 * session's own HOME, CLAUDE_CONFIG_DIR and TMPDIR, IS_SANDBOX with the
 * sandbox on, and the gateway's URL and token in place of the API's.
 * 0, or -1 (nothing held) if it does not fit in WORKER_ENV_MAX.
 */
int
spawn_env_build(struct spawn_env *env, const cJSON *o, const char *home,
    const struct spawn_sandbox *sb)
{
	env->n = spawn_env_allowlist(env->v, env->owned,
	    cJSON_GetObjectItemCaseSensitive(o, "cli_env"));
	if (spawn_env_set(env->v, env->owned, &env->n, "TMPDIR",
	    sb->tmpdir) == -1 ||
	    spawn_env_set(env->v, env->owned, &env->n, "HOME", home) == -1 ||
	    spawn_env_set(env->v, env->owned, &env->n, "CLAUDE_CONFIG_DIR",
	    sb->config_dir) == -1 || (sb->on && spawn_env_set(env->v,
	    env->owned, &env->n, "IS_SANDBOX", "1") == -1) ||
	    /* The model API through the gateway, with its token, no key. */
	    spawn_gateway_env(env->v, env->owned, &env->n,
	    cJSON_GetObjectItemCaseSensitive(o, "gateway")) == -1) {
		spawn_env_free(env);
		return -1;
	}
	return 0;
}

void
spawn_env_free(struct spawn_env *env)
{
	size_t	i;

	for (i = 0; i < env->n; i++)
		free(env->owned[i]);
	env->n = 0;
	env->v[0] = NULL;
}
