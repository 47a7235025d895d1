/*
 * The gateway process (gateway.h says why it is one).  evhttp serves the
 * sessions' CLIs on loopback; each request that carries a live session's
 * token goes upstream on an evhttp connection (bufferevent_openssl for
 * https, the system's CA store), with the token swapped for the real
 * credentials, and the answer streams back chunk by chunk as it arrives.
 * What the gateway sees of each request (status, model, usage from the
 * SSE message_start / message_delta events, anthropic-ratelimit-* headers)
 * goes to the master as one record.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/line.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/gateway.h"
#include "supervisor/hotplexd.h"

#define GW_BUCKETS		256	/* token hash table */
#define GW_USER			"nobody"	/* after reading the key */
#define GW_KEY_MAX		4096	/* api_key_file */
#define GW_SSE_LINE_MAX		(64 * 1024)	/* longer SSE lines: skipped */
#define GW_JSON_KEEP_MAX	(1024 * 1024)	/* non-streamed body parsed */
#define GW_PREFIX_MAX		1024	/* upstream path prefix */
#define GW_URI_MAX		8192	/* request target */
#define GW_RATELIMIT_MAX	32	/* headers kept per response */
/* A client this far behind: stop reading upstream until it catches up. */
#define GW_CLIENT_BUF_HIGH	(1024 * 1024)

#define GW_POOL_MAX		8	/* idle upstream connections kept */

/* An upstream connection, kept alive between requests (TLS is costly). */
struct gw_conn {
	TAILQ_ENTRY(gw_conn)		 entry;
	struct evhttp_connection	*evcon;
	int				 idle;
	int				 closed;
	int				 taken;	/* a request queued behind
						   its preconnect */
};
TAILQ_HEAD(gw_conns, gw_conn);

/* A live session's token. */
struct gw_token {
	struct gw_token	*next;
	char		 token[GATEWAY_TOKEN_LEN + 1];
	uint64_t	 sid;
	char		*session;
	long		 uid;
};

/* One request in flight: the CLI's (req) and ours upstream (ureq). */
struct gw_req {
	struct evhttp_request		*req;
	struct evhttp_connection	*cevcon;	/* the CLI's */
	struct gw_conn			*conn;		/* upstream, ours */
	struct evhttp_request		*ureq;
	uint64_t			 sid;
	char				*session;
	char				 path[64];
	uint64_t			 start_us;
	int				 status;
	int				 started;	/* reply begun */
	int				 failed;
	int				 paused;	/* upstream read off */
	const char			*why;		/* failure */
	int				 sse;
	char				*model;
	uint64_t			 input, output, cache_read,
					 cache_write;
	cJSON				*ratelimit;
	char				*line;		/* SSE line so far */
	size_t				 linelen;
	int				 skipping;	/* line too long */
	struct evbuffer			*json;		/* non-streamed body */
};

static struct {
	struct event_base	*base;
	struct evhttp		*http;
	struct evdns_base	*dns;
	SSL_CTX			*ssl;
	struct bufferevent	*chan;
	struct line_reader	 reader;
	struct gw_token		*tokens[GW_BUCKETS];
	struct gw_conns		 idle;		/* upstream, kept alive */
	int			 nidle;
	struct gw_conn		*warm;		/* a preconnect in flight */

	int			 tls;
	char			*host;
	int			 port;
	char			 hostport[300];
	char			 prefix[GW_PREFIX_MAX];
	char			*proxy;		/* HTTPS_PROXY, or NULL */
	int			 tunnel_port;	/* to the upstream through it */
	char			*key;		/* NULL: none configured */
	int			 bearer;
	int			 timeout_s;
} gw;

static void	gw_req_free(struct gw_req *);
static void	gw_finish(struct gw_req *);

/* --- the channel to the master ------------------------------------------- */

static void
gw_send(cJSON *o)
{
	char	*s;

	s = json_print(o);
	bufferevent_write(gw.chan, s, strlen(s));
	bufferevent_write(gw.chan, "\n", 1);
	cJSON_free(s);
	cJSON_Delete(o);
}

static unsigned
gw_hash(const char *t)
{
	unsigned	h = 2166136261u;

	while (*t != '\0')
		h = (h ^ (unsigned char)*t++) * 16777619u;
	return h % GW_BUCKETS;
}

