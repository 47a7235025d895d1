/*
 * The CLI's transcript travels through the master's store: after each
 * turn (and when the CLI exits) the worker sends what the CLI added to its
 * transcript file since the last time; before a session's CLI starts, it
 * writes back the stored file the master sent, if the config dir lacks it
 * (a wiped dir, another host).  The worker is the session's identity, so
 * the files it writes are the session's; the master never reads them.
 *
 * Only <config>/projects/<cwd-key>/<id>.jsonl is kept: it is all that
 * --resume needs (checked with the pinned CLI: a config dir holding only
 * that file resumes the conversation).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
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

/* The stored file the master sent, until the CLI's dir is known. */
static struct {
	char		*path;		/* relative; NULL: none */
	char		*data;
	size_t		 len;
	int		 bad;		/* a piece out of order: dropped */
} restore;

/* The file followed and what of it the store has. */
static struct {
	char		 rel[PATH_MAX];	/* relative to the config dir */
	char		 abs[PATH_MAX];
	uint64_t	 sent;		/* bytes the store has */
	int		 on;
	int		 too_big;	/* said once */
} follow;

static void
transcript_restore_free(void)
{
	free(restore.path);
	free(restore.data);
	memset(&restore, 0, sizeof restore);
}

/* A piece of the stored transcript, before MSG_OPEN. */
void
transcript_restore_add(const struct msg_transcript *t)
{
	if (restore.path != NULL && strcmp(restore.path, t->path) != 0) {
		/* One file is kept: the master sends the session's one. */
		log_warnx("transcript: a second file %s ignored", t->path);
		return;
	}
	if (restore.path == NULL)
		restore.path = xstrdup(t->path);
	if (t->offset != restore.len) {
		log_warnx("transcript: piece at %llu, have %zu: not restored",
		    (unsigned long long)t->offset, restore.len);
		restore.bad = 1;
		return;
	}
	if (restore.bad || t->len == 0)
		return;
	/* Bounded by the decoder: offset + len <= TRANSCRIPT_FILE_MAX. */
	restore.data = xreallocarray(restore.data, restore.len + t->len, 1);
	memcpy(restore.data + restore.len, t->data, t->len);
	restore.len += t->len;
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

/*
 * Writes the stored file into the config dir unless the dir's own begins
 * with it (its own is newer then: the store catches up after the next
 * turn).  A new file goes in whole or not at all (written aside,
 * renamed).  Called once the worker is the session's identity, before
 * the CLI starts; the file is followed from the stored size on.
 */
void
transcript_restore(const char *config_dir, const char *workdir,
    const char *id)
{
	char		 tmp[PATH_MAX];
	struct stat	 st;
	int		 fd;

	transcript_follow(config_dir, workdir, id);
	if (restore.path == NULL || restore.bad)
		goto done;
	if (!follow.on || strcmp(restore.path, follow.rel) != 0) {
		/* Another workdir or id than the session's now: stale. */
		log_info("transcript: stored %s is not this CLI's (%s)",
		    restore.path, follow.rel);
		goto done;
	}
	if (stat(follow.abs, &st) == 0 && (uint64_t)st.st_size >=
	    restore.len && transcript_extends(follow.abs, restore.data,
	    restore.len)) {
		follow.sent = restore.len;
		goto done;
	}
	if ((size_t)snprintf(tmp, sizeof tmp, "%s%s", follow.abs,
	    TRANSCRIPT_TMP) >= sizeof tmp ||
	    transcript_mkdirs(config_dir, follow.rel) == -1)
		goto done;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	    O_CLOEXEC, TRANSCRIPT_FILE_MODE)) == -1) {
		log_warn("transcript: %s", tmp);
		goto done;
	}
	if (transcript_write_all(fd, restore.data, restore.len) == -1 ||
	    close(fd) == -1) {
		log_warn("transcript: writing %s", tmp);
		unlink(tmp);
		goto done;
	}
	if (rename(tmp, follow.abs) == -1) {
		log_warn("transcript: rename %s", tmp);
		unlink(tmp);
		goto done;
	}
	follow.sent = restore.len;
	log_info("transcript: restored %s (%zu bytes)", follow.rel,
	    restore.len);
done:
	transcript_restore_free();
}

/* From now on the transcript of id (a new one: nothing of it is stored). */
void
transcript_follow(const char *config_dir, const char *workdir,
    const char *id)
{
	char	rel[PATH_MAX];

	if (transcript_rel(rel, sizeof rel, workdir, id) == -1 ||
	    (size_t)snprintf(follow.abs, sizeof follow.abs, "%s/%s",
	    config_dir, rel) >= sizeof follow.abs) {
		log_warnx("transcript: no path for %s in %s", id, workdir);
		follow.on = 0;
		return;
	}
	if (follow.on && strcmp(rel, follow.rel) == 0)
		return;
	snprintf(follow.rel, sizeof follow.rel, "%s", rel);
	follow.sent = 0;
	follow.too_big = 0;
	follow.on = 1;
}

static void
transcript_piece(struct evbuffer *out, uint32_t turn, uint64_t offset,
    const char *data, size_t len)
{
	struct msg_transcript	t;

	memset(&t, 0, sizeof t);
	t.path = follow.rel;
	t.offset = offset;
	t.data = data;
	t.len = len;
	msg_transcript_compose(out, turn, &t);
}

/*
 * Sends what the CLI added since the last time, in pieces, up to its last
 * whole line.  A file that
 * shrank was rewritten: it is sent again from 0.  One that outgrew
 * TRANSCRIPT_FILE_MAX is dropped from the store (an empty piece at 0):
 * a cut transcript would resume a different conversation.
 */
void
transcript_save(struct evbuffer *out, uint32_t turn)
{
	char		*buf;
	struct stat	 st;
	uint64_t	 end;
	size_t		 want;
	ssize_t		 n;
	int		 fd;

	if (!follow.on || follow.too_big)
		return;
	if ((fd = open(follow.abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_warn("transcript: %s", follow.abs);
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	end = (uint64_t)st.st_size;
	if (end > TRANSCRIPT_FILE_MAX) {
		log_warnx("transcript: %s is over %u bytes: not kept",
		    follow.rel, TRANSCRIPT_FILE_MAX);
		follow.too_big = 1;
		transcript_piece(out, turn, 0, NULL, 0);
		close(fd);
		return;
	}
	if (end < follow.sent)
		follow.sent = 0;
	buf = xmalloc(TRANSCRIPT_PIECE_MAX);
	while (follow.sent < end) {
		want = end - follow.sent > TRANSCRIPT_PIECE_MAX ?
		    TRANSCRIPT_PIECE_MAX : (size_t)(end - follow.sent);
		n = pread(fd, buf, want, (off_t)follow.sent);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == -1)
				log_warn("transcript: reading %s", follow.rel);
			break;
		}
		/* Whole lines only: the CLI may be writing the last one. */
		if (follow.sent + (uint64_t)n == end) {
			while (n > 0 && buf[n - 1] != '\n')
				n--;
			if (n == 0)
				break;
		}
		transcript_piece(out, turn, follow.sent, buf, (size_t)n);
		follow.sent += (uint64_t)n;
	}
	free(buf);
	close(fd);
}
