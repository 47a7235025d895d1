/*
 * The CLI's transcript travels through the master's store: after each
 * turn (and when the CLI exits) the worker sends what the CLI added to its
 * transcript file since the last time; before a session's CLI starts, it
 * writes back the stored file the master sent, if the config dir lacks it
 * (a wiped dir, another host).  The worker is the session's identity, so
 * the files it writes are the session's; the master never reads them.
 *
 * Kept: <config>/projects/<cwd-key>/<id>.jsonl, all that --resume needs
 * (checked with the pinned CLI: a config dir holding only that file
 * resumes the conversation), and its subagents' files beside it, which the
 * CLI writes for each Task it runs (<id>/subagents/agent-<agent>.jsonl,
 * appended, and agent-<agent>.meta.json, rewritten whole): a moved
 * session keeps its subagents' transcripts.  At most TRANSCRIPT_FILES_MAX
 * files a conversation.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "worker/worker.h"

#define TRANSCRIPT_DIR_MODE	0700
#define TRANSCRIPT_FILE_MODE	0600
#define TRANSCRIPT_TMP		".hotplex-restore"	/* beside the file */
#define TRANSCRIPT_FILES_MAX	64	/* the transcript and its subagents' */
#define TRANSCRIPT_SUBAGENTS	"subagents"

/* A stored file the master sent, until the CLI's dir is known. */
struct restore_file {
	char		*path;		/* relative */
	char		*data;
	size_t		 len;
	int		 bad;		/* a piece out of order: dropped */
};

static struct restore_file	restore[TRANSCRIPT_FILES_MAX];
static size_t			nrestore;

/* A file followed and what of it the store has. */
struct follow_file {
	char		 rel[PATH_MAX];	/* relative to the config dir */
	char		 abs[PATH_MAX];
	uint64_t	 sent;		/* bytes the store has */
	struct timespec	 mtime;		/* a whole file's, when sent */
	int		 too_big;	/* said once */
};

/* files[0]: the conversation's transcript; then its subagents'. */
static struct {
	struct follow_file *files[TRANSCRIPT_FILES_MAX];
	size_t		 n;
	char		 sub_rel[PATH_MAX];	/* <id>/subagents */
	char		 sub_abs[PATH_MAX];
	int		 on;
	int		 full;		/* TRANSCRIPT_FILES_MAX said once */
} follow;

static void
transcript_restore_free(void)
{
	size_t	i;

	for (i = 0; i < nrestore; i++) {
		free(restore[i].path);
		free(restore[i].data);
	}
	memset(restore, 0, sizeof restore);
	nrestore = 0;
}

/* A piece of the stored transcript, before MSG_OPEN. */
void
transcript_restore_add(const struct msg_transcript *t)
{
	struct restore_file	*r = NULL;
	size_t			 i;

	for (i = 0; i < nrestore && r == NULL; i++)
		if (strcmp(restore[i].path, t->path) == 0)
			r = &restore[i];
	if (r == NULL) {
		if (nrestore == TRANSCRIPT_FILES_MAX) {
			log_warnx("transcript: over %d files: %s ignored",
			    TRANSCRIPT_FILES_MAX, t->path);
			return;
		}
		r = &restore[nrestore++];
		r->path = xstrdup(t->path);
	}
	if (t->offset != r->len) {
		log_warnx("transcript: %s: piece at %llu, have %zu: not "
		    "restored", t->path, (unsigned long long)t->offset, r->len);
		r->bad = 1;
		return;
	}
	if (r->bad || t->len == 0)
		return;
	/* Bounded by the decoder: offset + len <= TRANSCRIPT_FILE_MAX. */
	r->data = xreallocarray(r->data, r->len + t->len, 1);
	memcpy(r->data + r->len, t->data, t->len);
	r->len += t->len;
}

