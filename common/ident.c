/*
 * The identity decision: who runs a session's CLI (common/ident.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ident.h"

static int
ident_dropped(const struct ident_in *in, gid_t g)
{
	size_t	i;

	for (i = 0; i < in->ndrop_groups; i++)
		if (in->drop_groups[i] == g)
			return 1;
	return 0;
}

int
ident_decide(const struct ident_in *in, struct ident *out, char *err,
    size_t errlen)
{
	size_t	i;

	memset(out, 0, sizeof *out);
	/* Unprivileged, we cannot switch: sessions run as we do. */
	if (in->daemon_uid != 0) {
		out->uid = in->daemon_uid;
		out->gid = in->daemon_gid;
		out->unprivileged_daemon = 1;
		return 0;
	}
	if (in->mode == IDENT_DYNAMIC) {
		if (in->dynamic_uid == 0) {
			snprintf(err, errlen, "no free uid left in "
			    "dynamic_uids");
			return -1;
		}
		out->uid = in->dynamic_uid;
		out->gid = (gid_t)in->dynamic_uid;
	} else if (in->peer_uid != 0) {
		out->uid = in->peer_uid;
		out->gid = in->peer_gid;
		for (i = 0; i < in->npeer_groups &&
		    out->ngroups < IDENT_GROUPS_MAX; i++)
			if (in->peer_groups[i] != 0 &&	/* never root's group */
			    !ident_dropped(in, in->peer_groups[i]))
				out->groups[out->ngroups++] =
				    in->peer_groups[i];
	} else {
		/* Root's sessions: worker_user, never root itself. */
		if (in->worker_user == NULL || !in->worker_user_found) {
			snprintf(err, errlen, "root's sessions run as "
			    "worker_user %s, which does not exist (create it: "
			    "useradd --system %s); refusing to run the session "
			    "as root", in->worker_user != NULL ?
			    in->worker_user : "(unset)",
			    in->worker_user != NULL ? in->worker_user :
			    "hotplex");
			return -1;
		}
		out->uid = in->worker_uid;
		out->gid = in->worker_gid;
	}
	if (out->uid == 0 || out->gid == 0) {
		snprintf(err, errlen, "refusing to run a session as uid %u "
		    "gid %u", (unsigned)out->uid, (unsigned)out->gid);
		return -1;
	}
	return 0;
}

int
ident_mode_parse(const char *s, enum ident_mode *mode)
{
	if (s == NULL || strcmp(s, "creator") == 0)
		*mode = IDENT_CREATOR;
	else if (strcmp(s, "dynamic") == 0)
		*mode = IDENT_DYNAMIC;
	else
		return -1;
	return 0;
}

int
ident_range_parse(const char *s, uid_t *low, uid_t *high)
{
	unsigned long	lo, hi;
	char		*end;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	lo = strtoul(s, &end, 10);
	if (errno != 0 || *end != '-' || end[1] < '0' || end[1] > '9')
		return -1;
	hi = strtoul(end + 1, &end, 10);
	if (errno != 0 || *end != '\0' || lo == 0 || hi < lo ||
	    hi >= (unsigned long)(uid_t)-1)
		return -1;
	*low = (uid_t)lo;
	*high = (uid_t)hi;
	return 0;
}
