/*
 * The worker pool: spare_min..spare_max idle hotplex-worker processes,
 * fork + exec'd with one end of a socketpair on WORKER_FD, handed to new
 * sessions at once and refilled in the background.  A worker that sends a
 * malformed message is killed; the master goes on.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/procfs.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "worker/worker.h"

static void	pool_worker_finish(struct worker *);

/*
 * Crash loops (PHP-FPM's idea): a worker that dies before it said hello,
 * or soon after, is an early death.  Respawns back off exponentially;
 * POOL_EARLY_MAX early deaths within POOL_EARLY_WINDOW_MS stop
 * pre-forking (logged once) until a worker lives again.
 */
#define POOL_EARLY_MS		1000	/* died sooner: an early death */
#define POOL_EARLY_WINDOW_MS	10000
#define POOL_EARLY_MAX		5
#define POOL_BACKOFF_MIN_MS	100
#define POOL_BACKOFF_MAX_MS	30000
#define POOL_HELLO_TIMEOUT_S	10	/* a worker must say hello by then */
#define POOL_SWEEP_MAX		1024	/* left-overs killed per sweep */

static struct {
	uint64_t	 window_start;
	int		 deaths;
	uint64_t	 backoff_ms;
	int		 stopped;	/* pre-forking stopped */
	struct event	*timer;		/* a refill after the back-off */
} pool_loop;

static void
pool_backoff_fire(evutil_socket_t fd, short what, void *arg)
{
	pool_refill();
}

/* A worker died: early?  Then back off, or stop pre-forking. */
static int
pool_early_death(const struct worker *wk)
{
	uint64_t	now = util_now_ms();
	struct timeval	tv;

	/* One that served a session and went with its CLI is no crash loop. */
	if (hp.shutting_down || wk->served ||
	    (wk->ready && now - wk->started_ms >= POOL_EARLY_MS)) {
		pool_loop.deaths = 0;
		pool_loop.backoff_ms = 0;
		return 0;
	}
	if (now - pool_loop.window_start > POOL_EARLY_WINDOW_MS) {
		pool_loop.window_start = now;
		pool_loop.deaths = 0;
	}
	pool_loop.deaths++;
	pool_loop.backoff_ms = pool_loop.backoff_ms == 0 ? POOL_BACKOFF_MIN_MS :
	    pool_loop.backoff_ms * 2;
	if (pool_loop.backoff_ms > POOL_BACKOFF_MAX_MS)
		pool_loop.backoff_ms = POOL_BACKOFF_MAX_MS;
	if (pool_loop.deaths >= POOL_EARLY_MAX) {
		if (!pool_loop.stopped)
			log_warnx("%d workers died at start within %d s: "
			    "pre-forking stopped until a worker lives", 
			    pool_loop.deaths, POOL_EARLY_WINDOW_MS / 1000);
		pool_loop.stopped = 1;
		return 1;
	}
	if (pool_loop.timer == NULL)
		pool_loop.timer = evtimer_new(hp.base, pool_backoff_fire, NULL);
	tv.tv_sec = pool_loop.backoff_ms / 1000;
	tv.tv_usec = (pool_loop.backoff_ms % 1000) * 1000;
	evtimer_add(pool_loop.timer, &tv);
	log_info("worker died early: respawning in %llu ms",
	    (unsigned long long)pool_loop.backoff_ms);
	return 1;
}

static struct worker *
pool_find_pid(pid_t pid)
{
	struct worker	*wk;

	TAILQ_FOREACH(wk, &hp.workers, entry)
		if (wk->pid == pid)
			return wk;
	return NULL;
}

int
pool_count(void)
{
	struct worker	*wk;
	int		 n = 0;

	TAILQ_FOREACH(wk, &hp.workers, entry)
		n++;
	return n;
}

int
pool_spares(void)
{
	struct worker	*wk;
	int		 n = 0;

	TAILQ_FOREACH(wk, &hp.workers, entry)
		if (wk->session == NULL && !wk->dead && !wk->closed)
			n++;
	return n;
}

/* Kill a worker; its death is handled when we reap it. */
void
pool_worker_kill(struct worker *wk, const char *why)
{
	log_warnx("killing worker %ld: %s", (long)wk->pid, why);
	kill(wk->pid, SIGKILL);
	/* Nothing more is read from it: its reaping ends it. */
	wk->closed = 1;
	wk->killed = 1;
	if (wk->bev != NULL)
		bufferevent_disable(wk->bev, EV_READ | EV_WRITE);
}

