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
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "worker/worker.h"

static void	pool_worker_finish(struct worker *);

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
	if (wk->bev != NULL)
		bufferevent_disable(wk->bev, EV_READ | EV_WRITE);
}

static void
pool_worker_read(struct bufferevent *bev, void *arg)
{
	struct worker	*wk = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct msg	 m;
	int		 r;
	cJSON		*j;

	while (!wk->dead && (r = msg_get(in, &m)) == 1) {
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
			log_debug("worker %ld ready", (long)wk->pid);
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
	if (!wk->dead && r == -1)
		pool_worker_kill(wk, "malformed message");
}

static void
pool_worker_event(struct bufferevent *bev, short what, void *arg)
{
	struct worker	*wk = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		wk->closed = 1;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		if (wk->reaped)
			pool_worker_finish(wk);
		else if (wk->session != NULL)
			session_worker_gone(wk->session, wk, -1);
	}
}

static struct worker *
pool_spawn(void)
{
	struct worker	*wk;
	int		 sv[2], sig;
	pid_t		 pid;
	sigset_t	 all, old;
	const char	*argv[5];
	static const char *levels[] = { "error", "warn", "info", "debug" };

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");
		return NULL;
	}
	argv[0] = "hotplex-worker";
	argv[1] = "-d";
	argv[2] = levels[hp.conf->log_level];
	argv[3] = hp.foreground ? "-f" : NULL;
	argv[4] = NULL;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0) {
		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
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

	if (hp.shutting_down)
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
			/* Refill after this turn of the loop. */
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

/* Reaped and its channel read to the end: forget the worker. */
static void
pool_worker_finish(struct worker *wk)
{
	int	status = wk->status, before_hello = !wk->ready;

	wk->dead = 1;
	if (wk->session != NULL)
		session_worker_gone(wk->session, wk, status);
	TAILQ_REMOVE(&hp.workers, wk, entry);
	if (wk->bev != NULL)
		bufferevent_free(wk->bev);
	free(wk);
	if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
		log_warnx("a worker could not start (fatal set-up error); not "
		    "respawning until the next session");
		session_spawn_failed("hotplex-worker could not start");
	} else if (before_hello) {
		log_warnx("a worker died before it was ready");
		session_spawn_failed("hotplex-worker died at start");
	} else
		pool_refill();
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
