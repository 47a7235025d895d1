/*
 * The session table's counts, kept on every change (census.h): O(1) per
 * session event whatever the size of the table.  Per-uid counts live in
 * a small hash, an entry only while that uid has live sessions; so do
 * the uids sessions run as (session_user = dynamic takes a free one).
 */
#include <sys/queue.h>
#include <sys/types.h>

#include <stdlib.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "supervisor/census.h"

#define CENSUS_STATES		(SESSION_DORMANT + 1)
#define CENSUS_UID_BUCKETS	256	/* a power of two */

struct census_uid {
	LIST_ENTRY(census_uid)	 entry;
	uid_t			 uid;
	size_t			 live;
};
LIST_HEAD(census_bucket, census_uid);

static size_t			census_nstate[CENSUS_STATES];
static size_t			census_nlive;
static struct census_bucket	census_byuid[CENSUS_UID_BUCKETS];
static struct census_bucket	census_byrun[CENSUS_UID_BUCKETS];

static struct census_bucket *
census_bucket(struct census_bucket *tab, uid_t uid)
{
	return &tab[(unsigned)uid & (CENSUS_UID_BUCKETS - 1)];
}

static struct census_uid *
census_lookup(struct census_bucket *tab, uid_t uid, int create)
{
	struct census_bucket	*b = census_bucket(tab, uid);
	struct census_uid	*u;

	LIST_FOREACH(u, b, entry)
		if (u->uid == uid)
			return u;
	if (!create)
		return NULL;
	u = xcalloc(1, sizeof *u);
	u->uid = uid;
	LIST_INSERT_HEAD(b, u, entry);
	return u;
}

static struct census_uid *
census_find(uid_t uid, int create)
{
	return census_lookup(census_byuid, uid, create);
}

static int
census_is_live(int st)
{
	return st != CENSUS_NONE && st != SESSION_ENDED;
}

/* A session of uid went from one state to another (or in, or out). */
void
census_move(uid_t uid, int from, int to)
{
	struct census_uid	*u;
	int			 delta;

	if (from == to)
		return;
	if ((from != CENSUS_NONE && (from < 0 || from >= CENSUS_STATES)) ||
	    (to != CENSUS_NONE && (to < 0 || to >= CENSUS_STATES)))
		fatalx("census: state %d -> %d", from, to);
	if (from != CENSUS_NONE) {
		if (census_nstate[from] == 0)
			fatalx("census: no session in state %d", from);
		census_nstate[from]--;
	}
	if (to != CENSUS_NONE)
		census_nstate[to]++;
	delta = census_is_live(to) - census_is_live(from);
	if (delta == 0)
		return;
	u = census_find(uid, delta > 0);
	if (delta > 0) {
		census_nlive++;
		u->live++;
		return;
	}
	if (u == NULL || u->live == 0 || census_nlive == 0)
		fatalx("census: uid %ld has no live session", (long)uid);
	census_nlive--;
	if (--u->live == 0) {
		LIST_REMOVE(u, entry);
		free(u);
	}
}

size_t
census_state(enum session_state st)
{
	return (int)st >= 0 && (int)st < CENSUS_STATES ? census_nstate[st] : 0;
}

size_t
census_live(void)
{
	return census_nlive;
}

size_t
census_live_uid(uid_t uid)
{
	struct census_uid	*u = census_find(uid, 0);

	return u != NULL ? u->live : 0;
}

/* A live session took (held 1) or let go of (0) the uid it runs as. */
void
census_run(uid_t run_uid, int held)
{
	struct census_uid	*u = census_lookup(census_byrun, run_uid, held);

	if (held) {
		u->live++;
		return;
	}
	if (u == NULL || u->live == 0)
		fatalx("census: no session runs as uid %ld", (long)run_uid);
	if (--u->live == 0) {
		LIST_REMOVE(u, entry);
		free(u);
	}
}

/* Live sessions that run as run_uid. */
size_t
census_run_held(uid_t run_uid)
{
	struct census_uid	*u = census_lookup(census_byrun, run_uid, 0);

	return u != NULL ? u->live : 0;
}

/* Every count back to zero (the table is gone). */
void
census_clear(void)
{
	struct census_uid	*u;
	size_t			 i;

	for (i = 0; i < CENSUS_UID_BUCKETS; i++) {
		while ((u = LIST_FIRST(&census_byuid[i])) != NULL) {
			LIST_REMOVE(u, entry);
			free(u);
		}
		while ((u = LIST_FIRST(&census_byrun[i])) != NULL) {
			LIST_REMOVE(u, entry);
			free(u);
		}
	}
	for (i = 0; i < CENSUS_STATES; i++)
		census_nstate[i] = 0;
	census_nlive = 0;
}
