/*
 * The worker pool: spare_min..spare_max idle hotplex-worker processes,
 * spawned by the spawner (spawner.c) with one end of a socketpair on
 * WORKER_FD (the other is ours), handed to new
 * sessions at once and refilled in the background; a burst of sessions
 * waiting for workers has them spawned side by side.  Spawns are asked
 * of the spawner and answered in the loop (pool_spawned): the master
 * never waits for one.  A worker that sends
 * a malformed message is killed; the master goes on.
 *
 * Nothing here walks every worker per event: ready spares are a list,
 * workers are found by pid in a hash, and the exits the spawner reports
 * are taken in batches.  The spawner is their parent: it signals them for
 * us and sweeps what dead workers left behind.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "common/msg.h"
#include "common/peer.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "supervisor/screen.h"
#include "worker/worker.h"

static void	pool_worker_finish(struct worker *);
static void	pool_worker_dead(struct worker *, int);
static void	pool_reap_fire(evutil_socket_t, short, void *);

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
#define POOL_REAP_BATCH		16	/* exits per bulk callback */
#define POOL_SPAWN_PARALLEL	64	/* workers starting at once */
#define POOL_STOP_PARALLEL	32	/* workers stopping at once */
#define POOL_IDLE_PARALLEL	4	/* of those idle_timeout stopped */
#define POOL_HASH_SIZE		4096	/* pid buckets; a power of two */
#define POOL_UNKNOWN_EXITS	(2 * POOL_SPAWN_PARALLEL)

LIST_HEAD(pool_bucket, worker);

static struct {
	struct pool_bucket	 bypid[POOL_HASH_SIZE];	/* by pid */
	struct workers		 spares;	/* ready, no session */
	struct workers		 stopq;		/* to stop when a slot frees */
	struct workers		 idleq;		/* idle ones, likewise */
	int			 nstopping;	/* told to stop, not yet gone */
	int			 nidle;		/* of them, idle ones */
	int			 nworkers;
	int			 nspares;
	int			 nstarting;	/* spawned, not ready yet */
	int			 nasked;	/* spawns asked, not answered */
	struct event		*reap_ev;	/* the spawner's exit channel */
	/*
	 * Exits of pids not known yet: a worker's exit can come before the
	 * answer to its spawn (two channels; the answer may wait in the
	 * spawner's queue), and dropping it would leave the worker counted
	 * for good (a shutdown would never end).  Oldest first.
	 */
	struct {
		pid_t		 pid;
		int		 status;
	}			 unknown[POOL_UNKNOWN_EXITS];
	size_t			 nunknown;
} pool;

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
	tv = util_ms_tv(pool_loop.backoff_ms);
	evtimer_add(pool_loop.timer, &tv);
	log_info("worker died early: respawning in %llu ms",
	    (unsigned long long)pool_loop.backoff_ms);
	return 1;
}

static struct pool_bucket *
pool_bucket(pid_t pid)
{
	return &pool.bypid[(unsigned)pid & (POOL_HASH_SIZE - 1)];
}

static struct worker *
pool_find_pid(pid_t pid)
{
	struct worker	*wk;

	LIST_FOREACH(wk, pool_bucket(pid), hash)
		if (wk->pid == pid)
			return wk;
	return NULL;
}

/* Workers whose channel we hold (status counts their descriptors). */
int
pool_count(void)
{
	return pool.nworkers;
}

/* Workers on their way: asked, or spawned and not ready yet. */
static int
pool_coming(void)
{
	return pool.nstarting + pool.nasked;
}

/* Spares ready or on their way. */
int
pool_spares(void)
{
	return pool.nspares + pool_coming();
}

/* No longer a spare, ready or starting: given a session, or going. */
static void
pool_unspare(struct worker *wk)
{
	if (wk->starting) {
		wk->starting = 0;
		pool.nstarting--;
	}
	if (wk->spare) {
		wk->spare = 0;
		TAILQ_REMOVE(&pool.spares, wk, spare_entry);
		pool.nspares--;
	}
}

/* A ready worker without a session is a spare again (open failed). */
void
pool_release(struct worker *wk)
{
	wk->session = NULL;
	if (wk->spare || wk->starting || wk->dead || wk->closed || !wk->ready)
		return;
	wk->spare = 1;
	TAILQ_INSERT_TAIL(&pool.spares, wk, spare_entry);
	pool.nspares++;
}

/* Spares that are ready: a session given one starts now (readyz). */
int
pool_ready_spares(void)
{
	return pool.nspares;
}

