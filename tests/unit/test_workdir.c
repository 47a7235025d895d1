/*
 * worker/workdir.c: workdir_enter_check keeps a session's directory under
 * workdir_root.  Each test gets a fresh mktemp dir holding "root" (not
 * created beforehand: the check creates it) and "outside", a sibling that
 * must never gain an entry.  util_rmtree(), which removes what a sandboxed
 * CLI left in its TMPDIR, is tested here too, with the same fixture.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "worker/worker.h"

#define ERR_MAX		512
#define FTW_FDS		16
#define WORKDIR_MODE	0750	/* what workdir.c creates with */
#define RMTREE_TOO_DEEP	70	/* levels past util_rmtree()'s bound */

struct wd {
	char	base[PATH_MAX];		/* the mktemp dir, resolved */
	char	root[PATH_MAX];
	char	outside[PATH_MAX];
	char	resolved[PATH_MAX];
	char	err[ERR_MAX];
};

static int
wd_setup(void **state)
{
	struct wd	*w = xcalloc(1, sizeof *w);
	const char	*tmp = getenv("TMPDIR");
	char		 tmpl[PATH_MAX];

	snprintf(tmpl, sizeof tmpl, "%s/hp-test-workdir.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	/* Resolved, so that expected paths compare with realpath()'s. */
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, w->base) == NULL)
		return -1;
	if ((size_t)snprintf(w->root, sizeof w->root, "%s/root", w->base) >=
	    sizeof w->root ||
	    (size_t)snprintf(w->outside, sizeof w->outside, "%s/outside",
	    w->base) >= sizeof w->outside)
		return -1;
	if (mkdir(w->outside, 0700) == -1)
		return -1;
	*state = w;
	return 0;
}

static int
wd_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
wd_teardown(void **state)
{
	struct wd	*w = *state;
	int		 rv;

	/* FTW_PHYS: never follow the symlinks the tests plant. */
	rv = nftw(w->base, wd_rm, FTW_FDS, FTW_DEPTH | FTW_PHYS);
	free(w);
	return rv;
}

/* base + "/" + rel, as a new string. */
static char *
wd_path(const struct wd *w, const char *rel)
{
	char	*p;

	xasprintf(&p, "%s/%s", w->base, rel);
	return p;
}

static int
wd_check(struct wd *w, const char *root, const char *dir)
{
	w->resolved[0] = '\0';
	w->err[0] = '\0';
	return workdir_enter_check(root, dir, w->resolved, sizeof w->resolved,
	    w->err, sizeof w->err);
}

static void
wd_refused(struct wd *w, const char *dir, const char *why)
{
	if (wd_check(w, w->root, dir) != -1)
		fail_msg("workdir %s accepted", dir);
	if (strstr(w->err, why) == NULL)
		fail_msg("workdir %s: error \"%s\", want \"%s\"", dir, w->err,
		    why);
}

static int
wd_exists(const char *p)
{
	struct stat	st;

	return lstat(p, &st) == 0;
}

