/* Configuration file parser. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/ident.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "paths.h"

enum config_kind { K_STR, K_LIST, K_INT, K_MS, K_SIZE, K_U64, K_LEVEL,
	K_BOOL, K_USD };

#define CONFIG_USD_MAX	1000000.0	/* dollars: a sanity bound */

struct config_key {
	const char	*name;
	enum config_kind kind;
	size_t		 off;
	const char	*def;		/* default, parsed like a file value */
	long		 min, max;	/* K_INT bounds */
	const char	*doc;		/* one line for the sample file */
};

const char	config_default_path[] = HOTPLEX_SYSCONFDIR "/hotplexd.conf";

/*
 * Every key the daemon reads.  The sample hotplexd.conf is generated from
 * this table (config_sample()): a new key needs its line of meaning here.
 */
#define O(f)	offsetof(struct config, f)
static const struct config_key config_keys[] = {
	{ "socket",		K_STR,  O(socket), "/run/hotplex/hotplexd.sock", 0, 0,
	    "control socket (mode 0660); changing it needs a restart" },
	{ "socket_group",	K_STR,  O(socket_group), NULL, 0, 0,
	    "group owning the socket: its members may connect (unset: the "
	    "daemon's group)" },
	{ "admin_group",	K_STR,  O(admin_group), NULL, 0, 0,
	    "members of this group (and uid 0) see and act on every session" },
	{ "allowed_uids",	K_LIST, O(allowed_uids), NULL, 0, 0,
	    "users (names or ids) who may connect; empty: any who reaches the "
	    "socket" },
	{ "allowed_groups",	K_LIST, O(allowed_groups), NULL, 0, 0,
	    "groups (names or ids) whose members may connect" },
	{ "state_dir",		K_STR,  O(state_dir), "/var/lib/hotplex", 0, 0,
	    "where the daemon keeps its state across restarts" },
	{ "store_sync",		K_STR,  O(store_sync), "normal", 0, 0,
	    "normal: a store commit survives a crash of hotplexd; full: also a "
	    "power loss" },
	{ "store",		K_STR,  O(store), NULL, 0, 0,
	    "a postgresql:// URL: hosts share the database (unset: SQLite in "
	    "state_dir, one host)" },
	{ "host_id",		K_STR,  O(host_id), NULL, 0, 0,
	    "this host's name in a shared store (unset: the host name)" },
	{ "lease_timeout",	K_MS,   O(lease_timeout_ms), "30s", 0, 0,
	    "a shared store: a host that has not renewed a session's lease "
	    "this long loses it" },
	{ "audit_retention",	K_MS,   O(audit_retention_ms), "30d", 0, 0,
	    "how long the tool audit of ended sessions is kept (0: forever)" },
	{ "workdir_root",	K_LIST, O(workdir_root), "/var/lib/hotplex/work ~",
	    0, 0, "roots that sessions' working directories lie under (~: the "
	    "session user's home)" },
	{ "worker_path",	K_STR,  O(worker_path), NULL, 0, 0,
	    "hotplex-worker program (unset: beside hotplexd, else "
	    HOTPLEX_LIBEXECDIR "/hotplex-worker)" },
	{ "session_user",	K_STR,  O(session_user), "creator", 0, 0,
	    "who sessions run as when hotplexd is root: creator (the client's "
	    "uid) or dynamic" },
	{ "worker_user",	K_STR,  O(worker_user), "hotplex", 0, 0,
	    "user that root's sessions run as (refused if it does not exist)" },
	{ "daemon_user",	K_STR,  O(daemon_user), "hotplexd", 0, 0,
	    "user the master drops to when started as root (a spawner keeps "
	    "root); missing, or root: the master stays root, UNSAFE" },
	/* systemd's DynamicUser range. */
	{ "dynamic_uids",	K_STR,  O(dynamic_uids), "61184-65519", 0, 0,
	    "uids given out one per session with session_user = dynamic" },
	{ "cli_path",		K_STR,  O(cli_path), "claude", 0, 0,
	    "the Claude Code CLI, searched for in PATH if it holds no slash" },
	{ "cli_args",		K_LIST, O(cli_args), NULL, 0, 0,
	    "arguments put before the ones hotplexd gives the CLI" },
	{ "cli_env",		K_LIST, O(cli_env), "PATH HOME LANG LC_ALL TERM TZ "
	    "ANTHROPIC_API_KEY ANTHROPIC_BASE_URL ANTHROPIC_AUTH_TOKEN "
	    "ANTHROPIC_MODEL CLAUDE_CONFIG_DIR CLAUDE_CODE_USE_BEDROCK "
	    "CLAUDE_CODE_USE_VERTEX CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC "
	    "CLAUDE_CODE_MAX_RETRIES API_TIMEOUT_MS HTTPS_PROXY HTTP_PROXY "
	    "NO_PROXY", 0, 0,
	    "environment variables of hotplexd that the CLI receives; no other "
	    "does" },
	{ "allowed_permission_modes", K_LIST, O(allowed_permission_modes),
	    "default acceptEdits plan", 0, 0,
	    "permission modes a client may ask for (options, configure); "
	    "bypassPermissions skips the daemon's tool gate" },
	{ "permission_mode",	K_STR,  O(permission_mode), NULL, 0, 0,
	    "the CLI's --permission-mode (unset: the CLI's default)" },
	{ "allowed_tools",	K_LIST, O(allowed_tools), NULL, 0, 0,
	    "tools the CLI may use without asking (--allowedTools)" },
	{ "disallowed_tools",	K_LIST, O(disallowed_tools), NULL, 0, 0,
	    "tools the CLI may not use (--disallowedTools)" },
	{ "firewall",		K_BOOL, O(firewall), "on", 0, 0,
	    "the prompt and tool-call firewall with its built-in rules; only off "
	    "turns it off" },
	{ "firewall_rules",	K_LIST, O(firewall_rules), NULL, 0, 0,
	    "rule files (globs, hotplex-policy(5)) added to the built-in rules" },
	{ "firewall_threshold",	K_INT,  O(firewall_threshold), "5", 1, 1000,
	    "score at which the firewall blocks, 1 to 1000" },
	{ "tool_gate",		K_BOOL, O(tool_gate), "on", 0, 0,
	    "screen every tool call through the firewall before it runs" },
	{ "seccomp",		K_STR,  O(seccomp), "on", 0, 0,
	    "seccomp of the CLI: on (built-in profile), a profile's absolute "
	    "path, or off (unsafe)" },
	{ "landlock",		K_STR,  O(landlock), "best_effort", 0, 0,
	    "Landlock confinement of the CLI: best_effort, required or off "
	    "(unsafe)" },
	{ "metrics_listen",	K_STR,  O(metrics_listen), NULL, 0, 0,
	    "ADDRESS:PORT serving /metrics, /healthz and /readyz (unset: none)" },
	{ "api_upstream",	K_STR,  O(api_upstream), NULL, 0, 0,
	    "the model API the gateway forwards to (unset: $ANTHROPIC_BASE_URL, "
	    "else https://api.anthropic.com)" },
	{ "api_key_file",	K_STR,  O(api_key_file), NULL, 0, 0,
	    "file holding the API key, read by the gateway only (unset: "
	    "$ANTHROPIC_API_KEY or $ANTHROPIC_AUTH_TOKEN)" },
	{ "api_auth",		K_STR,  O(api_auth), NULL, 0, 0,
	    "how the key goes upstream: x-api-key or bearer (unset: by its "
	    "source)" },
	{ "gateway",		K_BOOL, O(gateway), "on", 0, 0,
	    "the model-API gateway; off (unsafe, needs egress = off) hands "
	    "the CLI the key itself" },
	{ "gateway_listen",	K_STR,  O(gateway_listen), "127.0.0.1:0", 0, 0,
	    "the gateway's loopback ADDRESS:PORT (port 0: any free one)" },
	{ "gateway_timeout",	K_MS,   O(gateway_timeout_ms), "10m", 0, 0,
	    "an upstream connection silent this long fails" },
	{ "gateway_client_timeout", K_MS, O(gateway_client_timeout_ms), "60s",
	    0, 0, "a CLI connection idle this long is closed" },
	{ "gateway_max_body",	K_SIZE, O(gateway_max_body), "32M", 0, 0,
	    "largest request body the gateway accepts" },
	{ "gateway_max_headers", K_SIZE, O(gateway_max_headers), "64K", 0, 0,
	    "largest request headers the gateway accepts" },
	{ "egress",		K_STR,  O(egress), "on", 0, 0,
	    "sessions connect only to the gateway: on, required (refuse to "
	    "start where not enforced) or off (unsafe)" },
	{ "egress_allow",	K_LIST, O(egress_allow), NULL, 0, 0,
	    "HOST:PORT pairs sessions may reach through the gateway's CONNECT "
	    "proxy" },
	{ "spare_min",		K_INT,  O(spare_min), "1", 0, 256,
	    "idle workers kept ready for new sessions" },
	{ "spare_max",		K_INT,  O(spare_max), "4", 0, 256,
	    "bound of the refill: max_sessions + spare_max workers in all" },
	{ "max_sessions",	K_INT,  O(max_sessions), "64", 1, 65536,
	    "sessions that are not ended, in all" },
	{ "max_clients",	K_INT,  O(max_clients), "256", 1, 65536,
	    "client connections served at once (administrators aside)" },
	{ "max_sessions_per_uid", K_INT, O(max_sessions_per_uid), "0", 0, 65536,
	    "sessions that are not ended, per user (0: no limit per user)" },
	{ "max_ended_sessions",	K_INT,  O(max_ended_sessions), "256", 0, 1000000,
	    "ended sessions whose statistics are kept" },
	{ "max_spawn_queue",	K_INT,  O(max_spawn_queue), "64", 1, 65536,
	    "sessions that may wait for a worker" },
	{ "max_queued_turns",	K_INT,  O(max_queued_turns), "8", 0, 1024,
	    "turns an execute with queue may leave waiting behind a "
	    "session's running turn (0: none)" },
	{ "max_budget_usd",	K_USD,  O(max_budget_usd), "0", 0, 0,
	    "dollars a session may cost unless it sets max_budget_usd "
	    "(0: no limit)" },
	{ "max_budget_ceiling_usd", K_USD, O(max_budget_ceiling_usd), "0", 0, 0,
	    "the most a session's max_budget_usd may be (0: no ceiling)" },
	{ "uid_budget_usd",	K_USD,  O(uid_budget_usd), "0", 0, 0,
	    "dollars all the sessions of one uid may cost together "
	    "(0: no limit)" },
	{ "allow_session_mcp",	K_BOOL, O(allow_session_mcp), "no", 0, 0,
	    "accept a session's own MCP servers (option mcp_config); they run "
	    "as the session's CLI does, in its sandbox" },
	{ "rate_limit_admission", K_BOOL, O(rate_limit_admission), "off", 0, 0,
	    "refuse a new turn (rate_limited) while the API account is over "
	    "rate_limit_threshold, until its limit resets" },
	{ "rate_limit_threshold", K_INT, O(rate_limit_threshold), "95", 1, 100,
	    "per cent of an API rate limit used that counts as over it" },
	{ "approval_timeout",	K_MS,   O(approval_timeout_ms), "5m", 0, 0,
	    "how long a permission request put to the app (approvals client) "
	    "waits before it is denied" },
	{ "turn_timeout",	K_MS,   O(turn_timeout_ms), "30m", 0, 0,
	    "longest turn (0: none); a request may set its own timeout_ms" },
	{ "idle_timeout",	K_MS,   O(idle_timeout_ms), "30m", 0, 0,
	    "stop the CLI of a session unused this long (0: never)" },
	{ "freeze_after",	K_MS,   O(freeze_after_ms), "60s", 0, 0,
	    "SIGSTOP the CLI of a session without a turn this long, "
	    "SIGCONT before its next (0: never)" },
	{ "kill_grace",		K_MS,   O(kill_grace_ms), "5s", 0, 0,
	    "SIGTERM to SIGKILL when a CLI is stopped" },
	{ "drain_timeout",	K_MS,   O(drain_timeout_ms), "30s", 0, 0,
	    "on SIGTERM, how long running turns may go on" },
	{ "worker_start_timeout", K_MS, O(worker_start_timeout_ms), "60s", 0, 0,
	    "a spawned worker not ready (rules compiled) by then is killed "
	    "(0: never)" },
	{ "move_timeout",	K_MS,   O(move_timeout_ms), "30s", 0, 0,
	    "shared store: how long a running turn may go on when another "
	    "host asks for its session (0: no moves, session_elsewhere)" },
	{ "max_request_bytes",	K_SIZE, O(max_request_bytes), "1M", 0, 0,
	    "longest request line (at least 1K)" },
	{ "cli_line_max",	K_SIZE, O(cli_line_max), "16M", 0, 0,
	    "longest CLI output line (longer ones are dropped and reported)" },
	{ "client_outbuf_max",	K_SIZE, O(client_outbuf_max), "16M", 0, 0,
	    "output queued for a client that does not read before it is cut off" },
	{ "client_pause_bytes",	K_SIZE, O(client_pause_bytes), "1M", 0, 0,
	    "output queued for a client at which its session's CLI is paused" },
	{ "client_stall_timeout", K_MS, O(client_stall_ms), "30s", 0, 0,
	    "how long a client may hold its session paused before it is cut off" },
	{ "stderr_tail_bytes",	K_SIZE, O(stderr_tail_bytes), "4K", 0, 0,
	    "end of the CLI's stderr kept to explain a failure" },
	{ "event_ring_bytes",	K_SIZE, O(event_ring_bytes), "1M", 0, 0,
	    "recent output of a session kept for attach --since" },
	/* A session's CLI and tools: enough for a build, not for a bomb. */
	{ "rlimit_nofile",	K_U64,  O(rlimit_nofile), "4096", 0, 0,
	    "RLIMIT_NOFILE of the CLI (0: inherited)" },
	{ "rlimit_nproc",	K_U64,  O(rlimit_nproc), "4096", 0, 0,
	    "RLIMIT_NPROC of the CLI, all processes of its uid (0: inherited)" },
	{ "rlimit_cpu",		K_U64,  O(rlimit_cpu), "0", 0, 0,
	    "RLIMIT_CPU of the CLI in seconds (0: inherited)" },
	{ "rlimit_fsize",	K_SIZE, O(rlimit_fsize), "8G", 0, 0,
	    "RLIMIT_FSIZE of the CLI (0: inherited)" },
	{ "log_level",		K_LEVEL, O(log_level), "info", 0, 0,
	    "error, warn, info or debug" },
	{ "log_file",		K_STR,  O(log_file), NULL, 0, 0,
	    "append log lines to this file, reopened on SIGUSR1 or SIGHUP "
	    "(unset: syslog, or stderr with -f)" },
	{ "log_format",		K_STR,  O(log_format), "text", 0, 0,
	    "text, or json: one object per line (time, level, process, "
	    "session, message)" },
};
#undef O
#define NKEYS	(sizeof config_keys / sizeof config_keys[0])

