/*
 * worker/fswatch.c against a real temporary workdir and real inotify:
 * which Bash call is given which change (calls one after the other get
 * only their own; overlapping calls each get what changed while they
 * overlapped; nothing before a call is its doing), and one watch set per
 * turn that stays up to date between calls.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <cJSON.h>
#include <event2/event.h>

#include "worker/worker.h"

#define TREE_DIRS	1000	/* the tree of the cost figure */
#define LIST_MAX	16	/* paths compared per list */
#define FSWATCH_TEST_CALLS 8	/* FSWATCH_CALLS_MAX of worker/fswatch.c */

static char		 root[PATH_MAX];
static struct event_base *base;

static int
setup(void **state)
{
	char	tmpl[] = "/tmp/hp-fswatch-XXXXXX";

	if (mkdtemp(tmpl) == NULL || realpath(tmpl, root) == NULL)
		return -1;
	if ((base = event_base_new()) == NULL)
		return -1;
	fswatch_init(base, root);
	return 0;
}

/* buf (PATH_MAX bytes) = root/rel */
static void
at(char *buf, const char *rel)
{
	assert_true(snprintf(buf, PATH_MAX, "%s/%s", root, rel) < PATH_MAX);
}

static int
rm_tree(const char *path)
{
	char		 sub[PATH_MAX];
	struct dirent	*de;
	struct stat	 st;
	DIR		*d;

	if (lstat(path, &st) == -1)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) <
		    (int)sizeof sub)
			rm_tree(sub);
	}
	closedir(d);
	return rmdir(path);
}

static int
teardown(void **state)
{
	fswatch_clear();
	event_base_free(base);
	return rm_tree(root);
}

/* Writes root/rel (a line), creating or appending. */
static void
put(const char *rel)
{
	char	path[PATH_MAX];
	int	fd;

	at(path, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_int_not_equal(fd, -1);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
}

static void
mkdir_rel(const char *rel)
{
	char	path[PATH_MAX];

	at(path, rel);
	assert_int_equal(mkdir(path, 0700), 0);
}

/* The call's result as fswatch_end makes it; the caller frees it. */
static cJSON *
end(const char *id)
{
	cJSON	*d = cJSON_CreateObject();

	fswatch_end(id, d);
	return d;
}

/*
 * The list key of d holds exactly the workdir paths given (NULL ends
 * them), in any order.
 */
static void
assert_list(const cJSON *d, const char *key, ...)
{
	const cJSON	*a = cJSON_GetObjectItemCaseSensitive(d, key), *e;
	char		 want[LIST_MAX][PATH_MAX];
	int		 nwant = 0, found, i;
	const char	*rel;
	va_list		 ap;

	va_start(ap, key);
	while ((rel = va_arg(ap, const char *)) != NULL && nwant < LIST_MAX)
		at(want[nwant++], rel);
	va_end(ap);
	assert_true(cJSON_IsArray(a));
	if (cJSON_GetArraySize(a) != nwant) {
		char	*s = cJSON_PrintUnformatted(d);

		print_message("# %s: want %d paths, got %s\n", key, nwant, s);
		free(s);
		fail();
	}
	cJSON_ArrayForEach(e, a) {
		found = 0;
		for (i = 0; i < nwant; i++)
			if (cJSON_IsString(e) &&
			    strcmp(e->valuestring, want[i]) == 0)
				found = 1;
		if (!found)
			print_message("# %s: unexpected %s\n", key,
			    cJSON_IsString(e) ? e->valuestring : "?");
		assert_true(found);
	}
}

/* The inotify descriptors this process holds. */
static int
inotify_fds(int *last)
{
	char		 link[PATH_MAX], path[PATH_MAX];
	struct dirent	*de;
	DIR		*d;
	ssize_t		 n;
	int		 count = 0;

	assert_non_null(d = opendir("/proc/self/fd"));
	while ((de = readdir(d)) != NULL) {
		if (snprintf(path, sizeof path, "/proc/self/fd/%s",
		    de->d_name) >= (int)sizeof path ||
		    (n = readlink(path, link, sizeof link - 1)) == -1)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:inotify") == 0) {
			count++;
			if (last != NULL)
				*last = atoi(de->d_name);
		}
	}
	closedir(d);
	return count;
}

static void
test_one_after_another(void **state)
{
	cJSON	*a, *b;

	put("before.txt");		/* before any call: nobody's */
	fswatch_begin("Bash", "a");
	put("a.txt");
	put("before.txt");
	a = end("a");
	fswatch_begin("Bash", "b");
	put("b.txt");
	b = end("b");
	assert_list(a, "files_written", "a.txt", "before.txt", NULL);
	assert_list(b, "files_written", "b.txt", NULL);
	assert_list(b, "files_deleted", NULL);
	assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b,
	    "files_truncated")));
	/* One after the other: neither overlapped. */
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a,
	    "overlapped")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b,
	    "overlapped")));
	cJSON_Delete(a);
	cJSON_Delete(b);
}

