/*
 * Session leases (store.h): with a shared store, a session is served by
 * the host that holds its lease.  It is taken when this host starts
 * serving the session (restored at start, open, execute, attach), renewed
 * for all of them in one statement every lease_timeout/3, and given back
 * when the session ends and at shutdown.
 *
 * A lease is lost when a renewal no longer returns it (another host took
 * it after it expired: this host was stopped, cut off or too slow) or when
 * a write of the session's row is fenced: the session then stops being
 * served here (session_lease_lost()), and its next use here takes the
 * lease again if it is free.
 *
 * With SQLite (one host) every lease is granted at once and never lost:
 * nothing is renewed.
 */
#include <sys/queue.h>
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"

#define LEASE_RENEWALS		3	/* per lease_timeout */

#define LEASE_HOLDER_MAX	128	/* "host (for N ms more)" */

/*
 * Sessions whose lease was found lost, handled from the loop: the loss is
 * seen inside a write, in the middle of whatever wrote.
 */
struct lease_lost_entry {
	TAILQ_ENTRY(lease_lost_entry) entry;
	uid_t		 uid;
	char		*name;
	char		*why;
};
static TAILQ_HEAD(, lease_lost_entry) lease_lostq =
    TAILQ_HEAD_INITIALIZER(lease_lostq);

/*
 * The lease lease_adopt() took for a name no row has yet: the session made
 * next under that name takes it over (no second round trip, and no other
 * host can slip in between).  One at most: a request makes one session.
 */
static struct {
	uid_t		 uid;
	char		 name[PROTO_SESSION_MAX + 1];
	int64_t		 fence;		/* 0: none */
} lease_pending;

static char		 lease_holder_last[LEASE_HOLDER_MAX];	/* refusals' */
static struct event	*lease_timer;
static struct event	*lease_lost_ev;
static uint64_t		 lease_gen;	/* renewals done */
static uint64_t		 lease_ok_ms;	/* monotonic: the last renewal that
					   worked was sent then */

/* fence is ours now: the session's row may be newer than the table's. */
static void
lease_got(struct session *s, int64_t fence)
{
	s->lease_fence = fence;
	s->lease_seen = lease_gen;
	if (!store_shared())
		return;
	log_info("session %s of uid %ld: lease taken (fence %lld)", s->name,
	    (long)s->uid, (long long)fence);
	state_session_refresh(s);
}

int
lease_take(struct session *s, char *why, size_t whylen)
{
	char	holder[LEASE_HOLDER_MAX];
	int64_t	fence;
	int	rc;

	if (s->lease_fence != 0)
		return 0;
	if (lease_pending.fence != 0 && lease_pending.uid == s->uid &&
	    strcmp(lease_pending.name, s->name) == 0) {
		fence = lease_pending.fence;
		lease_pending.fence = 0;
		lease_got(s, fence);
		return 0;
	}
	rc = store_lease_acquire(s->uid, s->name, &fence, holder,
	    sizeof holder);
	if (rc == 1) {
		snprintf(why, whylen, "session \"%s\" is served by host %s",
		    s->name, holder);
		snprintf(lease_holder_last, sizeof lease_holder_last, "%s",
		    holder);
		return 1;
	}
	if (rc == -1) {
		snprintf(why, whylen, "the store cannot be reached to take "
		    "session \"%s\"", s->name);
		return -1;
	}
	lease_got(s, fence);
	return 0;
}

int
lease_adopt(uid_t uid, const char *name, struct session **sp, char *why,
    size_t whylen)
{
	char	holder[LEASE_HOLDER_MAX];
	int64_t	fence;
	int	rc;

	*sp = NULL;
	if (!store_shared())
		return 0;
	rc = store_lease_acquire(uid, name, &fence, holder, sizeof holder);
	if (rc == 1) {
		snprintf(why, whylen, "session \"%s\" is served by host %s",
		    name, holder);
		snprintf(lease_holder_last, sizeof lease_holder_last, "%s",
		    holder);
		return 1;
	}
	if (rc == -1) {
		snprintf(why, whylen, "the store cannot be reached to take "
		    "session \"%s\"", name);
		return -1;
	}
	/* Read after the take: the last owner's last write is in. */
	if ((*sp = state_session_adopt(uid, name)) == NULL) {
		/*
		 * No such session: the one made next takes this lease (left
		 * unused, the next renewal gives it back).
		 */
		if (lease_pending.fence != 0)
			store_lease_release(lease_pending.uid,
			    lease_pending.name, lease_pending.fence);
		lease_pending.uid = uid;
		snprintf(lease_pending.name, sizeof lease_pending.name, "%s",
		    name);
		lease_pending.fence = fence;
		return 0;
	}
	(*sp)->lease_fence = fence;
	(*sp)->lease_seen = lease_gen;
	return 0;
}

/* The store's word on the holder of the last lease refused. */
const char *
lease_holder(void)
{
	return lease_holder_last;
}

