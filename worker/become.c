/*
 * The worker's privileged part (privilege separation in the manner of
 * OpenSSH and OpenSMTPD): a spare worker is exec'd by hotplexd as root and
 * keeps root only until its session arrives.  Then, and only here, it
 * makes the session's private directories under state_dir (as root: the
 * parents are root's) and becomes the session's identity for good.
 * Everything after, the workdir check, the CLI and the bridge, runs as
 * that identity; nothing in the worker can switch back.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/ident.h"
#include "common/util.h"
#include "policy/sandbox/sandbox.h"
#include "worker/worker.h"

#define BECOME_PARENT_MODE	0711	/* root's: pass through, not list */
#define BECOME_PRIVATE_MODE	0700	/* the session's own */

static int
become_err(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return -1;
}

/*
 * A directory: created if missing, never through a symbolic link, then
 * given to uid/gid (own) or to root with the parent mode.
 */
static int
become_dir(const char *path, int own, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	mode_t	mode = own ? BECOME_PRIVATE_MODE : BECOME_PARENT_MODE;
	int	fd, rc = 0;

	if (mkdir(path, mode) == -1 && errno != EEXIST)
		return become_err(err, errlen, "mkdir", path);
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1)
		return become_err(err, errlen, "open", path);
	if (own && geteuid() == 0 && fchown(fd, uid, gid) == -1)
		rc = become_err(err, errlen, "chown", path);
	else if (fchmod(fd, mode) == -1)
		rc = become_err(err, errlen, "chmod", path);
	close(fd);
	return rc;
}

int
become_dirs(const struct become *b, char *err, size_t errlen)
{
	size_t	i;

	for (i = 0; i < b->nparents; i++)
		if (become_dir(b->parents[i], 0, 0, 0, err, errlen) == -1)
			return -1;
	for (i = 0; i < b->nprivate; i++)
		if (become_dir(b->private[i], 1, b->id.uid, b->id.gid, err,
		    errlen) == -1)
			return -1;
	return 0;
}

int
become_identity(const struct become *b, pid_t parent, char *err,
    size_t errlen)
{
	const struct ident	*id = &b->id;

	/*
	 * Our own uid decides, not the master's word: the master is not
	 * trusted with root (privilege separation), so a root worker always
	 * becomes someone, never root.
	 */
	if (geteuid() != 0)
		return 0;		/* hotplexd is not root: nothing to do */
	if (id->unprivileged_daemon) {
		snprintf(err, errlen, "the master says it is not root, but the "
		    "worker is");
		return -1;
	}
	if (id->uid == 0 || id->gid == 0) {
		snprintf(err, errlen, "refusing to run a session as root");
		return -1;
	}
	/* The sandbox's one drop: ids, groups, capabilities, no way back. */
	if (sandbox_drop(id->uid, id->gid, id->groups, id->ngroups, err,
	    errlen) == -1)
		return -1;
	/*
	 * Not dumpable: a process of the same uid (the session's tools, the
	 * user's shell) can neither ptrace us nor read our memory or
	 * environment.  The uid change cleared the parent-death signal.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1 ||
	    prctl(PR_SET_PDEATHSIG, SIGTERM) == -1) {
		snprintf(err, errlen, "prctl: %s", strerror(errno));
		return -1;
	}
	if (getppid() != parent) {
		snprintf(err, errlen, "the master is gone");
		return -1;
	}
	return 0;
}