static void
test_between_calls(void **state)
{
	cJSON	*a, *b;
	char	 from[PATH_MAX], to[PATH_MAX];

	fswatch_begin("Bash", "a");
	mkdir_rel("m");
	a = end("a");
	/* Between two calls of the turn: not listed, but still watched. */
	put("between.txt");
	mkdir_rel("new");
	at(from, "m");
	at(to, "moved");
	assert_int_equal(rename(from, to), 0);
	fswatch_begin("Bash", "b");
	put("new/f.txt");
	put("moved/g.txt");
	at(from, "between.txt");
	assert_int_equal(unlink(from), 0);
	b = end("b");
	assert_list(a, "files_written", NULL);
	assert_list(b, "files_written", "new/f.txt", "moved/g.txt", NULL);
	assert_list(b, "files_deleted", "between.txt", NULL);
	cJSON_Delete(a);
	cJSON_Delete(b);
}

static void
test_overlap(void **state)
{
	cJSON	*a, *b;

	fswatch_begin("Bash", "a");
	put("p.txt");			/* a alone */
	fswatch_begin("Bash", "b");
	put("q.txt");			/* both in flight */
	a = end("a");
	put("r.txt");			/* b alone */
	b = end("b");
	assert_list(a, "files_written", "p.txt", "q.txt", NULL);
	assert_list(b, "files_written", "q.txt", "r.txt", NULL);
	/* Each may list the other's changes, and says so. */
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a,
	    "overlapped")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b,
	    "overlapped")));
	cJSON_Delete(a);
	cJSON_Delete(b);
}

/* Past the bound of calls in flight: the call's result says so. */
static void
test_too_many(void **state)
{
	cJSON	*d;
	char	 id[2] = "a";
	int	 i;

	for (i = 0; i <= FSWATCH_TEST_CALLS; i++, id[0]++)
		fswatch_begin("Bash", id);	/* a..i: i is one too many */
	put("x.txt");
	d = end("i");
	assert_list(d, "files_written", NULL);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d,
	    "files_truncated")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d,
	    "overlapped")));
	cJSON_Delete(d);
	d = end("a");			/* a watched one is as before */
	assert_list(d, "files_written", "x.txt", NULL);
	assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d,
	    "files_truncated")));
	cJSON_Delete(d);
	d = end("i");			/* told once */
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "files_written"));
	cJSON_Delete(d);
}

static void
test_only_bash(void **state)
{
	cJSON	*d;

	fswatch_begin("Write", "w");
	put("w.txt");
	d = end("w");
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "files_written"));
	cJSON_Delete(d);
	assert_int_equal(inotify_fds(NULL), 0);
}

/* One watch set per turn: the same instance for every call, none after. */
static void
test_one_set_per_turn(void **state)
{
	struct timeval	 t0, t1, t2, t3;
	char		 rel[32];
	cJSON		*a, *b;
	int		 i, fd_a = -1, fd_b = -1;

	for (i = 0; i < TREE_DIRS; i++) {
		snprintf(rel, sizeof rel, "d%d", i);
		mkdir_rel(rel);
	}
	gettimeofday(&t0, NULL);
	fswatch_begin("Bash", "a");
	gettimeofday(&t1, NULL);
	put("d999/a.txt");
	a = end("a");
	assert_int_equal(inotify_fds(&fd_a), 1);
	gettimeofday(&t2, NULL);
	fswatch_begin("Bash", "b");
	gettimeofday(&t3, NULL);
	put("d0/b.txt");
	b = end("b");
	assert_int_equal(inotify_fds(&fd_b), 1);
	assert_int_equal(fd_a, fd_b);
	assert_list(a, "files_written", "d999/a.txt", NULL);
	assert_list(b, "files_written", "d0/b.txt", NULL);
	/* A figure, not a check: the load decides the times. */
	print_message("# %d directories: a turn's first Bash call starts "
	    "in %.1f ms, a later one in %.2f ms\n", TREE_DIRS,
	    (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_usec - t0.tv_usec) / 1e3,
	    (t3.tv_sec - t2.tv_sec) * 1e3 + (t3.tv_usec - t2.tv_usec) / 1e3);
	fswatch_clear();		/* the turn's end */
	assert_int_equal(inotify_fds(NULL), 0);
	cJSON_Delete(a);
	cJSON_Delete(b);
}

/* The end of the CLI's own turn: the set goes, unless a call is on. */
static void
test_idle(void **state)
{
	cJSON	*a, *b;

	fswatch_begin("Bash", "a");
	put("a.txt");
	a = end("a");
	assert_int_equal(inotify_fds(NULL), 1);
	fswatch_idle();
	assert_int_equal(inotify_fds(NULL), 0);
	fswatch_begin("Bash", "b");
	fswatch_idle();			/* b is in flight: kept */
	put("b.txt");
	b = end("b");
	assert_int_equal(inotify_fds(NULL), 1);
	assert_list(a, "files_written", "a.txt", NULL);
	assert_list(b, "files_written", "b.txt", NULL);
	cJSON_Delete(a);
	cJSON_Delete(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_after_another,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_between_calls,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_bash,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_set_per_turn,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