static int
wd_is_dir(const char *p)
{
	struct stat	st;

	return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void
assert_outside_empty(const struct wd *w)
{
	DIR		*d;
	struct dirent	*de;

	assert_non_null(d = opendir(w->outside));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			fail_msg("%s/%s was created", w->outside, de->d_name);
	closedir(d);
}

static void
test_relative_refused(void **state)
{
	struct wd	*w = *state;

	wd_refused(w, "work/a", "absolute");
	wd_refused(w, "root", "absolute");
	wd_refused(w, "", "absolute");
	wd_refused(w, "./root/a", "absolute");
	/* Refused before the root is even created. */
	assert_false(wd_exists(w->root));
}

static void
test_dotdot_refused(void **state)
{
	struct wd	*w = *state;
	char		 dir[PATH_MAX * 2];
	static const char *tails[] = {
		"/..", "/../outside", "/a/../../outside/x", "/a/..", "/a/../b",
		"/../root/a",
	};
	size_t		 i;

	for (i = 0; i < sizeof tails / sizeof tails[0]; i++) {
		snprintf(dir, sizeof dir, "%s%s", w->root, tails[i]);
		wd_refused(w, dir, "\"..\"");
	}
	assert_false(wd_exists(w->root));
	assert_outside_empty(w);

	/* Names that merely contain two dots are fine. */
	snprintf(dir, sizeof dir, "%s/..a/b..", w->root);
	assert_int_equal(wd_check(w, w->root, dir), 0);
	assert_string_equal(w->resolved, dir);
	assert_true(wd_is_dir(dir));
	snprintf(dir, sizeof dir, "%s/.../x", w->root);
	assert_int_equal(wd_check(w, w->root, dir), 0);
}

static void
test_outside_refused(void **state)
{
	struct wd	*w = *state;
	char		*rootx = wd_path(w, "rootx/a");
	char		*out = wd_path(w, "outside/x");

	wd_refused(w, out, "is not under");
	wd_refused(w, "/", "is not under");
	wd_refused(w, w->base, "is not under");
	/* A prefix of the name is not a parent directory. */
	wd_refused(w, rootx, "is not under");
	assert_false(wd_exists(out));
	free(rootx);
	rootx = wd_path(w, "rootx");
	assert_false(wd_exists(rootx));
	assert_outside_empty(w);
	free(rootx);
	free(out);
}

static void
test_symlink_outside_refused(void **state)
{
	struct wd	*w = *state;
	char		*link, *dir, *dangling, *ddir;

	assert_int_equal(mkdir(w->root, 0700), 0);
	link = wd_path(w, "root/link");
	assert_int_equal(symlink(w->outside, link), 0);

	/* Through the link, to missing dirs: refused, nothing created. */
	xasprintf(&dir, "%s/new/deeper", link);
	wd_refused(w, dir, "outside");
	free(dir);
	xasprintf(&dir, "%s/new", link);
	wd_refused(w, dir, "outside");
	free(dir);
	wd_refused(w, link, "outside");
	assert_outside_empty(w);

	/* A dir that exists outside, reached through the link. */
	dir = wd_path(w, "outside/there");
	assert_int_equal(mkdir(dir, 0700), 0);
	free(dir);
	xasprintf(&dir, "%s/there", link);
	wd_refused(w, dir, "outside");
	free(dir);
	xasprintf(&dir, "%s/there/below", link);
	wd_refused(w, dir, "outside");
	free(dir);
	dir = wd_path(w, "outside/there/below");
	assert_false(wd_exists(dir));
	free(dir);

	/* A dangling link to a path outside: refused, target not made. */
	dangling = wd_path(w, "root/dangling");
	ddir = wd_path(w, "outside/not-yet");
	assert_int_equal(symlink(ddir, dangling), 0);
	xasprintf(&dir, "%s/a", dangling);
	wd_refused(w, dir, "outside");
	wd_refused(w, dangling, "outside");
	assert_false(wd_exists(ddir));
	free(dir);
	free(ddir);
	free(dangling);

	/* A relative link climbing out of the root. */
	dangling = wd_path(w, "root/up");
	assert_int_equal(symlink("../outside", dangling), 0);
	xasprintf(&dir, "%s/a/b", dangling);
	wd_refused(w, dir, "outside");
	free(dir);
	free(dangling);
	free(link);

	dir = wd_path(w, "outside/there");
	assert_int_equal(rmdir(dir), 0);
	free(dir);
	assert_outside_empty(w);
}

static void
test_symlink_inside_allowed(void **state)
{
	struct wd	*w = *state;
	char		*real = wd_path(w, "root/real");
	char		*link = wd_path(w, "root/alias");
	char		*dir, *want;

	assert_int_equal(mkdir(w->root, 0700), 0);
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(symlink("real", link), 0);
	xasprintf(&dir, "%s/x/y", link);
	assert_int_equal(wd_check(w, w->root, dir), 0);
	xasprintf(&want, "%s/x/y", real);
	assert_string_equal(w->resolved, want);
	assert_true(wd_is_dir(want));
	free(want);
	free(dir);
	free(link);
	free(real);
}

static void
test_nested_created(void **state)
{
	struct wd	*w = *state;
	char		*dir = wd_path(w, "root/a/b/c/d");
	struct stat	 st;
	mode_t		 mask = umask(0);

	umask(mask);
	/* The root is missing too: both get made. */
	assert_false(wd_exists(w->root));
	assert_int_equal(wd_check(w, w->root, dir), 0);
	assert_string_equal(w->resolved, dir);
	assert_true(wd_is_dir(w->root));
	assert_int_equal(lstat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, WORKDIR_MODE & ~mask);
	/* Again, now that it exists. */
	assert_int_equal(wd_check(w, w->root, dir), 0);
	assert_string_equal(w->resolved, dir);
	free(dir);

	/* Doubled and trailing slashes resolve to the plain path. */
	xasprintf(&dir, "%s//e/f/", w->root);
	assert_int_equal(wd_check(w, w->root, dir), 0);
	free(dir);
	dir = wd_path(w, "root/e/f");
	assert_string_equal(w->resolved, dir);
	free(dir);
	assert_outside_empty(w);
}

static void
test_file_refused(void **state)
{
	struct wd	*w = *state;
	char		*file = wd_path(w, "root/file");
	char		*below;
	FILE		*f;

	assert_int_equal(mkdir(w->root, 0700), 0);
	assert_non_null(f = fopen(file, "w"));
	fclose(f);
	wd_refused(w, file, "not a directory");
	xasprintf(&below, "%s/sub", file);
	assert_int_equal(wd_check(w, w->root, below), -1);
	assert_non_null(strstr(w->err, strerror(ENOTDIR)));
	free(below);
	free(file);
}

static void
test_root_itself(void **state)
{
	struct wd	*w = *state;
	char		 dir[PATH_MAX + 1];

	/* The root itself is a valid workdir (shared by its sessions). */
	assert_int_equal(wd_check(w, w->root, w->root), 0);
	assert_string_equal(w->resolved, w->root);
	snprintf(dir, sizeof dir, "%s/", w->root);
	assert_int_equal(wd_check(w, w->root, dir), 0);
	assert_string_equal(w->resolved, w->root);
}

static void
test_root_through_symlink(void **state)
{
	struct wd	*w = *state;
	char		*lroot = wd_path(w, "rootlink");
	char		*dir, *want;

	assert_int_equal(mkdir(w->root, 0700), 0);
	assert_int_equal(symlink("root", lroot), 0);
	/* Named through the link's name, or through the real one. */
	xasprintf(&dir, "%s/s1", lroot);
	assert_int_equal(wd_check(w, lroot, dir), 0);
	xasprintf(&want, "%s/s1", w->root);
	assert_string_equal(w->resolved, want);
	free(dir);
	free(want);
	xasprintf(&dir, "%s/s2", w->root);
	assert_int_equal(wd_check(w, lroot, dir), 0);
	assert_string_equal(w->resolved, dir);
	free(dir);
	xasprintf(&dir, "%s/x", w->outside);
	assert_int_equal(wd_check(w, lroot, dir), -1);
	free(dir);
	free(lroot);
	assert_outside_empty(w);
}

static void
test_resolved_too_small(void **state)
{
	struct wd	*w = *state;
	char		 small[8], err[ERR_MAX];

	assert_int_equal(workdir_enter_check(w->root, w->root, small,
	    sizeof small, err, sizeof err), -1);
	assert_non_null(strstr(err, "too long"));
}

static void
wd_mkfile(const char *path)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fclose(f), 0);
}