static void
pool_worker_read(struct bufferevent *bev, void *arg)
{
	struct worker	*wk = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct msg	 m;
	int		 r = 0;
	cJSON		*j;

	while (!wk->dead && !wk->killed && (r = msg_get(in, &m)) == 1) {
		if (m.hdr.type != MSG_EVENT)
			log_debug("worker %ld: %s (turn %u, %u bytes)",
			    (long)wk->pid, msg_type_name(m.hdr.type), m.hdr.turn,
			    m.hdr.len);
		if (m.hdr.type == MSG_HELLO) {
			if (wk->ready || (j = msg_json(&m)) == NULL) {
				msg_clear(&m);
				pool_worker_kill(wk, "bad hello");
				return;
			}
			cJSON_Delete(j);
			wk->ready = 1;
			evtimer_del(wk->hello_timer);
			log_debug("worker %ld ready", (long)wk->pid);
			if (pool_loop.stopped) {
				log_info("a worker started: pre-forking again");
				pool_loop.stopped = 0;
			}
			session_worker_ready();
		} else if (wk->session != NULL)
			session_worker_msg(wk->session, wk, &m);
		else if (m.hdr.type == MSG_OPEN_FAILED ||
		    m.hdr.type == MSG_CLI_EXIT)
			;	/* late news of a session that is gone */
		else {
			log_warnx("worker %ld: %s message without a session",
			    (long)wk->pid, msg_type_name(m.hdr.type));
			msg_clear(&m);
			pool_worker_kill(wk, "protocol violation");
			return;
		}
		msg_clear(&m);
	}
	if (!wk->dead && !wk->killed && r == -1)
		pool_worker_kill(wk, "malformed message");
}