/*
 * A worker on its way out (stopped, killed): what it still says is bulk
 * work, behind the I/O of live sessions.  libevent refuses while its
 * events are active; they are then handled once more at the old level.
 * Not when we are shutting down: then every worker is on its way out,
 * and a thousand level-triggered channels left ready for the next bulk
 * batch (HP_BULK_BATCH) would each be polled again by every epoll_wait,
 * half the master's CPU in a stop of 1,000 sessions (perf).
 */
void
pool_worker_bulk(struct worker *wk)
{
	if (wk->peer != NULL)
		peer_set_priority(wk->peer, hp.shutting_down ? HP_PRIO_IO :
		    HP_PRIO_BULK);
}

static void
pool_stop_send(struct worker *wk, uint32_t turn)
{
	if (hp.shutting_down)
		pool_worker_bulk(wk);	/* one queued before: at IO again */
	wk->stop_sent = 1;
	pool.nstopping++;
	if (wk->stop_idle)
		pool.nidle++;
	pool_send(wk, MSG_STOP, turn, NULL);
}

static void
pool_stop_unqueue(struct worker *wk)
{
	if (!wk->stop_queued)
		return;
	TAILQ_REMOVE(wk->stop_idle ? &pool.idleq : &pool.stopq, wk,
	    stop_entry);
	wk->stop_queued = 0;
}

/* Room for one more stop now: of an idle session's worker (idle), or any. */
static int
pool_stop_room(int idle)
{
	if (hp.shutting_down)
		return 1;
	if (pool.nstopping >= POOL_STOP_PARALLEL)
		return 0;
	return !idle || pool.nidle < POOL_IDLE_PARALLEL;
}

/*
 * At most POOL_STOP_PARALLEL workers are told to stop at a time: a wave of
 * stops (a burst of stop ops) does not have a thousand workers and CLIs
 * exit at once, taking the CPU from the live sessions' turns.  Of
 * sessions that reached idle_timeout, which nobody waits for, at most
 * POOL_IDLE_PARALLEL: a wave of them (many sessions opened together,
 * left together) costs a busy session next to it little, and lasts the
 * longer.  Shutting down, every one is told at once.
 */
static void
pool_stop(struct worker *wk, uint32_t turn, int idle)
{
	pool_worker_bulk(wk);
	if (wk->stop_sent || wk->dead || wk->killed)
		return;
	if (wk->stop_queued) {
		/* Someone waits for an idle one now: no longer paced as idle. */
		if (idle || !wk->stop_idle)
			return;
		pool_stop_unqueue(wk);
	}
	wk->stop_idle = idle;
	if (!pool_stop_room(idle)) {
		wk->stop_queued = 1;
		wk->stop_turn = turn;
		TAILQ_INSERT_TAIL(idle ? &pool.idleq : &pool.stopq, wk,
		    stop_entry);
		return;
	}
	pool_stop_send(wk, turn);
}

void
pool_worker_stop(struct worker *wk, uint32_t turn)
{
	pool_stop(wk, turn, 0);
}

/* An idle session's worker: paced as such (POOL_IDLE_PARALLEL). */
void
pool_worker_stop_idle(struct worker *wk, uint32_t turn)
{
	pool_stop(wk, turn, 1);
}

/*
 * A session let its worker go (a move, see move.c): it stops in the
 * background, with no session.  What it still says (its CLI's exit-time
 * transcript lines, events) is read and dropped: nothing of it reaches the
 * store, whose lease for the session is another host's now.  The
 * session's TMPDIR goes with it unless the session is back here by then.
 */
void
pool_worker_orphan(struct worker *wk, uid_t uid, const char *name,
    uint32_t turn)
{
	wk->session = NULL;
	wk->orphan = 1;
	wk->orphan_uid = uid;
	free(wk->orphan_name);
	wk->orphan_name = xstrdup(name);
	pool_worker_stop(wk, turn);
}

/* A stopping worker went (or the daemon is shutting down): the next. */
static void
pool_stop_next(void)
{
	struct worker	*wk;

	/* Those someone waits for first. */
	while (pool_stop_room(0) && (wk = TAILQ_FIRST(&pool.stopq)) != NULL) {
		pool_stop_unqueue(wk);
		pool_stop_send(wk, wk->stop_turn);
	}
	while (pool_stop_room(1) && (wk = TAILQ_FIRST(&pool.idleq)) != NULL) {
		pool_stop_unqueue(wk);
		pool_stop_send(wk, wk->stop_turn);
	}
}

