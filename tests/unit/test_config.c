/*
 * common/config.c: defaults, every key, value syntax (durations, sizes,
 * lists, quotes, comments), errors that name file:line, and a dump that
 * loads back to the same dump.  Files live in a private mktemp dir.
 */
#include <sys/stat.h>

#include <errno.h>
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

#include "common/config.h"
#include "common/log.h"
#include "common/xmalloc.h"

#define KIB		1024ULL
#define MIB		(1024ULL * KIB)
#define GIB		(1024ULL * MIB)
#define SEC_MS		1000ULL
#define MIN_MS		(60 * SEC_MS)
#define HOUR_MS		(60 * MIN_MS)
#define CONF_NAME	"hotplexd.conf"
#define DUMP_NAME	"dump.conf"
#define TEST_DIR_MAX	1024	/* leaves room for names under it */

static char	test_dir[TEST_DIR_MAX];
static char	test_conf[PATH_MAX];
static char	test_dump[PATH_MAX];

static int
group_setup(void **state)
{
	const char	*tmp = getenv("TMPDIR");

	if ((size_t)snprintf(test_dir, sizeof test_dir,
	    "%s/hp-test-config.XXXXXX", tmp != NULL && *tmp != '\0' ? tmp :
	    "/tmp") >= sizeof test_dir || mkdtemp(test_dir) == NULL)
		return -1;
	snprintf(test_conf, sizeof test_conf, "%s/%s", test_dir, CONF_NAME);
	snprintf(test_dump, sizeof test_dump, "%s/%s", test_dir, DUMP_NAME);
	return 0;
}

static int
group_teardown(void **state)
{
	unlink(test_conf);
	unlink(test_dump);
	return rmdir(test_dir);
}

static void
conf_write_to(const char *path, const char *text, size_t len)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
conf_write(const char *text)
{
	conf_write_to(test_conf, text, strlen(text));
}

/* Loads text that must parse. */
static struct config *
conf_ok(const char *text)
{
	struct config	*c;
	char		 err[CONFIG_ERR_MAX] = "";

	conf_write(text);
	c = config_load(test_conf, 1, err, sizeof err);
	if (c == NULL)
		fail_msg("config rejected: %s\n--\n%s--", err, text);
	return c;
}

/* Loads text that must fail with "<path>:<line>: " and why in the error. */
static void
conf_bad(const char *text, size_t line, const char *why)
{
	struct config	*c;
	char		 err[CONFIG_ERR_MAX] = "", want[PATH_MAX + 32];

	conf_write(text);
	c = config_load(test_conf, 1, err, sizeof err);
	if (c != NULL) {
		config_free(c);
		fail_msg("config accepted, want \"%s\"\n--\n%s--", why, text);
	}
	if (line > 0)
		snprintf(want, sizeof want, "%s:%zu: ", test_conf, line);
	else
		snprintf(want, sizeof want, "%s: ", test_conf);
	if (strncmp(err, want, strlen(want)) != 0 || strstr(err, why) == NULL)
		fail_msg("error \"%s\", want prefix \"%s\" and \"%s\"", err,
		    want, why);
}

static void
assert_list(const struct config_list *l, size_t n, ...)
{
	va_list	ap;
	size_t	i;

	assert_int_equal(l->n, n);
	va_start(ap, n);
	for (i = 0; i < n; i++)
		assert_string_equal(l->v[i], va_arg(ap, const char *));
	va_end(ap);
}

static int
list_has(const struct config_list *l, const char *s)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return 1;
	return 0;
}

