/*
 * The files a Bash tool call changed in the workdir, for the audit.  The
 * Write and Edit tools name their file in their input; a shell command
 * does not, so while a Bash call is in flight (from its can_use_tool
 * question or tool_use line, both before the command runs when the gate is
 * on, to its tool_result) the workdir tree is watched with inotify; its
 * tool_result then carries files_written, files_deleted and
 * files_truncated.
 *
 * Who made a change: inotify does not say (an unprivileged fanotify
 * listener is not told either: it gets pid 0 for other processes), so a
 * change is listed in every Bash call in flight when its event is read,
 * and in no call when none is.  Events are read when a call begins (what
 * happened before is not its doing) and when it ends (its command has
 * exited by then), so calls that run one after the other each get only
 * their own; calls that overlap (sub-agents, commands the CLI runs in
 * parallel) each get what was changed while they overlapped, and a
 * command left running in the background is seen in whichever call is in
 * flight when it writes.  So a call that was ever in flight beside
 * another says so (overlapped): its lists may hold the other's changes.
 *
 * One watch set per turn: made at the turn's first Bash call, kept up to
 * date between calls (new directories are watched as they appear) and
 * closed when the turn ends (or the CLI's own turn, with no call in
 * flight), so a turn's later calls do not list the tree again (~140 ms
 * with 1,000 directories) and an idle session holds no inotify instance.
 *
 * Bounded: at most FSWATCH_DIRS_MAX directories are watched (breadth
 * first, so the top of a large tree is covered), FSWATCH_FILES_MAX paths
 * kept per call; hitting a bound, a queue overflow or no inotify instance
 * left sets files_truncated.  The net effect is recorded: a file created
 * and removed by the same call is not listed.  Only the workdir is
 * watched: a command that writes elsewhere is not seen here.
 */
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "worker/worker.h"

#define FSWATCH_DIRS_MAX	1024	/* directories watched */
#define FSWATCH_FILES_MAX	64	/* paths kept per call */
#define FSWATCH_CALLS_MAX	8	/* Bash calls in flight */
#define FSWATCH_UNSEEN_MAX	8	/* calls past that bound, remembered */
#define FSWATCH_SCAN_MAX	4096	/* entries read per new directory */
#define FSWATCH_BUF		(64 * 1024)	/* one read of events */
#define FSWATCH_TOOL		"Bash"

#define FSWATCH_DIR_MASK	(IN_CREATE | IN_MODIFY | IN_ATTRIB |	\
	IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |	\
	IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

enum fswatch_change { FS_CREATED, FS_MODIFIED, FS_DELETED };

struct fswatch_file {
	char			*path;		/* relative to the workdir */
	enum fswatch_change	 change;
};

struct fswatch_call {
	char			*tool_id;	/* NULL: a free slot */
	struct fswatch_file	 files[FSWATCH_FILES_MAX];
	size_t			 nfiles;
	int			 truncated;
	int			 overlapped;	/* another call was in flight */
};

struct fswatch_dir {
	int		 wd;
	char		*path;		/* relative; "" is the workdir */
};

static struct {
	struct event_base	*base;
	char			 root[PATH_MAX];
	int			 fd;		/* -1: not watching */
	struct event		*ev;
	struct fswatch_dir	*dirs;		/* in wd order: the kernel's */
	size_t			 ndirs;		/* wds only grow */
	int			 truncated;	/* a dir was not watched */
	struct fswatch_call	 calls[FSWATCH_CALLS_MAX];
	size_t			 ncalls;
	char			*unseen[FSWATCH_UNSEEN_MAX];	/* tool ids */
	size_t			 unseen_next;
} fw = { .fd = -1 };

static void	fswatch_scan(const char *, int);