/* The cwd key of the CLI (PROTOCOL.md 18, 20): [A-Za-z0-9] kept, else '-'. */
static int
transcript_rel(char *out, size_t len, const char *workdir, const char *id)
{
	size_t		 n;
	const char	*p;
	int		 r;

	if ((r = snprintf(out, len, "projects/")) < 0 || (size_t)r >= len)
		return -1;
	n = (size_t)r;
	for (p = workdir; *p != '\0' && n < len - 1; p++)
		out[n++] = isalnum((unsigned char)*p) ? *p : '-';
	if (*p != '\0')
		return -1;
	r = snprintf(out + n, len - n, "/%s.jsonl", id);
	if (r < 0 || (size_t)r >= len - n || !msg_transcript_path_ok(out))
		return -1;
	return 0;
}

/* mkdir -p of the parents of rel under config_dir, as ourselves. */
static int
transcript_mkdirs(const char *config_dir, const char *rel)
{
	char	 path[PATH_MAX];
	char	*p;

	if ((size_t)snprintf(path, sizeof path, "%s/%s", config_dir, rel) >=
	    sizeof path)
		return -1;
	for (p = path + strlen(config_dir) + 1; (p = strchr(p, '/')) != NULL;
	    p++) {
		*p = '\0';
		if (mkdir(path, TRANSCRIPT_DIR_MODE) == -1 && errno != EEXIST) {
			log_warn("transcript: mkdir %s", path);
			return -1;
		}
		*p = '/';
	}
	return 0;
}

static int
transcript_write_all(int fd, const char *data, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(fd, data, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Whether the file at path begins with the stored data: it is the stored
 * file and more (newer: the store catches up after the next turn).  A file
 * that differs is another host's past: a host that let the session go
 * dropped its CLI's exit-time lines, while the next host went on.
 */
static int
transcript_extends(const char *path, const char *data, size_t len)
{
	char	*buf;
	size_t	 have = 0;
	ssize_t	 n;
	int	 fd, same = 1;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return 0;
	buf = xmalloc(TRANSCRIPT_PIECE_MAX);
	while (same && have < len) {
		n = read(fd, buf, len - have > TRANSCRIPT_PIECE_MAX ?
		    TRANSCRIPT_PIECE_MAX : len - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0 || memcmp(buf, data + have, (size_t)n) != 0)
			same = 0;
		else
			have += (size_t)n;
	}
	free(buf);
	close(fd);
	return same;
}

/* The followed file of rel, made if new (NULL: too many). */
static struct follow_file *
transcript_file(const char *config_dir, const char *rel)
{
	struct follow_file	*f;
	size_t			 i;

	for (i = 0; i < follow.n; i++)
		if (strcmp(follow.files[i]->rel, rel) == 0)
			return follow.files[i];
	if (follow.n == TRANSCRIPT_FILES_MAX) {
		if (!follow.full)
			log_warnx("transcript: over %d files: %s and later "
			    "ones not kept", TRANSCRIPT_FILES_MAX, rel);
		follow.full = 1;
		return NULL;
	}
	f = xcalloc(1, sizeof *f);
	if ((size_t)snprintf(f->abs, sizeof f->abs, "%s/%s", config_dir,
	    rel) >= sizeof f->abs) {
		free(f);
		return NULL;
	}
	snprintf(f->rel, sizeof f->rel, "%s", rel);
	follow.files[follow.n++] = f;
	return f;
}

/*
 * One stored file into the config dir, unless the dir's own begins with
 * it (its own is newer then: the store catches up after the next turn).
 * A new file goes in whole or not at all (written aside, renamed).
 */
static void
transcript_restore_file(const char *config_dir, struct restore_file *r)
{
	struct follow_file	*f;
	char			 tmp[PATH_MAX];
	struct stat		 st;
	int			 fd;

	if (r->bad || (f = transcript_file(config_dir, r->path)) == NULL)
		return;
	if (stat(f->abs, &st) == 0 && (uint64_t)st.st_size >= r->len &&
	    transcript_extends(f->abs, r->data, r->len)) {
		f->sent = r->len;
		f->mtime = st.st_mtim;
		return;
	}
	if ((size_t)snprintf(tmp, sizeof tmp, "%s%s", f->abs,
	    TRANSCRIPT_TMP) >= sizeof tmp ||
	    transcript_mkdirs(config_dir, f->rel) == -1)
		return;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	    O_CLOEXEC, TRANSCRIPT_FILE_MODE)) == -1) {
		log_warn("transcript: %s", tmp);
		return;
	}
	if (transcript_write_all(fd, r->data, r->len) == -1 ||
	    close(fd) == -1) {
		log_warn("transcript: writing %s", tmp);
		unlink(tmp);
		return;
	}
	if (rename(tmp, f->abs) == -1) {
		log_warn("transcript: rename %s", tmp);
		unlink(tmp);
		return;
	}
	f->sent = r->len;
	if (stat(f->abs, &st) == 0)
		f->mtime = st.st_mtim;
	log_info("transcript: restored %s (%zu bytes)", f->rel, r->len);
}