/* The defaults documented in hotplexd.conf(5). */
static void
assert_defaults(const struct config *c)
{
	assert_string_equal(c->socket, "/run/hotplex/hotplexd.sock");
	assert_null(c->socket_group);
	assert_null(c->admin_group);
	assert_string_equal(c->state_dir, "/var/lib/hotplex");
	assert_list(&c->workdir_root, 2, "/var/lib/hotplex/work", "~");
	assert_null(c->worker_path);
	assert_string_equal(c->session_user, "creator");
	assert_string_equal(c->worker_user, "hotplex");
	assert_string_equal(c->dynamic_uids, "61184-65519");
	assert_string_equal(c->cli_path, "claude");
	assert_int_equal(c->cli_args.n, 0);
	assert_true(list_has(&c->cli_env, "PATH"));
	assert_true(list_has(&c->cli_env, "HOME"));
	assert_true(list_has(&c->cli_env, "ANTHROPIC_API_KEY"));
	assert_false(list_has(&c->cli_env, "LD_PRELOAD"));
	assert_null(c->permission_mode);
	assert_int_equal(c->allowed_tools.n, 0);
	assert_int_equal(c->disallowed_tools.n, 0);
	/* The firewall is on with its built-in rules; nothing added. */
	assert_int_equal(c->firewall, 1);
	assert_int_equal(c->firewall_rules.n, 0);
	assert_int_equal(c->allowed_uids.n, 0);
	assert_int_equal(c->allowed_groups.n, 0);
	assert_int_equal(c->max_spawn_queue, 64);
	assert_int_equal(c->event_ring_bytes, 1024 * 1024);
	assert_int_equal(c->firewall_threshold, 5);
	/* Confinement is on with an empty file. */
	assert_string_equal(c->seccomp, "on");
	assert_string_equal(c->landlock, "best_effort");
	assert_null(c->metrics_listen);
	assert_int_equal(c->spare_min, 1);
	assert_int_equal(c->spare_max, 4);
	assert_int_equal(c->max_sessions, 64);
	assert_int_equal(c->max_sessions_per_uid, 0);
	assert_int_equal(c->max_ended_sessions, 256);
	assert_int_equal(c->turn_timeout_ms, 30 * MIN_MS);
	assert_int_equal(c->idle_timeout_ms, 30 * MIN_MS);
	assert_int_equal(c->kill_grace_ms, 5 * SEC_MS);
	assert_int_equal(c->drain_timeout_ms, 30 * SEC_MS);
	assert_int_equal(c->max_request_bytes, MIB);
	assert_int_equal(c->cli_line_max, 16 * MIB);
	assert_int_equal(c->client_outbuf_max, 16 * MIB);
	assert_int_equal(c->stderr_tail_bytes, 4 * KIB);
	assert_int_equal(c->rlimit_nofile, 4096);
	assert_int_equal(c->rlimit_nproc, 4096);
	assert_int_equal(c->rlimit_cpu, 0);
	assert_int_equal(c->rlimit_fsize, 8 * GIB);
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_null(c->log_file);
	assert_string_equal(c->log_format, "text");
}

static void
test_absent_file_gives_defaults(void **state)
{
	struct config	*c;
	char		 path[PATH_MAX], err[CONFIG_ERR_MAX] = "";

	snprintf(path, sizeof path, "%s/missing.conf", test_dir);
	c = config_load(path, 0, err, sizeof err);
	assert_non_null(c);
	assert_string_equal(err, "");
	assert_string_equal(c->path, path);
	assert_defaults(c);
	config_free(c);

	c = config_load(NULL, 1, err, sizeof err);
	assert_non_null(c);
	assert_null(c->path);
	assert_defaults(c);
	config_free(c);

	c = config_new();
	assert_defaults(c);
	config_free(c);
}

static void
test_absent_file_must_exist(void **state)
{
	char	path[PATH_MAX], err[CONFIG_ERR_MAX] = "";

	snprintf(path, sizeof path, "%s/missing.conf", test_dir);
	assert_null(config_load(path, 1, err, sizeof err));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(ENOENT)));
}

static void
test_directory_is_an_error(void **state)
{
	char	err[CONFIG_ERR_MAX] = "";

	/* fopen() of a directory succeeds; the read must still fail. */
	assert_null(config_load(test_dir, 0, err, sizeof err));
	assert_non_null(strstr(err, test_dir));
}

