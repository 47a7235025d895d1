/*
 * One client connection: NDJSON requests in, replies and events out.
 * A bad line gets an error and the connection lives on; a line over
 * max_request_bytes gets too_large and the connection is closed.
 */
#include <sys/socket.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "supervisor/request.h"

#define CLIENT_ERR_MAX		512
#define CLIENT_GROUPS_MAX	256
#define CLIENT_LINGER_S		2	/* wait for a closed client's EOF */

static void	server_client_read(struct bufferevent *, void *);
static void	server_client_stall_fire(evutil_socket_t, short, void *);

struct server_op {
	const char	*name;
	void		(*fn)(struct client *, const char *, const cJSON *);
	int		 sessions;	/* needs the table: state_serving() */
};

static void	server_client_op_hello(struct client *, const char *,
		    const cJSON *);
static void	server_client_op_reload(struct client *, const char *,
		    const cJSON *);
static void	server_client_op_drain(struct client *, const char *,
		    const cJSON *);
static void	server_client_op_undrain(struct client *, const char *,
		    const cJSON *);
static void	server_client_op_shutdown(struct client *, const char *,
		    const cJSON *);
static void	server_client_op_status(struct client *, const char *,
		    const cJSON *);

static const struct server_op server_ops[] = {
	{ "hello",	server_client_op_hello, 0 },
	{ "execute",	session_op_execute, 1 },
	{ "open",	session_op_open, 1 },
	{ "interrupt",	session_op_interrupt, 1 },
	{ "stop",	session_op_stop, 1 },
	{ "reset",	session_op_reset, 1 },
	{ "stats",	session_op_stats, 1 },
	{ "sessions",	session_op_sessions, 1 },
	{ "policy_check", session_op_policy_check, 0 },
	{ "attach",	session_op_attach, 1 },
	{ "detach",	session_op_detach, 1 },
	{ "audit",	audit_op, 1 },
	{ "permission",	session_op_permission, 1 },
	{ "configure",	session_op_configure, 1 },
	{ "reload",	server_client_op_reload, 0 },
	{ "shutdown",	server_client_op_shutdown, 0 },
	{ "drain",	server_client_op_drain, 0 },
	{ "undrain",	server_client_op_undrain, 0 },
	{ "status",	server_client_op_status, 0 },
};

/* A group given by name or number. */
static int
server_client_group(const char *name, gid_t *gid)
{
	struct group	*gr;
	char		*end;
	unsigned long	 v;

	if ((gr = getgrnam(name)) != NULL) {
		*gid = gr->gr_gid;
		return 0;
	}
	v = strtoul(name, &end, 10);
	if (*name == '\0' || *end != '\0')
		return -1;
	*gid = (gid_t)v;
	return 0;
}

/* Is the peer (uid, primary gid) in the group, primary or supplementary? */
static int
server_client_in_group(uid_t uid, gid_t gid, const char *group)
{
	struct passwd	*pw;
	gid_t		 want, groups[CLIENT_GROUPS_MAX];
	int		 n = CLIENT_GROUPS_MAX, i;

	if (server_client_group(group, &want) == -1)
		return 0;
	if (gid == want)
		return 1;
	if ((pw = getpwuid(uid)) == NULL)
		return 0;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) == -1)
		return 0;
	for (i = 0; i < n; i++)
		if (groups[i] == want)
			return 1;
	return 0;
}

/* uid 0, or a member of admin_group. */
static int
server_client_is_admin(uid_t uid, gid_t gid)
{
	if (uid == 0)
		return 1;
	return hp.conf->admin_group != NULL &&
	    server_client_in_group(uid, gid, hp.conf->admin_group);
}

/*
 * allowed_uids / allowed_groups: when either is set, only those users (and
 * root) may talk; otherwise whoever can open the socket.
 */
static int
server_client_allowed(uid_t uid, gid_t gid)
{
	const struct config_list *u = &hp.conf->allowed_uids;
	const struct config_list *g = &hp.conf->allowed_groups;
	struct passwd	*pw;
	char		*end;
	size_t		 i;

	if (uid == 0 || (u->n == 0 && g->n == 0))
		return 1;
	for (i = 0; i < u->n; i++) {
		if ((pw = getpwnam(u->v[i])) != NULL && pw->pw_uid == uid)
			return 1;
		if (strtoul(u->v[i], &end, 10) == uid && *end == '\0' &&
		    *u->v[i] != '\0')
			return 1;
	}
	for (i = 0; i < g->n; i++)
		if (server_client_in_group(uid, gid, g->v[i]))
			return 1;
	return 0;
}