/* Kill a worker; its death is handled when we reap it. */
void
pool_worker_kill(struct worker *wk, const char *why)
{
	log_warnx("killing worker %ld: %s", (long)wk->pid, why);
	spawner_kill(wk->pid, SIGKILL);
	/* Nothing more is read from it: its reaping ends it. */
	wk->closed = 1;
	wk->killed = 1;
	pool_unspare(wk);
	pool_stop_unqueue(wk);
	if (wk->peer != NULL)
		peer_stop(wk->peer);
	pool_worker_bulk(wk);
}

/*
 * A worker of another build: answered with our hello (our version), on
 * which it exits with WORKER_EXIT_VERSION; nothing more is read from it
 * and none is spawned again before a new session asks (no crash loop).
 */
static void
pool_worker_version(struct worker *wk, unsigned version)
{
	log_warnx("worker %ld speaks message version %u, hotplexd %u: "
	    "hotplex-worker and hotplexd are from different builds",
	    (long)wk->pid, version, MSG_VERSION);
	/* Never reused: its reaping ends it. */
	wk->closed = 1;
	wk->killed = 1;
	wk->other_version = 1;
	pool_unspare(wk);
	msg_empty_compose(peer_output(wk->peer), MSG_HELLO, 0);
}

/*
 * A spare given rules no longer in force (a reload): stopped, and
 * counted as one that served (its end is no crash).
 */
static void
pool_retire(struct worker *wk)
{
	log_debug("worker %ld: rules generation %llu replaced: stopping it",
	    (long)wk->pid, (unsigned long long)wk->screen->generation);
	pool_unspare(wk);
	wk->served = 1;
	pool_worker_stop(wk, 0);
}

/* A reload put new rules in force: the spares that have the old go. */
void
pool_screen_changed(void)
{
	struct worker	*wk, *next;

	for (wk = TAILQ_FIRST(&pool.spares); wk != NULL; wk = next) {
		next = TAILQ_NEXT(wk, spare_entry);
		if (wk->screen != hp.screen)
			pool_retire(wk);
	}
	/* Those still starting go when they are ready. */
	pool_refill();
}

/* One message from a worker, its header checked (peer.c). */
static void
pool_worker_msg(struct peer *p, struct msg *m, void *arg)
{
	struct worker	*wk = arg;

	if (m->hdr.type == MSG_HELLO) {
		/* Our version: its rules (MSG_POLICY) are on the way. */
		if (wk->hello || msg_empty_decode(m) == -1) {
			pool_worker_kill(wk, "bad hello");
			return;
		}
		wk->hello = 1;
	} else if (m->hdr.type == MSG_READY) {
		if (!wk->hello || wk->ready || msg_empty_decode(m) == -1) {
			pool_worker_kill(wk, "bad ready");
			return;
		}
		wk->ready = 1;
		evtimer_del(wk->hello_timer);
		pool_unspare(wk);	/* starting no more */
		if (wk->screen != hp.screen) {
			/* It compiled rules a reload replaced. */
			pool_retire(wk);
			pool_refill();
			return;
		}
		pool_release(wk);
		log_debug("worker %ld ready", (long)wk->pid);
		if (pool_loop.stopped) {
			log_info("a worker started: pre-forking again");
			pool_loop.stopped = 0;
		}
		session_worker_ready();
	} else if (wk->session != NULL)
		session_worker_msg(wk->session, wk, m);
	else if (m->hdr.type == MSG_OPEN_FAILED ||
	    m->hdr.type == MSG_CLI_EXIT || m->hdr.type == MSG_APPROVAL)
		;	/* late news of a session that is gone */
	else if (wk->orphan && (m->hdr.type == MSG_TRANSCRIPT ||
	    m->hdr.type == MSG_EVENT || m->hdr.type == MSG_CLI_SESSION))
		;	/* its session is another host's now */
	else {
		log_warnx("worker %ld: %s message without a session",
		    (long)wk->pid, msg_type_name(m->hdr.type));
		pool_worker_kill(wk, "protocol violation");
	}
}

/* A message peer.c refused: the worker's reading has ended. */
static void
pool_worker_error(struct peer *p, enum peer_error e, const struct msg_hdr *h,
    void *arg)
{
	struct worker	*wk = arg;

	if (e == PEER_VERSION)
		pool_worker_version(wk, h->version);
	else
		pool_worker_kill(wk, "malformed message");
}

