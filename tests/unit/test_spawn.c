/*
 * worker/spawn.c: the CLI's argv and environment from the open message,
 * built by functions of their arguments alone.  The environment is the
 * allowlist of ours, the session's own directories and the gateway's
 * token in place of the API key; the argv says --resume or --session-id.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/json.h"
#include "common/util.h"
#include "worker/worker.h"

#define ID		"0b3f2c1e-6a55-4c6e-9d2b-0c1d2e3f4a5b"
#define CLI		"/opt/cli/claude"
#define ENV_OVERFLOW	(WORKER_ENV_MAX + 8)	/* allowlisted and set */

static cJSON *
open_msg(const char *text)
{
	cJSON	*o = cJSON_Parse(text);

	assert_non_null(o);
	return o;
}

/* The index of s in argv, or -1. */
static int
argv_find(const struct spawn_argv *a, const char *s)
{
	size_t	i;

	for (i = 0; i < a->n; i++)
		if (strcmp(a->v[i], s) == 0)
			return (int)i;
	return -1;
}

/* flag is in the argv, followed by value. */
static void
assert_flag(const struct spawn_argv *a, const char *flag, const char *value)
{
	int	i = argv_find(a, flag);

	assert_true(i > 0);
	assert_string_equal(a->v[i + 1], value);
}

/* The value of name in env, or NULL; fails on a name set twice. */
static const char *
env_get(const struct spawn_env *env, const char *name)
{
	const char	*found = NULL;
	size_t		 i, len = strlen(name);

	for (i = 0; i < env->n; i++) {
		if (strncmp(env->v[i], name, len) == 0 &&
		    env->v[i][len] == '=') {
			assert_null(found);
			found = env->v[i] + len + 1;
		}
	}
	assert_null(env->v[env->n]);
	return found;
}

static void
sandbox_fill(struct spawn_sandbox *sb, int on)
{
	memset(sb, 0, sizeof *sb);
	snprintf(sb->tmpdir, sizeof sb->tmpdir, "/state/tmp/s1");
	snprintf(sb->config_dir, sizeof sb->config_dir,
	    "/state/home/s1/.claude");
	sb->on = on;
}

static void
test_argv_new_session(void **state)
{
	cJSON			*o = open_msg("{\"cli_args\":[\"--debug\"]}");
	struct spawn_argv	 a;

	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 0, NULL, 0), 0);
	assert_string_equal(a.v[0], CLI);
	assert_string_equal(a.v[1], "--debug");	/* cli_args come first */
	assert_null(a.v[a.n]);
	assert_flag(&a, "--input-format", "stream-json");
	assert_flag(&a, "--output-format", "stream-json");
	assert_true(argv_find(&a, "--verbose") > 0);
	assert_true(argv_find(&a, "--include-partial-messages") > 0);
	/* The gate is on unless tool_gate is false. */
	assert_flag(&a, "--permission-prompt-tool", "stdio");
	assert_flag(&a, "--session-id", ID);
	assert_int_equal(argv_find(&a, "--resume"), -1);
	assert_int_equal(argv_find(&a, "--settings"), -1);
	assert_int_equal(argv_find(&a, "--model"), -1);
	spawn_argv_free(&a);
	cJSON_Delete(o);
}

static void
test_argv_resume(void **state)
{
	cJSON			*o = open_msg("{\"tool_gate\":false}");
	struct spawn_argv	 a;

	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 1, NULL, 0), 0);
	assert_flag(&a, "--resume", ID);
	assert_int_equal(argv_find(&a, "--session-id"), -1);
	assert_int_equal(argv_find(&a, "--permission-prompt-tool"), -1);
	spawn_argv_free(&a);
	cJSON_Delete(o);
}

static void
test_argv_options(void **state)
{
	cJSON			*o = open_msg("{\"options\":{"
	    "\"model\":\"m1\",\"permission_mode\":\"plan\","
	    "\"allowed_tools\":[\"Read\",\"Grep\"],"
	    "\"disallowed_tools\":[\"Bash\"],"
	    "\"append_system_prompt\":\"be brief\",\"max_turns\":7}}");
	struct spawn_argv	 a;

	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 0, NULL, 0), 0);
	assert_flag(&a, "--model", "m1");
	assert_flag(&a, "--permission-mode", "plan");
	/* One word each: the variadic flags would swallow what follows. */
	assert_true(argv_find(&a, "--allowedTools=Read,Grep") > 0);
	assert_true(argv_find(&a, "--disallowedTools=Bash") > 0);
	assert_flag(&a, "--append-system-prompt", "be brief");
	assert_flag(&a, "--max-turns", "7");
	spawn_argv_free(&a);
	cJSON_Delete(o);
}

