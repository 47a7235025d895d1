/*
 * Who a session's CLI and tools run as (DESIGN.md section 6.2): decided by
 * the master from the creator's SO_PEERCRED / SO_PEERGROUPS and the
 * configuration, applied by hotplex-worker (worker/become.c), the only
 * code that switches uid.  Pure functions: unit-tested in
 * tests/unit/test_ident.c.
 */
#ifndef HP_IDENT_H
#define HP_IDENT_H

#include <sys/types.h>

#include <stddef.h>

#define IDENT_GROUPS_MAX	64	/* supplementary groups kept */
#define IDENT_ERR_MAX		256

enum ident_mode {
	IDENT_CREATOR = 0,	/* the creator's uid, gid, groups */
	IDENT_DYNAMIC		/* a uid of its own from dynamic_uids */
};

/* An identity a session runs as. */
struct ident {
	uid_t	uid;
	gid_t	gid;
	size_t	ngroups;
	gid_t	groups[IDENT_GROUPS_MAX];
	int	unprivileged_daemon;	/* no switch: hotplexd is not root */
};

/* What the decision depends on; the caller looks the users up. */
struct ident_in {
	uid_t		 daemon_uid;	/* geteuid() of hotplexd */
	gid_t		 daemon_gid;
	enum ident_mode	 mode;
	/* The creator, from the socket. */
	uid_t		 peer_uid;
	gid_t		 peer_gid;
	const gid_t	*peer_groups;
	size_t		 npeer_groups;
	/* Groups a session never gets: the daemon's own (socket_group,
	 * admin_group), so that no tool opens its socket. */
	const gid_t	*drop_groups;
	size_t		 ndrop_groups;
	/* worker_user (root's sessions), looked up: found or not. */
	const char	*worker_user;
	int		 worker_user_found;
	uid_t		 worker_uid;
	gid_t		 worker_gid;
	/* IDENT_DYNAMIC: the uid allocated to this session, 0 if none. */
	uid_t		 dynamic_uid;
};

/*
 * Decides: 0 with *out filled, or -1 with a message for the client.
 * With hotplexd as root it never yields uid or gid 0.
 */
int	ident_decide(const struct ident_in *, struct ident *out, char *err,
	    size_t errlen);

/* session_user: "creator" or "dynamic"; -1 otherwise. */
int	ident_mode_parse(const char *, enum ident_mode *);

/* dynamic_uids "LOW-HIGH": 0, or -1 if malformed, empty or with root. */
int	ident_range_parse(const char *, uid_t *low, uid_t *high);

#endif
