/*
 * metrics_listen: the master's counters and gauges over HTTP, in the
 * Prometheus text format, from libevent's evhttp.  Read only, GET and HEAD
 * of /metrics; no authentication, so it belongs on a loopback address.
 *
 * The socket is bound before the daemon detaches, as the client socket
 * is, so that a taken port stops the start with a message on the terminal.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "supervisor/census.h"
#include "supervisor/hotplexd.h"

#define METRICS_PATH		"/metrics"
#define METRICS_HEALTHZ		"/healthz"	/* alive: the loop answers */
#define METRICS_READYZ		"/readyz"	/* and can take a session */
#define METRICS_BACKLOG		16
#define METRICS_TIMEOUT_S	10	/* a client idle this long is dropped */
#define METRICS_MAX_HEADERS	8192	/* bytes of request headers */
#define METRICS_MAX_BODY	0	/* GET and HEAD carry none */
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

static int			 metrics_fd = -1;
static struct evhttp		*metrics_http;
static struct evconnlistener	*metrics_lev;
static struct event		*metrics_pause_ev;	/* resumes accepting */

static void
metrics_resume(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(metrics_lev);
}

/* An accept failed, for want of descriptors say: see ACCEPT_PAUSE_S. */
static void
metrics_accept_error(struct evconnlistener *lev, void *arg)
{
	const struct timeval	backoff = { ACCEPT_PAUSE_S, 0 };

	log_warn("metrics: accept: pausing %d s", ACCEPT_PAUSE_S);
	evconnlistener_disable(lev);
	evtimer_add(metrics_pause_ev, &backoff);
}

/* "127.0.0.1:9464" or "[::1]:9464" into a socket address. */
int
metrics_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen)
{
	if (util_hostport(s, UTIL_ADDR_PORT0, ss, len) == 0)
		return 0;
	snprintf(err, errlen, "metrics_listen %s: not an address:port "
	    "(127.0.0.1:9464, [::1]:9464)", s);
	return -1;
}

/* Says where metrics listen: with port 0 the kernel chose the port. */
static void
metrics_log_bound(void)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof ss;
	char			 host[INET6_ADDRSTRLEN];
	const void		*a;
	int			 port;

	if (getsockname(metrics_fd, (struct sockaddr *)&ss, &len) == -1) {
		log_warn("metrics: getsockname");
		return;
	}
	if (ss.ss_family == AF_INET6) {
		a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		a = &((struct sockaddr_in *)&ss)->sin_addr;
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	if (inet_ntop(ss.ss_family, a, host, sizeof host) == NULL)
		snprintf(host, sizeof host, "?");
	if (ss.ss_family == AF_INET6)
		log_info("metrics: listening on [%s]:%d", host, port);
	else
		log_info("metrics: listening on %s:%d", host, port);
}

