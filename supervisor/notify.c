/*
 * The hosts' channel: PostgreSQL's LISTEN/NOTIFY on the shared store, so
 * that a host can ask the owner of a session to let it go (a move) and be
 * told when it did.  One connection of its own (a LISTEN lives as long as
 * its connection), read from the event loop; one channel for every host,
 * each message a JSON object naming the host it is for.  Messages are
 * hints: a lost one costs a wait (move_timeout, then the lease's expiry),
 * never a wrong answer, since the lease in the store decides.
 *
 * A lost connection is made again with back-off; LISTEN is said again.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/notify.h"

#define NOTIFY_CHANNEL		"hotplex_hosts"
#define NOTIFY_PAYLOAD_MAX	7999	/* PostgreSQL's bound, less one */
#define NOTIFY_RETRY_MIN_MS	250
#define NOTIFY_RETRY_MAX_MS	30000

static struct {
	struct event_base	*base;
	char			*conninfo;
	char			*host_id;
	notify_cb		 cb;
	void			*arg;
	PGconn			*conn;
	struct event		*ev;		/* its socket */
	struct event		*retry;
	uint64_t		 retry_ms;
	uint64_t		 received;
	uint64_t		 sent;
} nt;

static void	notify_read(evutil_socket_t, short, void *);
static void	notify_retry_fire(evutil_socket_t, short, void *);

static void
notify_drop(void)
{
	if (nt.ev != NULL) {
		event_free(nt.ev);
		nt.ev = NULL;
	}
	if (nt.conn != NULL) {
		PQfinish(nt.conn);
		nt.conn = NULL;
	}
}

static void
notify_retry_arm(void)
{
	struct timeval	tv;

	if (nt.retry_ms == 0)
		nt.retry_ms = NOTIFY_RETRY_MIN_MS;
	else if ((nt.retry_ms *= 2) > NOTIFY_RETRY_MAX_MS)
		nt.retry_ms = NOTIFY_RETRY_MAX_MS;
	tv = util_ms_tv(nt.retry_ms);
	evtimer_add(nt.retry, &tv);
}

/* Every notification that arrived, to the callback if it is for us. */
static void
notify_deliver(void)
{
	PGnotify	*n;
	cJSON		*o;
	const char	*to, *from;

	while (nt.conn != NULL && (n = PQnotifies(nt.conn)) != NULL) {
		o = n->extra != NULL ? cJSON_Parse(n->extra) : NULL;
		to = json_str(o, "to");
		from = json_str(o, "from");
		if (!cJSON_IsObject(o) || to == NULL || from == NULL)
			log_warnx("notify: a malformed message ignored");
		else if (strcmp(to, nt.host_id) == 0 &&
		    strcmp(from, nt.host_id) != 0) {
			nt.received++;
			nt.cb(nt.arg, from, o);
		}
		cJSON_Delete(o);
		PQfreemem(n);
	}
}

static int
notify_connect(void)
{
	PGresult	*r;
	char		*sql;
	int		 ok;

	nt.conn = PQconnectdb(nt.conninfo);
	if (PQstatus(nt.conn) != CONNECTION_OK) {
		log_warnx("notify: %s", PQerrorMessage(nt.conn));
		notify_drop();
		return -1;
	}
	xasprintf(&sql, "LISTEN %s", NOTIFY_CHANNEL);
	r = PQexec(nt.conn, sql);
	free(sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		log_warnx("notify: LISTEN: %s", PQerrorMessage(nt.conn));
	PQclear(r);
	if (!ok || PQsetnonblocking(nt.conn, 0) != 0) {
		notify_drop();
		return -1;
	}
	nt.ev = event_new(nt.base, PQsocket(nt.conn), EV_READ | EV_PERSIST,
	    notify_read, NULL);
	event_add(nt.ev, NULL);
	nt.retry_ms = 0;
	log_info("notify: host %s listening on %s", nt.host_id,
	    NOTIFY_CHANNEL);
	return 0;
}

static void
notify_retry_fire(evutil_socket_t fd, short what, void *arg)
{
	if (nt.conn == NULL && notify_connect() == -1)
		notify_retry_arm();
}

static void
notify_lost(void)
{
	log_warnx("notify: connection lost: %s", nt.conn != NULL ?
	    PQerrorMessage(nt.conn) : "");
	notify_drop();
	notify_retry_arm();
}

static void
notify_read(evutil_socket_t fd, short what, void *arg)
{
	if (PQconsumeInput(nt.conn) == 0) {
		notify_lost();
		return;
	}
	notify_deliver();
}

int
notify_open(struct event_base *base, const char *conninfo,
    const char *host_id, notify_cb cb, void *arg)
{
	memset(&nt, 0, sizeof nt);
	nt.base = base;
	nt.conninfo = xstrdup(conninfo);
	nt.host_id = xstrdup(host_id);
	nt.cb = cb;
	nt.arg = arg;
	nt.retry = evtimer_new(base, notify_retry_fire, NULL);
	if (notify_connect() == -1) {
		notify_retry_arm();
		return -1;
	}
	return 0;
}

void
notify_close(void)
{
	notify_drop();
	if (nt.retry != NULL)
		event_free(nt.retry);
	free(nt.conninfo);
	free(nt.host_id);
	memset(&nt, 0, sizeof nt);
}

int
notify_is_open(void)
{
	return nt.conn != NULL;
}

/*
 * Sends msg (an object; "to" and "from" are set here) to host to.  0 when
 * PostgreSQL took it (it is delivered when the sending transaction ends:
 * here at once), -1 if not (no connection: the caller's wait covers it).
 */
int
notify_send(const char *to, cJSON *msg)
{
	const char	*params[2];
	PGresult	*r;
	char		*s;
	int		 ok;

	if (nt.conn == NULL)
		return -1;
	cJSON_DeleteItemFromObjectCaseSensitive(msg, "to");
	cJSON_DeleteItemFromObjectCaseSensitive(msg, "from");
	cJSON_AddStringToObject(msg, "to", to);
	cJSON_AddStringToObject(msg, "from", nt.host_id);
	s = json_print(msg);
	if (strlen(s) > NOTIFY_PAYLOAD_MAX) {
		log_warnx("notify: a message of %zu bytes not sent", strlen(s));
		cJSON_free(s);
		return -1;
	}
	params[0] = NOTIFY_CHANNEL;
	params[1] = s;
	r = PQexecParams(nt.conn, "SELECT pg_notify($1, $2)", 2, NULL, params,
	    NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		log_warnx("notify: to %s: %s", to, PQerrorMessage(nt.conn));
	PQclear(r);
	cJSON_free(s);
	if (!ok && PQstatus(nt.conn) != CONNECTION_OK) {
		notify_lost();
		return -1;
	}
	nt.sent += ok;
	/* A query may have brought notifications in: not left unread. */
	notify_deliver();
	return ok ? 0 : -1;
}

void
notify_counts(uint64_t *sent, uint64_t *received)
{
	*sent = nt.sent;
	*received = nt.received;
}