/* Constant time, so that a guess learns nothing from the clock. */
static int
gw_token_eq(const char *a, const char *b)
{
	unsigned char	d = 0;
	size_t		i;

	for (i = 0; i < GATEWAY_TOKEN_LEN; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static struct gw_token *
gw_token_find(const char *t)
{
	struct gw_token	*k;

	if (strlen(t) != GATEWAY_TOKEN_LEN)
		return NULL;
	for (k = gw.tokens[gw_hash(t)]; k != NULL; k = k->next)
		if (gw_token_eq(k->token, t))
			return k;
	return NULL;
}

static void
gw_token_del(const char *t)
{
	struct gw_token	**p, *k;

	if (strlen(t) != GATEWAY_TOKEN_LEN)
		return;
	for (p = &gw.tokens[gw_hash(t)]; (k = *p) != NULL; p = &k->next) {
		if (gw_token_eq(k->token, t)) {
			*p = k->next;
			explicit_bzero(k->token, sizeof k->token);
			free(k->session);
			free(k);
			return;
		}
	}
}

static void
gw_token_add(const char *t, uint64_t sid, const char *session, long uid)
{
	struct gw_token	*k;
	unsigned	 h;

	if (strlen(t) != GATEWAY_TOKEN_LEN || gw_token_find(t) != NULL)
		return;
	k = xcalloc(1, sizeof *k);
	memcpy(k->token, t, GATEWAY_TOKEN_LEN + 1);
	k->sid = sid;
	k->session = xstrdup(session);
	k->uid = uid;
	h = gw_hash(t);
	k->next = gw.tokens[h];
	gw.tokens[h] = k;
}

static void
gw_chan_line(const char *line, size_t len)
{
	cJSON		*o;
	const cJSON	*t, *tok, *sid, *uid, *s;

	if ((o = cJSON_ParseWithLength(line, len)) == NULL)
		fatalx("bad line from the master");
	t = cJSON_GetObjectItemCaseSensitive(o, "t");
	tok = cJSON_GetObjectItemCaseSensitive(o, "token");
	if (cJSON_IsString(t) && strcmp(t->valuestring, "add") == 0 &&
	    cJSON_IsString(tok)) {
		sid = cJSON_GetObjectItemCaseSensitive(o, "sid");
		uid = cJSON_GetObjectItemCaseSensitive(o, "uid");
		s = cJSON_GetObjectItemCaseSensitive(o, "session");
		gw_token_add(tok->valuestring, cJSON_IsNumber(sid) ?
		    (uint64_t)sid->valuedouble : 0, cJSON_IsString(s) ?
		    s->valuestring : "?", cJSON_IsNumber(uid) ?
		    (long)uid->valuedouble : -1);
	} else if (cJSON_IsString(t) && strcmp(t->valuestring, "del") == 0 &&
	    cJSON_IsString(tok))
		gw_token_del(tok->valuestring);
	else if (cJSON_IsString(t) && strcmp(t->valuestring, "allow") == 0)
		gateway_proxy_allow(cJSON_GetObjectItemCaseSensitive(o,
		    "egress_allow"));
	else
		fatalx("unknown message from the master");
	/* The token's copy in the parsed tree goes too. */
	if (cJSON_IsString(tok))
		explicit_bzero(tok->valuestring, strlen(tok->valuestring));
	cJSON_Delete(o);
}

/* Everything the master queued; also called before refusing a token. */
static void
gw_chan_drain(void)
{
	struct evbuffer	*in = bufferevent_get_input(gw.chan);
	char		*line;
	size_t		 len;
	ssize_t		 n;
	int		 fd = bufferevent_getfd(gw.chan);

	/* What the kernel holds that the event loop has not read yet. */
	while ((n = evbuffer_read(in, fd, 4096)) > 0)
		;
	for (;;) {
		switch (line_next(&gw.reader, in, &line, &len)) {
		case LINE_NONE:
			return;
		case LINE_OK:
			gw_chan_line(line, len);
			explicit_bzero(line, len);
			free(line);
			break;
		default:
			fatalx("over-long line from the master");
		}
	}
}

static void
gw_chan_read(struct bufferevent *bev, void *arg)
{
	gw_chan_drain();
}

static void
gw_chan_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		log_debug("master gone; exiting");
		exit(0);
	}
}

/* --- records ---------------------------------------------------------- */

static void
gw_record(struct gw_req *r)
{
	cJSON	*o = cJSON_CreateObject(), *u;

	cJSON_AddStringToObject(o, "t", "rec");
	cJSON_AddNumberToObject(o, "sid", (double)r->sid);
	cJSON_AddStringToObject(o, "path", r->path);
	cJSON_AddNumberToObject(o, "status", r->status);
	if (r->model != NULL)
		cJSON_AddStringToObject(o, "model", r->model);
	if (r->failed)
		cJSON_AddStringToObject(o, "error", r->why != NULL ? r->why :
		    "upstream failed");
	u = cJSON_AddObjectToObject(o, "usage");
	cJSON_AddNumberToObject(u, "input", (double)r->input);
	cJSON_AddNumberToObject(u, "output", (double)r->output);
	cJSON_AddNumberToObject(u, "cache_read", (double)r->cache_read);
	cJSON_AddNumberToObject(u, "cache_write", (double)r->cache_write);
	if (r->ratelimit != NULL) {
		cJSON_AddItemToObject(o, "ratelimit", r->ratelimit);
		r->ratelimit = NULL;
	}
	cJSON_AddNumberToObject(o, "ms",
	    (double)((util_now_us() - r->start_us) / 1000));
	gw_send(o);
}

