/*
 * hotplexd main: options, configuration, daemonizing, signals, the loop.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/sandbox/sandbox.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"
#include "supervisor/screen.h"
#include "paths.h"

#define HOTPLEXD_WORKROOT_MODE	01777	/* a missing workdir_root, made */

struct hotplexd hp;

/*
 * Descriptors the master holds besides one per session (its worker's
 * channel) and one per client: listeners, the event base, logs, the
 * spares being spawned, a file being saved, the accept reserve.
 */
#define HOTPLEXD_FDS_BASE	64

static struct event	*hotplexd_drain_timer;
static const char	*hotplexd_pidfile;	/* -p, absolute */

/*
 * -p: after daemon(), so that it holds the pid that stays; renamed into
 * place, so that whoever finds the file finds the pid in it.
 */
static void
hotplexd_write_pidfile(void)
{
	FILE	*f;
	char	*tmp;

	if (hotplexd_pidfile == NULL)
		return;
	xasprintf(&tmp, "%s.tmp", hotplexd_pidfile);
	if ((f = fopen(tmp, "we")) == NULL)
		fatal("%s", tmp);
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) == EOF || rename(tmp, hotplexd_pidfile) == -1)
		fatal("%s", hotplexd_pidfile);
	free(tmp);
}

#define HOTPLEXD_USAGE	\
	"usage: hotplexd [-fhnv] [-c file] [-d level] [-p pidfile]\n"

static void
hotplexd_usage(void)
{
	fprintf(stderr, HOTPLEXD_USAGE);
	exit(2);
}

static void
hotplexd_help(void)
{
	printf(HOTPLEXD_USAGE
	    "  -c file   configuration file (default %s)\n"
	    "  -d level  log level: error, warn, info or debug\n"
	    "  -f        stay in the foreground, logging to stderr\n"
	    "  -n        check the configuration, the worker and the CLI, "
	    "then exit\n"
	    "  -p file   write the daemon's process id to file\n"
	    "  -h, --help     this help\n"
	    "  -v, --version  print the version\n"
	    "See hotplexd(8) and hotplexd.conf(5).\n", CONFIG_DEFAULT_PATH);
	exit(0);
}

/* hotplex-worker: from the config, else beside us, else the libexec dir. */
static char *
hotplexd_worker_path(const struct config *c)
{
	char	self[PATH_MAX], *dir, *p;
	ssize_t	n;

	if (c->worker_path != NULL)
		return xstrdup(c->worker_path);
	if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) > 0) {
		self[n] = '\0';
		dir = dirname(self);
		xasprintf(&p, "%s/hotplex-worker", dir);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return xstrdup(HOTPLEX_LIBEXECDIR "/hotplex-worker");
}

/*
 * What the parser cannot see: the seccomp profile compiles (workers read
 * it again later, after daemon() went to /: the path must be absolute),
 * the Landlock ABI that "required" needs.
 */
