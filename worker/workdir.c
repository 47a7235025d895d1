/*
 * Workdir validation: a session's directory must lie under one of the
 * workdir_root entries ("~" is the session identity's home), given as an
 * absolute path without "..", and resolve (symlinks followed) to a
 * directory still under that root.  The worker runs it after switching to
 * the session's identity, so that the kernel decides what the session may
 * use; missing directories are created with that identity.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "worker/worker.h"

#define WORKDIR_MODE	0750

static int
workdir_has_dotdot(const char *p)
{
	const char	*s = p;

	while ((s = strstr(s, "..")) != NULL) {
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return 1;
		s += 2;
	}
	return 0;
}

static int
workdir_under(const char *root, const char *path)
{
	size_t	n = strlen(root);

	if (strcmp(root, "/") == 0)
		return 1;
	return strncmp(root, path, n) == 0 && (path[n] == '\0' ||
	    path[n] == '/');
}

/*
 * The deepest existing ancestor of dir must resolve under the root, so that
 * creating the rest cannot pass through a symlink that leads outside.
 */
static int
workdir_ancestor_check(const char *rroot, const char *dir, char *err,
    size_t errlen)
{
	char		buf[PATH_MAX], real[PATH_MAX], *slash;
	struct stat	st;

	if (strlen(dir) >= sizeof buf) {
		snprintf(err, errlen, "workdir path too long");
		return -1;
	}
	strcpy(buf, dir);
	while (lstat(buf, &st) == -1) {
		if ((slash = strrchr(buf, '/')) == NULL || slash == buf)
			return 0;
		*slash = '\0';
	}
	if (realpath(buf, real) == NULL || !workdir_under(rroot, real)) {
		snprintf(err, errlen, "workdir %s resolves outside the root",
		    dir);
		return -1;
	}
	return 0;
}

static int
workdir_syntax(const char *dir, char *err, size_t errlen)
{
	if (dir[0] != '/') {
		snprintf(err, errlen, "workdir must be an absolute path");
		return -1;
	}
	if (workdir_has_dotdot(dir)) {
		snprintf(err, errlen, "workdir must not contain \"..\"");
		return -1;
	}
	return 0;
}

/*
 * A root as configured: "~" and "~/sub" are the identity's home (and a
 * path under it).  0, or -1 if it does not fit.
 */
static int
workdir_expand(const char *root, workdir_home_fn home_fn, char *out,
    size_t len)
{
	const char	*home;
	int		 n;

	if (root[0] == '~') {
		home = home_fn != NULL ? home_fn() : NULL;
		if (home == NULL || home[0] != '/')
			return -1;
		n = snprintf(out, len, "%s%s", home, root + 1);
	} else
		n = snprintf(out, len, "%s", root);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int
workdir_enter_roots(const char *const *roots, size_t nroots,
    workdir_home_fn home, const char *dir, char *resolved, size_t len,
    char *err, size_t errlen)
{
	char		root[PATH_MAX], rroot[PATH_MAX], rdir[PATH_MAX];
	struct stat	st;
	size_t		i;
	int		found = 0;

	if (workdir_syntax(dir, err, errlen) == -1)
		return -1;
	/* The first root that holds dir, as written or resolved. */
	for (i = 0; i < nroots && !found; i++) {
		if (workdir_expand(roots[i], home, root, sizeof root) == -1 ||
		    realpath(root, rroot) == NULL)
			continue;	/* a root that is not there holds nothing */
		found = workdir_under(root, dir) || workdir_under(rroot, dir);
	}
	/* Compare before creating anything: never mkdir outside a root. */
	if (!found) {
		snprintf(err, errlen, "workdir %s is not under workdir_root",
		    dir);
		return -1;
	}
	if (workdir_ancestor_check(rroot, dir, err, errlen) == -1)
		return -1;
	/* Created with the caller's identity: the kernel decides. */
	if (util_mkdirs(dir, WORKDIR_MODE) == -1) {
		snprintf(err, errlen, "workdir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (realpath(dir, rdir) == NULL) {
		snprintf(err, errlen, "workdir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!workdir_under(rroot, rdir)) {
		snprintf(err, errlen, "workdir %s resolves outside %s", dir,
		    root);
		return -1;
	}
	if (stat(rdir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "workdir %s is not a directory", dir);
		return -1;
	}
	/* Ours to read and enter (the kernel says; writing may be denied). */
	if (access(rdir, R_OK | X_OK) == -1) {
		snprintf(err, errlen, "workdir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (strlen(rdir) >= len) {
		snprintf(err, errlen, "workdir path too long");
		return -1;
	}
	strcpy(resolved, rdir);
	return 0;
}

int
workdir_enter_check(const char *root, const char *dir, char *resolved,
    size_t len, char *err, size_t errlen)
{
	const char	*roots[1] = { root };

	if (workdir_syntax(dir, err, errlen) == -1)
		return -1;
	if (util_mkdirs(root, WORKDIR_MODE) == -1) {
		snprintf(err, errlen, "workdir_root %s: %s", root,
		    strerror(errno));
		return -1;
	}
	return workdir_enter_roots(roots, 1, NULL, dir, resolved, len, err,
	    errlen);
}