static void
test_empty_file(void **state)
{
	struct config	*c;

	c = conf_ok("");
	assert_defaults(c);
	config_free(c);

	c = conf_ok("\n\n   \n\t\n# only comments\n   # indented\n#\n");
	assert_defaults(c);
	config_free(c);
}

static void
test_durations(void **state)
{
	static const struct { const char *s; uint64_t ms; } good[] = {
		{ "500ms", 500 }, { "0ms", 0 }, { "30s", 30 * SEC_MS },
		{ "5m", 5 * MIN_MS }, { "1h", HOUR_MS }, { "7", 7 * SEC_MS },
		{ "0", 0 }, { "48h", 48 * HOUR_MS }, { "30d", 30 * 24 * HOUR_MS },
	};
	static const char *bad[] = {
		"", "ms", "s", "-1", "+1s", " 5s", "5 s", "5x", "1.5s", "5S",
		"5min", "5sec", "1D", "5ms5", "99999999999999999999",
		"18446744073709551615h", "18446744073709551615",
	};
	uint64_t	ms;
	size_t		i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		ms = UINT64_MAX;
		if (config_parse_duration(good[i].s, &ms) != 0)
			fail_msg("duration \"%s\" rejected", good[i].s);
		assert_int_equal(ms, good[i].ms);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ms = 42;
		if (config_parse_duration(bad[i], &ms) != -1)
			fail_msg("duration \"%s\" accepted", bad[i]);
		assert_int_equal(ms, 42);
	}
}

static void
test_sizes(void **state)
{
	static const struct { const char *s; uint64_t b; } good[] = {
		{ "4096", 4096 }, { "0", 0 }, { "64K", 64 * KIB },
		{ "64k", 64 * KIB }, { "1M", MIB }, { "1m", MIB },
		{ "1G", GIB }, { "3g", 3 * GIB },
		{ "17179869183G", 17179869183ULL * GIB },
	};
	static const char *bad[] = {
		"", "K", "-1", "+1", " 1", "1 K", "1KB", "1T", "1.5M", "1Kx",
		"17179869184G", "99999999999999999999",
	};
	uint64_t	b;
	size_t		i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		b = UINT64_MAX;
		if (config_parse_size(good[i].s, &b) != 0)
			fail_msg("size \"%s\" rejected", good[i].s);
		assert_int_equal(b, good[i].b);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		b = 42;
		if (config_parse_size(bad[i], &b) != -1)
			fail_msg("size \"%s\" accepted", bad[i]);
		assert_int_equal(b, 42);
	}
}

/* Every key, set away from its default. */
static const char conf_every_key[] =
    "socket = /tmp/hp/sock\n"
    "socket_group = hotplex\n"
    "admin_group = wheel\n"
    "state_dir = /srv/hp/state\n"
    "workdir_root = /srv/hp/work ~/src\n"
    "worker_path = /opt/hp/hotplex-worker\n"
    "session_user = dynamic\n"
    "worker_user = _hotplex\n"
    "dynamic_uids = 70000-70099\n"
    "cli_path = /opt/claude/claude\n"
    "cli_args = --verbose, --model  sonnet,--debug\n"
    "cli_env = PATH,HOME ANTHROPIC_API_KEY\n"
    "permission_mode = acceptEdits\n"
    "allowed_tools = Read,Grep Glob\n"
    "disallowed_tools = Bash\n"
    "firewall = off\n"
    "firewall_rules = /etc/hotplex/rules.d/base.rules /etc/hotplex/x.rules\n"
    "firewall_threshold = 9\n"
    "seccomp = /etc/hotplex/seccomp.profile\n"
    "landlock = required\n"
    "metrics_listen = 127.0.0.1:9100\n"
    "spare_min = 2\n"
    "spare_max = 8\n"
    "max_sessions = 100\n"
    "max_sessions_per_uid = 10\n"
    "max_ended_sessions = 1000\n"
    "turn_timeout = 500ms\n"
    "idle_timeout = 1h\n"
    "kill_grace = 30\n"
    "drain_timeout = 5m\n"
    "max_request_bytes = 64K\n"
    "cli_line_max = 1M\n"
    "client_outbuf_max = 1G\n"
    "stderr_tail_bytes = 4096\n"
    "rlimit_nofile = 1024\n"
    "rlimit_nproc = 256\n"
    "rlimit_cpu = 3600\n"
    "rlimit_fsize = 1G\n"
    "log_level = debug\n"
    "log_file = /var/log/hotplexd.log\n"
    "log_format = json\n";