static int
hotplexd_check_conf(const struct config *c, char *err, size_t errlen)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen;

	if (strcmp(c->seccomp, "off") != 0 && sandbox_seccomp_check(
	    strcmp(c->seccomp, "on") == 0 ? SANDBOX_SECCOMP_BUILTIN :
	    c->seccomp, err, errlen) == -1)
		return -1;
	/* required: refuse to start rather than run a weaker sandbox. */
	if (c->landlock != NULL && strcmp(c->landlock, "required") == 0 &&
	    sandbox_landlock_abi() < SANDBOX_LANDLOCK_SCOPE_ABI) {
		snprintf(err, errlen, "landlock = required, but this kernel's "
		    "Landlock ABI is %d (needs %d: filesystem rules, signal "
		    "and abstract-socket scopes)", sandbox_landlock_abi(),
		    SANDBOX_LANDLOCK_SCOPE_ABI);
		return -1;
	}
	if (strcmp(c->daemon_user, "root") != 0 &&
	    strcmp(c->daemon_user, c->worker_user) == 0) {
		snprintf(err, errlen, "daemon_user and worker_user are both %s: "
		    "root's sessions would own the daemon's files",
		    c->daemon_user);
		return -1;
	}
	if (c->store_sync != NULL && strcmp(c->store_sync, "normal") != 0 &&
	    strcmp(c->store_sync, "full") != 0) {
		snprintf(err, errlen, "store_sync %s: expected normal or full",
		    c->store_sync);
		return -1;
	}
	if (c->store != NULL && !store_url_is_pg(c->store)) {
		snprintf(err, errlen, "store: expected a postgresql:// URL");
		return -1;
	}
	if (c->host_id != NULL && !state_valid_host_id(c->host_id)) {
		snprintf(err, errlen, "host_id %s: expected 1 to %d bytes of "
		    "[A-Za-z0-9._:-]", c->host_id, STATE_HOST_ID_MAX);
		return -1;
	}
	if (c->lease_timeout_ms < LEASE_TIMEOUT_MIN_MS) {
		snprintf(err, errlen, "lease_timeout: at least %d ms",
		    LEASE_TIMEOUT_MIN_MS);
		return -1;
	}
	if (c->metrics_listen != NULL && metrics_parse(c->metrics_listen, &ss,
	    &sslen, err, errlen) == -1)
		return -1;
	return server_gateway_check(c, err, errlen);
}

/* Descriptors a configuration needs at most, all sessions live. */
static rlim_t
hotplexd_fds_needed(const struct config *c)
{
	return (rlim_t)c->max_sessions + (rlim_t)c->spare_max +
	    (rlim_t)c->max_clients + HOTPLEXD_FDS_BASE;
}

/*
 * The soft RLIMIT_NOFILE goes up to the hard one (often 1024 against
 * 524288): running out of descriptors is what makes executes fail at
 * scale.  raise 0 (hotplexd -n) only says what a start would get.
 * Warns when max_sessions needs more than that.
 */
static void
hotplexd_nofile(const struct config *c, int raise)
{
	struct rlimit	rl;
	rlim_t		need = hotplexd_fds_needed(c);

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	if (raise && rl.rlim_cur < rl.rlim_max) {
		rlim_t	old = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_warn("setrlimit RLIMIT_NOFILE %llu",
			    (unsigned long long)rl.rlim_max);
			rl.rlim_cur = old;
		} else
			log_debug("RLIMIT_NOFILE raised from %llu to %llu",
			    (unsigned long long)old,
			    (unsigned long long)rl.rlim_cur);
	}
	if (!raise)
		rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		log_warnx("max_sessions %d, spare_max %d and max_clients %d "
		    "need about %llu descriptors, but the limit is %llu: "
		    "sessions past it get capacity errors (raise LimitNOFILE "
		    "or ulimit -n)", c->max_sessions, c->spare_max,
		    c->max_clients, (unsigned long long)need,
		    (unsigned long long)rl.rlim_cur);
}

/*
 * RLIMIT_NPROC counts every task of a uid on the machine, so with
 * session_user = creator all the sessions of one user share rlimit_nproc.
 * Warns when max_sessions of them could need more (an idle real CLI has 8
 * threads; its worker and tools come on top).
 */
#define HP_TASKS_PER_SESSION	16

static void
hotplexd_nproc(const struct config *c)
{
	unsigned long long	need;

	need = (unsigned long long)c->max_sessions * HP_TASKS_PER_SESSION;
	if (c->rlimit_nproc == 0 || strcmp(c->session_user, "dynamic") == 0 ||
	    need <= c->rlimit_nproc)
		return;
	log_warnx("max_sessions %d of one user may need about %llu tasks, but "
	    "rlimit_nproc %llu counts all of that user's together: its CLIs "
	    "then fail to fork (raise rlimit_nproc, or session_user dynamic)",
	    c->max_sessions, need, (unsigned long long)c->rlimit_nproc);
}