/* With firewall rules the gate enforces allowed_tools: the CLI asks. */
static void
test_argv_allowed_tools_firewall(void **state)
{
	cJSON			*o = open_msg("{\"options\":{"
	    "\"allowed_tools\":[\"Bash\"]},\"firewall\":true}");
	struct spawn_argv	 a;
	size_t			 i;

	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 0, NULL, 0), 0);
	for (i = 0; i < a.n; i++)
		assert_null(strstr(a.v[i], "--allowedTools"));
	spawn_argv_free(&a);
	cJSON_Delete(o);
}

/* The session's MCP servers: its file, and none from elsewhere. */
static void
test_argv_mcp(void **state)
{
	cJSON			*o = open_msg("{}");
	struct spawn_argv	 a;

	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 0,
	    "/h/.claude/mcp.json", 1), 0);
	assert_flag(&a, "--mcp-config=/h/.claude/mcp.json", "--strict-mcp-config");
	assert_string_equal(a.v[a.n - 2], "--settings");
	spawn_argv_free(&a);
	cJSON_Delete(o);
}

/* Sandboxed, the settings that keep the CLI's own sandbox off come last. */
static void
test_argv_sandboxed(void **state)
{
	cJSON			*o = open_msg("{\"cli_args\":[\"--settings\","
	    "\"{}\"]}");
	struct spawn_argv	 a;

	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 0, NULL, 1), 0);
	assert_true(a.n >= 2);
	assert_string_equal(a.v[a.n - 2], "--settings");
	assert_non_null(strstr(a.v[a.n - 1], "\"enabled\":false"));
	spawn_argv_free(&a);
	cJSON_Delete(o);
}

static void
test_argv_too_many(void **state)
{
	cJSON			*o = cJSON_CreateObject(), *args;
	struct spawn_argv	 a;
	int			 i;

	args = cJSON_AddArrayToObject(o, "cli_args");
	for (i = 0; i < WORKER_ARGV_MAX; i++)
		cJSON_AddItemToArray(args, cJSON_CreateString("-x"));
	assert_int_equal(spawn_argv_build(&a, o, CLI, ID, 0, NULL, 0), -1);
	cJSON_Delete(o);
}

/* Only the allowlisted names pass, with our values; never CLAUDECODE. */
static void
test_env_allowlist(void **state)
{
	cJSON			*o = open_msg("{\"cli_env\":[\"HPT_A\","
	    "\"HPT_MISSING\",\"CLAUDECODE\",\"HPT_A=x\",\"HOME\",7]}");
	struct spawn_sandbox	 sb;
	struct spawn_env	 env;

	setenv("HPT_A", "alpha", 1);
	setenv("HPT_UNLISTED", "secret", 1);
	setenv("CLAUDECODE", "1", 1);
	setenv("HOME", "/root/of/daemon", 1);
	unsetenv("HPT_MISSING");
	sandbox_fill(&sb, 0);
	assert_int_equal(spawn_env_build(&env, o, "/state/home/s1", &sb), 0);
	assert_string_equal(env_get(&env, "HPT_A"), "alpha");
	assert_null(env_get(&env, "HPT_UNLISTED"));
	assert_null(env_get(&env, "HPT_MISSING"));
	assert_null(env_get(&env, "CLAUDECODE"));
	/* The session's own, in place of ours. */
	assert_string_equal(env_get(&env, "HOME"), "/state/home/s1");
	assert_string_equal(env_get(&env, "TMPDIR"), "/state/tmp/s1");
	assert_string_equal(env_get(&env, "CLAUDE_CONFIG_DIR"),
	    "/state/home/s1/.claude");
	assert_null(env_get(&env, "IS_SANDBOX"));
	assert_null(env_get(&env, "ANTHROPIC_BASE_URL"));
	spawn_env_free(&env);
	cJSON_Delete(o);

	o = open_msg("{}");
	sandbox_fill(&sb, 1);
	assert_int_equal(spawn_env_build(&env, o, "/h", &sb), 0);
	assert_string_equal(env_get(&env, "IS_SANDBOX"), "1");
	/* TMPDIR, HOME, CLAUDE_CONFIG_DIR, IS_SANDBOX and nothing else. */
	assert_int_equal(env.n, 4);
	spawn_env_free(&env);
	cJSON_Delete(o);
}