void
lease_drop(struct session *s)
{
	if (s->lease_fence == 0)
		return;
	if (store_shared()) {
		store_lease_release(s->uid, s->name, s->lease_fence);
		log_debug("session %s of uid %ld: lease given back (fence "
		    "%lld)", s->name, (long)s->uid, (long long)s->lease_fence);
	}
	s->lease_fence = 0;
}

static void
lease_lost_run(evutil_socket_t fd, short what, void *arg)
{
	struct lease_lost_entry	*e;
	struct session		*s;

	while ((e = TAILQ_FIRST(&lease_lostq)) != NULL) {
		TAILQ_REMOVE(&lease_lostq, e, entry);
		/* Unless it was freed, or taken again, meanwhile. */
		if ((s = session_find(e->name, e->uid)) != NULL &&
		    s->lease_fence == 0)
			session_lease_lost(s, e->why);
		free(e->name);
		free(e->why);
		free(e);
	}
}

void
lease_lost(struct session *s, const char *why)
{
	struct lease_lost_entry	*e;

	if (s->lease_fence == 0)
		return;
	log_warnx("session %s of uid %ld: lease (fence %lld) lost: %s; no "
	    "longer served here", s->name, (long)s->uid,
	    (long long)s->lease_fence, why);
	s->lease_fence = 0;	/* first: nothing of ours is written now */
	e = xcalloc(1, sizeof *e);
	e->uid = s->uid;
	e->name = xstrdup(s->name);
	e->why = xstrdup(why);
	TAILQ_INSERT_TAIL(&lease_lostq, e, entry);
	event_active(lease_lost_ev, EV_TIMEOUT, 1);
}

/* A lease the store renewed: still ours, or one we no longer want. */
static void
lease_renewed(void *arg, uid_t uid, const char *name, int64_t fence)
{
	struct session	*s = session_find(name, uid);

	if (s != NULL && s->lease_fence == fence) {
		s->lease_seen = lease_gen;
		return;
	}
	/* An earlier run of this host took it, or we dropped it meanwhile. */
	if (lease_pending.fence == fence && lease_pending.uid == uid &&
	    strcmp(lease_pending.name, name) == 0)
		lease_pending.fence = 0;
	log_debug("session %s of uid %ld: lease %lld is not used here; given "
	    "back", name, (long)uid, (long long)fence);
	store_lease_release(uid, name, fence);
}

/* Renews every lease; those the store did not return are lost. */
static void
lease_renew(void)
{
	struct session	*s, *next;
	uint64_t	 sent = util_now_ms();
	const char	*why = "another host took the session's lease";

	lease_gen++;
	if (store_lease_renew(lease_renewed, NULL) == -1) {
		/*
		 * Not renewed for lease_timeout: the store may have given the
		 * leases to another host by now.  Serving on could run a
		 * session on two hosts: all of them are lost (each is taken
		 * again at its next use, once the store answers).
		 */
		if (util_now_ms() - lease_ok_ms < hp.conf->lease_timeout_ms)
			return;
		why = "the store could not renew the lease for lease_timeout";
	} else
		lease_ok_ms = sent;
	for (s = TAILQ_FIRST(&hp.sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->lease_fence != 0 && s->lease_seen != lease_gen)
			lease_lost(s, why);
	}
}

static void
lease_fire(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv;

	lease_renew();
	tv = util_ms_tv(hp.conf->lease_timeout_ms / LEASE_RENEWALS);
	evtimer_add(lease_timer, &tv);
}

void
lease_init(void)
{
	struct session	*s, *next;
	struct timeval	 tv;
	char		 why[256];

	if ((lease_lost_ev = event_new(hp.base, -1, 0, lease_lost_run,
	    NULL)) == NULL)
		fatalx("lease: event_new");
	/* The sessions this host served last: still its, unless taken. */
	for (s = TAILQ_FIRST(&hp.sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->state != SESSION_ENDED &&
		    lease_take(s, why, sizeof why) != 0) {
			log_info("session %s of uid %ld: not restored here: "
			    "%s", s->name, (long)s->uid, why);
			session_unload(s);
		}
	}
	if (!store_shared())
		return;
	lease_ok_ms = util_now_ms();
	if ((lease_timer = evtimer_new(hp.base, lease_fire, NULL)) == NULL)
		fatalx("lease: evtimer_new");
	tv = util_ms_tv(hp.conf->lease_timeout_ms / LEASE_RENEWALS);
	evtimer_add(lease_timer, &tv);
	log_info("lease: host %s, lease_timeout %llu ms, renewed every %llu "
	    "ms", state_host_id(),
	    (unsigned long long)hp.conf->lease_timeout_ms,
	    (unsigned long long)hp.conf->lease_timeout_ms / LEASE_RENEWALS);
}

void
lease_close(void)
{
	struct session	*s;

	if (lease_timer != NULL)
		event_free(lease_timer);
	lease_timer = NULL;
	lease_lost_run(-1, 0, NULL);
	if (lease_lost_ev != NULL)
		event_free(lease_lost_ev);
	lease_lost_ev = NULL;
	TAILQ_FOREACH(s, &hp.sessions, entry)
		lease_drop(s);
}