/*
 * Writes the stored files of the conversation into the config dir.
 * Called once the worker is the session's identity, before the CLI
 * starts; the files are followed from the stored sizes on.
 */
void
transcript_restore(const char *config_dir, const char *workdir,
    const char *id)
{
	size_t	i, n;

	transcript_follow(config_dir, workdir, id);
	for (i = 0; i < nrestore && follow.on; i++) {
		n = strlen(follow.sub_rel);
		/* Another workdir or id than the session's now: stale. */
		if (strcmp(restore[i].path, follow.files[0]->rel) != 0 &&
		    (strncmp(restore[i].path, follow.sub_rel, n) != 0 ||
		    restore[i].path[n] != '/')) {
			log_info("transcript: stored %s is not this CLI's (%s)",
			    restore[i].path, follow.files[0]->rel);
			continue;
		}
		transcript_restore_file(config_dir, &restore[i]);
	}
	transcript_restore_free();
}

static void
transcript_follow_clear(void)
{
	size_t	i;

	for (i = 0; i < follow.n; i++)
		free(follow.files[i]);
	memset(&follow, 0, sizeof follow);
}

/* From now on the transcript of id (a new one: nothing of it is stored). */
void
transcript_follow(const char *config_dir, const char *workdir,
    const char *id)
{
	char	rel[PATH_MAX];
	size_t	n;

	if (follow.on && transcript_rel(rel, sizeof rel, workdir, id) == 0 &&
	    strcmp(rel, follow.files[0]->rel) == 0)
		return;
	transcript_follow_clear();
	if (transcript_rel(rel, sizeof rel, workdir, id) == -1 ||
	    transcript_file(config_dir, rel) == NULL) {
		log_warnx("transcript: no path for %s in %s", id, workdir);
		transcript_follow_clear();
		return;
	}
	/* projects/<key>/<id>.jsonl -> projects/<key>/<id>/subagents */
	n = strlen(rel) - strlen(".jsonl");
	if ((size_t)snprintf(follow.sub_rel, sizeof follow.sub_rel, "%.*s/%s",
	    (int)n, rel, TRANSCRIPT_SUBAGENTS) >= sizeof follow.sub_rel ||
	    (size_t)snprintf(follow.sub_abs, sizeof follow.sub_abs, "%s/%s",
	    config_dir, follow.sub_rel) >= sizeof follow.sub_abs)
		follow.sub_rel[0] = follow.sub_abs[0] = '\0';
	follow.on = 1;
}

static void
transcript_piece(struct evbuffer *out, uint32_t turn, const char *rel,
    uint64_t offset, const char *data, size_t len)
{
	struct msg_transcript	t;

	memset(&t, 0, sizeof t);
	t.path = rel;
	t.offset = offset;
	t.data = data;
	t.len = len;
	msg_transcript_compose(out, turn, &t);
}

/*
 * Sends what the CLI added to one file since the last time, in pieces,
 * up to its last whole line; a file the CLI rewrites whole (a subagent's
 * .meta.json) is sent whole, from 0, when it changed.  A file that
 * shrank was rewritten: it is sent again from 0.  One that outgrew
 * TRANSCRIPT_FILE_MAX is dropped from the store (an empty piece at 0):
 * a cut transcript would resume a different conversation.
 */