static void
pool_worker_closed(struct peer *p, int why, void *arg)
{
	struct worker	*wk = arg;

	if (wk->closed)
		return;
	if (why == PEER_WRITE_FAILED) {
		/*
		 * It has exited, say while a turn was being sent; what it wrote
		 * before it went is still read to EOF (its CLI exit, turn end
		 * decide how the turn ends).  One that lives on (another error)
		 * is killed, so that EOF comes.
		 */
		if (!wk->reaped)
			spawner_kill(wk->pid, SIGKILL);
		return;
	}
	wk->closed = 1;
	pool_unspare(wk);
	if (wk->reaped)
		pool_worker_finish(wk);
	else if (wk->session != NULL)
		session_worker_gone(wk->session, wk, -1);
}

static const struct peer_cb pool_peer_cb = {
	pool_worker_msg, pool_worker_error, pool_worker_closed, NULL
};

static void
pool_hello_timeout(evutil_socket_t fd, short what, void *arg)
{
	pool_worker_kill(arg, "not ready in time");
}

/*
 * A spawn failed: if no other worker is on its way, the sessions waiting
 * for one are told now (capacity when out of descriptors, processes or
 * memory), never left to wait.
 */
static void
pool_spawn_failed(int e)
{
	char	why[128];

	if (pool_coming() > 0)
		return;
	snprintf(why, sizeof why, "cannot spawn a worker: %s", strerror(e));
	session_spawn_failed(util_errno_capacity(e) ? ERR_CAPACITY :
	    ERR_SPAWN_FAILED, why);
}

/*
 * Asks the spawner for a worker (a posix_spawn there: the cost is the same
 * at 2,000 sessions as at none); pool_spawned takes the answer.  0, or
 * -1 with errno.
 */
static int
pool_spawn(void)
{
	if (spawner_spawn(hp.conf->log_level, log_isjson()) == -1) {
		log_warn("asking for a worker");
		return -1;
	}
	pool.nasked++;
	return 0;
}

/* The spawner's answer: a worker and our end of its channel, or errno e. */
static void
pool_spawned(pid_t pid, int chan, int e)
{
	struct timeval		 hello_tv;
	struct worker		*wk;
	char			 name[32];
	size_t			 i;
	int			 status;

	pool.nasked--;
	if (pid == -1) {
		if (pool.nasked == 0)
			pool.nunknown = 0;
		errno = e;
		log_warn("spawning %s", hp.worker_path);
		pool_spawn_failed(e);
		hotplexd_check_exit();
		return;
	}
	util_set_nonblock(chan);
	wk = xcalloc(1, sizeof *wk);
	wk->pid = pid;
	wk->started_ms = util_now_ms();
	snprintf(name, sizeof name, "worker %ld", (long)pid);
	/* The header of each of its messages must name it. */
	wk->peer = peer_new(hp.base, chan, MSG_FROM_WORKER, pid, name,
	    &pool_peer_cb, wk);
	peer_set_priority(wk->peer, HP_PRIO_IO);
	/* A hung worker is killed (worker_start_timeout; 0: never). */
	wk->hello_timer = evtimer_new(hp.base, pool_hello_timeout, wk);
	if (hp.conf->worker_start_timeout_ms > 0) {
		hello_tv = util_ms_tv(hp.conf->worker_start_timeout_ms);
		evtimer_add(wk->hello_timer, &hello_tv);
	}
	/* First: the rules in force, which it compiles before it is ready. */
	wk->screen = screen_ref(hp.screen);
	msg_policy_compose(peer_output(wk->peer), &wk->screen->msg);
	TAILQ_INSERT_TAIL(&hp.workers, wk, entry);
	LIST_INSERT_HEAD(pool_bucket(pid), wk, hash);
	pool.nworkers++;
	wk->starting = 1;
	pool.nstarting++;
	log_debug("spawned worker %ld", (long)pid);
	for (i = 0; i < pool.nunknown; i++)
		if (pool.unknown[i].pid == pid) {
			/* Its exit came first: it is reaped; EOF ends it. */
			status = pool.unknown[i].status;
			pool.nunknown--;
			memmove(&pool.unknown[i], &pool.unknown[i + 1],
			    (pool.nunknown - i) * sizeof pool.unknown[0]);
			if (pool.nasked == 0)
				pool.nunknown = 0;
			pool_worker_dead(wk, status);
			return;
		}
	/* None in flight: an exit still unmatched was no spawn of ours. */
	if (pool.nasked == 0)
		pool.nunknown = 0;
	/* Asked before the shutdown: it goes at once (its reap ends it). */
	if (hp.shutting_down)
		spawner_kill(pid, SIGTERM);
	else
		pool_refill();	/* the asks past the bound */
}