static void
server_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct client	*c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		log_debug("client %llu (pid %ld) went away",
		    (unsigned long long)c->id, (long)c->pid);
		server_client_free(c);
	}
}

/* Lingering: what the client still sends is read and thrown away. */
static void
server_client_discard(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);

	evbuffer_drain(in, evbuffer_get_length(in));
}

/*
 * Our last line is out: half-close and wait (a little) for the client's
 * EOF, so that unread input does not turn close() into a reset that
 * destroys that line before the client reads it.
 */
static void
server_client_drained(struct bufferevent *bev, void *arg)
{
	struct client	*c = arg;
	struct timeval	 tv = { CLIENT_LINGER_S, 0 };

	if (c->stalled && !c->closing) {
		/* Below the low mark again: its sessions' workers go on. */
		c->stalled = 0;
		evtimer_del(c->stall_timer);
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		session_client_reads(c);
		return;
	}
	if (!c->closing || c->lingering)
		return;
	c->lingering = 1;
	shutdown(bufferevent_getfd(bev), SHUT_WR);
	bufferevent_setcb(bev, server_client_discard, NULL,
	    server_client_event, c);
	bufferevent_set_timeouts(bev, &tv, NULL);
	bufferevent_enable(bev, EV_READ);
}

/*
 * The peer's supplementary groups as the kernel saw them at connect: a
 * session of this user gets them.  Beyond IDENT_GROUPS_MAX (or on a kernel
 * without SO_PEERGROUPS) it gets none: fewer rights, never more.
 */
static void
server_client_groups(int fd, struct client *c)
{
	socklen_t	len = sizeof c->groups;

	c->ngroups = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
		c->ngroups = len / sizeof c->groups[0];
	else
		log_debug("SO_PEERGROUPS: %s", strerror(errno));
}