static void
assert_every_key(const struct config *c)
{
	assert_string_equal(c->socket, "/tmp/hp/sock");
	assert_string_equal(c->socket_group, "hotplex");
	assert_string_equal(c->admin_group, "wheel");
	assert_string_equal(c->state_dir, "/srv/hp/state");
	assert_list(&c->workdir_root, 2, "/srv/hp/work", "~/src");
	assert_string_equal(c->worker_path, "/opt/hp/hotplex-worker");
	assert_string_equal(c->session_user, "dynamic");
	assert_string_equal(c->worker_user, "_hotplex");
	assert_string_equal(c->dynamic_uids, "70000-70099");
	assert_string_equal(c->cli_path, "/opt/claude/claude");
	assert_list(&c->cli_args, 4, "--verbose", "--model", "sonnet",
	    "--debug");
	assert_list(&c->cli_env, 3, "PATH", "HOME", "ANTHROPIC_API_KEY");
	assert_string_equal(c->permission_mode, "acceptEdits");
	assert_list(&c->allowed_tools, 3, "Read", "Grep", "Glob");
	assert_list(&c->disallowed_tools, 1, "Bash");
	assert_int_equal(c->firewall, 0);
	assert_list(&c->firewall_rules, 2, "/etc/hotplex/rules.d/base.rules",
	    "/etc/hotplex/x.rules");
	assert_int_equal(c->firewall_threshold, 9);
	assert_string_equal(c->seccomp, "/etc/hotplex/seccomp.profile");
	assert_string_equal(c->landlock, "required");
	assert_string_equal(c->metrics_listen, "127.0.0.1:9100");
	assert_int_equal(c->spare_min, 2);
	assert_int_equal(c->spare_max, 8);
	assert_int_equal(c->max_sessions, 100);
	assert_int_equal(c->max_sessions_per_uid, 10);
	assert_int_equal(c->max_ended_sessions, 1000);
	assert_int_equal(c->turn_timeout_ms, 500);
	assert_int_equal(c->idle_timeout_ms, HOUR_MS);
	assert_int_equal(c->kill_grace_ms, 30 * SEC_MS);
	assert_int_equal(c->drain_timeout_ms, 5 * MIN_MS);
	assert_int_equal(c->max_request_bytes, 64 * KIB);
	assert_int_equal(c->cli_line_max, MIB);
	assert_int_equal(c->client_outbuf_max, GIB);
	assert_int_equal(c->stderr_tail_bytes, 4096);
	assert_int_equal(c->rlimit_nofile, 1024);
	assert_int_equal(c->rlimit_nproc, 256);
	assert_int_equal(c->rlimit_cpu, 3600);
	assert_int_equal(c->rlimit_fsize, GIB);
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_string_equal(c->log_file, "/var/log/hotplexd.log");
	assert_string_equal(c->log_format, "json");
}

static void
test_every_key(void **state)
{
	struct config	*c = conf_ok(conf_every_key);

	assert_every_key(c);
	config_free(c);
}

static void
test_later_line_wins_and_empty_clears(void **state)
{
	struct config	*c;

	c = conf_ok("spare_max = 6\nspare_max = 7\n"
	    "cli_args = a b\ncli_args =\n"
	    "cli_env = \n"
	    "socket_group = staff\nsocket_group =\n");
	assert_int_equal(c->spare_max, 7);
	assert_int_equal(c->cli_args.n, 0);
	assert_int_equal(c->cli_env.n, 0);
	assert_null(c->socket_group);
	config_free(c);
}