/* usage of message_start's message, message_delta, or a whole message. */
static void
gw_usage(struct gw_req *r, const cJSON *u)
{
	static const struct {
		const char	*name;
		size_t		 off;
	} f[] = {
		{ "input_tokens", offsetof(struct gw_req, input) },
		{ "output_tokens", offsetof(struct gw_req, output) },
		{ "cache_read_input_tokens",
		    offsetof(struct gw_req, cache_read) },
		{ "cache_creation_input_tokens",
		    offsetof(struct gw_req, cache_write) },
	};
	const cJSON	*n;
	uint64_t	 v;
	size_t		 i;

	if (!cJSON_IsObject(u))
		return;
	/* message_delta's counts are cumulative: the last one wins. */
	for (i = 0; i < sizeof f / sizeof f[0]; i++) {
		n = cJSON_GetObjectItemCaseSensitive(u, f[i].name);
		if (cJSON_IsNumber(n) && n->valuedouble >= 0) {
			v = (uint64_t)n->valuedouble;
			memcpy((char *)r + f[i].off, &v, sizeof v);
		}
	}
}

static void
gw_message(struct gw_req *r, const cJSON *m)
{
	const cJSON	*model;

	if (!cJSON_IsObject(m))
		return;
	model = cJSON_GetObjectItemCaseSensitive(m, "model");
	if (cJSON_IsString(model) && r->model == NULL)
		r->model = xstrndup(model->valuestring, 128);
	gw_usage(r, cJSON_GetObjectItemCaseSensitive(m, "usage"));
}

/* One SSE line: only the data of the events that carry usage is parsed. */
static void
gw_sse_line(struct gw_req *r, const char *l, size_t len)
{
	cJSON		*o;
	const cJSON	*type;

	if (len < 6 || memcmp(l, "data:", 5) != 0)
		return;
	if (memmem(l, len, "\"message_start\"", 15) == NULL &&
	    memmem(l, len, "\"message_delta\"", 15) == NULL)
		return;
	if ((o = cJSON_ParseWithLength(l + 5, len - 5)) == NULL)
		return;
	type = cJSON_GetObjectItemCaseSensitive(o, "type");
	if (cJSON_IsString(type) && strcmp(type->valuestring,
	    "message_start") == 0)
		gw_message(r, cJSON_GetObjectItemCaseSensitive(o, "message"));
	else if (cJSON_IsString(type) && strcmp(type->valuestring,
	    "message_delta") == 0)
		gw_usage(r, cJSON_GetObjectItemCaseSensitive(o, "usage"));
	cJSON_Delete(o);
}

/* Looks at a chunk in place (no copy unless a line spans chunks). */
static void
gw_sse_feed(struct gw_req *r, struct evbuffer *b)
{
	struct evbuffer_iovec	 v[16];
	const char		*p, *end, *nl;
	int			 n, i;

	n = evbuffer_peek(b, -1, NULL, v, 16);
	if (n > 16)
		n = 16;		/* a rare, very fragmented chunk */
	for (i = 0; i < n; i++) {
		p = v[i].iov_base;
		end = p + v[i].iov_len;
		while (p < end) {
			nl = memchr(p, '\n', (size_t)(end - p));
			if (nl == NULL) {
				if (!r->skipping && r->linelen + (size_t)(end -
				    p) <= GW_SSE_LINE_MAX) {
					r->line = xreallocarray(r->line, 1,
					    r->linelen + (size_t)(end - p));
					memcpy(r->line + r->linelen, p,
					    (size_t)(end - p));
					r->linelen += (size_t)(end - p);
				} else
					r->skipping = 1;
				break;
			}
			if (r->linelen == 0 && !r->skipping)
				gw_sse_line(r, p, (size_t)(nl - p));
			else if (!r->skipping && r->linelen + (size_t)(nl -
			    p) <= GW_SSE_LINE_MAX) {
				r->line = xreallocarray(r->line, 1,
				    r->linelen + (size_t)(nl - p) + 1);
				memcpy(r->line + r->linelen, p,
				    (size_t)(nl - p));
				r->linelen += (size_t)(nl - p);
				gw_sse_line(r, r->line, r->linelen);
			}
			r->linelen = 0;
			r->skipping = 0;
			p = nl + 1;
		}
	}
}

/* --- the reply to the CLI ------------------------------------------------ */

/* An error in the API's own shape, so that the CLI reports it as one. */
static void
gw_reply_error(struct evhttp_request *req, int code, const char *reason,
    const char *type, const char *msg)
{
	struct evbuffer	*b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evbuffer_add_printf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
	    "\"message\":\"%s\"}}", type, msg);
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static int
gw_hop_by_hop(const char *h)
{
	static const char *const hop[] = {
		"connection", "keep-alive", "proxy-connection",
		"proxy-authenticate", "proxy-authorization", "te", "trailer",
		"transfer-encoding", "upgrade", "content-length", "host",
	};
	size_t	i;

	for (i = 0; i < sizeof hop / sizeof hop[0]; i++)
		if (strcasecmp(h, hop[i]) == 0)
			return 1;
	return 0;
}

static void
gw_client_closed(struct evhttp_connection *evcon, void *arg)
{
	struct gw_req	*r = arg;

	/* evhttp frees the CLI's request with its connection. */
	log_debug("session %s: client went away", r->session);
	r->req = NULL;
	r->cevcon = NULL;
	if (r->why == NULL)
		r->why = "client closed";
	r->failed = 1;
	gw_finish(r);
}