void
pool_init(void)
{
	size_t	i;

	for (i = 0; i < POOL_HASH_SIZE; i++)
		LIST_INIT(&pool.bypid[i]);
	TAILQ_INIT(&pool.spares);
	TAILQ_INIT(&pool.stopq);
	TAILQ_INIT(&pool.idleq);
	pool.reap_ev = event_new(hp.base, spawner_exits_fd(), EV_READ |
	    EV_PERSIST, pool_reap_fire, NULL);
	event_add(pool.reap_ev, NULL);
	event_priority_set(pool.reap_ev, HP_PRIO_BULK);
	spawner_loop_init(hp.base, pool_spawned);
	pool_refill();
}

void
pool_free(void)
{
	if (pool.reap_ev != NULL)
		event_free(pool.reap_ev);
	pool.reap_ev = NULL;
}

/*
 * Keep spare_min spares (spawning or ready), and as many workers on their
 * way as sessions wait for one (up to POOL_SPAWN_PARALLEL): each worker
 * handed to a waiting session asks for the next, so a burst keeps the
 * spawns in flight, not spare_min of them.  Within max_sessions.
 */
void
pool_refill(void)
{
	int	spares = pool_spares(), demand = session_queued();

	if (hp.shutting_down || pool_loop.stopped ||
	    (pool_loop.timer != NULL && evtimer_pending(pool_loop.timer, NULL)))
		return;
	if (demand > POOL_SPAWN_PARALLEL)
		demand = POOL_SPAWN_PARALLEL;
	/* Asks in flight bounded: the spawner's answers must fit its channel. */
	while ((spares < hp.conf->spare_min || pool_coming() < demand) &&
	    pool.nasked < POOL_SPAWN_PARALLEL &&
	    pool.nworkers + pool.nasked < hp.conf->max_sessions +
	    hp.conf->spare_max) {
		if (pool_spawn() == -1) {
			pool_spawn_failed(errno);
			break;
		}
		spares++;
	}
}

/*
 * A ready spare for a new session, or NULL: one is on its way (*err 0),
 * or none can be spawned now (*err the errno of socketpair or spawn).
 * Demand spawns: as many workers start as sessions wait (this one too),
 * up to POOL_SPAWN_PARALLEL at once.
 */
struct worker *
pool_take(int *err)
{
	struct worker	*wk;
	int		 want;

	*err = 0;
	while ((wk = TAILQ_FIRST(&pool.spares)) != NULL) {
		if (wk->screen != hp.screen) {
			pool_retire(wk);
			continue;
		}
		pool_unspare(wk);
		wk->served = 1;
		return wk;
	}
	if (hp.shutting_down)
		return NULL;
	want = session_queued() + 1;
	if (want > POOL_SPAWN_PARALLEL)
		want = POOL_SPAWN_PARALLEL;
	while (pool_coming() < want) {
		if (pool_spawn() == -1) {
			if (pool_coming() == 0)
				*err = errno != 0 ? errno : EAGAIN;
			break;
		}
	}
	return NULL;
}

/* An empty message (INTERRUPT, STOP), or the OPEN message's object. */
void
pool_send(struct worker *wk, uint16_t type, uint32_t turn, const cJSON *j)
{
	if (wk->dead || wk->peer == NULL)
		return;
	if (type == MSG_OPEN && j != NULL)
		msg_open_compose(peer_output(wk->peer), turn, j);
	else if (j == NULL)
		msg_empty_compose(peer_output(wk->peer), type, turn);
	else
		fatalx("pool_send: %s has a typed encoder", msg_type_name(type));
}

void
pool_send_permission(struct worker *wk, uint32_t turn,
    const struct msg_permission *p)
{
	if (wk->dead || wk->peer == NULL)
		return;
	msg_permission_compose(peer_output(wk->peer), turn, p);
}

void
pool_send_configure(struct worker *wk, uint32_t turn,
    const struct msg_configure *p)
{
	if (wk->dead || wk->peer == NULL)
		return;
	msg_configure_compose(peer_output(wk->peer), turn, p);
}