/* A tree of dirs, files and links out of it goes; what they point to stays. */
static void
test_rmtree(void **state)
{
	struct wd	*w = *state;
	char		*tree = wd_path(w, "tree"), *p, *keep;

	keep = wd_path(w, "outside/keep");
	wd_mkfile(keep);
	assert_int_equal(mkdir(tree, 0700), 0);
	p = wd_path(w, "tree/a");
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = wd_path(w, "tree/a/b");
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = wd_path(w, "tree/a/b/f");
	wd_mkfile(p);
	free(p);
	p = wd_path(w, "tree/a/out");
	assert_int_equal(symlink(w->outside, p), 0);
	free(p);
	p = wd_path(w, "tree/keep");
	assert_int_equal(symlink(keep, p), 0);
	free(p);

	assert_int_equal(util_rmtree(tree), 0);
	assert_int_equal(access(tree, F_OK), -1);
	assert_int_equal(access(keep, F_OK), 0);
	/* Gone already is done. */
	assert_int_equal(util_rmtree(tree), 0);
	/* A link given as the tree is not followed either. */
	p = wd_path(w, "link");
	assert_int_equal(symlink(w->outside, p), 0);
	assert_int_equal(util_rmtree(p), -1);
	assert_int_equal(access(keep, F_OK), 0);
	free(p);
	free(keep);
	free(tree);
}