static void
gw_client_drained(struct evhttp_connection *evcon, void *arg)
{
	struct gw_req	*r = arg;

	if (r->paused && r->conn != NULL) {
		r->paused = 0;
		bufferevent_enable(evhttp_connection_get_bufferevent(
		    r->conn->evcon), EV_READ);
	}
}

/* --- upstream ------------------------------------------------------------ */

static int
gw_up_header(struct evhttp_request *ureq, void *arg)
{
	struct gw_req		*r = arg;
	struct evkeyvalq	*in = evhttp_request_get_input_headers(ureq);
	struct evkeyvalq	*out;
	struct evkeyval		*h;
	const char		*ct, *reason;
	int			 one = 1, fd, n = 0;

	if (r->req == NULL)
		return -1;
	r->status = evhttp_request_get_response_code(ureq);
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(
	    r->conn->evcon));
	if (fd != -1)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	out = evhttp_request_get_output_headers(r->req);
	TAILQ_FOREACH(h, in, next) {
		if (gw_hop_by_hop(h->key))
			continue;
		evhttp_add_header(out, h->key, h->value);
		if ((strncasecmp(h->key, "anthropic-ratelimit-", 20) == 0 ||
		    strcasecmp(h->key, "retry-after") == 0) &&
		    n++ < GW_RATELIMIT_MAX) {
			if (r->ratelimit == NULL)
				r->ratelimit = cJSON_CreateObject();
			cJSON_AddStringToObject(r->ratelimit, h->key, h->value);
		}
	}
	ct = evhttp_find_header(in, "content-type");
	r->sse = ct != NULL && strncasecmp(ct, "text/event-stream", 17) == 0;
	if (!r->sse)
		r->json = evbuffer_new();
	if (r->status == 429 || r->status == 529)
		log_warnx("session %s: upstream %d%s%s", r->session, r->status,
		    evhttp_find_header(in, "retry-after") != NULL ?
		    ", retry-after " : "",
		    evhttp_find_header(in, "retry-after") != NULL ?
		    evhttp_find_header(in, "retry-after") : "");
	reason = evhttp_request_get_response_code_line(ureq);
	evhttp_send_reply_start(r->req, r->status, reason != NULL ? reason :
	    "");
	r->started = 1;
	return 0;
}

static void
gw_up_chunk(struct evhttp_request *ureq, void *arg)
{
	struct gw_req	*r = arg;
	struct evbuffer	*b = evhttp_request_get_input_buffer(ureq);
	struct evbuffer	*cout;

	if (r->req == NULL)
		return;
	if (r->sse)
		gw_sse_feed(r, b);
	else if (r->json != NULL && evbuffer_get_length(r->json) +
	    evbuffer_get_length(b) <= GW_JSON_KEEP_MAX)
		evbuffer_add(r->json, evbuffer_pullup(b, -1),
		    evbuffer_get_length(b));
	evhttp_send_reply_chunk_with_cb(r->req, b, gw_client_drained, r);
	/* A slow CLI: hold the upstream until its buffer drains. */
	cout = bufferevent_get_output(evhttp_connection_get_bufferevent(
	    r->cevcon));
	if (evbuffer_get_length(cout) > GW_CLIENT_BUF_HIGH && !r->paused) {
		r->paused = 1;
		bufferevent_disable(evhttp_connection_get_bufferevent(
		    r->conn->evcon), EV_READ);
	}
}

static void
gw_up_error(enum evhttp_request_error e, void *arg)
{
	struct gw_req	*r = arg;

	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		r->why = "upstream timeout";
		break;
	case EVREQ_HTTP_EOF:
		r->why = "upstream closed the connection";
		break;
	case EVREQ_HTTP_INVALID_HEADER:
	case EVREQ_HTTP_DATA_TOO_LONG:
		r->why = "bad answer from upstream";
		break;
	default:
		r->why = "upstream failed";
		break;
	}
	r->failed = 1;
}

static void
gw_conn_free(struct gw_conn *k)
{
	evhttp_connection_set_closecb(k->evcon, NULL, NULL);
	evhttp_connection_free(k->evcon);
	free(k);
}

static void
gw_conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	gw_conn_free(arg);
}

/* Not from inside the connection's own callbacks: on the next turn. */
static void
gw_conn_drop(struct gw_conn *k)
{
	if (k->idle) {
		TAILQ_REMOVE(&gw.idle, k, entry);
		gw.nidle--;
		k->idle = 0;
	}
	event_base_once(gw.base, -1, EV_TIMEOUT, gw_conn_free_cb, k, NULL);
}

static void
gw_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct gw_conn	*k = arg;

	k->closed = 1;
	if (k->idle)		/* the upstream closed a kept connection */
		gw_conn_drop(k);
}

