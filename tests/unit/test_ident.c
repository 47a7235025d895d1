/*
 * common/ident.c: who a session runs as.  Every case of the decision:
 * an unprivileged daemon, a user's session (uid, gid and groups from the
 * socket, root's group dropped), root's session as worker_user or refused,
 * dynamic uids, and never uid or gid 0 from a root daemon.
 */
#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/ident.h"

#define ERR_MAX		256
#define USER_UID	1000
#define USER_GID	1000
#define OTHER_GID	27
#define HOTPLEX_UID	990
#define HOTPLEX_GID	985
#define DAEMON_UID	1500
#define DYN_UID		61184

static const gid_t user_groups[] = { USER_GID, OTHER_GID, 0 };

/* A root daemon, session_user = creator, worker_user hotplex exists. */
static struct ident_in
base(void)
{
	struct ident_in	in;

	memset(&in, 0, sizeof in);
	in.daemon_uid = 0;
	in.daemon_gid = 0;
	in.mode = IDENT_CREATOR;
	in.peer_uid = USER_UID;
	in.peer_gid = USER_GID;
	in.peer_groups = user_groups;
	in.npeer_groups = sizeof user_groups / sizeof user_groups[0];
	in.worker_user = "hotplex";
	in.worker_user_found = 1;
	in.worker_uid = HOTPLEX_UID;
	in.worker_gid = HOTPLEX_GID;
	return in;
}

static void
test_user_runs_as_itself(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX];

	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.uid, USER_UID);
	assert_int_equal(id.gid, USER_GID);
	assert_false(id.unprivileged_daemon);
	/* Its groups, but never root's group. */
	assert_int_equal(id.ngroups, 2);
	assert_int_equal(id.groups[0], USER_GID);
	assert_int_equal(id.groups[1], OTHER_GID);
}

static void
test_daemon_groups_dropped(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX];
	const gid_t	drop[] = { OTHER_GID };

	/* socket_group and admin_group are the daemon's, not the session's. */
	in.drop_groups = drop;
	in.ndrop_groups = 1;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.ngroups, 1);
	assert_int_equal(id.groups[0], USER_GID);
}

static void
test_root_runs_as_worker_user(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX];

	in.peer_uid = 0;
	in.peer_gid = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.uid, HOTPLEX_UID);
	assert_int_equal(id.gid, HOTPLEX_GID);
	/* Root's groups are not given to worker_user. */
	assert_int_equal(id.ngroups, 0);
}

static void
test_root_refused_without_worker_user(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX] = "";

	in.peer_uid = 0;
	in.peer_gid = 0;
	in.worker_user_found = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), -1);
	assert_non_null(strstr(err, "worker_user hotplex"));
	assert_non_null(strstr(err, "refusing to run the session as root"));
	in.worker_user = NULL;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), -1);
}

static void
test_worker_user_root_refused(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX] = "";

	/* worker_user = root (or any uid-0 alias) is no way around. */
	in.peer_uid = 0;
	in.worker_uid = 0;
	in.worker_gid = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), -1);
	assert_non_null(strstr(err, "uid 0"));
	/* Nor a user whose primary group is root's. */
	in = base();
	in.peer_gid = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), -1);
}

static void
test_unprivileged_daemon(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX];

	/* Whoever asks, sessions run as the daemon's user: no switch. */
	in.daemon_uid = DAEMON_UID;
	in.daemon_gid = DAEMON_UID;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.uid, DAEMON_UID);
	assert_true(id.unprivileged_daemon);
	in.peer_uid = 0;
	in.worker_user_found = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.uid, DAEMON_UID);
}

static void
test_dynamic(void **state)
{
	struct ident_in	in = base();
	struct ident	id;
	char		err[ERR_MAX] = "";

	in.mode = IDENT_DYNAMIC;
	in.dynamic_uid = DYN_UID;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.uid, DYN_UID);
	assert_int_equal(id.gid, DYN_UID);
	assert_int_equal(id.ngroups, 0);
	/* Root too gets a uid of its own. */
	in.peer_uid = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), 0);
	assert_int_equal(id.uid, DYN_UID);
	/* The range is used up. */
	in.dynamic_uid = 0;
	assert_int_equal(ident_decide(&in, &id, err, sizeof err), -1);
	assert_non_null(strstr(err, "dynamic_uids"));
}

static void
test_parsers(void **state)
{
	enum ident_mode	m;
	uid_t		lo, hi;

	assert_int_equal(ident_mode_parse("creator", &m), 0);
	assert_int_equal(m, IDENT_CREATOR);
	assert_int_equal(ident_mode_parse("dynamic", &m), 0);
	assert_int_equal(m, IDENT_DYNAMIC);
	assert_int_equal(ident_mode_parse("root", &m), -1);
	assert_int_equal(ident_range_parse("61184-65519", &lo, &hi), 0);
	assert_int_equal(lo, 61184);
	assert_int_equal(hi, 65519);
	assert_int_equal(ident_range_parse("0-10", &lo, &hi), -1);
	assert_int_equal(ident_range_parse("10-9", &lo, &hi), -1);
	assert_int_equal(ident_range_parse("10-", &lo, &hi), -1);
	assert_int_equal(ident_range_parse("-10", &lo, &hi), -1);
	assert_int_equal(ident_range_parse("10-20x", &lo, &hi), -1);
	assert_int_equal(ident_range_parse("10-4294967295", &lo, &hi), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_runs_as_itself),
		cmocka_unit_test(test_daemon_groups_dropped),
		cmocka_unit_test(test_root_runs_as_worker_user),
		cmocka_unit_test(test_root_refused_without_worker_user),
		cmocka_unit_test(test_worker_user_root_refused),
		cmocka_unit_test(test_unprivileged_daemon),
		cmocka_unit_test(test_dynamic),
		cmocka_unit_test(test_parsers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