static void
hotplexd_report_stdout(const char *line)
{
	printf("hotplexd: isolation: %s\n", line);
}

/* An UNSAFE layer is a warning, at every start. */
static void
hotplexd_report_log(const char *line)
{
	if (strstr(line, "UNSAFE") != NULL || strstr(line, "REFUSED") != NULL)
		log_warnx("isolation: %s", line);
	else
		log_info("isolation: %s", line);
}

/*
 * The absolute workdir roots that are missing are made, sticky and open
 * to all as /tmp is: each user makes their own directories in it (with
 * their own identity), and none can remove another's.
 */
static void
hotplexd_workdir_roots(void)
{
	struct stat	st;
	size_t		i;
	const char	*r;

	for (i = 0; i < hp.conf->workdir_root.n; i++) {
		r = hp.conf->workdir_root.v[i];
		if (r[0] != '/' || stat(r, &st) == 0)
			continue;
		if (util_mkdirs(r, HOTPLEXD_WORKROOT_MODE) == -1 ||
		    chmod(r, HOTPLEXD_WORKROOT_MODE) == -1)
			log_warn("workdir_root %s", r);
		else
			log_info("workdir_root %s created (mode %o)", r,
			    HOTPLEXD_WORKROOT_MODE);
	}
}

/*
 * After the drop a reload reads as daemon_user: say now, not at the first
 * SIGHUP, when the config file or a rule file is readable only by root.
 */
static void
hotplexd_reload_readable(void)
{
	char	err[1024];
	int	fd;

	if (!privsep_dropped())
		return;
	if (hp.conf_given || access(hp.conf_path, F_OK) == 0) {
		if ((fd = open(hp.conf_path, O_RDONLY | O_CLOEXEC)) == -1)
			log_warnx("%s: %s as uid %u: a reload will fail",
			    hp.conf_path, strerror(errno), (unsigned)geteuid());
		else
			close(fd);
	}
	if (screen_readable(hp.conf, err, sizeof err) == -1)
		log_warnx("%s: a reload will fail", err);
}

/* New config into a new object; swapped in only when it parsed whole. */
int
hotplexd_reload(char *err, size_t errlen)
{
	struct config	*nc;
	struct screen	*ns;

	if ((nc = config_load(hp.conf_path, hp.conf_given, err,
	    errlen)) == NULL) {
		log_warnx("reload failed, keeping the old configuration: %s",
		    err);
		return -1;
	}
	if (hotplexd_check_conf(nc, err, errlen) == -1 ||
	    (ns = screen_load(nc, err, errlen)) == NULL) {
		log_warnx("reload failed, keeping the old configuration and "
		    "rules: %s", err);
		config_free(nc);
		return -1;
	}
	/* Both parsed: swap both.  Running sessions keep what they got. */
	screen_install(ns);
	if (strcmp(nc->socket, hp.conf->socket) != 0)
		log_warnx("reload: socket changes need a restart");
	if ((nc->metrics_listen == NULL) != (hp.conf->metrics_listen == NULL) ||
	    (nc->metrics_listen != NULL &&
	    strcmp(nc->metrics_listen, hp.conf->metrics_listen) != 0))
		log_warnx("reload: metrics_listen changes need a restart");
	if (nc->gateway != hp.conf->gateway ||
	    strcmp(nc->gateway_listen, hp.conf->gateway_listen) != 0 ||
	    strcmp(nc->egress, hp.conf->egress) != 0 ||
	    (nc->api_upstream == NULL) != (hp.conf->api_upstream == NULL) ||
	    (nc->api_upstream != NULL &&
	    strcmp(nc->api_upstream, hp.conf->api_upstream) != 0) ||
	    (nc->api_key_file == NULL) != (hp.conf->api_key_file == NULL) ||
	    (nc->api_key_file != NULL &&
	    strcmp(nc->api_key_file, hp.conf->api_key_file) != 0))
		log_warnx("reload: gateway, gateway_listen, egress, api_upstream "
		    "and api_key_file changes need a restart");
	if (hp.level_override != -1)
		nc->log_level = hp.level_override;
	/* The spawner reopens the log file: it may open it, we may not. */
	if ((nc->log_file == NULL) != (hp.conf->log_file == NULL) ||
	    (nc->log_file != NULL &&
	    strcmp(nc->log_file, hp.conf->log_file) != 0))
		log_warnx("reload: log_file changes need a restart");
	else if (spawner_log_reopen() == -1)
		log_warnx("reload: the log file could not be reopened; "
		    "logging as before");
	log_setjson(strcmp(nc->log_format, "json") == 0);
	config_free(hp.conf);
	hp.conf = nc;
	server_gateway_reload();
	log_setlevel(hp.conf->log_level);
	hotplexd_nofile(hp.conf, 1);
	hotplexd_nproc(hp.conf);
	log_info("configuration reloaded");
	pool_refill();
	return 0;
}