/* After a whole answer: kept for the next request, if it stays open. */
static void
gw_conn_put(struct gw_conn *k)
{
	if (k->closed || gw.nidle >= GW_POOL_MAX) {
		gw_conn_drop(k);
		return;
	}
	k->idle = 1;
	k->taken = 0;
	TAILQ_INSERT_HEAD(&gw.idle, k, entry);
	gw.nidle++;
}

static void
gw_up_done(struct evhttp_request *ureq, void *arg)
{
	struct gw_req	*r = arg;
	struct gw_conn	*k = r->conn;
	cJSON		*o;

	r->ureq = NULL;
	r->conn = NULL;
	if (ureq == NULL || evhttp_request_get_response_code(ureq) == 0)
		r->failed = 1;
	if (k != NULL) {
		if (r->failed)
			gw_conn_drop(k);
		else
			gw_conn_put(k);
	}
	if (!r->failed && r->json != NULL && evbuffer_get_length(r->json) >
	    0) {
		o = cJSON_ParseWithLength((const char *)evbuffer_pullup(
		    r->json, -1), evbuffer_get_length(r->json));
		gw_message(r, o);
		cJSON_Delete(o);
	}
	gw_finish(r);
}

static struct bufferevent *
gw_up_bev(void)
{
	SSL	*ssl;

	if (!gw.tls)
		return bufferevent_socket_new(gw.base, -1,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if ((ssl = SSL_new(gw.ssl)) == NULL)
		fatalx("SSL_new");
	SSL_set_tlsext_host_name(ssl, gw.host);
	/* The certificate must name the host we asked for. */
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(ssl, gw.host) != 1)
		fatalx("SSL_set1_host");
	return bufferevent_openssl_socket_new(gw.base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

/* A kept connection, or a new one. */
static struct gw_conn *
gw_conn_get(void)
{
	struct gw_conn	*k;

	if ((k = TAILQ_FIRST(&gw.idle)) != NULL) {
		TAILQ_REMOVE(&gw.idle, k, entry);
		gw.nidle--;
		k->idle = 0;
		return k;
	}
	/* A preconnect under way: queue behind it, its handshake is ours. */
	if ((k = gw.warm) != NULL) {
		gw.warm = NULL;
		k->taken = 1;
		return k;
	}
	k = xcalloc(1, sizeof *k);
	/* Through HTTPS_PROXY: our tunnel port stands for the upstream. */
	k->evcon = evhttp_connection_base_bufferevent_new(gw.base, gw.dns,
	    gw_up_bev(), gw.tunnel_port != 0 ? "127.0.0.1" : gw.host,
	    (unsigned short)(gw.tunnel_port != 0 ? gw.tunnel_port : gw.port));
	if (k->evcon == NULL) {
		free(k);
		return NULL;
	}
	evhttp_connection_set_timeout(k->evcon, gw.timeout_s);
	evhttp_connection_set_retries(k->evcon, 0);
	evhttp_connection_set_closecb(k->evcon, gw_conn_closed, k);
	return k;
}

/* Copies the CLI's request upstream, credentials swapped. */
static int
gw_forward(struct gw_req *r, struct evhttp_request *req)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	struct evkeyvalq	*out;
	struct evkeyval		*h;
	char			 uri[GW_URI_MAX + GW_PREFIX_MAX], *auth;
	const char		*target = evhttp_request_get_uri(req);

	if ((size_t)snprintf(uri, sizeof uri, "%s%s", gw.prefix, target) >=
	    sizeof uri)
		return -1;
	if ((r->conn = gw_conn_get()) == NULL)
		return -1;
	r->ureq = evhttp_request_new(gw_up_done, r);
	evhttp_request_set_header_cb(r->ureq, gw_up_header);
	evhttp_request_set_chunked_cb(r->ureq, gw_up_chunk);
	evhttp_request_set_error_cb(r->ureq, gw_up_error);
	out = evhttp_request_get_output_headers(r->ureq);
	TAILQ_FOREACH(h, in, next) {
		if (gw_hop_by_hop(h->key) ||
		    strcasecmp(h->key, "x-api-key") == 0 ||
		    strcasecmp(h->key, "authorization") == 0 ||
		    strcasecmp(h->key, "accept-encoding") == 0)
			continue;
		evhttp_add_header(out, h->key, h->value);
	}
	evhttp_add_header(out, "Host", gw.hostport);
	if (gw.key != NULL && gw.bearer) {
		xasprintf(&auth, "Bearer %s", gw.key);
		evhttp_add_header(out, "Authorization", auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
	} else if (gw.key != NULL)
		evhttp_add_header(out, "x-api-key", gw.key);
	evbuffer_add_buffer(evhttp_request_get_output_buffer(r->ureq),
	    evhttp_request_get_input_buffer(req));
	if (evhttp_make_request(r->conn->evcon, r->ureq, EVHTTP_REQ_POST,
	    uri) == -1) {
		r->ureq = NULL;		/* freed by evhttp */
		return -1;
	}
	return 0;
}

static void
gw_warm_done(struct evhttp_request *ureq, void *arg)
{
	struct gw_conn	*k = arg;

	if (gw.warm == k)
		gw.warm = NULL;
	if (k->taken)		/* the request behind it decides */
		return;
	if (ureq == NULL || evhttp_request_get_response_code(ureq) == 0)
		gw_conn_drop(k);
	else
		gw_conn_put(k);
}

/* Opens an upstream connection ahead of need (one at a time, bounded). */
static void
gw_warm(void)
{
	struct evhttp_request	*w;
	struct gw_conn		*k;
	char			 uri[GW_PREFIX_MAX + 1];

	if (gw.nidle > 0 || gw.warm != NULL || (k = gw_conn_get()) == NULL)
		return;
	w = evhttp_request_new(gw_warm_done, k);
	evhttp_add_header(evhttp_request_get_output_headers(w), "Host",
	    gw.hostport);
	snprintf(uri, sizeof uri, "%s/", gw.prefix);
	if (evhttp_make_request(k->evcon, w, EVHTTP_REQ_HEAD, uri) == -1) {
		gw_conn_free(k);
		return;
	}
	gw.warm = k;
}

/* --- requests from the CLIs ---------------------------------------------- */

static void
gw_req_free(struct gw_req *r)
{
	free(r->session);
	free(r->model);
	free(r->line);
	cJSON_Delete(r->ratelimit);
	if (r->json != NULL)
		evbuffer_free(r->json);
	free(r);
}

/*
 * The end of a request, however it ended: the CLI's reply finished or
 * cut, the upstream request cancelled, the record sent, the state freed.
 */
static void
gw_finish(struct gw_req *r)
{
	struct evhttp_connection	*c = r->cevcon;

	if (r->failed && r->status == 0)
		r->status = r->why != NULL && strcmp(r->why,
		    "upstream timeout") == 0 ? 504 : 502;
	if (r->req != NULL) {
		evhttp_connection_set_closecb(c, NULL, NULL);
		if (!r->started)
			gw_reply_error(r->req, r->status, r->status == 504 ?
			    "Gateway Timeout" : "Bad Gateway", "api_error",
			    r->why != NULL ? r->why : "upstream failed");
		else if (r->failed)
			/* Cut it, as upstream cut us: the CLI must not take
			 * half a stream for a whole one. */
			evhttp_connection_free(c);
		else
			evhttp_send_reply_end(r->req);
		r->req = NULL;
	}
	if (r->conn != NULL) {
		/* The CLI left first: its upstream request goes, and the
		 * connection with it (half an answer is still on it). */
		gw_conn_free(r->conn);
		r->conn = NULL;
		r->ureq = NULL;
	}
	if (r->failed)
		log_info("session %s: %s %s: %s", r->session, r->path,
		    r->started ? "cut" : "failed", r->why != NULL ? r->why :
		    "upstream failed");
	gw_record(r);
	gw_req_free(r);
}

static const char *
gw_token_of(struct evhttp_request *req)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	const char		*t;

	if ((t = evhttp_find_header(in, "x-api-key")) == NULL &&
	    (t = evhttp_find_header(in, "authorization")) != NULL &&
	    strncasecmp(t, "Bearer ", 7) == 0)
		t += 7;
	if (t == NULL || strncmp(t, GATEWAY_TOKEN_PREFIX,
	    strlen(GATEWAY_TOKEN_PREFIX)) != 0)
		return NULL;
	return t + strlen(GATEWAY_TOKEN_PREFIX);
}

/* The paths the pinned CLI calls (PROTOCOL.md section 7), nothing else. */
static int
gw_path_ok(const char *path)
{
	return strcmp(path, "/v1/messages") == 0 ||
	    strcmp(path, "/v1/messages/count_tokens") == 0;
}

static void
gw_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*u = evhttp_request_get_evhttp_uri(req);
	const char		*path, *tok;
	struct gw_token		*k;
	struct gw_req		*r;

	path = u != NULL ? evhttp_uri_get_path(u) : NULL;
	if (path == NULL) {
		gw_reply_error(req, 400, "Bad Request", "invalid_request_error",
		    "bad request target");
		return;
	}
	/*
	 * The CLI's start-up preconnect: answered here; the upstream
	 * connection it meant to warm is opened for the first turn instead.
	 */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD &&
	    strcmp(path, "/") == 0) {
		evhttp_send_reply(req, 200, "OK", NULL);
		gw_warm();
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST ||
	    !gw_path_ok(path)) {
		log_debug("refused %.64s (not a path the CLI uses)", path);
		gw_reply_error(req, 404, "Not Found", "not_found_error",
		    "not a path of the model API this gateway serves");
		return;
	}
	if ((tok = gw_token_of(req)) == NULL) {
		gw_reply_error(req, 401, "Unauthorized", "authentication_error",
		    "no session token");
		return;
	}
	/* A session the master just announced: its line may be queued. */
	if ((k = gw_token_find(tok)) == NULL) {
		gw_chan_drain();
		k = gw_token_find(tok);
	}
	if (k == NULL) {
		gw_reply_error(req, 401, "Unauthorized", "authentication_error",
		    "not the token of a live session");
		return;
	}
	r = xcalloc(1, sizeof *r);
	r->req = req;
	r->cevcon = evhttp_request_get_connection(req);
	r->sid = k->sid;
	r->session = xstrdup(k->session);
	snprintf(r->path, sizeof r->path, "%s", path);
	r->start_us = util_now_us();
	evhttp_connection_set_closecb(r->cevcon, gw_client_closed, r);
	if (gw_forward(r, req) == -1) {
		r->failed = 1;
		r->why = "cannot reach upstream";
		gw_finish(r);
	}
}