static void
test_whitespace_and_quotes(void **state)
{
	struct config	*c;

	c = conf_ok("  cli_path\t=\t\"/opt/my claude/claude\"  \n"
	    "permission_mode=plan\n"
	    "socket_group = \"\"\n"
	    "admin_group = \"wheel\n"
	    "worker_user = a\"b\"\n"
	    "cli_args = \"--a --b\"\n"
	    "log_level = \"warn\"\n"
	    "spare_max = \"9\"\n"
	    "kill_grace = \"2s\"\r\n");
	assert_string_equal(c->cli_path, "/opt/my claude/claude");
	assert_string_equal(c->permission_mode, "plan");
	assert_null(c->socket_group);			/* "" is empty */
	assert_string_equal(c->admin_group, "\"wheel");	/* unbalanced */
	assert_string_equal(c->worker_user, "a\"b\"");
	assert_list(&c->cli_args, 2, "--a", "--b");
	assert_int_equal(c->log_level, LOG_LVL_WARN);
	assert_int_equal(c->spare_max, 9);
	assert_int_equal(c->kill_grace_ms, 2 * SEC_MS);
	config_free(c);
}

static void
test_comments(void **state)
{
	struct config	*c;

	c = conf_ok("# a comment at the start\n"
	    "   # an indented comment\n"
	    "\t# a tabbed comment = with an equal sign\n"
	    "cli_path = /opt/a#b # the path\n"
	    "permission_mode = x#y\n"
	    "spare_max = 8 # eight\n"
	    "spare_min = 3\t#three\n"
	    "socket_group = #nothing\n"
	    "worker_user=u#1#2 #x#y\n"
	    "cli_args = --a#, --b # --c\n"
	    "#spare_min = 200\n");
	assert_string_equal(c->cli_path, "/opt/a#b");
	assert_string_equal(c->permission_mode, "x#y");
	assert_int_equal(c->spare_max, 8);
	assert_int_equal(c->spare_min, 3);
	assert_null(c->socket_group);
	assert_string_equal(c->worker_user, "u#1#2");
	assert_list(&c->cli_args, 2, "--a#", "--b");
	config_free(c);
}