/* The loop, with its priorities (hotplexd.h) and bulk batches. */
static void
hotplexd_base(void)
{
	struct event_config	*cfg;

	if ((cfg = event_config_new()) == NULL)
		fatalx("event_config_new");
	if (event_config_set_max_dispatch_interval(cfg, NULL, HP_BULK_BATCH,
	    HP_PRIO_BULK) == -1)
		fatalx("event_config_set_max_dispatch_interval");
	if ((hp.base = event_base_new_with_config(cfg)) == NULL)
		fatalx("event_base_new_with_config");
	event_config_free(cfg);
	if (event_base_priority_init(hp.base, HP_PRIO_LEVELS) == -1)
		fatalx("event_base_priority_init");
}

/*
 * Past the last word: workers the master still counts, though killed, are
 * given up on (the spawner, ending with us, kills what it still has), so a
 * shutdown always ends.
 */
static void
hotplexd_give_up(evutil_socket_t fd, short what, void *arg)
{
	log_warnx("%d workers not accounted for after SIGKILL; exiting",
	    pool_count());
	event_base_loopexit(hp.base, NULL);
}

static void
hotplexd_kill_hard(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv;

	pool_kill_hard();
	tv = util_ms_tv(hp.conf->kill_grace_ms * 2);
	event_base_once(hp.base, -1, EV_TIMEOUT, hotplexd_give_up, NULL, &tv);
}

static void
hotplexd_drain_done(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv;

	log_info("drain timeout: stopping what is left");
	session_shutdown();
	hotplexd_check_exit();
	/* Workers get kill_grace to stop their CLIs, then are killed. */
	tv = util_ms_tv(hp.conf->kill_grace_ms * 2);
	event_base_once(hp.base, -1, EV_TIMEOUT, hotplexd_kill_hard, NULL, &tv);
}

/*
 * The spawner is gone, and our workers with it (their parent-death
 * signal): nothing can run a session any more.  We end at once.
 */
void
hotplexd_spawner_lost(void)
{
	if (hp.spawner_lost)
		return;
	hp.spawner_lost = 1;
	log_warnx("the spawner exited: its workers went with it; exiting");
	hp.shutting_down = 1;
	server_close();
	event_base_loopexit(hp.base, NULL);
}

/* Our own children: the gateway and the spawner (workers are its). */
static void
hotplexd_reap(void)
{
	pid_t	pid;
	int	status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0 ||
	    (pid == -1 && errno == EINTR))
		if (pid > 0 && spawner_reaped(pid, status))
			hotplexd_spawner_lost();
		else if (pid > 0 && server_gateway_reaped(pid, status))
			;	/* /readyz says so from now on */
		else if (pid > 0)
			log_debug("reaped %ld", (long)pid);
}

void
hotplexd_check_exit(void)
{
	if (hp.shutting_down && pool_count() == 0) {
		log_info("all workers gone; exiting");
		event_base_loopexit(hp.base, NULL);
	}
}

