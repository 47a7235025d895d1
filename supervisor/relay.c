/*
 * The relay of a session's events: the seq, the line prefix of the turn,
 * the ring of recent lines, and the followers an attach adds.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/peer.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "supervisor/session.h"

#define SESSION_SEQ_MAX		24	/* digits of a seq and its comma */

static void	session_worker_pause(struct session *, struct client *);

/* tail is an object's text after its '{': `"type":..,"data":{..}}`. */
void
session_emit_tail(struct session *s, const char *tail, size_t len)
{
	struct ring_entry	*e;
	char			*line;
	size_t			 n, i;

	if (s->cur.prefix == NULL)
		return;
	s->seq++;
	/*
	 * One line, built once, in the ring entry that keeps it: for the
	 * turn's client, the followers and attach.
	 */
	e = ring_entry_new(s->cur.prefix_len + SESSION_SEQ_MAX + len + 1);
	line = e->line;
	memcpy(line, s->cur.prefix, s->cur.prefix_len);
	n = s->cur.prefix_len + (size_t)snprintf(line + s->cur.prefix_len,
	    SESSION_SEQ_MAX, "%llu,", (unsigned long long)s->seq);
	memcpy(line + n, tail, len);
	n += len;
	line[n++] = '\n';
	if (s->exec.c != NULL) {
		server_client_write(s->exec.c, line, n);
		if (s->exec.c->stalled)
			session_worker_pause(s, s->exec.c);
	}
	for (i = 0; i < s->nfollowers; i++)
		if (s->followers[i] != s->exec.c)
			server_client_write(s->followers[i], line, n);
	e->seq = s->seq;
	e->len = n;
	ring_push(&s->ring, e);
}

/*
 * A line of a turn the CLI began by itself (the worker's turn 0): to the
 * followers and the ring only, marked "origin":"cli"; no client's turn
 * takes it.  Its end (cli_turn, with the turn's stats) counts in the
 * session's statistics.
 */
void
session_emit_own(struct session *s, const char *tail, size_t len)
{
	static const char	 ct[] = "\"type\":\"cli_turn\"";
	struct ring_entry	*e;
	struct stats		 st;
	cJSON			*pre, *o;
	const cJSON		*d;
	char			*ps;
	size_t			 n, i;

	pre = cJSON_CreateObject();
	cJSON_AddNullToObject(pre, "id");
	cJSON_AddStringToObject(pre, "session", s->name);
	cJSON_AddStringToObject(pre, "origin", "cli");
	ps = json_print(pre);
	cJSON_Delete(pre);
	ps[strlen(ps) - 1] = '\0';
	s->seq++;
	n = strlen(ps);
	e = ring_entry_new(n + sizeof ",\"seq\":" + SESSION_SEQ_MAX + len + 1);
	memcpy(e->line, ps, n);
	n += (size_t)snprintf(e->line + n, sizeof ",\"seq\":" + SESSION_SEQ_MAX,
	    ",\"seq\":%llu,", (unsigned long long)s->seq);
	cJSON_free(ps);
	memcpy(e->line + n, tail, len);
	n += len;
	e->line[n++] = '\n';
	for (i = 0; i < s->nfollowers; i++)
		server_client_write(s->followers[i], e->line, n);
	e->seq = s->seq;
	e->len = n;
	ring_push(&s->ring, e);

	if (!json_tail_is(tail, len, ct)) {
		s->cli_own = 1;
		return;
	}
	/*
	 * Its end: its transcript is in the store (the worker sends it
	 * first).  A move that waited for it goes on, from the loop.
	 */
	s->cli_own = 0;
	if (s->move_to != NULL)
		event_active(s->turnq_ev, EV_TIMEOUT, 1);
	o = json_tail_parse(tail, len);
	d = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o,
	    "data"), "stats");
	stats_init(&st);
	if (cJSON_IsObject(d) && stats_from_json(&st, d) == 0) {
		log_info("session %s: the CLI's own turn ended ($%.4f)",
		    s->name, st.cost_usd);
		stats_add(&s->total, &st);
		state_session_save(s);
	}
	stats_clear(&st);
	cJSON_Delete(o);
}

/*
 * Emits {type, data}; data consumed.  A daemon-made rate_limit event counts
 * as the CLI's do (session_rate_limit_seen matches nothing else).
 */
void
session_emit(struct session *s, const char *type, cJSON *data)
{
	cJSON	*o = cJSON_CreateObject();
	char	*t;

	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddItemToObject(o, "data", data);
	t = json_print(o);
	session_rate_limit_seen(s, t + 1, strlen(t + 1));
	session_emit_tail(s, t + 1, strlen(t + 1));
	cJSON_free(t);
	cJSON_Delete(o);
}

/*
 * An event of the daemon's own for the session's turn and followers
 * (ratelimit.c); data consumed.
 */
void
session_event(struct session *s, const char *type, cJSON *data)
{
	session_emit(s, type, data);
}

/*
 * An event of the daemon's own outside any turn (a move): to the session's
 * followers and its ring, with a null id.  data consumed.
 */
void
session_notice(struct session *s, const char *type, cJSON *data)
{
	if (s->cur.prefix != NULL) {
		session_event(s, type, data);
		return;
	}
	/* The name is [A-Za-z0-9._:@-] (proto_valid_session): no escaping. */
	s->cur.prefix_len = (size_t)xasprintf(&s->cur.prefix,
	    "{\"id\":null,\"session\":\"%s\",\"seq\":", s->name);
	session_event(s, type, data);
	free(s->cur.prefix);
	s->cur.prefix = NULL;
}