static void
pool_worker_event(struct bufferevent *bev, short what, void *arg)
{
	struct worker	*wk = arg;
	struct evbuffer	*out = bufferevent_get_output(bev);

	if ((what & BEV_EVENT_WRITING) && !wk->closed) {
		/*
		 * We cannot write to it (EPIPE: it has exited, say while a turn
		 * was being sent), but what it wrote before it went is still to
		 * be read: its last messages (CLI exit, turn end) decide how the
		 * turn ends.  Read on to EOF; libevent stopped the writing.  One
		 * that lives on (another error) is killed, so that EOF comes.
		 */
		log_debug("worker %ld: cannot write to its channel: %s",
		    (long)wk->pid,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		evbuffer_drain(out, evbuffer_get_length(out));
		if (!wk->reaped)
			kill(wk->pid, SIGKILL);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		wk->closed = 1;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		if (wk->reaped)
			pool_worker_finish(wk);
		else if (wk->session != NULL)
			session_worker_gone(wk->session, wk, -1);
	}
}

static void
pool_hello_timeout(evutil_socket_t fd, short what, void *arg)
{
	pool_worker_kill(arg, "no hello in time");
}

static struct worker *
pool_spawn(void)
{
	struct timeval	 hello_tv = { POOL_HELLO_TIMEOUT_S, 0 };
	struct worker	*wk;
	int		 sv[2], sig, logfd;
	pid_t		 pid;
	sigset_t	 all, old;
	const char	*argv[6];
	static const char *levels[] = { "error", "warn", "info", "debug" };

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");
		return NULL;
	}
	argv[0] = "hotplex-worker";
	argv[1] = "-d";
	argv[2] = levels[hp.conf->log_level];
	/* Workers log where we do: our file or stderr as theirs, or syslog. */
	logfd = log_getfd();
	argv[3] = logfd != -1 ? "-f" : NULL;
	argv[4] = logfd != -1 && log_isjson() ? "-j" : NULL;
	argv[5] = NULL;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		/* The log first: its descriptor may be WORKER_FD. */
		if (logfd > STDERR_FILENO && dup2(logfd, STDERR_FILENO) == -1)
			_exit(WORKER_EXIT_FATAL);
		if (dup2(sv[1], WORKER_FD) == -1)
			_exit(WORKER_EXIT_FATAL);
		closefrom(WORKER_FD + 1);
		execv(hp.worker_path, (char *const *)argv);
		fprintf(stderr, "hotplexd: exec %s: %s\n", hp.worker_path,
		    strerror(errno));
		_exit(WORKER_EXIT_FATAL);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (pid == -1) {
		log_warn("fork");
		close(sv[0]);
		return NULL;
	}
	util_set_nonblock(sv[0]);
	wk = xcalloc(1, sizeof *wk);
	wk->pid = pid;
	wk->started_ms = util_now_ms();
	wk->bev = bufferevent_socket_new(hp.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	if (wk->bev == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(wk->bev, pool_worker_read, NULL, pool_worker_event,
	    wk);
	wk->hello_timer = evtimer_new(hp.base, pool_hello_timeout, wk);
	evtimer_add(wk->hello_timer, &hello_tv);
	bufferevent_enable(wk->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&hp.workers, wk, entry);
	log_debug("spawned worker %ld", (long)pid);
	return wk;
}

void
pool_init(void)
{
	pool_refill();
}

/* Keep spare_min spares (spawning or ready), within max_sessions. */
void
pool_refill(void)
{
	int	spares = pool_spares();

	if (hp.shutting_down || pool_loop.stopped ||
	    (pool_loop.timer != NULL && evtimer_pending(pool_loop.timer, NULL)))
		return;
	while (spares < hp.conf->spare_min &&
	    pool_count() < hp.conf->max_sessions + hp.conf->spare_max) {
		if (pool_spawn() == NULL)
			break;
		spares++;
	}
}

/* A ready spare for a new session, or NULL (one is being spawned). */
struct worker *
pool_take(void)
{
	struct worker	*wk;
	int		 spawning = 0;

	TAILQ_FOREACH(wk, &hp.workers, entry) {
		if (wk->session != NULL || wk->dead || wk->closed)
			continue;
		if (wk->ready) {
			wk->served = 1;
			return wk;
		}
		spawning++;
	}
	if (spawning == 0 && !hp.shutting_down)
		pool_spawn();
	return NULL;
}

void
pool_send(struct worker *wk, uint16_t type, uint32_t turn, const cJSON *j)
{
	if (wk->dead || wk->bev == NULL)
		return;
	if (j != NULL)
		msg_compose_json(bufferevent_get_output(wk->bev), type, turn, j);
	else
		msg_compose(bufferevent_get_output(wk->bev), type, turn, NULL, 0);
}

/*
 * We are a subreaper: what a dead worker left behind (tools that escaped
 * their CLI's process group) is now our child.  Anything that is not a
 * worker is killed; the SIGCHLD loop reaps it.
 */
static void
pool_sweep(void)
{
	pid_t		 kids[POOL_SWEEP_MAX];
	size_t		 n, i;

	n = proc_children(getpid(), kids, POOL_SWEEP_MAX);
	for (i = 0; i < n; i++) {
		if (pool_find_pid(kids[i]) != NULL)
			continue;
		log_warnx("killing process %ld left behind by a worker",
		    (long)kids[i]);
		kill(kids[i], SIGKILL);
	}
}

/* Reaped and its channel read to the end: forget the worker. */
static void
pool_worker_finish(struct worker *wk)
{
	int		status = wk->status, before_hello = !wk->ready;
	struct worker	dead = *wk;	/* what is needed after the free */

	wk->dead = 1;
	if (wk->session != NULL)
		session_worker_gone(wk->session, wk, status);
	TAILQ_REMOVE(&hp.workers, wk, entry);
	if (wk->bev != NULL)
		bufferevent_free(wk->bev);
	event_free(wk->hello_timer);
	free(wk);
	pool_sweep();
	if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
		log_warnx("a worker could not start (fatal set-up error); not "
		    "respawning until the next session");
		session_spawn_failed("hotplex-worker could not start");
	} else if (before_hello) {
		log_warnx("a worker died before it was ready");
		session_spawn_failed("hotplex-worker died at start");
		pool_early_death(&dead);
	} else if (!pool_early_death(&dead))
		pool_refill();
	/* Shutting down, the last worker's end (reap or EOF) ends us. */
	hotplexd_check_exit();
}

static void
pool_worker_dead(struct worker *wk, int status)
{
	if (WIFSIGNALED(status))
		log_warnx("worker %ld killed by signal %d", (long)wk->pid,
		    WTERMSIG(status));
	else if (WEXITSTATUS(status) != 0)
		log_warnx("worker %ld exited with status %d", (long)wk->pid,
		    WEXITSTATUS(status));
	else
		log_debug("worker %ld exited", (long)wk->pid);
	wk->reaped = 1;
	wk->status = status;
	/* Its last messages may still be in the socket: wait for EOF. */
	if (wk->closed)
		pool_worker_finish(wk);
	else if (wk->paused) {
		/* Paused for a slow client: read on, so that EOF comes. */
		wk->paused = 0;
		bufferevent_enable(wk->bev, EV_READ);
	}
}

void
pool_reap(void)
{
	struct worker	*wk;
	pid_t		 pid;
	int		 status;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0 || (pid == -1 && errno == ECHILD))
			break;
		if (pid == -1) {
			if (errno == EINTR)
				continue;
			log_warn("waitpid");
			break;
		}
		if ((wk = pool_find_pid(pid)) != NULL)
			pool_worker_dead(wk, status);
		else
			log_debug("reaped orphan %ld", (long)pid);
	}
}

/* Shutdown: spares go now; workers with sessions are stopped by session.c. */
void
pool_kill_all(void)
{
	if (pool_loop.timer != NULL) {
		event_free(pool_loop.timer);
		pool_loop.timer = NULL;
	}
	struct worker	*wk;

	TAILQ_FOREACH(wk, &hp.workers, entry)
		if (wk->session == NULL && !wk->reaped)
			kill(wk->pid, SIGTERM);
}

/* The last word: every worker still there is killed. */
void
pool_kill_hard(void)
{
	struct worker	*wk;

	TAILQ_FOREACH(wk, &hp.workers, entry)
		if (!wk->reaped) {
			log_warnx("worker %ld did not stop: SIGKILL",
			    (long)wk->pid);
			kill(wk->pid, SIGKILL);
		}
}