int
config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct { const char *u; uint64_t mul; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};
	unsigned long long	v;
	char			*end;
	size_t			i;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	for (i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].u) == 0) {
			if (v > UINT64_MAX / units[i].mul)
				return -1;
			*ms = v * units[i].mul;
			return 0;
		}
	}
	return -1;
}

int
config_parse_size(const char *s, uint64_t *bytes)
{
	unsigned long long	v;
	uint64_t		mul = 1;
	char			*end;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (strcmp(end, "K") == 0 || strcmp(end, "k") == 0)
		mul = 1024;
	else if (strcmp(end, "M") == 0 || strcmp(end, "m") == 0)
		mul = 1024 * 1024;
	else if (strcmp(end, "G") == 0 || strcmp(end, "g") == 0)
		mul = 1024 * 1024 * 1024;
	else if (*end != '\0')
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*bytes = v * mul;
	return 0;
}

static void
config_list_free(struct config_list *l)
{
	size_t	i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Lists are separated by whitespace or commas. */
static int
config_list_parse(struct config_list *l, const char *s)
{
	const char	*p = s, *q;

	config_list_free(l);
	while (*p != '\0') {
		p += strspn(p, " \t,");
		if (*p == '\0')
			break;
		q = p + strcspn(p, " \t,");
		if (l->n == CONFIG_LIST_MAX)
			return -1;
		l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
		l->v[l->n++] = xstrndup(p, (size_t)(q - p));
		p = q;
	}
	return 0;
}

static int
config_set(struct config *c, const struct config_key *k, const char *val,
    char *why, size_t whylen)
{
	char		*base = (char *)c;
	uint64_t	 u;
	long		 l;
	char		*end;
	int		 lvl;

	switch (k->kind) {
	case K_STR: {
		char	**p = (char **)(base + k->off);

		free(*p);
		*p = (val == NULL || *val == '\0') ? NULL : xstrdup(val);
		return 0;
	}
	case K_LIST:
		if (config_list_parse((struct config_list *)(base + k->off),
		    val == NULL ? "" : val) == -1) {
			snprintf(why, whylen, "more than %d entries",
			    CONFIG_LIST_MAX);
			return -1;
		}
		return 0;
	case K_INT:
		errno = 0;
		l = strtol(val, &end, 10);
		if (*val == '\0' || *end != '\0' || errno != 0 ||
		    l < k->min || l > k->max) {
			snprintf(why, whylen, "expected an integer in %ld..%ld",
			    k->min, k->max);
			return -1;
		}
		*(int *)(base + k->off) = (int)l;
		return 0;
	case K_MS:
		if (config_parse_duration(val, &u) == -1) {
			snprintf(why, whylen,
			    "expected a duration (e.g. 500ms, 30s, 5m, 1h)");
			return -1;
		}
		*(uint64_t *)(base + k->off) = u;
		return 0;
	case K_SIZE:
		if (config_parse_size(val, &u) == -1) {
			snprintf(why, whylen, "expected a size (e.g. 4096, 64K, 1M)");
			return -1;
		}
		if (k->off != offsetof(struct config, rlimit_fsize))
			*(size_t *)(base + k->off) = (size_t)u;
		else
			*(uint64_t *)(base + k->off) = u;
		return 0;
	case K_U64:
		if (config_parse_size(val, &u) == -1) {
			snprintf(why, whylen, "expected a number");
			return -1;
		}
		*(uint64_t *)(base + k->off) = u;
		return 0;
	case K_USD: {
		char	*ep;
		double	 d;

		errno = 0;
		d = strtod(val, &ep);
		if (errno != 0 || ep == val || *ep != '\0' || !(d >= 0) ||
		    d > CONFIG_USD_MAX) {
			snprintf(why, whylen, "expected dollars, 0 to %.0f",
			    CONFIG_USD_MAX);
			return -1;
		}
		*(double *)(base + k->off) = d;
		return 0;
	}
	case K_BOOL:
		if (strcmp(val, "on") == 0 || strcmp(val, "yes") == 0)
			*(int *)(base + k->off) = 1;
		else if (strcmp(val, "off") == 0 || strcmp(val, "no") == 0)
			*(int *)(base + k->off) = 0;
		else {
			snprintf(why, whylen, "expected on or off");
			return -1;
		}
		return 0;
	case K_LEVEL:
		if ((lvl = log_level_parse(val)) == -1) {
			snprintf(why, whylen,
			    "expected error, warn, info or debug");
			return -1;
		}
		*(int *)(base + k->off) = lvl;
		return 0;
	}
	return -1;
}

/* The file line that last set a key; 0 if it kept its default. */
static size_t
config_key_line(const size_t *set_at, const char *name)
{
	size_t	i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return set_at[i];
	return 0;
}

/* Checks across keys; *line gets the line to blame (0: none). */
static int
config_check(struct config *c, const size_t *set_at, size_t *line,
    char *why, size_t whylen)
{
	size_t		 l1, l2, i;
	const char	*r;
	enum ident_mode	 mode;
	uid_t		 lo, hi;

	if (c->spare_min > c->spare_max) {
		snprintf(why, whylen, "spare_min (%d) exceeds spare_max (%d)",
		    c->spare_min, c->spare_max);
		l1 = config_key_line(set_at, "spare_min");
		l2 = config_key_line(set_at, "spare_max");
		*line = l1 > l2 ? l1 : l2;
		return -1;
	}
	if (c->workdir_root.n == 0) {
		snprintf(why, whylen, "workdir_root needs at least one root");
		*line = config_key_line(set_at, "workdir_root");
		return -1;
	}
	for (i = 0; i < c->workdir_root.n; i++) {
		r = c->workdir_root.v[i];
		if (r[0] != '/' && strcmp(r, "~") != 0 &&
		    strncmp(r, "~/", 2) != 0) {
			snprintf(why, whylen, "workdir_root: %.64s is neither an "
			    "absolute path nor ~ (a home)", r);
			*line = config_key_line(set_at, "workdir_root");
			return -1;
		}
	}
	if (ident_mode_parse(c->session_user, &mode) == -1) {
		snprintf(why, whylen, "session_user must be creator or dynamic");
		*line = config_key_line(set_at, "session_user");
		return -1;
	}
	if (ident_range_parse(c->dynamic_uids, &lo, &hi) == -1) {
		snprintf(why, whylen, "dynamic_uids must be LOW-HIGH, uids "
		    "above 0");
		*line = config_key_line(set_at, "dynamic_uids");
		return -1;
	}
	if (c->socket == NULL || strlen(c->socket) >= 108) {
		snprintf(why, whylen, "socket path missing or too long");
		*line = config_key_line(set_at, "socket");
		return -1;
	}
	if (c->landlock != NULL && strcmp(c->landlock, "off") != 0 &&
	    strcmp(c->landlock, "best_effort") != 0 &&
	    strcmp(c->landlock, "required") != 0) {
		snprintf(why, whylen,
		    "landlock must be off, best_effort or required");
		*line = config_key_line(set_at, "landlock");
		return -1;
	}
	if (c->log_format == NULL || (strcmp(c->log_format, "text") != 0 &&
	    strcmp(c->log_format, "json") != 0)) {
		snprintf(why, whylen, "log_format must be text or json");
		*line = config_key_line(set_at, "log_format");
		return -1;
	}
	if (c->log_file != NULL && c->log_file[0] != '/') {
		snprintf(why, whylen, "log_file must be an absolute path");
		*line = config_key_line(set_at, "log_file");
		return -1;
	}
	if (c->egress == NULL || (strcmp(c->egress, "on") != 0 &&
	    strcmp(c->egress, "required") != 0 &&
	    strcmp(c->egress, "off") != 0)) {
		snprintf(why, whylen, "egress must be on, required or off");
		*line = config_key_line(set_at, "egress");
		return -1;
	}
	if (!c->gateway && strcmp(c->egress, "off") != 0) {
		snprintf(why, whylen, "gateway = off needs egress = off (the "
		    "CLI must reach the model API itself)");
		l1 = config_key_line(set_at, "gateway");
		l2 = config_key_line(set_at, "egress");
		*line = l1 > l2 ? l1 : l2;
		return -1;
	}
	if (c->api_auth != NULL && strcmp(c->api_auth, "x-api-key") != 0 &&
	    strcmp(c->api_auth, "bearer") != 0) {
		snprintf(why, whylen, "api_auth must be x-api-key or bearer");
		*line = config_key_line(set_at, "api_auth");
		return -1;
	}
	if (c->gateway_max_headers < 4096 || c->gateway_max_body < 4096) {
		snprintf(why, whylen, "gateway_max_headers and gateway_max_body "
		    "must be at least 4K");
		l1 = config_key_line(set_at, "gateway_max_headers");
		l2 = config_key_line(set_at, "gateway_max_body");
		*line = l1 > l2 ? l1 : l2;
		return -1;
	}
	if (c->seccomp == NULL || (strcmp(c->seccomp, "on") != 0 &&
	    strcmp(c->seccomp, "off") != 0 && c->seccomp[0] != '/')) {
		snprintf(why, whylen,
		    "seccomp must be on, off or the absolute path of a profile");
		*line = config_key_line(set_at, "seccomp");
		return -1;
	}
	if (c->max_request_bytes < 1024) {
		snprintf(why, whylen, "max_request_bytes must be at least 1K");
		*line = config_key_line(set_at, "max_request_bytes");
		return -1;
	}
	if (c->cli_line_max < 64 * 1024) {
		snprintf(why, whylen, "cli_line_max must be at least 64K");
		*line = config_key_line(set_at, "cli_line_max");
		return -1;
	}
	return 0;
}

struct config *
config_new(void)
{
	struct config	*c = xcalloc(1, sizeof *c);
	char		 why[CONFIG_ERR_MAX];
	size_t		 i;

	for (i = 0; i < NKEYS; i++)
		if (config_set(c, &config_keys[i], config_keys[i].def, why,
		    sizeof why) == -1)
			fatalx("config default of %s: %s", config_keys[i].name,
			    why);
	return c;
}

static char *
config_trim(char *s)
{
	char	*e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

struct config *
config_load(const char *path, int must_exist, char *err, size_t errlen)
{
	struct config	*c = config_new();
	FILE		*f;
	char		 buf[CONFIG_LINE_MAX + 2], why[CONFIG_ERR_MAX];
	char		*line, *eq, *key, *val, *hash;
	size_t		 i, lineno = 0, set_at[NKEYS] = { 0 };

	if (path == NULL)
		return c;
	c->path = xstrdup(path);
	if ((f = fopen(path, "r")) == NULL) {
		if (errno == ENOENT && !must_exist)
			goto check;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		config_free(c);
		return NULL;
	}
	while (fgets(buf, sizeof buf, f) != NULL) {
		lineno++;
		if (strchr(buf, '\n') == NULL && !feof(f)) {
			snprintf(why, sizeof why, "line longer than %d bytes",
			    CONFIG_LINE_MAX);
			goto bad;
		}
		/* '#' starts a comment at the start or after white space. */
		for (hash = buf; (hash = strchr(hash, '#')) != NULL; hash++)
			if (hash == buf || isspace((unsigned char)hash[-1])) {
				*hash = '\0';
				break;
			}
		line = config_trim(buf);
		if (*line == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			snprintf(why, sizeof why, "expected key = value");
			goto bad;
		}
		*eq = '\0';
		key = config_trim(line);
		val = config_trim(eq + 1);
		if (strlen(val) >= 2 && val[0] == '"' &&
		    val[strlen(val) - 1] == '"') {
			val[strlen(val) - 1] = '\0';
			val++;
		}
		for (i = 0; i < NKEYS; i++)
			if (strcmp(config_keys[i].name, key) == 0)
				break;
		if (i == NKEYS) {
			snprintf(why, sizeof why, "unknown key \"%.64s\"", key);
			goto bad;
		}
		if (config_set(c, &config_keys[i], val, why, sizeof why) == -1)
			goto bad;
		set_at[i] = lineno;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		fclose(f);
		config_free(c);
		return NULL;
	}
	fclose(f);
check:
	if (config_check(c, set_at, &lineno, why, sizeof why) == -1) {
		if (lineno > 0)
			snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
		else
			snprintf(err, errlen, "%s: %s", path, why);
		config_free(c);
		return NULL;
	}
	return c;
bad:
	snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
	fclose(f);
	config_free(c);
	return NULL;
}

void
config_free(struct config *c)
{
	size_t	i;
	char	*base = (char *)c;

	if (c == NULL)
		return;
	for (i = 0; i < NKEYS; i++) {
		if (config_keys[i].kind == K_STR)
			free(*(char **)(base + config_keys[i].off));
		else if (config_keys[i].kind == K_LIST)
			config_list_free((struct config_list *)
			    (base + config_keys[i].off));
	}
	free(c->path);
	free(c);
}

void
config_dump(const struct config *c, void *fp)
{
	FILE		*f = fp;
	const char	*base = (const char *)c;
	size_t		 i, j;

	for (i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		fprintf(f, "%s = ", k->name);
		switch (k->kind) {
		case K_STR: {
			const char *s = *(char *const *)(base + k->off);
			fprintf(f, "%s", s == NULL ? "" : s);
			break;
		}
		case K_LIST: {
			const struct config_list *l =
			    (const struct config_list *)(base + k->off);
			for (j = 0; j < l->n; j++)
				fprintf(f, "%s%s", j ? " " : "", l->v[j]);
			break;
		}
		case K_BOOL:
			fprintf(f, "%s", *(const int *)(base + k->off) ? "on" :
			    "off");
			break;
		case K_INT:
			fprintf(f, "%d", *(const int *)(base + k->off));
			break;
		case K_LEVEL: {
			/* By name: config_load reads names, not numbers. */
			static const char *levels[] = { "error", "warn", "info",
			    "debug" };
			int lvl = *(const int *)(base + k->off);

			if (lvl >= 0 && lvl < (int)(sizeof levels /
			    sizeof levels[0]))
				fprintf(f, "%s", levels[lvl]);
			else
				fprintf(f, "%d", lvl);
			break;
		}
		case K_MS:
			fprintf(f, "%llums", (unsigned long long)
			    *(const uint64_t *)(base + k->off));
			break;
		case K_SIZE:
			if (k->off == offsetof(struct config, rlimit_fsize))
				fprintf(f, "%llu", (unsigned long long)
				    *(const uint64_t *)(base + k->off));
			else
				fprintf(f, "%zu", *(const size_t *)(base + k->off));
			break;
		case K_U64:
			fprintf(f, "%llu", (unsigned long long)
			    *(const uint64_t *)(base + k->off));
			break;
		case K_USD:
			fprintf(f, "%g", *(const double *)(base + k->off));
			break;
		}
		fputc('\n', f);
	}
}

/*
 * The sample file: every key with its line of meaning and its default,
 * commented out, so that uncommenting any line changes nothing.
 */
void
config_sample(void *fp)
{
	FILE	*f = fp;
	size_t	 i;

	fprintf(f, "# %s: configuration of hotplexd(8).\n"
	    "# Generated from the daemon's table of keys; see hotplexd.conf(5).\n"
	    "#\n"
	    "# Every key is shown with its default, commented out: an empty "
	    "file gives\n# the same daemon, and so does this one with every "
	    "line uncommented.\n"
	    "#\n"
	    "# Syntax: \"key = value\" lines; \"#\" at the start of a line or "
	    "after white\n# space begins a comment.  Durations take ms, s, m, "
	    "h or d (a bare number is\n# seconds); sizes take K, M or G (a bare "
	    "number is bytes); lists are words\n# separated by white space or "
	    "commas.  Check a file with\n# \"hotplexd -n -c FILE\"; reload it "
	    "with SIGHUP.\n", CONFIG_DEFAULT_PATH);
	for (i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		fprintf(f, "\n# %s\n#%s =%s%s\n", k->doc, k->name,
		    k->def != NULL ? " " : "", k->def != NULL ? k->def : "");
	}
}
