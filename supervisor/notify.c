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
 * Messages are sent without waiting for their answer, one at a time from
 * a bounded queue (the next when the last one's answer is in): a server
 * that stops answering holds them, never the master.
 * Connecting runs from the loop (PQconnectStart, PQconnectPoll, LISTEN
 * sent without waiting), at most NOTIFY_CONNECT_MS per try, the first
 * one at start too: a server that accepts but never answers does not
 * hold up the master (a host serves no session until the channel first
 * listens: state.c).
 */
#include <sys/queue.h>
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
#define NOTIFY_CONNECT_MS	5000	/* a try, LISTEN's answer included */
#define NOTIFY_QUEUE_MAX	256	/* messages waiting to be sent */

/* A message not yet sent (its payload, with "to" and "from"). */
struct notify_out {
	TAILQ_ENTRY(notify_out)	 entry;
	char			*payload;
};

enum notify_state {
	NOTIFY_DOWN,		/* no connection; retry armed */
	NOTIFY_CONNECTING,	/* PQconnectPoll under way */
	NOTIFY_LISTENING,	/* LISTEN sent, its answer not read yet */
	NOTIFY_UP		/* listening */
};

static struct {
	struct event_base	*base;
	char			*conninfo;
	char			*host_id;
	char			*appname;	/* in pg_stat_activity */
	notify_cb		 cb;
	notify_up_cb		 up;
	void			*arg;
	PGconn			*conn;
	enum notify_state	 state;
	struct event		*ev;		/* its socket */
	struct event		*retry;
	uint64_t		 retry_ms;
	uint64_t		 received;
	uint64_t		 sent;
	TAILQ_HEAD(, notify_out) outq;
	size_t			 nout;
	int			 sending;	/* a message's answer not in */
} nt;

static void	notify_read(evutil_socket_t, short, void *);
static void	notify_retry_fire(evutil_socket_t, short, void *);
static void	notify_lost(void);
static void	notify_answer(void);

static void
notify_out_free(struct notify_out *o)
{
	TAILQ_REMOVE(&nt.outq, o, entry);
	nt.nout--;
	free(o->payload);
	free(o);
}

static void
notify_drop(void)
{
	/* Hints for the moment they were sent: not sent late. */
	while (!TAILQ_EMPTY(&nt.outq))
		notify_out_free(TAILQ_FIRST(&nt.outq));
	nt.sending = 0;
	if (nt.ev != NULL) {
		event_free(nt.ev);
		nt.ev = NULL;
	}
	if (nt.conn != NULL) {
		PQfinish(nt.conn);
		nt.conn = NULL;
	}
	nt.state = NOTIFY_DOWN;
}

/* The socket watched for what (EV_READ, EV_WRITE, EV_PERSIST). */
static void
notify_sock_arm(short what)
{
	if (nt.ev != NULL)
		event_free(nt.ev);
	if ((nt.ev = event_new(nt.base, PQsocket(nt.conn), what, notify_read,
	    NULL)) == NULL)
		fatalx("notify: event_new");
	event_add(nt.ev, NULL);
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

/* Starts connecting; the loop goes on (notify_read, notify_retry_fire). */
static int
notify_connect(void)
{
	static const char *const keys[] = { "application_name", "dbname",
	    NULL };
	const char	*vals[] = { nt.appname, nt.conninfo, NULL };
	struct timeval	 tv;

	notify_drop();
	nt.conn = PQconnectStartParams(keys, vals, 1);
	if (nt.conn == NULL || PQstatus(nt.conn) == CONNECTION_BAD) {
		log_warnx("notify: %s", nt.conn != NULL ?
		    PQerrorMessage(nt.conn) : "out of memory");
		notify_drop();
		return -1;
	}
	nt.state = NOTIFY_CONNECTING;
	/* As if PQconnectPoll had said PGRES_POLLING_WRITING. */
	notify_sock_arm(EV_WRITE);
	/* The try's bound: the retry timer finds it still not up. */
	tv = util_ms_tv(NOTIFY_CONNECT_MS);
	evtimer_add(nt.retry, &tv);
	return 0;
}

/* A step of connecting; LISTEN is sent once connected. */
static void
notify_connect_step(void)
{
	char	*sql;
	int	 ok;

	switch (PQconnectPoll(nt.conn)) {
	case PGRES_POLLING_READING:
		notify_sock_arm(EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		notify_sock_arm(EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		xasprintf(&sql, "LISTEN %s", NOTIFY_CHANNEL);
		ok = PQsendQuery(nt.conn, sql);
		free(sql);
		if (ok) {
			nt.state = NOTIFY_LISTENING;
			notify_sock_arm(EV_READ | EV_PERSIST);
			return;
		}
		break;
	default:
		break;
	}
	notify_lost();
}

/* LISTEN's answer, read as it comes; then the channel is up. */
static void
notify_listen_step(void)
{
	PGresult	*r;
	int		 ok;

	while (!PQisBusy(nt.conn)) {
		if ((r = PQgetResult(nt.conn)) == NULL) {
			nt.state = NOTIFY_UP;
			nt.retry_ms = 0;
			evtimer_del(nt.retry);
			log_info("notify: host %s listening on %s", nt.host_id,
			    NOTIFY_CHANNEL);
			if (nt.up != NULL)
				nt.up(nt.arg);
			return;
		}
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok) {
			notify_lost();
			return;
		}
	}
}

static void
notify_retry_fire(evutil_socket_t fd, short what, void *arg)
{
	if (nt.state == NOTIFY_CONNECTING || nt.state == NOTIFY_LISTENING) {
		log_warnx("notify: no answer in %d ms while connecting",
		    NOTIFY_CONNECT_MS);
		notify_drop();
		notify_retry_arm();
		return;
	}
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
	if (nt.state == NOTIFY_CONNECTING) {
		notify_connect_step();
		return;
	}
	if (PQconsumeInput(nt.conn) == 0) {
		notify_lost();
		return;
	}
	if (nt.state == NOTIFY_LISTENING) {
		notify_listen_step();
		if (nt.state != NOTIFY_UP)
			return;
	}
	notify_answer();
	notify_deliver();
}

void
notify_open(struct event_base *base, const char *conninfo,
    const char *host_id, notify_cb cb, notify_up_cb up, void *arg)
{
	memset(&nt, 0, sizeof nt);
	TAILQ_INIT(&nt.outq);
	nt.base = base;
	nt.conninfo = xstrdup(conninfo);
	nt.host_id = xstrdup(host_id);
	xasprintf(&nt.appname, "hotplexd notify %s", host_id);
	nt.cb = cb;
	nt.up = up;
	nt.arg = arg;
	if ((nt.retry = evtimer_new(base, notify_retry_fire, NULL)) == NULL)
		fatalx("notify: evtimer_new");
	/* From the loop: a server that does not answer holds no one. */
	if (notify_connect() == -1)
		notify_retry_arm();
}

void
notify_close(void)
{
	notify_drop();
	if (nt.retry != NULL)
		event_free(nt.retry);
	free(nt.conninfo);
	free(nt.host_id);
	free(nt.appname);
	memset(&nt, 0, sizeof nt);
}

int
notify_is_open(void)
{
	return nt.state == NOTIFY_UP;
}

/* The next queued message, if none waits for its answer. */
static void
notify_flush(void)
{
	struct notify_out	*o;
	const char		*params[2];

	if (nt.state != NOTIFY_UP || nt.sending ||
	    (o = TAILQ_FIRST(&nt.outq)) == NULL)
		return;
	params[0] = NOTIFY_CHANNEL;
	params[1] = o->payload;
	if (PQsendQueryParams(nt.conn, "SELECT pg_notify($1, $2)", 2, NULL,
	    params, NULL, NULL, 0) == 0) {
		notify_lost();
		return;
	}
	nt.sending = 1;
	notify_out_free(o);
}

/* The answer to the message sent, read as it comes; then the next. */
static void
notify_answer(void)
{
	PGresult	*r;

	while (nt.sending && !PQisBusy(nt.conn)) {
		if ((r = PQgetResult(nt.conn)) == NULL) {
			nt.sending = 0;
			nt.sent++;
			break;
		}
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			log_warnx("notify: a message not sent: %s",
			    PQresultErrorMessage(r));
		PQclear(r);
	}
	notify_flush();
}

/*
 * Sends msg (an object; "to" and "from" are set here) to host to.  0 when
 * it is queued (PostgreSQL delivers it when its statement ends), -1 if not
 * (no connection, a full queue: the caller's wait covers it).
 */
int
notify_send(const char *to, cJSON *msg)
{
	struct notify_out	*o;
	char			*s;

	if (nt.state != NOTIFY_UP)
		return -1;
	if (nt.nout >= NOTIFY_QUEUE_MAX) {
		log_warnx("notify: %zu messages wait; one to %s not sent",
		    nt.nout, to);
		return -1;
	}
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
	o = xcalloc(1, sizeof *o);
	o->payload = xstrdup(s);
	cJSON_free(s);
	TAILQ_INSERT_TAIL(&nt.outq, o, entry);
	nt.nout++;
	notify_flush();
	return 0;
}

void
notify_counts(uint64_t *sent, uint64_t *received)
{
	*sent = nt.sent;
	*received = nt.received;
}
