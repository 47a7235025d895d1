/*
 * hotplexd.conf: `key = value` lines, `#` comments (DESIGN.md section 7,
 * hotplexd.conf(5)).  Every key has a default, so an empty or absent file
 * works.  Parsed into a fresh object that the caller swaps in only when the
 * whole file parsed.
 */
#ifndef HP_CONFIG_H
#define HP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* SYSCONFDIR/hotplex/hotplexd.conf, compiled in from the install paths. */
#define CONFIG_DEFAULT_PATH	config_default_path
#define CONFIG_LINE_MAX		4096
#define CONFIG_LIST_MAX		64	/* entries of a list value */
#define CONFIG_ERR_MAX		256

extern const char	config_default_path[];

struct config_list {
	size_t	  n;
	char	**v;			/* owned */
};

struct config {
	char		*path;		/* where it came from, or NULL */

	char		*socket;
	char		*socket_group;
	char		*admin_group;
	struct config_list allowed_uids;	/* users (names or ids) */
	struct config_list allowed_groups;	/* groups (names or ids) */
	char		*state_dir;
	char		*store_sync;	/* normal, full */
	char		*store;		/* postgresql://...; NULL: SQLite */
	char		*host_id;	/* NULL: the host name */
	uint64_t	 lease_timeout_ms;	/* shared store: leases */
	uint64_t	 audit_retention_ms;	/* 0: kept for ever */
	struct config_list workdir_root;	/* allowed roots; "~": home */
	char		*worker_path;	/* hotplex-worker; NULL: beside hotplexd */
	char		*session_user;	/* creator or dynamic */
	char		*worker_user;	/* root's sessions run as this user */
	char		*daemon_user;	/* the master, dropped from root */
	char		*dynamic_uids;	/* LOW-HIGH, session_user = dynamic */
	char		*cli_path;
	struct config_list cli_args;	/* extra CLI arguments */
	struct config_list cli_env;	/* environment names passed through */
	struct config_list allowed_permission_modes;	/* a client may ask */
	char		*permission_mode;
	struct config_list allowed_tools;
	struct config_list disallowed_tools;
	int		 firewall;	/* off only by "firewall = off" */
	struct config_list firewall_rules;	/* added to the built-in rules */
	int		 firewall_threshold;
	int		 tool_gate;	/* answer can_use_tool (on) or not */
	char		*seccomp;	/* profile path, or "off" */
	char		*landlock;	/* off, best_effort, required */
	char		*metrics_listen;
	/* The model-API gateway (supervisor/gateway.c). */
	char		*api_upstream;	/* NULL: $ANTHROPIC_BASE_URL or
					   the public API */
	char		*api_key_file;	/* NULL: $ANTHROPIC_API_KEY or
					   $ANTHROPIC_AUTH_TOKEN */
	char		*api_auth;	/* x-api-key, bearer; NULL: by source */
	int		 gateway;	/* off only by "gateway = off" */
	char		*gateway_listen;	/* loopback address:port */
	uint64_t	 gateway_timeout_ms;	/* upstream silent this long */
	uint64_t	 gateway_client_timeout_ms;
	size_t		 gateway_max_body;
	size_t		 gateway_max_headers;
	char		*egress;	/* on, required, off */
	struct config_list egress_allow;	/* host:port via CONNECT */

	int		 spare_min;
	int		 spare_max;
	int		 max_sessions;
	int		 max_clients;		/* connections, admins aside */
	int		 max_sessions_per_uid;
	int		 max_ended_sessions;	/* stats of ended sessions kept */
	int		 max_spawn_queue;	/* sessions waiting for a worker */
	int		 max_queued_turns;	/* per session, behind its turn */

	uint64_t	 turn_timeout_ms;
	uint64_t	 approval_timeout_ms;	/* approvals "client" */
	double		 max_budget_usd;	/* a session's default; 0 none */
	double		 max_budget_ceiling_usd;	/* 0: none */
	double		 uid_budget_usd;	/* a uid's sessions; 0 none */
	int		 rate_limit_admission;	/* refuse turns when over */
	int		 allow_session_mcp;	/* option mcp_config */
	int		 rate_limit_threshold;	/* per cent of a limit */
	uint64_t	 idle_timeout_ms;
	uint64_t	 freeze_after_ms;	/* idle CLI stopped (SIGSTOP) */
	uint64_t	 kill_grace_ms;
	uint64_t	 drain_timeout_ms;
	uint64_t	 worker_start_timeout_ms; /* spawn to ready (pool.c) */
	uint64_t	 move_timeout_ms;	/* another host asks (move.c) */

	size_t		 max_request_bytes;
	size_t		 cli_line_max;
	size_t		 client_outbuf_max;
	size_t		 client_pause_bytes;
	uint64_t	 client_stall_ms;
	size_t		 stderr_tail_bytes;
	size_t		 event_ring_bytes;

	uint64_t	 rlimit_nofile;
	uint64_t	 rlimit_nproc;
	uint64_t	 rlimit_cpu;
	uint64_t	 rlimit_fsize;

	int		 log_level;
	char		*log_file;	/* NULL: syslog, or stderr with -f */
	char		*log_format;	/* text, json */
};

/* Defaults only. */
struct config	*config_new(void);
/*
 * Defaults, then the file.  A missing file is fine when !must_exist.
 * NULL on error, with "file:line: why" in err.
 */
struct config	*config_load(const char *path, int must_exist, char *err,
		    size_t errlen);
void		 config_free(struct config *);
/* Prints the effective configuration as `key = value` lines. */
void		 config_dump(const struct config *, void *FILE_ptr);
/* Prints the sample file: every key, commented out, with its default. */
void		 config_sample(void *FILE_ptr);

/* Value parsers, exposed for tests: 0 ok, -1 bad. */
int		 config_parse_duration(const char *, uint64_t *ms);
int		 config_parse_size(const char *, uint64_t *bytes);

#endif