static void
hotplexd_signal(evutil_socket_t sig, short what, void *arg)
{
	char	err[CONFIG_ERR_MAX];

	switch (sig) {
	case SIGCHLD:
		hotplexd_reap();
		break;
	case SIGHUP:
		if (hotplexd_reload(err, sizeof err) == -1)
			spawner_log_reopen();	/* else done by the reload */
		break;
	case SIGUSR1:
		if (spawner_log_reopen() == 0)
			log_info("log file reopened");
		break;
	case SIGTERM:
	case SIGINT:
		hotplexd_shutdown();
		break;
	}
}

/* SIGTERM or the shutdown op: drain, then exit. */
void
hotplexd_shutdown(void)
{
	struct timeval	tv;

	if (hp.shutting_down) {		/* a second time: no more waiting */
		hotplexd_drain_done(-1, 0, NULL);
		return;
	}
	log_info("shutting down (drain up to %llu ms)",
	    (unsigned long long)hp.conf->drain_timeout_ms);
	hp.shutting_down = 1;
	server_close();
	pool_kill_all();	/* spares only; sessions drain */
	session_drain();
	hotplexd_check_exit();
	if (session_count_live() == 0)
		return;
	tv = util_ms_tv(hp.conf->drain_timeout_ms);
	hotplexd_drain_timer = evtimer_new(hp.base, hotplexd_drain_done, NULL);
	evtimer_add(hotplexd_drain_timer, &tv);
}