/* Deeper than its bound, it fails (the bound keeps its fds few). */
static void
test_rmtree_too_deep(void **state)
{
	struct wd	*w = *state;
	char		 path[PATH_MAX], *tree = wd_path(w, "deep");
	size_t		 i, n;

	n = (size_t)snprintf(path, sizeof path, "%s", tree);
	assert_int_equal(mkdir(path, 0700), 0);
	for (i = 0; i < RMTREE_TOO_DEEP; i++) {
		assert_true(n + 2 < sizeof path);
		memcpy(path + n, "/d", 3);
		n += 2;
		assert_int_equal(mkdir(path, 0700), 0);
	}
	assert_int_equal(util_rmtree(tree), -1);
	assert_int_equal(access(tree, F_OK), 0);
	free(tree);
}

/*
 * The check as the worker runs it: after switching to the session's
 * identity, so that the kernel decides.  Two uids without a passwd entry,
 * each in a child process; root only (skipped otherwise).
 */
#define UID_A		65501
#define UID_B		65502
#define SHARED_MODE	01777	/* a workdir_root as hotplexd makes it */
#define HOME_MODE	0700

/* The home wd_as gives its child for "~", and how often it was asked. */
static const char	*wd_home_path;
static int		 wd_home_asked;

static const char *
wd_home(void)
{
	wd_home_asked++;
	return wd_home_path;
}

/* As uid, in a child: 0 if accepted, 1 if refused, 2 if the switch failed. */
static int
wd_as(uid_t uid, const char *const *roots, size_t n, const char *home,
    const char *dir)
{
	char	resolved[PATH_MAX], err[ERR_MAX];
	pid_t	pid;
	int	status;

	if ((pid = fork()) == 0) {
		if (setgroups(0, NULL) == -1 || setresgid(uid, uid, uid) == -1 ||
		    setresuid(uid, uid, uid) == -1)
			_exit(2);
		wd_home_path = home;
		_exit(workdir_enter_roots(roots, n, wd_home, dir, resolved,
		    sizeof resolved, err, sizeof err) == 0 ? 0 : 1);
	}
	if (pid == -1 || waitpid(pid, &status, 0) != pid ||
	    !WIFEXITED(status))
		return 2;
	return WEXITSTATUS(status);
}

