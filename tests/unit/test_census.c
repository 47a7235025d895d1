/*
 * The session table's counts (supervisor/census.c): random sessions come,
 * change state and go; after every change each count equals a recount of
 * the table the test keeps beside it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "supervisor/census.h"

#define T_SESSIONS	512	/* slots of the test's table */
#define T_UIDS		37	/* uids, more than one per census bucket */
#define T_STEPS		200000
#define T_STATES	(SESSION_DORMANT + 1)

struct t_session {
	int	in;		/* in the table */
	uid_t	uid;
	int	state;
};

static struct t_session	tab[T_SESSIONS];

/* Spread over the whole uid range: buckets collide. */
static uid_t
t_uid(unsigned i)
{
	return (uid_t)(i * 256 + (i % 3 == 0 ? 0 : 65534 * (i % 2)));
}

static void
t_recount(void)
{
	size_t	nstate[T_STATES] = { 0 }, live = 0, byuid[T_UIDS] = { 0 };
	size_t	i, u;

	for (i = 0; i < T_SESSIONS; i++) {
		if (!tab[i].in)
			continue;
		nstate[tab[i].state]++;
		if (tab[i].state != SESSION_ENDED) {
			live++;
			for (u = 0; u < T_UIDS; u++)
				if (t_uid(u) == tab[i].uid)
					byuid[u]++;
		}
	}
	for (i = 0; i < T_STATES; i++)
		assert_int_equal(census_state(i), nstate[i]);
	assert_int_equal(census_live(), live);
	for (u = 0; u < T_UIDS; u++)
		assert_int_equal(census_live_uid(t_uid(u)), byuid[u]);
	/* A uid that never had a session. */
	assert_int_equal(census_live_uid((uid_t)12345), 0);
}

static void
test_random(void **state)
{
	struct t_session	*s;
	long			 step;
	int			 to;

	srandom(12);
	for (step = 0; step < T_STEPS; step++) {
		s = &tab[random() % T_SESSIONS];
		if (!s->in) {
			s->in = 1;
			s->uid = t_uid((unsigned)(random() % T_UIDS));
			s->state = SESSION_STARTING;	/* as session_new */
			census_move(s->uid, CENSUS_NONE, s->state);
		} else if (random() % 8 == 0) {
			census_move(s->uid, s->state, CENSUS_NONE);
			s->in = 0;
		} else {
			to = (int)(random() % T_STATES);
			census_move(s->uid, s->state, to);
			s->state = to;
		}
		if (step % 97 == 0)
			t_recount();
	}
	t_recount();
	census_clear();
	for (to = 0; to < T_STATES; to++)
		assert_int_equal(census_state(to), 0);
	assert_int_equal(census_live(), 0);
	assert_int_equal(census_live_uid(t_uid(1)), 0);
}

/* Ended and back (a stopped session's next turn revives it). */
static void
test_revive(void **state)
{
	census_move(1000, CENSUS_NONE, SESSION_DORMANT);
	census_move(1000, SESSION_DORMANT, SESSION_ENDED);
	assert_int_equal(census_live(), 0);
	assert_int_equal(census_live_uid(1000), 0);
	assert_int_equal(census_state(SESSION_ENDED), 1);
	census_move(1000, SESSION_ENDED, SESSION_DORMANT);
	assert_int_equal(census_live_uid(1000), 1);
	assert_int_equal(census_state(SESSION_ENDED), 0);
	census_move(1000, SESSION_DORMANT, CENSUS_NONE);
	assert_int_equal(census_live(), 0);
	assert_int_equal(census_state(SESSION_DORMANT), 0);
}

/* Run uids (session_user = dynamic): held while a session runs as one. */
static void
test_run(void **state)
{
	uid_t	u;

	for (u = 61184; u < 61184 + 600; u++)
		census_run(u, 1);
	census_run(61184 + 7, 1);	/* two sessions on one uid */
	census_run(61184 + 7, 0);
	assert_int_equal(census_run_held(61184 + 7), 1);
	census_run(61184 + 300, 0);
	assert_int_equal(census_run_held(61184 + 300), 0);
	assert_int_equal(census_run_held(61184 + 299), 1);
	assert_int_equal(census_run_held(61184 + 600), 0);
	census_clear();
	assert_int_equal(census_run_held(61184), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_revive),
		cmocka_unit_test(test_run),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