static void
test_errors_name_file_and_line(void **state)
{
	char	*longline, *text;
	size_t	 i;

	conf_bad("socket = /x\nbogus = 1\n", 2, "unknown key \"bogus\"");
	conf_bad("Socket = /x\n", 1, "unknown key");
	conf_bad("# c\n\nturn_timeout = 5 minutes\n", 3, "expected a duration");
	conf_bad("kill_grace = -1s\n", 1, "expected a duration");
	conf_bad("max_request_bytes = 1T\n", 1, "expected a size");
	conf_bad("rlimit_nofile = lots\n", 1, "expected a number");
	conf_bad("spare_min = two\n", 1, "expected an integer in 0..256");
	conf_bad("spare_min = 1.0\n", 1, "expected an integer");
	conf_bad("spare_min =\n", 1, "expected an integer");
	conf_bad("log_level = loud\n", 1, "expected error, warn, info or debug");
	conf_bad("log_level = 2\n", 1, "expected error, warn, info or debug");
	conf_bad("log_format = xml\n", 1, "log_format must be text or json");
	conf_bad("log_file = hotplexd.log\n", 1, "log_file must be an absolute");
	conf_bad("\n\nspare_min 3\n", 3, "expected key = value");
	conf_bad("spare_min = 1\n= 3\n", 2, "unknown key \"\"");
	/* Out of range. */
	conf_bad("max_sessions = 0\n", 1, "expected an integer in 1..65536");
	conf_bad("max_sessions = 65537\n", 1, "1..65536");
	conf_bad("firewall_threshold = 1001\n", 1, "1..1000");
	conf_bad("spare_max = -1\n", 1, "0..256");
	conf_bad("spare_max = 99999999999999999999\n", 1, "0..256");
	conf_bad("max_sessions = 4294967297\n", 1, "1..65536");
	/* Checks across keys blame the line that set the key. */
	conf_bad("spare_min = 5\nspare_max = 3\n", 2,
	    "spare_min (5) exceeds spare_max (3)");
	conf_bad("spare_max = 3\n# c\nspare_min = 5\n", 3, "exceeds spare_max");
	conf_bad("spare_min = 5\n", 1, "spare_min (5) exceeds spare_max (4)");
	conf_bad("spare_max = 0\n", 1, "spare_min (1) exceeds spare_max (0)");
	conf_bad("log_level = info\nworkdir_root = var/work\n", 2,
	    "neither an absolute path nor ~");
	conf_bad("workdir_root = /srv ~user\n", 1,
	    "neither an absolute path nor ~");
	conf_bad("workdir_root =\n", 1, "at least one root");
	conf_bad("session_user = root\n", 1, "creator or dynamic");
	conf_bad("dynamic_uids = 0-10\n", 1, "LOW-HIGH");
	conf_bad("dynamic_uids = 20-10\n", 1, "LOW-HIGH");
	conf_bad("dynamic_uids = 10\n", 1, "LOW-HIGH");
	conf_bad("seccomp = relative/profile\n", 1, "seccomp must be");
	conf_bad("landlock = on\n", 1, "landlock must be");
	conf_bad("socket =\n", 1, "socket path");
	conf_bad("max_request_bytes = 1023\n", 1, "at least 1K");
	conf_bad("cli_line_max = 63K\n", 1, "at least 64K");

	/* A list of more than CONFIG_LIST_MAX entries. */
	text = xstrdup("cli_args =");
	for (i = 0; i <= CONFIG_LIST_MAX; i++) {
		char	*t;

		xasprintf(&t, "%s a%zu", text, i);
		free(text);
		text = t;
	}
	conf_bad(text, 1, "more than");
	free(text);

	/* Over-long line, on line 2. */
	longline = xmalloc(CONFIG_LINE_MAX + 64);
	memset(longline, 'a', CONFIG_LINE_MAX + 63);
	longline[CONFIG_LINE_MAX + 63] = '\0';
	xasprintf(&text, "spare_min = 1\ncli_path = /%s\nspare_max = 2\n",
	    longline);
	conf_bad(text, 2, "line longer than");
	free(text);
	free(longline);
}

/* cli_path = /aaa... padded to exactly n bytes before the newline. */
static char *
conf_line_of(size_t n)
{
	static const char	 key[] = "cli_path = /";
	char			*s = xmalloc(n + 2);

	memcpy(s, key, sizeof key - 1);
	memset(s + sizeof key - 1, 'a', n - (sizeof key - 1));
	s[n] = '\n';
	s[n + 1] = '\0';
	return s;
}

static void
test_line_length_limit(void **state)
{
	struct config	*c;
	char		*s;

	/* Exactly CONFIG_LINE_MAX bytes: accepted, with or without '\n'. */
	s = conf_line_of(CONFIG_LINE_MAX);
	c = conf_ok(s);
	assert_int_equal(strlen(c->cli_path), CONFIG_LINE_MAX - 11);
	config_free(c);
	s[CONFIG_LINE_MAX] = '\0';
	c = conf_ok(s);
	assert_int_equal(strlen(c->cli_path), CONFIG_LINE_MAX - 11);
	config_free(c);
	free(s);

	/* One more: rejected, with or without '\n'. */
	s = conf_line_of(CONFIG_LINE_MAX + 1);
	conf_bad(s, 1, "line longer than");
	s[CONFIG_LINE_MAX + 1] = '\0';
	conf_bad(s, 1, "line longer than");
	free(s);
}