/* The execute's prefix: {"id":..,"session":..,"seq": */
void
session_prefix(struct session *s, const char *req)
{
	cJSON	*pre = cJSON_CreateObject();
	char	*ps;

	cJSON_AddStringToObject(pre, "id", req);
	cJSON_AddStringToObject(pre, "session", s->name);
	ps = json_print(pre);
	cJSON_Delete(pre);
	ps[strlen(ps) - 1] = '\0';
	free(s->cur.prefix);
	s->cur.prefix_len = (size_t)xasprintf(&s->cur.prefix, "%s,\"seq\":", ps);
	cJSON_free(ps);
}

int
session_follower_remove(struct session *s, struct client *c)
{
	struct session_follow	*f;
	size_t			 i;

	for (i = 0; i < s->nfollowers; i++) {
		if (s->followers[i] == c) {
			s->followers[i] = s->followers[--s->nfollowers];
			c->refs--;
			LIST_FOREACH(f, &c->follows, entry)
				if (f->s == s)
					break;
			if (f != NULL) {
				LIST_REMOVE(f, entry);
				free(f);
			}
			return 1;
		}
	}
	return 0;
}

static void
session_replay_one(void *arg, const struct ring_entry *e)
{
	server_client_write(arg, e->line, e->len);
}

/*
 * attach: the lines the ring still holds after since_seq (the reply says
 * which were lost), then every new line of the session, until detach.
 */
void
session_op_attach(struct client *c, const char *req, const cJSON *r)
{
	const cJSON		*since;
	struct session		*s;
	struct session_follow	*f;
	uint64_t		 from = 0;
	cJSON			*d;
	size_t			 i;

	since = cJSON_GetObjectItemCaseSensitive(r, "since_seq");
	if (since != NULL && (!cJSON_IsNumber(since) || since->valuedouble < 0)) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "\"since_seq\" must be a number >= 0");
		return;
	}
	if (since != NULL)
		from = (uint64_t)since->valuedouble;
	if ((s = session_lookup_served(c, req, r)) == NULL)
		return;
	if (s->frozen) {	/* a follower finds it running */
		session_thaw(s);
		session_freeze_arm(s);
	}
	for (i = 0; i < s->nfollowers && s->followers[i] != c; i++)
		;
	if (i == s->nfollowers && s->nfollowers == SESSION_FOLLOWERS_MAX) {
		server_client_error(c, req, s->name, ERR_CAPACITY,
		    "session \"%s\" has %d clients attached", s->name,
		    SESSION_FOLLOWERS_MAX);
		return;
	}
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "session", s->name);
	cJSON_AddNumberToObject(d, "seq", (double)s->seq);
	cJSON_AddStringToObject(d, "state", proto_state_name(s->state));
	if (s->state == SESSION_ENDED) {
		/* Its lines went with its ring: the stats and the end. */
		cJSON_AddBoolToObject(d, "ended", 1);
		cJSON_AddItemToObject(d, "stats", session_stats_json(s));
		server_client_ok(c, req, d);
		return;
	}
	if (from < s->ring.dropped_to && from < s->seq) {
		/* Lines from+1 .. dropped_to are gone. */
		cJSON *lost = cJSON_AddArrayToObject(d, "lost");

		cJSON_AddItemToArray(lost, cJSON_CreateNumber((double)from + 1));
		cJSON_AddItemToArray(lost,
		    cJSON_CreateNumber((double)s->ring.dropped_to));
	}
	server_client_ok(c, req, d);
	ring_each(&s->ring, from, session_replay_one, c);
	if (i == s->nfollowers) {
		f = xcalloc(1, sizeof *f);
		f->s = s;
		LIST_INSERT_HEAD(&c->follows, f, entry);
		s->followers[s->nfollowers++] = c;
		c->refs++;
	}
}

void
session_op_detach(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	session_follower_remove(s, c);
	server_client_ok(c, req, NULL);
}

/*
 * Stops reading s's worker while the client of its turn does not read: the
 * CLI then blocks on its pipe and memory stays bounded.  A worker is paused
 * by its own next line for that client (one more line each, never a walk
 * of the table) and goes on the client's list, which its resume walks.
 */
static void
session_worker_pause(struct session *s, struct client *c)
{
	struct worker	*wk = s->worker;

	/*
	 * A reaped worker is read on to its EOF, stalled client or not: what
	 * it left is bounded by the socket, and its end ends the session's
	 * turn (and, shutting down, lets the daemon exit).
	 */
	if (wk == NULL || wk->peer == NULL || wk->paused || wk->reaped)
		return;
	wk->paused = 1;
	wk->paused_for = c;
	TAILQ_INSERT_TAIL(&c->paused, wk, paused_entry);
	peer_pause(wk->peer, 1);
	log_info("session %s: client does not read; pausing its worker",
	    s->name);
}

/* Reads wk again (reaped, freed, or its client reads): off the list. */
void
session_worker_unpause(struct worker *wk)
{
	if (wk->paused_for != NULL) {
		TAILQ_REMOVE(&wk->paused_for->paused, wk, paused_entry);
		wk->paused_for = NULL;
	}
	if (!wk->paused)
		return;
	wk->paused = 0;
	if (wk->peer != NULL && !wk->closed && !wk->dead)
		peer_pause(wk->peer, 0);
}

/*
 * c reads again (or is gone): the workers it paused go on, but for one
 * whose session's turn is now another stalled client's, which keeps it.
 */
void
session_client_reads(struct client *c)
{
	struct worker	*wk;
	struct session	*s;

	while ((wk = TAILQ_FIRST(&c->paused)) != NULL) {
		session_worker_unpause(wk);
		s = wk->session;
		if (s != NULL && s->worker == wk && s->exec.c != NULL &&
		    s->exec.c != c && s->exec.c->stalled)
			session_worker_pause(s, s->exec.c);
	}
}
