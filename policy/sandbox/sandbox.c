/*
 * The CLI child's sandbox, applied between fork and exec: rlimits, the
 * workdir, the privilege drop, no_new_privs, Landlock, seccomp.  See
 * sandbox.h for the order and why.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"

static const struct {
	int		 resource;
	const char	*name;
	size_t		 offset;
} sandbox_rlimits[] = {
	{ RLIMIT_NOFILE, "nofile", offsetof(struct sandbox_conf, nofile) },
	{ RLIMIT_NPROC, "nproc", offsetof(struct sandbox_conf, nproc) },
	{ RLIMIT_CPU, "cpu", offsetof(struct sandbox_conf, cpu) },
	{ RLIMIT_FSIZE, "fsize", offsetof(struct sandbox_conf, fsize) },
};

/* Soft and hard limit both set, so the CLI cannot raise them again. */
static int
sandbox_setrlimit(int resource, const char *name, rlim_t value, char *err,
    size_t errlen)
{
	struct rlimit	rl;

	if (getrlimit(resource, &rl) == -1) {
		snprintf(err, errlen, "getrlimit %s: %s", name,
		    strerror(errno));
		return -1;
	}
	/* Never above the hard limit we were given. */
	if (rl.rlim_max != RLIM_INFINITY && value > rl.rlim_max)
		value = rl.rlim_max;
	rl.rlim_cur = rl.rlim_max = value;
	if (setrlimit(resource, &rl) == -1) {
		snprintf(err, errlen, "setrlimit %s %llu: %s", name,
		    (unsigned long long)value, strerror(errno));
		return -1;
	}
	return 0;
}

static int
sandbox_limits(const struct sandbox_conf *sc, char *err, size_t errlen)
{
	rlim_t	v;
	size_t	i;

	if (sandbox_setrlimit(RLIMIT_CORE, "core", 0, err, errlen) == -1)
		return -1;
	for (i = 0; i < sizeof sandbox_rlimits / sizeof sandbox_rlimits[0];
	    i++) {
		memcpy(&v, (const char *)sc + sandbox_rlimits[i].offset,
		    sizeof v);
		if (v != 0 && sandbox_setrlimit(sandbox_rlimits[i].resource,
		    sandbox_rlimits[i].name, v, err, errlen) == -1)
			return -1;
	}
	return 0;
}

static int
sandbox_capset_zero(char *err, size_t errlen)
{
	struct __user_cap_header_struct	hdr;
	struct __user_cap_data_struct	data[_LINUX_CAPABILITY_U32S_3];
	int				i;

	memset(&hdr, 0, sizeof hdr);
	memset(data, 0, sizeof data);
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	if (syscall(SYS_capset, &hdr, data) == -1) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -1;
	}
	if (syscall(SYS_capget, &hdr, data) == -1) {
		snprintf(err, errlen, "capget: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective != 0 || data[i].permitted != 0 ||
		    data[i].inheritable != 0) {
			snprintf(err, errlen, "capabilities left after drop");
			return -1;
		}
	return 0;
}

/*
 * The one privilege drop (the worker becoming a session's identity, the
 * sandbox's drop_privs): becomes uid/gid for good with groups as its
 * supplementary groups (none if ngroups is 0), no capabilities (not even
 * in the bounding set, so that no file capability brings one back), and
 * no way to set the ids or groups back.
 */