static char *
conf_dump_string(const struct config *c)
{
	char	*buf = NULL;
	size_t	 len = 0;
	FILE	*f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_dump(c, f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

/* dump -> load -> dump gives the same text. */
static void
conf_assert_round_trip(struct config *c)
{
	struct config	*c2;
	char		*d1, *d2, err[CONFIG_ERR_MAX] = "";

	d1 = conf_dump_string(c);
	conf_write_to(test_dump, d1, strlen(d1));
	c2 = config_load(test_dump, 1, err, sizeof err);
	if (c2 == NULL)
		fail_msg("dump does not load: %s\n--\n%s--", err, d1);
	d2 = conf_dump_string(c2);
	assert_string_equal(d1, d2);
	free(d1);
	free(d2);
	config_free(c2);
}

static void
test_dump_round_trip(void **state)
{
	struct config	*c;
	char		*d;

	c = config_new();
	conf_assert_round_trip(c);
	config_free(c);

	c = conf_ok(conf_every_key);
	conf_assert_round_trip(c);
	/* The dump of every key loads to the same values. */
	d = conf_dump_string(c);
	config_free(c);
	c = conf_ok(d);
	assert_every_key(c);
	config_free(c);
	free(d);

	c = conf_ok("log_level = error\nlog_level = warn\n");
	conf_assert_round_trip(c);
	config_free(c);
}

/* A line "#key = ..." of the sample: '#' then a lower-case key and " =". */
static int
sample_key_line(const char *l)
{
	size_t	n;

	if (l[0] != '#' || l[1] < 'a' || l[1] > 'z')
		return 0;
	n = 1 + strspn(l + 1, "abcdefghijklmnopqrstuvwxyz_0123456789");
	return strncmp(l + n, " =", 2) == 0;
}

/*
 * The generated sample: loaded as it is, and with every key line
 * uncommented, it gives what an empty file gives; and it names every key
 * the dump names, each once.
 */
static void
test_sample_uncommented_is_default(void **state)
{
	struct config	*c;
	char		*sample = NULL, *out, *l, *save, *d0, *d1, *dl;
	size_t		 len = 0, nkeys = 0, ndump = 0, outlen;
	FILE		*f = open_memstream(&sample, &len);

	assert_non_null(f);
	config_sample(f);
	assert_int_equal(fclose(f), 0);

	c = conf_ok(sample);
	d0 = conf_dump_string(c);
	config_free(c);
	c = config_new();
	d1 = conf_dump_string(c);
	config_free(c);
	assert_string_equal(d1, d0);
	free(d1);

	out = xmalloc(len + 1);
	outlen = 0;
	for (l = strtok_r(sample, "\n", &save); l != NULL;
	    l = strtok_r(NULL, "\n", &save)) {
		if (sample_key_line(l)) {
			nkeys++;
			l++;
		}
		outlen += (size_t)sprintf(out + outlen, "%s\n", l);
	}
	c = conf_ok(out);
	d1 = conf_dump_string(c);
	config_free(c);
	assert_string_equal(d0, d1);

	/* As many key lines as the dump has keys, and each key in the out. */
	for (dl = d0; (dl = strchr(dl, '\n')) != NULL; dl++)
		ndump++;
	assert_int_equal(nkeys, ndump);
	for (l = strtok_r(d0, "\n", &save); l != NULL;
	    l = strtok_r(NULL, "\n", &save)) {
		char	key[CONFIG_LINE_MAX];

		snprintf(key, sizeof key, "\n%.*s =", (int)strcspn(l, " "), l);
		if (strstr(out, key) == NULL)
			fail_msg("key line %s missing from the sample", key + 1);
	}
	free(out);
	free(sample);
	free(d0);
	free(d1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_absent_file_gives_defaults),
		cmocka_unit_test(test_absent_file_must_exist),
		cmocka_unit_test(test_directory_is_an_error),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_later_line_wins_and_empty_clears),
		cmocka_unit_test(test_whitespace_and_quotes),
		cmocka_unit_test(test_comments),
		cmocka_unit_test(test_errors_name_file_and_line),
		cmocka_unit_test(test_line_length_limit),
		cmocka_unit_test(test_sample_uncommented_is_default),
		cmocka_unit_test(test_dump_round_trip),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