int
main(int argc, char **argv)
{
	struct event	*sigs[6];
	int		 signos[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGUSR1,
			    0 };
	int		 ch, check = 0, level = -1, i;
	const char	*conf_path = CONFIG_DEFAULT_PATH;
	int		 conf_given = 0;
	char		 err[SANDBOX_ERR_MAX];
	struct screen	*ns;

	static const struct option longopts[] = {
		{ "help",	no_argument,	NULL,	'h' },
		{ "version",	no_argument,	NULL,	'v' },
		{ NULL,		0,		NULL,	0 }
	};

	json_init();
	while ((ch = getopt_long(argc, argv, "c:d:fhnp:v", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf_path = optarg;
			conf_given = 1;
			break;
		case 'd':
			if ((level = log_level_parse(optarg)) == -1)
				hotplexd_usage();
			break;
		case 'f':
			hp.foreground = 1;
			break;
		case 'h':
			hotplexd_help();
			break;
		case 'n':
			check = 1;
			break;
		case 'p':
			if (optarg[0] != '/') {
				fprintf(stderr, "hotplexd: -p %s: not an "
				    "absolute path\n", optarg);
				return 1;
			}
			hotplexd_pidfile = optarg;
			break;
		case 'v':
			printf("hotplexd %s\n", HOTPLEX_VERSION);
			return 0;
		default:
			hotplexd_usage();
		}
	}
	if (optind != argc)
		hotplexd_usage();

	hp.start_euid = geteuid();
	hp.start_egid = getegid();
	log_init("master", 1, LOG_LVL_INFO);
	hp.conf = config_load(conf_path, conf_given, err, sizeof err);
	if (hp.conf == NULL) {
		fprintf(stderr, "hotplexd: %s\n", err);
		return 1;
	}
	/*
	 * Every line from here on goes where the daemon will log, the
	 * terminal getting warnings and errors too until we detach.
	 */
	if (!check) {
		if (level != -1)
			hp.conf->log_level = level;
		log_setlevel(hp.conf->log_level);
		log_setjson(strcmp(hp.conf->log_format, "json") == 0);
		if (log_open(hp.conf->log_file, hp.foreground, !hp.foreground,
		    err, sizeof err) == -1) {
			fprintf(stderr, "hotplexd: %s\n", err);
			config_free(hp.conf);
			return 1;
		}
	}
	if (hotplexd_check_conf(hp.conf, err, sizeof err) == -1 ||
	    (ns = screen_load(hp.conf, err, sizeof err)) == NULL) {
		if (check)
			fprintf(stderr, "hotplexd: %s: %s\n", conf_path, err);
		else
			log_warnx("%s: %s", conf_path, err);
		config_free(hp.conf);
		return 1;
	}
	screen_install(ns);
	if (check) {
		hotplexd_nofile(hp.conf, 0);
		hotplexd_nproc(hp.conf);
		printf("hotplexd: configuration %s OK\n", conf_path);
		fflush(stdout);
		hp.worker_path = hotplexd_worker_path(hp.conf);
		i = check_install(hp.conf, hp.worker_path);
		free(hp.worker_path);
		isolation_report(hotplexd_report_stdout);
		screen_unref(hp.screen);
		config_free(hp.conf);
		return i == 0 ? 0 : 1;
	}
	hp.level_override = level;
	hp.conf_given = conf_given;
	/* daemon() changes to /: keep the path that reload will need. */
	if ((hp.conf_path = realpath(conf_path, NULL)) == NULL)
		hp.conf_path = xstrdup(conf_path);
	hp.worker_path = hotplexd_worker_path(hp.conf);
	TAILQ_INIT(&hp.clients);
	TAILQ_INIT(&hp.sessions);
	TAILQ_INIT(&hp.workers);
	stats_init(&hp.ended_total);
	stats_init(&hp.all_total);

	hotplexd_nofile(hp.conf, 1);
	hotplexd_nproc(hp.conf);

	signal(SIGPIPE, SIG_IGN);
	umask(022);

	/* What confines the sessions, said before any client can come. */
	isolation_report(hotplexd_report_log);

	/* Metrics first: a client that sees the socket sees a daemon up. */
	if (server_gateway_listen() == -1 || metrics_listen() == -1 ||
	    server_listen() == -1)
		return 1;
	if (!hp.foreground) {
		if (daemon(0, 0) == -1)
			fatal("daemon");
		log_detached();
	}
	hotplexd_write_pidfile();
	/* Before the loop and any client: the key goes with it. */
	server_gateway_spawn();
	/* What needs our privileges at start, before the spawner forks. */
	hotplexd_workdir_roots();
	session_tmpdirs_clear();
	/* The workers' parent, the one that keeps our privileges. */
	spawner_start(hotplexd_pidfile);
	/* From here on, nothing of ours runs as root. */
	privsep_drop();
	hotplexd_reload_readable();
	hotplexd_base();
	/* Reaps and signals are bulk: a wave of them yields to the turns. */
	for (i = 0; signos[i] != 0; i++) {
		sigs[i] = evsignal_new(hp.base, signos[i], hotplexd_signal, NULL);
		event_priority_set(sigs[i], HP_PRIO_BULK);
		evsignal_add(sigs[i], NULL);
	}
	health_init();
	server_gateway_start();
	server_start();
	metrics_start();
	state_load();
	audit_init();
	pool_init();
	log_info("hotplexd %s started, socket %s, worker %s", HOTPLEX_VERSION,
	    hp.conf->socket, hp.worker_path);

	event_base_dispatch(hp.base);

	audit_stop();
	state_close();
	while (!TAILQ_EMPTY(&hp.clients))
		server_client_free(TAILQ_FIRST(&hp.clients));
	metrics_stop();
	session_free_all();
	pool_free();
	server_gateway_stop();
	for (i = 0; signos[i] != 0; i++)
		event_free(sigs[i]);
	if (hotplexd_drain_timer != NULL)
		event_free(hotplexd_drain_timer);
	server_close();
	/* The spawner ends on our EOF, removing what we may not. */
	spawner_stop();
	stats_clear(&hp.ended_total);
	stats_clear(&hp.all_total);
	budget_free();
	event_base_free(hp.base);
	screen_unref(hp.screen);
	config_free(hp.conf);
	free(hp.conf_path);
	free(hp.worker_path);
	if (hotplexd_pidfile != NULL)
		unlink(hotplexd_pidfile);
	log_info("exited");
	return hp.spawner_lost ? 1 : 0;
}
