/*
 * egress_allow: an HTTP CONNECT proxy in the gateway process, on a port
 * of its own, that opens tunnels only to the host:port pairs the operator
 * listed (sessions get HTTPS_PROXY pointing here).  A CONNECT request is
 * one line and headers, read bounded, before any byte is relayed; evhttp
 * cannot hand a connection over to a tunnel, so this head is split here.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/dns.h>
#include <event2/listener.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/gateway.h"
#include "supervisor/hotplexd.h"

#define PROXY_HEAD_MAX		8192	/* CONNECT line and headers */
#define PROXY_HOST_MAX		255
#define PROXY_TUNNEL_BUF	(256 * 1024)	/* per direction */

struct proxy_tunnel {
	struct bufferevent	*a;	/* the session's end */
	struct bufferevent	*b;	/* the allowed host */
	char			 target[PROXY_HOST_MAX + 8];
};

static struct {
	struct event_base	*base;
	struct evdns_base	*dns;		/* never block the loop */
	struct evconnlistener	*lev;
	char			**allow;	/* "host:port", lower case */
	size_t			 nallow;
} proxy;

static void
proxy_lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

void
gateway_proxy_allow(const cJSON *list)
{
	const cJSON	*e;
	size_t		 i;

	for (i = 0; i < proxy.nallow; i++)
		free(proxy.allow[i]);
	free(proxy.allow);
	proxy.allow = NULL;
	proxy.nallow = 0;
	if (list == NULL) {	/* at start: the configuration's */
		for (i = 0; i < hp.conf->egress_allow.n; i++) {
			proxy.allow = xreallocarray(proxy.allow,
			    proxy.nallow + 1, sizeof *proxy.allow);
			proxy.allow[proxy.nallow] =
			    xstrdup(hp.conf->egress_allow.v[i]);
			proxy_lower(proxy.allow[proxy.nallow++]);
		}
		return;
	}
	cJSON_ArrayForEach(e, list) {
		if (!cJSON_IsString(e) || proxy.nallow == CONFIG_LIST_MAX)
			continue;
		proxy.allow = xreallocarray(proxy.allow, proxy.nallow + 1,
		    sizeof *proxy.allow);
		proxy.allow[proxy.nallow] = xstrdup(e->valuestring);
		proxy_lower(proxy.allow[proxy.nallow++]);
	}
}

static int
proxy_allowed(const char *target)
{
	size_t	i;

	for (i = 0; i < proxy.nallow; i++)
		if (strcmp(proxy.allow[i], target) == 0)
			return 1;
	return 0;
}

static void
proxy_tunnel_free(struct proxy_tunnel *t)
{
	if (t->a != NULL)
		bufferevent_free(t->a);
	if (t->b != NULL)
		bufferevent_free(t->b);
	free(t);
}

/* Flush what one side still holds for the other, then close both. */
static void
proxy_close_after_flush(struct bufferevent *bev, void *arg)
{
	struct proxy_tunnel	*t = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		proxy_tunnel_free(t);
}

static void
proxy_relay(struct bufferevent *from, void *arg)
{
	struct proxy_tunnel	*t = arg;
	struct bufferevent	*to = from == t->a ? t->b : t->a;

	evbuffer_add_buffer(bufferevent_get_output(to),
	    bufferevent_get_input(from));
	/* Back-pressure: stop reading while the other side is full. */
	if (evbuffer_get_length(bufferevent_get_output(to)) >=
	    PROXY_TUNNEL_BUF)
		bufferevent_disable(from, EV_READ);
}

static void
proxy_drained(struct bufferevent *to, void *arg)
{
	struct proxy_tunnel	*t = arg;
	struct bufferevent	*from = to == t->a ? t->b : t->a;

	bufferevent_enable(from, EV_READ);
}

static void
proxy_tunnel_event(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_tunnel	*t = arg;
	struct bufferevent	*other = bev == t->a ? t->b : t->a;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
		return;
	proxy_relay(bev, t);
	/* The other side gets what was read, then both go. */
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
		proxy_tunnel_free(t);
		return;
	}
	bufferevent_setcb(other, NULL, proxy_close_after_flush, NULL, t);
	bufferevent_disable(other, EV_READ);
}