/* The gateway's URL and token replace the key, whatever was allowed. */
static void
test_env_gateway(void **state)
{
	cJSON			*o = open_msg("{\"cli_env\":["
	    "\"ANTHROPIC_API_KEY\",\"ANTHROPIC_BASE_URL\"],"
	    "\"gateway\":{\"url\":\"http://127.0.0.1:4000\","
	    "\"token\":\"hp-tok\",\"proxy\":\"http://127.0.0.1:4001\"}}");
	struct spawn_sandbox	 sb;
	struct spawn_env	 env;

	setenv("ANTHROPIC_API_KEY", "sk-the-real-key", 1);
	setenv("ANTHROPIC_BASE_URL", "https://api.example", 1);
	sandbox_fill(&sb, 0);
	assert_int_equal(spawn_env_build(&env, o, "/h", &sb), 0);
	assert_string_equal(env_get(&env, "ANTHROPIC_API_KEY"), "hp-tok");
	assert_string_equal(env_get(&env, "ANTHROPIC_BASE_URL"),
	    "http://127.0.0.1:4000");
	assert_string_equal(env_get(&env, "NO_PROXY"),
	    "127.0.0.1,localhost,::1");
	assert_string_equal(env_get(&env, "HTTPS_PROXY"),
	    "http://127.0.0.1:4001");
	assert_string_equal(env_get(&env, "https_proxy"),
	    "http://127.0.0.1:4001");
	spawn_env_free(&env);
	cJSON_Delete(o);

	/* A gateway without its token is refused, not half applied. */
	o = open_msg("{\"gateway\":{\"url\":\"http://127.0.0.1:4000\"}}");
	assert_int_equal(spawn_env_build(&env, o, "/h", &sb), -1);
	assert_int_equal(env.n, 0);
	cJSON_Delete(o);
}

static void
test_env_overflow(void **state)
{
	cJSON			*o = cJSON_CreateObject(), *names;
	struct spawn_sandbox	 sb;
	struct spawn_env	 env;
	char			 name[32];
	int			 i;

	names = cJSON_AddArrayToObject(o, "cli_env");
	for (i = 0; i < ENV_OVERFLOW; i++) {
		snprintf(name, sizeof name, "HPT_OVER_%d", i);
		setenv(name, "v", 1);
		cJSON_AddItemToArray(names, cJSON_CreateString(name));
	}
	sandbox_fill(&sb, 0);
	assert_int_equal(spawn_env_build(&env, o, "/h", &sb), -1);
	assert_int_equal(env.n, 0);
	cJSON_Delete(o);
}

static void
test_transcript_exists(void **state)
{
	char	 base[PATH_MAX], dir[PATH_MAX * 2], path[PATH_MAX * 3];
	int	 fd;

	snprintf(base, sizeof base, "/tmp/hp-test-spawn.XXXXXX");
	assert_non_null(mkdtemp(base));
	/* The key: every byte of the workdir but [A-Za-z0-9] made '-'. */
	snprintf(dir, sizeof dir, "%s/projects", base);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(dir, sizeof dir, "%s/projects/-w-my-proj", base);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof path, "%s/%s.jsonl", dir, ID);
	assert_true((fd = open(path, O_CREAT | O_WRONLY, 0600)) != -1);
	/* Empty: the CLI has nothing to resume. */
	assert_int_equal(spawn_transcript_exists(base, "/w/my_proj", ID), 0);
	assert_int_equal(write(fd, "{}\n", 3), 3);
	close(fd);
	assert_int_equal(spawn_transcript_exists(base, "/w/my_proj", ID), 1);
	assert_int_equal(spawn_transcript_exists(base, "/w/other", ID), 0);
	assert_int_equal(spawn_transcript_exists("relative", "/w/my_proj",
	    ID), 0);
	assert_int_equal(spawn_transcript_exists(NULL, "/w/my_proj", ID), 0);
	assert_int_equal(util_rmtree(base), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv_new_session),
		cmocka_unit_test(test_argv_resume),
		cmocka_unit_test(test_argv_options),
		cmocka_unit_test(test_argv_allowed_tools_firewall),
		cmocka_unit_test(test_argv_mcp),
		cmocka_unit_test(test_argv_sandboxed),
		cmocka_unit_test(test_argv_too_many),
		cmocka_unit_test(test_env_allowlist),
		cmocka_unit_test(test_env_gateway),
		cmocka_unit_test(test_env_overflow),
		cmocka_unit_test(test_transcript_exists),
	};

	json_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