void
server_client_new(int fd)
{
	struct client	*c;
	struct ucred	 cred;
	socklen_t	 len = sizeof cred;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("SO_PEERCRED");
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->id = ++hp.next_client_id;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pid = cred.pid;
	server_client_groups(fd, c);
	c->admin = server_client_is_admin(c->uid, c->gid);
	line_init(&c->reader, hp.conf->max_request_bytes);
	TAILQ_INIT(&c->paused);
	LIST_INIT(&c->waiters);
	LIST_INIT(&c->follows);
	c->bev = bufferevent_socket_new(hp.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(c->bev, server_client_read, server_client_drained,
	    server_client_event, c);
	bufferevent_priority_set(c->bev, HP_PRIO_IO);
	c->stall_timer = evtimer_new(hp.base, server_client_stall_fire, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&hp.clients, c, entry);
	hp.nclients++;
	log_debug("client %llu: uid %ld pid %ld%s", (unsigned long long)c->id,
	    (long)c->uid, (long)c->pid, c->admin ? " (admin)" : "");
	if (!server_client_allowed(c->uid, c->gid)) {
		log_warnx("client uid %ld pid %ld refused: not in allowed_uids "
		    "or allowed_groups", (long)c->uid, (long)c->pid);
		server_client_error(c, NULL, NULL, ERR_FORBIDDEN,
		    "uid %ld may not use this server", (long)c->uid);
		server_client_close(c);
	} else if (!c->admin && hp.nclients > (size_t)hp.conf->max_clients) {
		/* Admins still get in, to see who holds the connections. */
		log_warnx("client uid %ld pid %ld refused: max_clients %d "
		    "reached", (long)c->uid, (long)c->pid,
		    hp.conf->max_clients);
		server_client_error(c, NULL, NULL, ERR_CAPACITY,
		    "too many clients (max_clients %d)", hp.conf->max_clients);
		server_client_close(c);
	}
}

void
server_client_free(struct client *c)
{
	TAILQ_REMOVE(&hp.clients, c, entry);
	hp.nclients--;
	session_client_reads(c);	/* its paused workers go on */
	event_free(c->stall_timer);
	session_client_gone(c);
	bufferevent_free(c->bev);
	free(c);
}

/* Paused its sessions for client_stall_timeout and still not reading. */
static void
server_client_stall_fire(evutil_socket_t fd, short what, void *arg)
{
	struct client	*c = arg;

	log_warnx("client %llu (pid %ld) has not read for %llu ms with %zu "
	    "bytes queued: disconnecting; its sessions go on",
	    (unsigned long long)c->id, (long)c->pid,
	    (unsigned long long)hp.conf->client_stall_ms,
	    evbuffer_get_length(bufferevent_get_output(c->bev)));
	c->stalled = 0;
	session_client_reads(c);
	session_client_gone(c);
	evbuffer_drain(bufferevent_get_output(c->bev),
	    evbuffer_get_length(bufferevent_get_output(c->bev)));
	server_client_close(c);
}

/*
 * Every write goes through here.  Above client_pause_bytes the workers of
 * the client's turns stop being read (the CLIs block on their pipes, memory
 * stays bounded) until it reads again; after client_stall_timeout, or above
 * client_outbuf_max, it is cut off and its sessions go on without it.
 */
void
server_client_write(struct client *c, const char *data, size_t len)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);

	if (c->closing)
		return;
	if (evbuffer_get_length(out) + len > hp.conf->client_outbuf_max) {
		log_warnx("client %llu (pid %ld) does not read: %zu bytes "
		    "queued, disconnecting", (unsigned long long)c->id,
		    (long)c->pid, evbuffer_get_length(out));
		evbuffer_drain(out, evbuffer_get_length(out));
		/* Freed from the loop, never under a caller's feet. */
		server_client_close(c);
		return;
	}
	evbuffer_add(out, data, len);
	if (!c->stalled && evbuffer_get_length(out) > hp.conf->client_pause_bytes) {
		struct timeval	tv;

		c->stalled = 1;
		bufferevent_setwatermark(c->bev, EV_WRITE,
		    hp.conf->client_pause_bytes / 2, 0);
		tv = util_ms_tv(hp.conf->client_stall_ms);
		/* Its turns' workers pause on their next line (relay.c). */
		evtimer_add(c->stall_timer, &tv);
	}
}

void
server_client_send(struct client *c, cJSON *o)
{
	char	*s;

	s = json_print(o);
	server_client_write(c, s, strlen(s));
	server_client_write(c, "\n", 1);
	cJSON_free(s);
	cJSON_Delete(o);
}

/* {"id":req,"type":type,"data":data}; data consumed, may be NULL. */
void
server_client_reply(struct client *c, const char *req, const char *type,
    cJSON *data)
{
	cJSON	*o = cJSON_CreateObject();

	if (req != NULL)
		cJSON_AddStringToObject(o, "id", req);
	else
		cJSON_AddNullToObject(o, "id");
	cJSON_AddStringToObject(o, "type", type);
	if (data != NULL)
		cJSON_AddItemToObject(o, "data", data);
	server_client_send(c, o);
}

void
server_client_ok(struct client *c, const char *req, cJSON *data)
{
	server_client_reply(c, req, "ok", data);
}

void
server_client_error(struct client *c, const char *req, const char *session,
    const char *code, const char *fmt, ...)
{
	char	 msg[CLIENT_ERR_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* What a client sent may be in it, cut anywhere: keep it UTF-8. */
	json_utf8_clean(msg);
	server_client_send(c, proto_error(req, session, code, msg));
}

/* Closes after what is queued has been written. */
void
server_client_close(struct client *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

static int
server_client_need_admin(struct client *c, const char *req)
{
	if (c->admin)
		return 1;
	server_client_error(c, req, NULL, ERR_FORBIDDEN,
	    "this op needs uid 0 or admin_group");
	return 0;
}

static void
server_client_op_reload(struct client *c, const char *req, const cJSON *r)
{
	char	err[CONFIG_ERR_MAX];

	if (!server_client_need_admin(c, req))
		return;
	if (hotplexd_reload(err, sizeof err) == -1) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "reload failed, old configuration kept: %s", err);
		return;
	}
	server_client_ok(c, req, NULL);
}