int
sandbox_drop(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
    char *err, size_t errlen)
{
	uid_t	ru, eu, su;
	gid_t	rg, eg, sg;
	int	cap;

	if (uid == 0 || gid == 0) {
		snprintf(err, errlen, "refusing to drop privileges to root");
		return -1;
	}
	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1) {
			snprintf(err, errlen, "drop capability %d: %s", cap,
			    strerror(errno));
			return -1;
		}
	/* Ambient capabilities are cleared by the uid change; be explicit
	 * where the kernel knows them. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 &&
	    errno != EINVAL) {
		snprintf(err, errlen, "clear ambient capabilities: %s",
		    strerror(errno));
		return -1;
	}
	if (setgroups(ngroups, ngroups > 0 ? groups : NULL) == -1) {
		snprintf(err, errlen, "setgroups: %s", strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) == -1) {
		snprintf(err, errlen, "setresgid %u: %s", (unsigned)gid,
		    strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) == -1) {
		snprintf(err, errlen, "setresuid %u: %s", (unsigned)uid,
		    strerror(errno));
		return -1;
	}
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) ==
	    -1 || ru != uid || eu != uid || su != uid ||
	    rg != gid || eg != gid || sg != gid) {
		snprintf(err, errlen, "ids not changed as asked");
		return -1;
	}
	if (setresuid(0, 0, 0) != -1 || setresgid(0, 0, 0) != -1 ||
	    setgroups(0, NULL) != -1) {
		snprintf(err, errlen, "privileges could be regained");
		return -1;
	}
	return sandbox_capset_zero(err, errlen);
}

int
sandbox_child_allocates(const struct sandbox_conf *sc)
{
	if (sc->seccomp_profile != NULL &&
	    (strcmp(sc->seccomp_profile, SANDBOX_SECCOMP_BUILTIN) != 0 ||
	    !sandbox_seccomp_builtin_ready()))
		return 1;
	return sc->egress != SANDBOX_EGRESS_OFF &&
	    !sandbox_seccomp_egress_ready();
}

int
sandbox_child(const struct sandbox_conf *sc, char *err, size_t errlen)
{
	char	 warn[SANDBOX_ERR_MAX] = "", ewarn[SANDBOX_ERR_MAX] = "";
	void	*filter = NULL, *efilter = NULL;
	int	 rsfd = -1, abi = 0, ersfd = -1, builtin;

	if (errlen > 0)
		err[0] = '\0';
	if (sandbox_limits(sc, err, errlen) == -1)
		return -1;
	/* Read the profile and open the Landlock paths while we still may
	 * (neither lies inside the sandbox), and from the caller's cwd. */
	/* The built-in profile, compiled by the spawner, is loaded as is. */
	builtin = sc->seccomp_profile != NULL &&
	    strcmp(sc->seccomp_profile, SANDBOX_SECCOMP_BUILTIN) == 0 &&
	    sandbox_seccomp_builtin_ready();
	if (sc->seccomp_profile != NULL && !builtin &&
	    (filter = sandbox_seccomp_profile_compile(sc->seccomp_profile, err,
	    errlen)) == NULL)
		return -1;
	if (sandbox_landlock_prepare(sc, &rsfd, &abi, warn,
	    sizeof warn) == -1) {
		snprintf(err, errlen, "%s", warn);
		goto fail;
	}
	if (sandbox_egress_prepare(sc, &ersfd, &efilter, ewarn,
	    sizeof ewarn) == -1) {
		snprintf(err, errlen, "%s", ewarn);
		goto fail;
	}
	if (warn[0] == '\0')
		snprintf(warn, sizeof warn, "%s", ewarn);
	if (sc->workdir == NULL || chdir(sc->workdir) == -1) {
		snprintf(err, errlen, "chdir %s: %s",
		    sc->workdir != NULL ? sc->workdir : "(none)",
		    sc->workdir != NULL ? strerror(errno) : "no workdir");
		goto fail;
	}
	if (sc->drop_privs && sandbox_drop(sc->uid, sc->gid, NULL, 0, err,
	    errlen) == -1)
		goto fail;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
		goto fail;
	}
	if (sandbox_landlock_enforce(rsfd, abi, err, errlen) == -1) {
		rsfd = -1;
		goto fail;
	}
	rsfd = -1;
	/* Its own layers: they hold whatever landlock and seccomp say. */
	if (sandbox_egress_enforce(sc, ersfd, efilter, err, errlen) == -1) {
		ersfd = -1;
		efilter = NULL;
		goto fail;
	}
	ersfd = -1;
	efilter = NULL;
	if (filter != NULL && sandbox_seccomp_filter_load(filter, err,
	    errlen) == -1)
		goto fail;
	if (builtin && sandbox_seccomp_builtin_load(err, errlen) == -1)
		goto fail;
	sandbox_seccomp_filter_free(filter);
	snprintf(err, errlen, "%s", warn);
	return 0;

fail:
	if (rsfd != -1)
		close(rsfd);
	if (ersfd != -1)
		close(ersfd);
	sandbox_seccomp_filter_free(efilter);
	sandbox_seccomp_filter_free(filter);
	return -1;
}