static const char *
fswatch_dir_path(int wd)
{
	size_t	lo = 0, hi = fw.ndirs, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (fw.dirs[mid].wd == wd)
			return fw.dirs[mid].path;
		if (fw.dirs[mid].wd < wd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Records a change of rel in every call in flight. */
static void
fswatch_note(const char *rel, enum fswatch_change change)
{
	struct fswatch_call	*c;
	struct fswatch_file	*f;
	size_t			 i, j;

	for (i = 0; i < FSWATCH_CALLS_MAX; i++) {
		if ((c = &fw.calls[i])->tool_id == NULL)
			continue;
		for (j = 0; j < c->nfiles; j++)
			if (strcmp(c->files[j].path, rel) == 0)
				break;
		if (j == c->nfiles) {
			if (c->nfiles == FSWATCH_FILES_MAX) {
				c->truncated = 1;
				continue;
			}
			c->files[c->nfiles].path = xstrdup(rel);
			c->files[c->nfiles++].change = change;
			continue;
		}
		f = &c->files[j];
		if (change == FS_DELETED && f->change == FS_CREATED) {
			/* Created and removed within the call: no effect. */
			free(f->path);
			*f = c->files[--c->nfiles];
		} else if (change == FS_CREATED && f->change == FS_DELETED)
			f->change = FS_MODIFIED;
		else if (change != FS_MODIFIED || f->change != FS_CREATED)
			f->change = change;
	}
}

static void
fswatch_truncated(void)
{
	size_t	i;

	for (i = 0; i < FSWATCH_CALLS_MAX; i++)
		if (fw.calls[i].tool_id != NULL)
			fw.calls[i].truncated = 1;
}

/* Watches the directory rel; 0, or -1 when it is not watched. */
static int
fswatch_add(const char *rel)
{
	char	path[PATH_MAX];
	int	wd;

	if (fw.ndirs == FSWATCH_DIRS_MAX) {
		fw.truncated = 1;
		return -1;
	}
	if (snprintf(path, sizeof path, "%s%s%s", fw.root, *rel ? "/" : "",
	    rel) >= (int)sizeof path) {
		fw.truncated = 1;
		return -1;
	}
	if ((wd = inotify_add_watch(fw.fd, path, FSWATCH_DIR_MASK)) == -1) {
		/* Gone already, or not ours to read: not a bound. */
		if (errno != ENOENT && errno != EACCES && errno != ENOTDIR)
			fw.truncated = 1;
		return -1;
	}
	if (fw.ndirs > 0 && wd <= fw.dirs[fw.ndirs - 1].wd)
		return 0;	/* watched already (a hard link, a rename) */
	if (fw.dirs == NULL)
		fw.dirs = xcalloc(FSWATCH_DIRS_MAX, sizeof *fw.dirs);
	fw.dirs[fw.ndirs].wd = wd;
	fw.dirs[fw.ndirs++].path = xstrdup(rel);
	return 0;
}

static int
fswatch_is_dir(const char *dir, const char *name)
{
	char		path[PATH_MAX];
	struct stat	st;

	if (snprintf(path, sizeof path, "%s/%s", dir, name) >=
	    (int)sizeof path)
		return 0;
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The entries of the directory rel: subdirectories are watched; when
 * created is set (a directory that appeared during a call) its files are
 * noted as created, for they may predate its watch.
 */
static void
fswatch_scan(const char *rel, int created)
{
	char		 path[PATH_MAX], sub[PATH_MAX];
	struct dirent	*de;
	DIR		*d;
	size_t		 n = 0;

	if (snprintf(path, sizeof path, "%s%s%s", fw.root, *rel ? "/" : "",
	    rel) >= (int)sizeof path || (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (++n > FSWATCH_SCAN_MAX) {
			fw.truncated = 1;
			break;
		}
		if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "",
		    de->d_name) >= (int)sizeof sub) {
			fw.truncated = 1;
			continue;
		}
		if (de->d_type == DT_DIR || (de->d_type == DT_UNKNOWN &&
		    fswatch_is_dir(path, de->d_name))) {
			if (fswatch_add(sub) == 0 && created)
				fswatch_scan(sub, 1);
		} else if (created)
			fswatch_note(sub, FS_CREATED);
	}
	closedir(d);
}

/* The whole tree, breadth first: a queue of the directories to list. */
static void
fswatch_tree(void)
{
	size_t	next = 0;

	if (fswatch_add("") == -1)
		return;
	while (next < fw.ndirs && fw.ndirs < FSWATCH_DIRS_MAX)
		fswatch_scan(fw.dirs[next++].path, 0);
	if (next < fw.ndirs)
		fw.truncated = 1;
}

/* The kernel dropped a watch (its directory is gone): its slot is free. */
static void
fswatch_forget(int wd)
{
	size_t	i;

	for (i = 0; i < fw.ndirs; i++)
		if (fw.dirs[i].wd == wd) {
			free(fw.dirs[i].path);
			memmove(&fw.dirs[i], &fw.dirs[i + 1],
			    (fw.ndirs - i - 1) * sizeof *fw.dirs);
			fw.ndirs--;
			return;
		}
}

/*
 * A directory moved away: its watches (and its subdirectories') would
 * name events by the old path; where it lands it is watched anew.
 */
static void
fswatch_moved(const char *rel)
{
	size_t	i, n = strlen(rel);

	for (i = 0; i < fw.ndirs; ) {
		if (strncmp(fw.dirs[i].path, rel, n) == 0 &&
		    (fw.dirs[i].path[n] == '\0' || fw.dirs[i].path[n] == '/')) {
			inotify_rm_watch(fw.fd, fw.dirs[i].wd);
			fswatch_forget(fw.dirs[i].wd);
		} else
			i++;
	}
}

static void
fswatch_event(const struct inotify_event *ev)
{
	const char	*dir;
	char		 rel[PATH_MAX];

	if (ev->mask & IN_Q_OVERFLOW) {
		fswatch_truncated();
		return;
	}
	if (ev->mask & IN_IGNORED) {
		fswatch_forget(ev->wd);
		return;
	}
	if (ev->len == 0 || (dir = fswatch_dir_path(ev->wd)) == NULL)
		return;
	if (snprintf(rel, sizeof rel, "%s%s%s", dir, *dir ? "/" : "",
	    ev->name) >= (int)sizeof rel) {
		fswatch_truncated();
		return;
	}
	if (ev->mask & IN_ISDIR) {
		/* A new directory: watch it and list what it holds. */
		if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
		    fswatch_add(rel) == 0)
			fswatch_scan(rel, 1);
		else if (ev->mask & IN_MOVED_FROM)
			fswatch_moved(rel);
		return;
	}
	if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
		fswatch_note(rel, FS_DELETED);
	else if (ev->mask & (IN_CREATE | IN_MOVED_TO))
		fswatch_note(rel, FS_CREATED);
	else
		fswatch_note(rel, FS_MODIFIED);
}

/* Reads every queued event. */
static void
fswatch_drain(void)
{
	char				 buf[FSWATCH_BUF]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event	*ev;
	ssize_t				 n;
	size_t				 off;

	if (fw.fd == -1)
		return;
	for (;;) {
		if ((n = read(fw.fd, buf, sizeof buf)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				fswatch_truncated();
			return;
		}
		for (off = 0; off + sizeof *ev <= (size_t)n;
		    off += sizeof *ev + ev->len) {
			ev = (const struct inotify_event *)(buf + off);
			fswatch_event(ev);
		}
	}
}

static void
fswatch_readable(evutil_socket_t fd, short what, void *arg)
{
	fswatch_drain();
}

static void
fswatch_close(void)
{
	size_t	i;

	if (fw.ev != NULL)
		event_free(fw.ev);
	fw.ev = NULL;
	if (fw.fd != -1)
		close(fw.fd);
	fw.fd = -1;
	for (i = 0; i < fw.ndirs; i++)
		free(fw.dirs[i].path);
	free(fw.dirs);
	fw.dirs = NULL;
	fw.ndirs = 0;
	fw.truncated = 0;
}

static struct fswatch_call *
fswatch_find(const char *tool_id)
{
	size_t	i;

	for (i = 0; i < FSWATCH_CALLS_MAX; i++)
		if (fw.calls[i].tool_id != NULL &&
		    strcmp(fw.calls[i].tool_id, tool_id) == 0)
			return &fw.calls[i];
	return NULL;
}

static void
fswatch_call_free(struct fswatch_call *c)
{
	size_t	i;

	for (i = 0; i < c->nfiles; i++)
		free(c->files[i].path);
	free(c->tool_id);
	memset(c, 0, sizeof *c);
	fw.ncalls--;
}

void
fswatch_init(struct event_base *base, const char *workdir)
{
	fswatch_clear();
	fw.base = base;
	snprintf(fw.root, sizeof fw.root, "%s", workdir);
}

void
fswatch_begin(const char *tool, const char *tool_id)
{
	struct fswatch_call	*c = NULL;
	size_t			 i;

	if (tool == NULL || tool_id == NULL || fw.base == NULL ||
	    strcmp(tool, FSWATCH_TOOL) != 0 || fswatch_find(tool_id) != NULL)
		return;
	for (i = 0; i < FSWATCH_CALLS_MAX && c == NULL; i++)
		if (fw.calls[i].tool_id == NULL)
			c = &fw.calls[i];
	if (c == NULL) {
		log_warnx("fswatch: more than %d Bash calls in flight",
		    FSWATCH_CALLS_MAX);
		/* Its result says what was not seen (fswatch_end). */
		free(fw.unseen[fw.unseen_next]);
		fw.unseen[fw.unseen_next] = xstrdup(tool_id);
		fw.unseen_next = (fw.unseen_next + 1) % FSWATCH_UNSEEN_MAX;
		return;
	}
	/* What happened before this call is not its doing. */
	fswatch_drain();
	if (fw.ncalls > 0) {
		/* Both may list each other's changes from now on. */
		for (i = 0; i < FSWATCH_CALLS_MAX; i++)
			if (fw.calls[i].tool_id != NULL)
				fw.calls[i].overlapped = 1;
		c->overlapped = 1;
	}
	c->tool_id = xstrdup(tool_id);
	fw.ncalls++;
	if (fw.fd != -1) {
		c->truncated = fw.truncated;
		return;
	}
	if ((fw.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		log_warn("fswatch: inotify_init1");
		c->truncated = 1;
		return;
	}
	fswatch_tree();
	c->truncated = fw.truncated;
	if (fw.truncated)
		log_info("fswatch: %zu directories of %s watched, not all",
		    fw.ndirs, fw.root);
	fw.ev = event_new(fw.base, fw.fd, EV_READ | EV_PERSIST,
	    fswatch_readable, NULL);
	if (fw.ev == NULL || event_add(fw.ev, NULL) == -1)
		fatalx("fswatch: event_new");
}

static cJSON *
fswatch_list(const struct fswatch_call *c, int deleted)
{
	cJSON	*a = cJSON_CreateArray();
	char	 path[PATH_MAX];
	size_t	 i;

	for (i = 0; i < c->nfiles; i++) {
		if ((c->files[i].change == FS_DELETED) != deleted)
			continue;
		if (snprintf(path, sizeof path, "%s/%s", fw.root,
		    c->files[i].path) >= (int)sizeof path)
			continue;	/* noted only if it fitted */
		cJSON_AddItemToArray(a, cJSON_CreateString(path));
	}
	return a;
}

/*
 * A call past FSWATCH_CALLS_MAX was not watched: its result lists nothing
 * and says the lists are incomplete; it ran beside all the others.
 */
static void
fswatch_unseen_end(const char *tool_id, cJSON *data)
{
	size_t	i;

	for (i = 0; i < FSWATCH_UNSEEN_MAX; i++) {
		if (fw.unseen[i] == NULL || strcmp(fw.unseen[i], tool_id) != 0)
			continue;
		free(fw.unseen[i]);
		fw.unseen[i] = NULL;
		cJSON_AddItemToObject(data, "files_written", cJSON_CreateArray());
		cJSON_AddItemToObject(data, "files_deleted", cJSON_CreateArray());
		cJSON_AddBoolToObject(data, "files_truncated", 1);
		cJSON_AddBoolToObject(data, "overlapped", 1);
		return;
	}
}

void
fswatch_end(const char *tool_id, cJSON *data)
{
	struct fswatch_call	*c;

	if (tool_id == NULL)
		return;
	if ((c = fswatch_find(tool_id)) == NULL) {
		fswatch_unseen_end(tool_id, data);
		return;
	}
	fswatch_drain();
	if (fw.truncated)
		c->truncated = 1;
	cJSON_AddItemToObject(data, "files_written", fswatch_list(c, 0));
	cJSON_AddItemToObject(data, "files_deleted", fswatch_list(c, 1));
	cJSON_AddBoolToObject(data, "files_truncated", c->truncated);
	cJSON_AddBoolToObject(data, "overlapped", c->overlapped);
	fswatch_call_free(c);
	/* The watch set stays for the turn's next call (fswatch_clear). */
}

void
fswatch_idle(void)
{
	if (fw.ncalls == 0)
		fswatch_close();
}

void
fswatch_clear(void)
{
	size_t	i;

	for (i = 0; i < FSWATCH_CALLS_MAX; i++)
		if (fw.calls[i].tool_id != NULL)
			fswatch_call_free(&fw.calls[i]);
	for (i = 0; i < FSWATCH_UNSEEN_MAX; i++) {
		free(fw.unseen[i]);
		fw.unseen[i] = NULL;
	}
	fswatch_close();
}