/* A summary anyone connected may read: it names no session. */
static void
server_client_op_status(struct client *c, const char *req, const cJSON *r)
{
	server_client_ok(c, req, health_status());
}

static void
server_client_op_shutdown(struct client *c, const char *req, const cJSON *r)
{
	if (!server_client_need_admin(c, req))
		return;
	log_info("shutdown requested by uid %ld pid %ld", (long)c->uid,
	    (long)c->pid);
	server_client_ok(c, req, NULL);
	hotplexd_shutdown();
}

/* Every session off this host; it takes no new one until undrained. */
static void
server_client_op_drain(struct client *c, const char *req, const cJSON *r)
{
	cJSON	*d;
	int	 n;

	if (!server_client_need_admin(c, req))
		return;
	log_info("drain requested by uid %ld pid %ld", (long)c->uid,
	    (long)c->pid);
	n = move_drain();
	d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "sessions", n);
	server_client_ok(c, req, d);
}

/* A drain undone: this host takes sessions again. */
static void
server_client_op_undrain(struct client *c, const char *req, const cJSON *r)
{
	cJSON	*d;

	if (!server_client_need_admin(c, req))
		return;
	log_info("undrain requested by uid %ld pid %ld", (long)c->uid,
	    (long)c->pid);
	d = cJSON_CreateObject();
	cJSON_AddBoolToObject(d, "was_draining", move_undrain());
	server_client_ok(c, req, d);
}

static void
server_client_op_hello(struct client *c, const char *req, const cJSON *r)
{
	const cJSON	*proto = cJSON_GetObjectItemCaseSensitive(r, "proto");
	cJSON		*o;

	if (proto != NULL && (!cJSON_IsNumber(proto) ||
	    proto->valueint != PROTO_VERSION)) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "protocol version %d not supported (this server speaks %d)",
		    cJSON_IsNumber(proto) ? proto->valueint : -1, PROTO_VERSION);
		return;
	}
	c->said_hello = 1;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", req);
	cJSON_AddStringToObject(o, "type", "hello");
	cJSON_AddNumberToObject(o, "proto", PROTO_VERSION);
	cJSON_AddStringToObject(o, "server", PROTO_SERVER);
	cJSON_AddNumberToObject(o, "uid", c->uid);
	cJSON_AddBoolToObject(o, "admin", c->admin);
	cJSON_AddItemToObject(o, "isolation", isolation_json());
	server_client_send(c, o);
}

static void
server_client_dispatch(struct client *c, const char *line, size_t len)
{
	struct request		rq;
	struct request_error	err;
	char			why[CLIENT_ERR_MAX];
	const char		*name;
	size_t			i;

	if (request_parse(line, len, &rq, &err) == 0) {
		for (i = 0; i < sizeof server_ops / sizeof server_ops[0]; i++) {
			if (strcmp(server_ops[i].name, rq.op) != 0)
				continue;
			/* Before the table is read a session would be new. */
			if (server_ops[i].sessions &&
			    !state_serving(why, sizeof why)) {
				if ((name = json_str(rq.json, "session")) !=
				    NULL && !proto_valid_session(name))
					name = NULL;
				server_client_error(c, rq.id, name,
				    ERR_STORE_UNAVAILABLE, "%s", why);
			} else
				server_ops[i].fn(c, rq.id, rq.json);
			goto out;
		}
		request_unknown_op(&rq, &err);
	}
	server_client_error(c, err.id, NULL, err.code, "%s", err.message);
out:
	request_clear(&rq);
}

static void
server_client_read(struct bufferevent *bev, void *arg)
{
	struct client	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;
	enum line_status st;

	while (!c->closing) {
		st = line_next(&c->reader, in, &line, &len);
		if (st == LINE_NONE)
			break;
		if (st == LINE_OVERFLOW || st == LINE_DROPPED) {
			server_client_error(c, NULL, NULL, ERR_TOO_LARGE,
			    "request longer than %zu bytes",
			    hp.conf->max_request_bytes);
			server_client_close(c);
			break;
		}
		if (len > 0)
			server_client_dispatch(c, line, len);
		free(line);
	}
}