static void
proxy_reply(struct bufferevent *bev, const char *status)
{
	evbuffer_add_printf(bufferevent_get_output(bev),
	    "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	    status);
}

static void
proxy_refuse_flushed(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void
proxy_refuse(struct bufferevent *bev, const char *status)
{
	proxy_reply(bev, status);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, proxy_refuse_flushed, NULL, NULL);
}

static void
proxy_setup_tunnel(struct proxy_tunnel *t)
{
	struct timeval	tv;

	tv = util_ms_tv(hp.conf->gateway_timeout_ms);
	bufferevent_setwatermark(t->a, EV_WRITE, PROXY_TUNNEL_BUF / 2, 0);
	bufferevent_setwatermark(t->b, EV_WRITE, PROXY_TUNNEL_BUF / 2, 0);
	bufferevent_set_timeouts(t->a, &tv, NULL);
	bufferevent_set_timeouts(t->b, &tv, NULL);
	bufferevent_setcb(t->a, proxy_relay, proxy_drained,
	    proxy_tunnel_event, t);
	bufferevent_setcb(t->b, proxy_relay, proxy_drained,
	    proxy_tunnel_event, t);
	bufferevent_enable(t->a, EV_READ | EV_WRITE);
	bufferevent_enable(t->b, EV_READ | EV_WRITE);
}

static void
proxy_connected(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_tunnel	*t = arg;
	int			 one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &one, sizeof one);
		log_info("CONNECT %s", t->target);
		proxy_reply(t->a, "200 Connection established");
		proxy_setup_tunnel(t);
		/* What the client sent after its head goes through. */
		if (evbuffer_get_length(bufferevent_get_input(t->a)) > 0)
			proxy_relay(t->a, t);
		return;
	}
	log_info("CONNECT %s: cannot connect", t->target);
	bufferevent_free(t->b);
	t->b = NULL;
	proxy_refuse(t->a, "502 Bad Gateway");
	t->a = NULL;
	free(t);
}

/* The head of a connection: "CONNECT host:port HTTP/1.1", headers, "". */
static void
proxy_head(struct bufferevent *bev, void *arg)
{
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 end;
	struct proxy_tunnel	*t;
	char			*head, *sp, *target, *colon, *ep;
	unsigned long		 port;

	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos == -1) {
		if (evbuffer_get_length(in) > PROXY_HEAD_MAX)
			proxy_refuse(bev, "431 Request Header Fields Too Large");
		return;
	}
	if ((size_t)end.pos > PROXY_HEAD_MAX) {
		proxy_refuse(bev, "431 Request Header Fields Too Large");
		return;
	}
	head = xmalloc((size_t)end.pos + 1);
	evbuffer_remove(in, head, (size_t)end.pos);
	head[end.pos] = '\0';
	evbuffer_drain(in, 4);
	head[strcspn(head, "\r\n")] = '\0';
	if (strncmp(head, "CONNECT ", 8) != 0) {
		free(head);
		proxy_refuse(bev, "405 Method Not Allowed");
		return;
	}
	target = head + 8;
	if ((sp = strchr(target, ' ')) == NULL || strncmp(sp, " HTTP/1.", 8)) {
		free(head);
		proxy_refuse(bev, "400 Bad Request");
		return;
	}
	*sp = '\0';
	proxy_lower(target);
	colon = strrchr(target, ':');
	if (colon == NULL || colon == target ||
	    (size_t)(colon - target) > PROXY_HOST_MAX ||
	    (port = strtoul(colon + 1, &ep, 10)) == 0 || port > 65535 ||
	    *ep != '\0') {
		free(head);
		proxy_refuse(bev, "400 Bad Request");
		return;
	}
	if (!proxy_allowed(target)) {
		log_info("CONNECT %s: not in egress_allow", target);
		free(head);
		proxy_refuse(bev, "403 Forbidden");
		return;
	}
	t = xcalloc(1, sizeof *t);
	snprintf(t->target, sizeof t->target, "%s", target);
	*colon = '\0';
	if (target[0] == '[' && colon[-1] == ']') {	/* [v6]:port */
		colon[-1] = '\0';
		target++;
	}
	t->a = bev;
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	t->b = bufferevent_socket_new(proxy.base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(t->b, NULL, NULL, proxy_connected, t);
	if (bufferevent_socket_connect_hostname(t->b, proxy.dns, AF_UNSPEC,
	    target, (int)port) == -1) {
		free(head);
		bufferevent_free(t->b);
		free(t);
		proxy_refuse(bev, "502 Bad Gateway");
		return;
	}
	free(head);
}