static void
test_identity_decides(void **state)
{
	struct wd	*w = *state;
	char		*shared, *home_a, *home_b, *p;
	const char	*roots[2];
	struct stat	 st;

	if (geteuid() != 0)
		skip();
	shared = wd_path(w, "shared");
	home_a = wd_path(w, "home-a");
	home_b = wd_path(w, "home-b");
	assert_int_equal(chmod(w->base, 0711), 0);
	assert_int_equal(mkdir(shared, SHARED_MODE), 0);
	assert_int_equal(chmod(shared, SHARED_MODE), 0);
	assert_int_equal(mkdir(home_a, HOME_MODE), 0);
	assert_int_equal(chown(home_a, UID_A, UID_A), 0);
	assert_int_equal(mkdir(home_b, HOME_MODE), 0);
	assert_int_equal(chown(home_b, UID_B, UID_B), 0);
	roots[0] = shared;
	roots[1] = "~";

	/* A makes its workdir in the shared root: it is A's. */
	p = wd_path(w, "shared/a/proj");
	assert_int_equal(wd_as(UID_A, roots, 2, home_a, p), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, UID_A);
	/* B may not work in it, nor make one inside. */
	assert_int_equal(wd_as(UID_B, roots, 2, home_b, p), 1);
	free(p);
	p = wd_path(w, "shared/a/proj/b-inside");
	assert_int_equal(wd_as(UID_B, roots, 2, home_b, p), 1);
	assert_false(wd_exists(p));
	free(p);
	/* Its own next to it is fine. */
	p = wd_path(w, "shared/b");
	assert_int_equal(wd_as(UID_B, roots, 2, home_b, p), 0);
	free(p);

	/* "~" is each one's own home. */
	p = wd_path(w, "home-a/src/app");
	assert_int_equal(wd_as(UID_A, roots, 2, home_a, p), 0);
	assert_int_equal(wd_as(UID_B, roots, 2, home_b, p), 1);
	/* Even with the parent as a root, the kernel says no to B. */
	roots[0] = w->base;
	assert_int_equal(wd_as(UID_B, roots, 1, home_b, p), 1);
	free(p);
	/* A user without a home has no "~" root. */
	p = wd_path(w, "home-a/src/other");
	roots[0] = "~";
	assert_int_equal(wd_as(UID_A, roots, 1, NULL, p), 1);
	assert_false(wd_exists(p));
	free(p);
	free(shared);
	free(home_a);
	free(home_b);
}

/*
 * The home is asked for only when a "~" root is reached: not for a dir
 * under an earlier root (the default workdir), once for one under "~".
 */
static void
test_home_asked_when_needed(void **state)
{
	struct wd	*w = *state;
	const char	*roots[2];
	char		*home, *p;

	home = wd_path(w, "home");
	assert_int_equal(mkdir(w->root, WORKDIR_MODE), 0);
	assert_int_equal(mkdir(home, WORKDIR_MODE), 0);
	roots[0] = w->root;
	roots[1] = "~";
	wd_home_path = home;

	wd_home_asked = 0;
	p = wd_path(w, "root/app");
	assert_int_equal(workdir_enter_roots(roots, 2, wd_home, p, w->resolved,
	    sizeof w->resolved, w->err, sizeof w->err), 0);
	assert_int_equal(wd_home_asked, 0);
	free(p);

	p = wd_path(w, "home/app");
	assert_int_equal(workdir_enter_roots(roots, 2, wd_home, p, w->resolved,
	    sizeof w->resolved, w->err, sizeof w->err), 0);
	assert_int_equal(wd_home_asked, 1);
	assert_string_equal(w->resolved, p);
	free(p);

	/* Without a home, "~" holds nothing. */
	wd_home_path = NULL;
	p = wd_path(w, "home/other");
	assert_int_equal(workdir_enter_roots(roots, 2, wd_home, p, w->resolved,
	    sizeof w->resolved, w->err, sizeof w->err), -1);
	assert_non_null(strstr(w->err, "not under workdir_root"));
	free(p);
	free(home);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, wd_setup, wd_teardown)
		T(test_relative_refused),
		T(test_dotdot_refused),
		T(test_outside_refused),
		T(test_symlink_outside_refused),
		T(test_symlink_inside_allowed),
		T(test_nested_created),
		T(test_file_refused),
		T(test_root_itself),
		T(test_root_through_symlink),
		T(test_resolved_too_small),
		T(test_rmtree),
		T(test_rmtree_too_deep),
		T(test_identity_decides),
		T(test_home_asked_when_needed),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