void
pool_send_turn(struct worker *wk, uint32_t turn, const struct msg_turn *t)
{
	if (wk->dead || wk->peer == NULL)
		return;
	msg_turn_compose(peer_output(wk->peer), turn, t);
}

void
pool_send_transcript(struct worker *wk, uint32_t turn,
    const struct msg_transcript *t)
{
	if (wk->dead || wk->peer == NULL)
		return;
	msg_transcript_compose(peer_output(wk->peer), turn, t);
}

/* Reaped and its channel read to the end: forget the worker. */
static void
pool_worker_finish(struct worker *wk)
{
	int		status = wk->status, before_hello = !wk->ready;
	struct worker	dead = *wk;	/* what is needed after the free */

	wk->dead = 1;
	session_worker_unpause(wk);	/* off a slow client's list */
	pool_unspare(wk);
	pool_stop_unqueue(wk);
	if (wk->stop_sent) {
		pool.nstopping--;
		if (wk->stop_idle)
			pool.nidle--;
	}
	if (wk->session != NULL)
		session_worker_gone(wk->session, wk, status);
	if (wk->orphan_name != NULL &&
	    session_find(wk->orphan_name, wk->orphan_uid) == NULL &&
	    spawner_rmtmp(wk->orphan_uid, wk->orphan_name) == -1)
		log_warn("session %s: removing its TMPDIR", wk->orphan_name);
	free(wk->orphan_name);
	screen_unref(wk->screen);
	TAILQ_REMOVE(&hp.workers, wk, entry);
	LIST_REMOVE(wk, hash);
	pool.nworkers--;
	peer_free(wk->peer);
	event_free(wk->hello_timer);
	free(wk);
	pool_stop_next();
	if (dead.other_version || (WIFEXITED(status) &&
	    WEXITSTATUS(status) == WORKER_EXIT_VERSION)) {
		log_warnx("hotplex-worker (%s) is from another build than "
		    "hotplexd (message version %u); not respawning until the "
		    "next session", hp.worker_path, MSG_VERSION);
		session_spawn_failed(ERR_SPAWN_FAILED, "hotplex-worker is from "
		    "another build than hotplexd (message version mismatch)");
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
		log_warnx("a worker could not start (fatal set-up error); not "
		    "respawning until the next session");
		session_spawn_failed(ERR_SPAWN_FAILED,
		    "hotplex-worker could not start");
	} else if (before_hello) {
		log_warnx("a worker died before it was ready");
		session_spawn_failed(ERR_SPAWN_FAILED,
		    "hotplex-worker died at start");
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
	else	/* paused for a slow client: read on, so that EOF comes */
		session_worker_unpause(wk);
}

static void
pool_reaped(pid_t pid, int status)
{
	struct worker	*wk;

	if ((wk = pool_find_pid(pid)) != NULL) {
		pool_worker_dead(wk, status);
		return;
	}
	/* Not known yet: its spawn's answer is on its way, if one is. */
	if (pool.nasked == 0)
		return;
	if (pool.nunknown == POOL_UNKNOWN_EXITS) {
		log_warnx("worker %ld: an exit of an unknown worker dropped",
		    (long)pool.unknown[0].pid);
		pool.nunknown--;
		memmove(&pool.unknown[0], &pool.unknown[1],
		    pool.nunknown * sizeof pool.unknown[0]);
	}
	pool.unknown[pool.nunknown].pid = pid;
	pool.unknown[pool.nunknown].status = status;
	pool.nunknown++;
}

/*
 * The spawner's exit reports, a batch per turn of the loop: a wave of
 * sessions ending together does not hold up the turns of the others.
 * The spawner gone, so are our workers: the master ends.
 */
static void
pool_reap_fire(evutil_socket_t fd, short what, void *arg)
{
	if (spawner_read_exits(pool_reaped, POOL_REAP_BATCH) == -1) {
		event_del(pool.reap_ev);
		hotplexd_spawner_lost();
		return;
	}
	hotplexd_check_exit();
}

/* Shutdown: spares go now; workers with sessions are stopped by session.c. */
void
pool_kill_all(void)
{
	pool_stop_next();	/* the queued ones too, at once */
	if (pool_loop.timer != NULL) {
		event_free(pool_loop.timer);
		pool_loop.timer = NULL;
	}
	struct worker	*wk;

	TAILQ_FOREACH(wk, &hp.workers, entry)
		if (wk->session == NULL && !wk->reaped)
			spawner_kill(wk->pid, SIGTERM);
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
			spawner_kill(wk->pid, SIGKILL);
		}
}