/* --- set-up -------------------------------------------------------------- */

/* Reads a secret: the first line of the file, at most GW_KEY_MAX bytes. */
static char *
gw_key_file(const char *path)
{
	char	 buf[GW_KEY_MAX + 1], *k;
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		fatal("api_key_file %s", path);
	n = read(fd, buf, GW_KEY_MAX);
	close(fd);
	if (n <= 0)
		fatalx("api_key_file %s: empty or unreadable", path);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	k = xstrdup(buf);
	explicit_bzero(buf, sizeof buf);
	if (*k == '\0')
		fatalx("api_key_file %s: empty", path);
	return k;
}

/* Takes a variable out of our environment, wiping its bytes. */
static char *
gw_env_take(const char *name)
{
	char	*v, *copy = NULL;

	if ((v = getenv(name)) == NULL)
		return NULL;
	if (*v != '\0')
		copy = xstrdup(v);
	explicit_bzero(v, strlen(v));
	unsetenv(name);
	return copy;
}

static void
gw_credentials(const struct config *c)
{
	char	*api = gw_env_take("ANTHROPIC_API_KEY");
	char	*tok = gw_env_take("ANTHROPIC_AUTH_TOKEN");

	if (c->api_key_file != NULL) {
		gw.key = gw_key_file(c->api_key_file);
		gw.bearer = 0;
	} else if (api != NULL) {
		gw.key = api;
		api = NULL;
		gw.bearer = 0;
	} else if (tok != NULL) {
		gw.key = tok;
		tok = NULL;
		gw.bearer = 1;
	}
	if (c->api_auth != NULL)
		gw.bearer = strcmp(c->api_auth, "bearer") == 0;
	if (api != NULL)
		explicit_bzero(api, strlen(api));
	if (tok != NULL)
		explicit_bzero(tok, strlen(tok));
	free(api);
	free(tok);
	if (gw.key == NULL)
		log_warnx("no API key (ANTHROPIC_API_KEY, "
		    "ANTHROPIC_AUTH_TOKEN or api_key_file): requests go "
		    "upstream without credentials");
}