static void
transcript_save_file(struct evbuffer *out, uint32_t turn,
    struct follow_file *f)
{
	char		*buf;
	struct stat	 st;
	uint64_t	 end;
	size_t		 want;
	ssize_t		 n;
	int		 fd, whole = msg_transcript_whole(f->rel);

	if (f->too_big)
		return;
	if ((fd = open(f->abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_warn("transcript: %s", f->abs);
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	end = (uint64_t)st.st_size;
	if (end > TRANSCRIPT_FILE_MAX || (whole && end > TRANSCRIPT_PIECE_MAX)) {
		log_warnx("transcript: %s is over %u bytes: not kept",
		    f->rel, whole ? TRANSCRIPT_PIECE_MAX : TRANSCRIPT_FILE_MAX);
		f->too_big = 1;
		transcript_piece(out, turn, f->rel, 0, NULL, 0);
		close(fd);
		return;
	}
	if (whole) {
		/* Unchanged since sent: nothing to do. */
		if (f->sent == end && end > 0 &&
		    f->mtime.tv_sec == st.st_mtim.tv_sec &&
		    f->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			close(fd);
			return;
		}
		f->sent = 0;
	} else if (end < f->sent)
		f->sent = 0;
	buf = xmalloc(TRANSCRIPT_PIECE_MAX);
	while (f->sent < end) {
		want = end - f->sent > TRANSCRIPT_PIECE_MAX ?
		    TRANSCRIPT_PIECE_MAX : (size_t)(end - f->sent);
		n = pread(fd, buf, want, (off_t)f->sent);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == -1)
				log_warn("transcript: reading %s", f->rel);
			break;
		}
		/* Whole lines only: the CLI may be writing the last one. */
		if (!whole && f->sent + (uint64_t)n == end) {
			while (n > 0 && buf[n - 1] != '\n')
				n--;
			if (n == 0)
				break;
		}
		transcript_piece(out, turn, f->rel, f->sent, buf, (size_t)n);
		f->sent += (uint64_t)n;
	}
	if (whole)
		f->mtime = st.st_mtim;
	free(buf);
	close(fd);
}

/* The subagents' files the CLI made since the last time, followed. */
static void
transcript_find_subagents(void)
{
	char		 rel[PATH_MAX], config_dir[PATH_MAX];
	DIR		*d;
	struct dirent	*e;
	size_t		 n;

	if (follow.sub_rel[0] == '\0' ||
	    (d = opendir(follow.sub_abs)) == NULL)
		return;
	/* The config dir: files[0]'s absolute path less its relative one. */
	n = strlen(follow.files[0]->abs) - strlen(follow.files[0]->rel) - 1;
	snprintf(config_dir, sizeof config_dir, "%.*s", (int)n,
	    follow.files[0]->abs);
	while ((e = readdir(d)) != NULL) {
		if ((size_t)snprintf(rel, sizeof rel, "%s/%s", follow.sub_rel,
		    e->d_name) >= sizeof rel || !msg_transcript_path_ok(rel))
			continue;
		if (transcript_file(config_dir, rel) == NULL)
			break;
	}
	closedir(d);
}

/* Sends what the CLI added to the conversation's files since last time. */
void
transcript_save(struct evbuffer *out, uint32_t turn)
{
	size_t	i;

	if (!follow.on)
		return;
	transcript_find_subagents();
	for (i = 0; i < follow.n; i++)
		transcript_save_file(out, turn, follow.files[i]);
}

/*
 * The master's store has only offset bytes of path (it missed pieces,
 * or failed them): the next save sends the file from there.  Not at once:
 * a store that does not answer would fail them again, and again.
 */
void
transcript_rewind(const char *path, uint64_t offset)
{
	size_t	i;

	for (i = 0; i < follow.n; i++) {
		if (strcmp(follow.files[i]->rel, path) != 0)
			continue;
		if (offset < follow.files[i]->sent) {
			log_info("transcript: %s: the store has %llu bytes; the "
			    "next save sends from there", path,
			    (unsigned long long)offset);
			follow.files[i]->sent = offset;
		}
		break;
	}
}