/* Binds metrics_listen, if set; before daemon(), as server_listen(). */
int
metrics_listen(void)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			err[256];
	int			one = 1;

	if (hp.conf->metrics_listen == NULL)
		return 0;
	if (metrics_parse(hp.conf->metrics_listen, &ss, &len, err,
	    sizeof err) == -1) {
		log_warnx("%s", err);
		return -1;
	}
	if ((metrics_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1) {
		log_warn("metrics socket");
		return -1;
	}
	if (setsockopt(metrics_fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof one) == -1 ||
	    bind(metrics_fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(metrics_fd, METRICS_BACKLOG) == -1) {
		log_warn("metrics_listen %s", hp.conf->metrics_listen);
		close(metrics_fd);
		metrics_fd = -1;
		return -1;
	}
	metrics_log_bound();
	return 0;
}

static void
metrics_line(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* A metric of one sample, without labels. */
static void
metrics_one(struct evbuffer *b, const char *name, const char *type,
    const char *help, unsigned long long value)
{
	metrics_line(b, name, type, help);
	evbuffer_add_printf(b, "%s %llu\n", name, value);
}

/* What the gateway saw of every request to the model API (the account). */
static void
metrics_gateway(struct evbuffer *b, const struct gateway_stats *g)
{
	const cJSON	*h;

	metrics_one(b, "hotplex_api_requests_total", "counter",
	    "Requests the gateway forwarded to the model API.", g->requests);
	metrics_one(b, "hotplex_api_errors_total", "counter",
	    "Of them, answered with an error or cut.", g->errors);
	metrics_one(b, "hotplex_api_rate_limited_total", "counter",
	    "Of them, answered 429.", g->rate_limited);
	metrics_one(b, "hotplex_api_overloaded_total", "counter",
	    "Of them, answered 529.", g->overloaded);
	metrics_line(b, "hotplex_api_tokens_total", "counter",
	    "Tokens the model API reported to the gateway, by kind.");
	evbuffer_add_printf(b, "hotplex_api_tokens_total{kind=\"input\"} %llu\n"
	    "hotplex_api_tokens_total{kind=\"output\"} %llu\n"
	    "hotplex_api_tokens_total{kind=\"cache_read\"} %llu\n"
	    "hotplex_api_tokens_total{kind=\"cache_write\"} %llu\n",
	    (unsigned long long)g->input, (unsigned long long)g->output,
	    (unsigned long long)g->cache_read,
	    (unsigned long long)g->cache_write);
	/* The last anthropic-ratelimit-* numbers: remaining and limits. */
	metrics_line(b, "hotplex_api_ratelimit", "gauge",
	    "The last anthropic-ratelimit-* header values that are numbers.");
	cJSON_ArrayForEach(h, g->ratelimit) {
		char	*end;
		double	 v;

		if (!cJSON_IsString(h) || strncmp(h->string,
		    "anthropic-ratelimit-", 20) != 0 ||
		    strspn(h->string + 20, "abcdefghijklmnopqrstuvwxyz-") !=
		    strlen(h->string + 20))
			continue;
		v = strtod(h->valuestring, &end);
		if (end == h->valuestring || *end != '\0')
			continue;
		evbuffer_add_printf(b, "hotplex_api_ratelimit{header=\"%s\"} "
		    "%.0f\n", h->string + 20, v);
	}
}

/*
 * The whole page: sums over every session, as an admin's stats see, from
 * counts and totals kept as sessions change (no walk of the table).
 */
static void
metrics_page(struct evbuffer *b)
{
	static const enum session_state states[] = {
		SESSION_STARTING, SESSION_READY, SESSION_BUSY,
		SESSION_STOPPING, SESSION_ENDED, SESSION_DORMANT,
	};
	const struct stats	*sum = &hp.all_total;
	size_t			 i, nstate[sizeof states / sizeof states[0]];

	for (i = 0; i < sizeof states / sizeof states[0]; i++)
		nstate[i] = census_state(states[i]);

	metrics_line(b, "hotplex_sessions", "gauge",
	    "Sessions in the table, by state.");
	for (i = 0; i < sizeof states / sizeof states[0]; i++)
		evbuffer_add_printf(b, "hotplex_sessions{state=\"%s\"} %zu\n",
		    proto_state_name(states[i]), nstate[i]);
	metrics_one(b, "hotplex_workers", "gauge",
	    "Worker processes, spares included.", (unsigned)pool_count());
	metrics_one(b, "hotplex_spare_workers", "gauge",
	    "Pre-forked workers waiting for a session.",
	    (unsigned)pool_spares());
	metrics_one(b, "hotplex_clients", "gauge",
	    "Connections on the client socket.", hp.nclients);
	metrics_one(b, "hotplex_turns_total", "counter", "Turns run.",
	    sum->turns);
	metrics_line(b, "hotplex_tokens_total", "counter",
	    "Tokens, by kind.");
	evbuffer_add_printf(b, "hotplex_tokens_total{kind=\"input\"} %llu\n"
	    "hotplex_tokens_total{kind=\"output\"} %llu\n"
	    "hotplex_tokens_total{kind=\"cache_read\"} %llu\n"
	    "hotplex_tokens_total{kind=\"cache_write\"} %llu\n",
	    (unsigned long long)sum->tokens.input,
	    (unsigned long long)sum->tokens.output,
	    (unsigned long long)sum->tokens.cache_read,
	    (unsigned long long)sum->tokens.cache_write);
	metrics_line(b, "hotplex_cost_usd_total", "counter",
	    "Cost the CLI reported, in US dollars.");
	evbuffer_add_printf(b, "hotplex_cost_usd_total %.6f\n", sum->cost_usd);
	metrics_line(b, "hotplex_turn_seconds_total", "counter",
	    "Time of turns, by phase.");
	evbuffer_add_printf(b,
	    "hotplex_turn_seconds_total{phase=\"thinking\"} %.3f\n"
	    "hotplex_turn_seconds_total{phase=\"tool\"} %.3f\n"
	    "hotplex_turn_seconds_total{phase=\"generation\"} %.3f\n"
	    "hotplex_turn_seconds_total{phase=\"other\"} %.3f\n",
	    sum->duration_ms.thinking / 1e3, sum->duration_ms.tool / 1e3,
	    sum->duration_ms.generation / 1e3, sum->duration_ms.other / 1e3);
	metrics_one(b, "hotplex_tool_calls_total", "counter",
	    "Tool calls the model made.", sum->tool_calls);
	metrics_one(b, "hotplex_permission_denials_total", "counter",
	    "Tool calls denied by the firewall or the tool policy.",
	    sum->permission_denials);
	metrics_one(b, "hotplex_danger_blocks_total", "counter",
	    "Prompts the firewall refused.", sum->danger_blocks);
	metrics_one(b, "hotplex_turn_errors_total", "counter",
	    "Turns that ended in an error.", sum->errors);
	metrics_one(b, "hotplex_rate_limit_events_total", "counter",
	    "Rate-limit events of the CLIs (rate_limit_event, API retries "
	    "of a 429 or 529), over the sessions in the table.", hp.rate_limits);
	metrics_gateway(b, server_gateway_account());
}

static void
metrics_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*b;
	const char	*path;

	struct health_check	 checks[HEALTH_CHECKS_MAX];
	size_t			 i, n;
	int			 ready;

	path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (path == NULL || (strcmp(path, METRICS_PATH) != 0 &&
	    strcmp(path, METRICS_HEALTHZ) != 0 &&
	    strcmp(path, METRICS_READYZ) != 0)) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (strcmp(path, METRICS_PATH) == 0) {
		metrics_page(b);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", METRICS_CONTENT_TYPE);
		evhttp_send_reply(req, HTTP_OK, "OK", b);
		evbuffer_free(b);
		return;
	}
	/* A line per check: what a probe's log should show on a failure. */
	ready = 1;
	if (strcmp(path, METRICS_READYZ) == 0) {
		n = health_ready(checks, &ready);
		for (i = 0; i < n; i++)
			evbuffer_add_printf(b, "%s %s: %s\n",
			    checks[i].ok ? "ok" : "failed", checks[i].name,
			    checks[i].detail);
	}
	evbuffer_add_printf(b, "%s\n", ready ? "ok" : "not ready");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	if (ready)
		evhttp_send_reply(req, HTTP_OK, "OK", b);
	else
		evhttp_send_reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
		    b);
	evbuffer_free(b);
}