/* A NO_PROXY entry that names the upstream host (or a domain of it). */
static int
gw_no_proxy(const char *list)
{
	char	*l, *p, *e, *save = NULL;
	size_t	 hl = strlen(gw.host), el;
	int	 hit = 0;

	if (list == NULL)
		return 0;
	l = xstrdup(list);
	for (p = strtok_r(l, ", ", &save); p != NULL && !hit;
	    p = strtok_r(NULL, ", ", &save)) {
		if ((e = strchr(p, ':')) != NULL && strchr(e + 1, ':') == NULL)
			*e = '\0';		/* host:port: the host */
		if (*p == '.')
			p++;
		el = strlen(p);
		hit = strcmp(p, "*") == 0 || strcasecmp(p, gw.host) == 0 ||
		    (hl > el && gw.host[hl - el - 1] == '.' &&
		    strcasecmp(gw.host + hl - el, p) == 0);
	}
	free(l);
	return hit;
}

/* HTTPS_PROXY (or https_proxy) from our environment, for an https upstream. */
static void
gw_proxy_env(void)
{
	const char		*v, *host;
	struct evhttp_uri	*u;
	int			 port;

	if (!gw.tls)
		return;
	if ((v = getenv("HTTPS_PROXY")) == NULL || *v == '\0')
		v = getenv("https_proxy");
	if (v == NULL || *v == '\0')
		return;
	if (gw_no_proxy(getenv("NO_PROXY")) || gw_no_proxy(getenv("no_proxy")))
		return;
	if ((u = evhttp_uri_parse(v)) == NULL ||
	    evhttp_uri_get_scheme(u) == NULL ||
	    strcasecmp(evhttp_uri_get_scheme(u), "http") != 0 ||
	    (host = evhttp_uri_get_host(u)) == NULL)
		fatalx("HTTPS_PROXY %s: not an http:// proxy URL", v);
	port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
	gw.proxy = xstrdup(host);
	gw.tunnel_port = port;		/* the proxy's, until the tunnel's */
	log_info("upstream through the proxy %s:%d", gw.proxy, port);
	evhttp_uri_free(u);
}