static void
proxy_head_event(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

static void
proxy_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct bufferevent	*bev;
	struct timeval		 tv;
	int			 one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	bev = bufferevent_socket_new(proxy.base, fd, BEV_OPT_CLOSE_ON_FREE);
	tv = util_ms_tv(hp.conf->gateway_client_timeout_ms);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_setwatermark(bev, EV_READ, 0, PROXY_HEAD_MAX + 1);
	bufferevent_setcb(bev, proxy_head, NULL, proxy_head_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/*
 * HTTPS_PROXY for the upstream.  evhttp connects where it is told and
 * nowhere else, so it is told a private loopback port of ours; each
 * connection there goes through the proxy with CONNECT, and evhttp's TLS
 * runs through the tunnel to the real upstream (whose name it checks).
 */
static struct {
	struct evconnlistener	*lev;
	struct evdns_base	*dns;
	char			*host;		/* the proxy */
	int			 port;
	char			 target[PROXY_HOST_MAX + 8];
} up;

static void
proxy_up_head(struct bufferevent *bev, void *arg)
{
	struct proxy_tunnel	*t = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 end;
	char			 line[64];
	size_t			 n;

	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos == -1) {
		if (evbuffer_get_length(in) <= PROXY_HEAD_MAX)
			return;
		log_warnx("upstream proxy: over-long answer to CONNECT");
		proxy_tunnel_free(t);
		return;
	}
	n = evbuffer_copyout(in, line, sizeof line - 1);
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 ||
	    strncmp(line + 8, " 200", 4) != 0) {
		log_warnx("upstream proxy %s:%d: CONNECT %s: %.40s", up.host,
		    up.port, up.target, line);
		proxy_tunnel_free(t);
		return;
	}
	evbuffer_drain(in, (size_t)end.pos + 4);
	proxy_setup_tunnel(t);
	if (evbuffer_get_length(in) > 0)
		proxy_relay(t->b, t);
	if (evbuffer_get_length(bufferevent_get_input(t->a)) > 0)
		proxy_relay(t->a, t);
}

static void
proxy_up_connected(struct bufferevent *bev, short what, void *arg)
{
	struct proxy_tunnel	*t = arg;
	int			 one = 1;

	if (!(what & BEV_EVENT_CONNECTED)) {
		log_warnx("upstream proxy %s:%d: cannot connect", up.host,
		    up.port);
		proxy_tunnel_free(t);
		return;
	}
	(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
	    &one, sizeof one);
	evbuffer_add_printf(bufferevent_get_output(bev),
	    "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", up.target, up.target);
	bufferevent_setcb(bev, proxy_up_head, NULL, proxy_tunnel_event, t);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void
proxy_up_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct proxy_tunnel	*t;
	int			 one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	t = xcalloc(1, sizeof *t);
	snprintf(t->target, sizeof t->target, "%s", up.target);
	t->a = bufferevent_socket_new(proxy.base, fd, BEV_OPT_CLOSE_ON_FREE);
	/* Nothing of evhttp's is read until the tunnel stands. */
	bufferevent_setcb(t->a, NULL, NULL, proxy_tunnel_event, t);
	t->b = bufferevent_socket_new(proxy.base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(t->b, NULL, NULL, proxy_up_connected, t);
	if (bufferevent_socket_connect_hostname(t->b, up.dns, AF_UNSPEC,
	    up.host, up.port) == -1) {
		log_warnx("upstream proxy %s:%d: cannot connect", up.host,
		    up.port);
		proxy_tunnel_free(t);
	}
}

/* Returns the loopback port evhttp should connect to, or -1. */
int
gateway_proxy_upstream(struct event_base *base, struct evdns_base *dns,
    const char *proxy_host, int proxy_port, const char *target)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;

	proxy.base = base;
	up.dns = dns;
	up.host = xstrdup(proxy_host);
	up.port = proxy_port;
	snprintf(up.target, sizeof up.target, "%s", target);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	up.lev = evconnlistener_new_bind(base, proxy_up_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
	    (struct sockaddr *)&sin, sizeof sin);
	if (up.lev == NULL || getsockname(evconnlistener_get_fd(up.lev),
	    (struct sockaddr *)&sin, &len) == -1)
		return -1;
	return ntohs(sin.sin_port);
}

void
gateway_proxy_start(struct event_base *base, struct evdns_base *dns, int fd)
{
	proxy.base = base;
	proxy.dns = dns;
	proxy.lev = evconnlistener_new(base, proxy_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (proxy.lev == NULL)
		fatalx("cannot serve the CONNECT socket");
}