/* Serves the socket metrics_listen() bound, once the event base runs. */
void
metrics_start(void)
{
	struct evhttp_bound_socket	*bound;

	if (metrics_fd == -1)
		return;
	if ((metrics_http = evhttp_new(hp.base)) == NULL)
		fatalx("evhttp_new");
	evhttp_set_allowed_methods(metrics_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD);
	evhttp_set_timeout(metrics_http, METRICS_TIMEOUT_S);
	evhttp_set_max_headers_size(metrics_http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(metrics_http, METRICS_MAX_BODY);
	evhttp_set_gencb(metrics_http, metrics_request, NULL);
	if ((bound = evhttp_accept_socket_with_handle(metrics_http,
	    metrics_fd)) == NULL)
		fatalx("evhttp_accept_socket");
	metrics_lev = evhttp_bound_socket_get_listener(bound);
	evconnlistener_set_error_cb(metrics_lev, metrics_accept_error);
	if ((metrics_pause_ev = evtimer_new(hp.base, metrics_resume,
	    NULL)) == NULL)
		fatalx("evtimer_new");
	log_info("metrics on http://%s%s", hp.conf->metrics_listen,
	    METRICS_PATH);
}

void
metrics_stop(void)
{
	if (metrics_pause_ev != NULL) {
		event_free(metrics_pause_ev);
		metrics_pause_ev = NULL;
	}
	if (metrics_http != NULL) {
		evhttp_free(metrics_http);	/* closes metrics_fd */
		metrics_http = NULL;
		metrics_lev = NULL;
	} else if (metrics_fd != -1)
		close(metrics_fd);
	metrics_fd = -1;
}
