/*
 * The CLI's transcripts in the store (the master's side; the worker's is
 * worker/transcript.c).  A worker sends what its CLI added to the
 * transcript after each turn, before the turn's end: the store has the
 * conversation before the client sees the turn done.  A worker given a
 * session with a conversation gets the stored transcript before its open
 * message, and writes it into the CLI's config dir if that lacks it.
 * The files are the conversation's transcript and its subagents'
 * (common/msg.h), each stored as its own path.
 */
#include <sys/types.h>

#include <stdint.h>
#include <string.h>

#include <event2/bufferevent.h>

#include "common/log.h"
#include "common/msg.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"

static void	transcript_ask_again(struct session *, const char *,
		    int64_t);

/*
 * Whether path is a file of the session's conversation now: its
 * transcript or one of its subagents' (msg_transcript_path_ok()).
 */
static int
transcript_current(const struct session *s, const char *path)
{
	return msg_transcript_of(path, s->cli_session_id);
}

/*
 * A piece from the session's worker: into the store, committed.  A piece
 * of another conversation (the one before a reset) is not kept.
 */
void
transcript_piece(struct session *s, const struct msg_transcript *t)
{
	if (!store_is_open() || !transcript_current(s, t->path))
		return;
	/* A shared store: not this host's to write once its lease is lost. */
	if (store_shared() && s->lease_fence == 0) {
		log_debug("session %s: transcript %s: no lease; not saved",
		    s->name, t->path);
		return;
	}
	switch (store_transcript_append(s->uid, s->name, s->lease_fence,
	    t->path, t->offset, t->data, t->len)) {
	case 0:
		log_debug("session %s: transcript %s, %zu bytes at %llu",
		    s->name, t->path, t->len, (unsigned long long)t->offset);
		break;
	case 1:
		/* Pieces missed before: what the store has, from it. */
		log_warnx("session %s: transcript %s: a piece out of step "
		    "not saved", s->name, t->path);
		transcript_ask_again(s, t->path,
		    store_transcript_size(s->uid, s->name, t->path));
		break;
	default:
		/*
		 * The store did not take it: the worker sends it again with
		 * its next pieces (the next turn's end, before its done).
		 */
		log_warnx("session %s: transcript %s not saved", s->name,
		    t->path);
		transcript_ask_again(s, t->path, (int64_t)t->offset);
		break;
	}
}

/*
 * Tells the session's worker that the store has only have bytes of path:
 * it sends the rest again with its next pieces (an empty piece at that
 * offset, after the open: common/msg.h).
 */
static void
transcript_ask_again(struct session *s, const char *path, int64_t have)
{
	struct msg_transcript	t;

	if (s->worker == NULL || have < 0)
		return;
	memset(&t, 0, sizeof t);
	t.path = path;
	t.offset = (uint64_t)have;
	pool_send_transcript(s->worker, s->turn, &t);
	log_info("session %s: transcript %s: the worker sends it again from "
	    "%lld bytes with its next pieces", s->name, path,
	    (long long)have);
}

struct transcript_send {
	struct session	*s;
	struct worker	*wk;
	uint32_t	 turn;
	uint64_t	 bytes;
};

static int
transcript_send_piece(void *arg, const char *path, uint64_t offset,
    const void *data, size_t len)
{
	struct transcript_send	*ts = arg;
	struct msg_transcript	 t;
	size_t			 n;

	if (!transcript_current(ts->s, path))
		return 0;
	/* Pieces of the store may be larger than a message's. */
	while (len > 0 || offset == 0) {
		n = len > TRANSCRIPT_PIECE_MAX ? TRANSCRIPT_PIECE_MAX : len;
		if (!msg_transcript_path_ok(path) ||
		    offset + n > TRANSCRIPT_FILE_MAX) {
			log_warnx("transcript: stored %s is not sent", path);
			return -1;
		}
		memset(&t, 0, sizeof t);
		t.path = path;
		t.offset = offset;
		t.data = data;
		t.len = n;
		pool_send_transcript(ts->wk, ts->turn, &t);
		ts->bytes += n;
		offset += n;
		data = (const char *)data + n;
		len -= n;
		if (n == 0)
			break;
	}
	return 0;
}

/* Before the open message: the stored transcript of the session. */
void
transcript_send(struct session *s, struct worker *wk)
{
	struct transcript_send	ts;

	if (!store_is_open() || !s->has_conversation)
		return;
	memset(&ts, 0, sizeof ts);
	ts.s = s;
	ts.wk = wk;
	ts.turn = s->turn;
	if (store_transcript_load(s->uid, s->name, transcript_send_piece,
	    &ts) == -1)
		log_warnx("session %s: stored transcript not sent", s->name);
	else if (ts.bytes > 0)
		log_debug("session %s: %llu transcript bytes to worker %ld",
		    s->name, (unsigned long long)ts.bytes, (long)wk->pid);
}

/* A new conversation (reset): the old one's transcript goes. */
void
transcript_forget(struct session *s)
{
	if (store_is_open())
		store_transcript_delete(s->uid, s->name);
}