static void
gw_upstream(const struct config *c)
{
	char			*env = gw_env_take("ANTHROPIC_BASE_URL");
	const char		*url, *scheme, *host, *path;
	struct evhttp_uri	*u;
	size_t			 n;

	url = c->api_upstream != NULL ? c->api_upstream : env != NULL ? env :
	    GATEWAY_DEFAULT_UPSTREAM;
	if ((u = evhttp_uri_parse(url)) == NULL ||
	    (scheme = evhttp_uri_get_scheme(u)) == NULL ||
	    (host = evhttp_uri_get_host(u)) == NULL || *host == '\0')
		fatalx("upstream %s: not a URL", url);
	if (strcasecmp(scheme, "https") == 0)
		gw.tls = 1;
	else if (strcasecmp(scheme, "http") != 0)
		fatalx("upstream %s: not http or https", url);
	gw.host = xstrdup(host);
	gw.port = evhttp_uri_get_port(u);
	if (gw.port <= 0)
		gw.port = gw.tls ? 443 : 80;
	if ((gw.tls && gw.port == 443) || (!gw.tls && gw.port == 80))
		snprintf(gw.hostport, sizeof gw.hostport, "%s", gw.host);
	else
		snprintf(gw.hostport, sizeof gw.hostport, "%s:%d", gw.host,
		    gw.port);
	path = evhttp_uri_get_path(u);
	snprintf(gw.prefix, sizeof gw.prefix, "%s", path != NULL ? path : "");
	n = strlen(gw.prefix);
	while (n > 0 && gw.prefix[n - 1] == '/')
		gw.prefix[--n] = '\0';
	log_info("upstream %s://%s%s", gw.tls ? "https" : "http",
	    gw.hostport, gw.prefix);
	evhttp_uri_free(u);
	free(env);
	gw_proxy_env();
}

static void
gw_tls(void)
{
	if ((gw.ssl = SSL_CTX_new(TLS_client_method())) == NULL)
		fatalx("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(gw.ssl, TLS1_2_VERSION);
	/* The system's CA store (SSL_CERT_FILE / SSL_CERT_DIR honoured). */
	if (SSL_CTX_set_default_verify_paths(gw.ssl) != 1)
		fatalx("no CA store");
	SSL_CTX_set_verify(gw.ssl, SSL_VERIFY_PEER, NULL);
}

/*
 * Root only long enough to read the key: then nobody, a uid no session
 * runs as (sessions run as their creators, root's as worker_user).
 */
static void
gw_drop(const struct config *c)
{
	const char	*user = GW_USER;
	struct passwd	*pw;

	if (geteuid() != 0)
		return;
	if ((pw = getpwnam(user)) == NULL)
		fatalx("no user %s to run as", user);
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("drop to %s", user);
}

void
gateway_main(int chan, int api_fd, int proxy_fd)
{
	const struct config	*c = hp.conf;
	struct timeval		 tv;
	int			 sig;

	log_setrole("gateway");
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	/*
	 * It ends with the master (EOF on the channel, or the parent-death
	 * signal), not with a signal to the process group: a service
	 * manager's SIGTERM to all must leave it serving the turns that
	 * drain.
	 */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		fatal("prctl");
	/* Nothing of ours in /proc for a process of the same uid. */
	if (prctl(PR_SET_DUMPABLE, 0) == -1)
		fatal("prctl PR_SET_DUMPABLE");
	gw_credentials(c);
	gw_upstream(c);
	gw.timeout_s = (int)((c->gateway_timeout_ms + 999) / 1000);
	if ((gw.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	if (gw.tls)
		gw_tls();
	if ((gw.dns = evdns_base_new(gw.base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		log_warnx("no resolver; upstream by address only");
	gw_drop(c);
	/* Again: a change of identity may reset it. */
	if (prctl(PR_SET_DUMPABLE, 0) == -1)
		fatal("prctl PR_SET_DUMPABLE");
	TAILQ_INIT(&gw.idle);
	if (gw.proxy != NULL) {
		char	target[300];

		snprintf(target, sizeof target, "%s:%d", gw.host, gw.port);
		if ((gw.tunnel_port = gateway_proxy_upstream(gw.base, gw.dns,
		    gw.proxy, gw.tunnel_port, target)) == -1)
			fatalx("cannot listen for the upstream tunnel");
	}

	gw.http = evhttp_new(gw.base);
	evhttp_set_max_headers_size(gw.http, (ev_ssize_t)c->gateway_max_headers);
	evhttp_set_max_body_size(gw.http, (ev_ssize_t)c->gateway_max_body);
	tv = util_ms_tv(c->gateway_client_timeout_ms);
	evhttp_set_timeout_tv(gw.http, &tv);
	evhttp_set_allowed_methods(gw.http, EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(gw.http, gw_request, NULL);
	if (evhttp_accept_socket_with_handle(gw.http, api_fd) == NULL)
		fatalx("cannot serve its socket");
	if (proxy_fd != -1)
		gateway_proxy_start(gw.base, gw.dns, proxy_fd);

	line_init(&gw.reader, GATEWAY_LINE_MAX);
	gw.chan = bufferevent_socket_new(gw.base, chan, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(gw.chan, gw_chan_read, NULL, gw_chan_event, NULL);
	bufferevent_enable(gw.chan, EV_READ);
	gateway_proxy_allow(NULL);
	log_debug("serving");

	event_base_dispatch(gw.base);
	exit(0);
}
