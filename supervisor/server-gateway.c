/*
 * The master's side of the gateway (gateway.h): binds its sockets, forks
 * it before any client is read, scrubs the credentials out of our own
 * environment (workers and CLIs inherit it), hands each session's CLI a
 * fresh token, and takes in the gateway's records for the stats.
 */
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/line.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/sandbox/sandbox.h"
#include "supervisor/gateway.h"
#include "supervisor/hotplexd.h"

#define SGW_BACKLOG		128
#define SGW_LL_NET_ABI		4	/* Landlock TCP rules */
#define SGW_FD_HIGH		64	/* the child's fds, moved out of the way */

/* Variables the master never keeps: they are the gateway's. */
static const char *const sgw_scrub[] = {
	"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
	"CLAUDE_CODE_OAUTH_TOKEN", "HTTPS_PROXY", "https_proxy",
	"HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
	"no_proxy",
};

/* Sessions by gw_sid: a request's accounting finds its session at once. */
#define SGW_SID_BUCKETS		1024	/* a power of two */
LIST_HEAD(sgw_bucket, session);

static struct {
	int			 api_fd, proxy_fd, chan_fd;
	int			 api_port, proxy_port;
	char			 host[INET6_ADDRSTRLEN + 2];	/* as in URLs */
	pid_t			 pid;
	int			 reaped;	/* pid was waited for */
	struct bufferevent	*chan;
	struct line_reader	 reader;
	uint64_t		 next_sid;
	struct sgw_bucket	 bysid[SGW_SID_BUCKETS];	/* sessions */
	struct gateway_stats	 account;	/* every request */
	int			 egress;	/* enforced on this kernel */
} sgw;

/* "127.0.0.1:0", "[::1]:8080": loopback only; port 0 picks one. */
static int
sgw_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen)
{
	if (util_hostport(s, UTIL_ADDR_LOOPBACK | UTIL_ADDR_PORT0, ss,
	    len) == 0)
		return 0;
	snprintf(err, errlen, "gateway_listen %s: not a loopback address:port "
	    "(127.0.0.1:0, [::1]:8080)", s);
	return -1;
}

int
server_gateway_check(const struct config *c, char *err, size_t errlen)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	struct evhttp_uri	*u;
	const char		*scheme, *colon;
	char			*ep;
	unsigned long		 port;
	size_t			 i;

	if (sgw_parse(c->gateway_listen, &ss, &len, err, errlen) == -1)
		return -1;
	if (c->api_upstream != NULL) {
		if ((u = evhttp_uri_parse(c->api_upstream)) == NULL ||
		    (scheme = evhttp_uri_get_scheme(u)) == NULL ||
		    (strcasecmp(scheme, "https") != 0 &&
		    strcasecmp(scheme, "http") != 0) ||
		    evhttp_uri_get_host(u) == NULL) {
			if (u != NULL)
				evhttp_uri_free(u);
			snprintf(err, errlen, "api_upstream %s: not an http or "
			    "https URL", c->api_upstream);
			return -1;
		}
		evhttp_uri_free(u);
	}
	if (c->api_key_file != NULL && access(c->api_key_file, R_OK) == -1) {
		snprintf(err, errlen, "api_key_file %s: %s", c->api_key_file,
		    strerror(errno));
		return -1;
	}
	for (i = 0; i < c->egress_allow.n; i++) {
		colon = strrchr(c->egress_allow.v[i], ':');
		if (colon == NULL || colon == c->egress_allow.v[i] ||
		    (port = strtoul(colon + 1, &ep, 10)) == 0 ||
		    port > 65535 || *ep != '\0') {
			snprintf(err, errlen, "egress_allow %s: not host:port",
			    c->egress_allow.v[i]);
			return -1;
		}
	}
	return 0;
}

static int
sgw_bind(const struct sockaddr_storage *ss, socklen_t len, int *port)
{
	struct sockaddr_storage	 got;
	socklen_t		 glen = sizeof got;
	int			 fd, one = 1;

	if ((fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1) {
		log_warn("gateway socket");
		return -1;
	}
	/* Accepted sockets inherit it: SSE goes out as it comes. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
	    bind(fd, (const struct sockaddr *)ss, len) == -1 ||
	    listen(fd, SGW_BACKLOG) == -1 ||
	    getsockname(fd, (struct sockaddr *)&got, &glen) == -1) {
		log_warn("gateway_listen %s", hp.conf->gateway_listen);
		close(fd);
		return -1;
	}
	*port = ntohs(got.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&got)->sin6_port :
	    ((struct sockaddr_in *)&got)->sin_port);
	return fd;
}

/* Binds the API socket and, with egress_allow, the CONNECT proxy's. */
int
server_gateway_listen(void)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			err[256], addr[INET6_ADDRSTRLEN];
	int			abi;

	sgw.api_fd = sgw.proxy_fd = sgw.chan_fd = -1;
	if (!hp.conf->gateway) {
		log_warnx("gateway = off: every session's CLI gets the API key "
		    "and may connect anywhere (unsafe)");
		return 0;
	}
	if (sgw_parse(hp.conf->gateway_listen, &ss, &len, err,
	    sizeof err) == -1) {
		log_warnx("%s", err);
		return -1;
	}
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		    addr, sizeof addr);
		snprintf(sgw.host, sizeof sgw.host, "[%s]", addr);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
		    addr, sizeof addr);
		snprintf(sgw.host, sizeof sgw.host, "%s", addr);
	}
	if ((sgw.api_fd = sgw_bind(&ss, len, &sgw.api_port)) == -1)
		return -1;
	if (hp.conf->egress_allow.n > 0) {
		/* The proxy: the same address, a port of its own. */
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		else
			((struct sockaddr_in *)&ss)->sin_port = 0;
		if ((sgw.proxy_fd = sgw_bind(&ss, len, &sgw.proxy_port)) == -1)
			return -1;
	}

	/* What this kernel enforces of the egress rules, said at start. */
	abi = sandbox_landlock_abi();
	sgw.egress = strcmp(hp.conf->egress, "off") != 0 &&
	    abi >= SGW_LL_NET_ABI;
	if (strcmp(hp.conf->egress, "off") == 0)
		log_warnx("egress = off: sessions may connect anywhere "
		    "(unsafe)");
	else if (abi < SGW_LL_NET_ABI) {
		if (strcmp(hp.conf->egress, "required") == 0) {
			log_warnx("egress = required, but this kernel's "
			    "Landlock (ABI %d) has no TCP rules (needs %d)",
			    abi, SGW_LL_NET_ABI);
			return -1;
		}
		log_warnx("egress is NOT enforced: this kernel's Landlock "
		    "(ABI %d) has no TCP rules (needs %d); sessions may "
		    "connect anywhere", abi, SGW_LL_NET_ABI);
	} else
		log_info("egress: sessions connect only to the gateway "
		    "%s:%d%s (Landlock ABI %d, no UDP or raw sockets)",
		    sgw.host, sgw.api_port, sgw.proxy_fd != -1 ?
		    " and its CONNECT proxy" : "", abi);
	return 0;
}

pid_t
server_gateway_pid(void)
{
	return sgw.pid;
}

/* The SIGCHLD reaper's question: was pid our gateway? It is gone then. */
int
server_gateway_reaped(pid_t pid, int status)
{
	if (sgw.pid <= 0 || pid != sgw.pid || sgw.reaped)
		return 0;
	sgw.reaped = 1;
	if (!hp.shutting_down) {
		if (WIFSIGNALED(status))
			log_warnx("gateway %ld killed by signal %d", (long)pid,
			    WTERMSIG(status));
		else
			log_warnx("gateway %ld exited with status %d",
			    (long)pid, WEXITSTATUS(status));
	}
	return 1;
}

int
server_gateway_up(void)
{
	return sgw.pid > 0 && !sgw.reaped;
}

/*
 * At exit, after its channel is shut down (its cue to end): the gateway
 * must not outlive us, so it is waited for, up to kill_grace. Past that
 * (it runs as another user: the master, privileges dropped, cannot kill
 * it) it is left to end on the EOF it has, and the log says so.
 */
static void
sgw_wait(void)
{
	struct pollfd	pfd;
	int		status, n;

	if (sgw.pid <= 0 || sgw.reaped)
		return;
	if ((pfd.fd = (int)syscall(SYS_pidfd_open, sgw.pid, 0)) == -1) {
		log_warn("pidfd_open gateway");
		return;
	}
	pfd.events = POLLIN;
	while ((n = poll(&pfd, 1, (int)hp.conf->kill_grace_ms)) == -1 &&
	    errno == EINTR)
		;
	close(pfd.fd);
	if (n != 1) {
		log_warnx("gateway %ld still running %ld ms after its channel "
		    "closed; not waiting for it", (long)sgw.pid,
		    (long)hp.conf->kill_grace_ms);
		return;
	}
	while (waitpid(sgw.pid, &status, 0) == -1 && errno == EINTR)
		;
	sgw.reaped = 1;
}

int
server_gateway_egress_enforced(void)
{
	return sgw.egress;
}

/* Wipes a variable's bytes where /proc/<pid>/environ shows them. */
static void
sgw_scrub_env(void)
{
	size_t	 i;
	char	*v;

	for (i = 0; i < sizeof sgw_scrub / sizeof sgw_scrub[0]; i++) {
		if ((v = getenv(sgw_scrub[i])) != NULL)
			explicit_bzero(v, strlen(v));
		unsetenv(sgw_scrub[i]);
	}
}

/*
 * Forks the gateway.  After daemon() (the gateway is our child) and
 * before the event base, the pool and any client: the child starts from a
 * master that has read nothing from anyone.
 */
void
server_gateway_spawn(void)
{
	int	sp[2], hi[3], i;
	pid_t	pid;

	if (!hp.conf->gateway)
		return;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		fatal("gateway socketpair");
	if ((pid = fork()) == -1)
		fatal("fork gateway");
	if (pid == 0) {
		close(sp[0]);
		/* Only its own descriptors: 3 the channel, 4 and 5 the
		 * sockets, all moved high first so that none is clobbered. */
		hi[0] = fcntl(sp[1], F_DUPFD_CLOEXEC, SGW_FD_HIGH);
		hi[1] = fcntl(sgw.api_fd, F_DUPFD_CLOEXEC, SGW_FD_HIGH);
		hi[2] = sgw.proxy_fd == -1 ? -1 : fcntl(sgw.proxy_fd,
		    F_DUPFD_CLOEXEC, SGW_FD_HIGH);
		for (i = 0; i < 3; i++) {
			if (hi[i] == -1 && (i < 2 || sgw.proxy_fd != -1))
				_exit(1);
			if (hi[i] != -1 && dup2(hi[i], 3 + i) == -1)
				_exit(1);
		}
		closefrom(sgw.proxy_fd != -1 ? 6 : 5);
		util_set_nonblock(3);
		gateway_main(3, 4, sgw.proxy_fd != -1 ? 5 : -1);
	}
	close(sp[1]);
	close(sgw.api_fd);
	sgw.api_fd = -1;
	if (sgw.proxy_fd != -1) {
		close(sgw.proxy_fd);
		sgw.proxy_fd = -2;	/* the gateway has it */
	}
	sgw.chan_fd = sp[0];
	sgw.pid = pid;
	sgw_scrub_env();
	log_info("gateway %ld on http://%s:%d", (long)pid, sgw.host,
	    sgw.api_port);
}

static struct sgw_bucket *
sgw_bucket(uint64_t sid)
{
	return &sgw.bysid[sid & (SGW_SID_BUCKETS - 1)];
}

static struct session *
sgw_session(uint64_t sid)
{
	struct session	*s;

	if (sid == 0)
		return NULL;
	LIST_FOREACH(s, sgw_bucket(sid), gw_entry)
		if (s->gw_sid == sid)
			return s;
	return NULL;
}

static uint64_t
sgw_num(const cJSON *o, const char *name)
{
	const cJSON	*n = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(n) && n->valuedouble > 0 ?
	    (uint64_t)n->valuedouble : 0;
}

static void
sgw_count(struct gateway_stats *g, int status, int failed,
    const cJSON *usage, const cJSON *rl)
{
	g->requests++;
	if (status >= 400 || status == 0 || failed)
		g->errors++;
	if (status == 429)
		g->rate_limited++;
	if (status == 529)
		g->overloaded++;
	g->last_status = status;
	g->input += sgw_num(usage, "input");
	g->output += sgw_num(usage, "output");
	g->cache_read += sgw_num(usage, "cache_read");
	g->cache_write += sgw_num(usage, "cache_write");
	if (cJSON_IsObject(rl)) {
		cJSON_Delete(g->ratelimit);
		g->ratelimit = cJSON_Duplicate(rl, 1);
	}
}

static void
sgw_record(const cJSON *o)
{
	const cJSON	*st = cJSON_GetObjectItemCaseSensitive(o, "status");
	const cJSON	*usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
	const cJSON	*rl = cJSON_GetObjectItemCaseSensitive(o, "ratelimit");
	const cJSON	*model = cJSON_GetObjectItemCaseSensitive(o, "model");
	struct session	*s;
	int		 status = cJSON_IsNumber(st) ? st->valueint : 0;
	int		 failed = cJSON_GetObjectItemCaseSensitive(o,
			    "error") != NULL;

	sgw_count(&sgw.account, status, failed, usage, rl);
	s = sgw_session(sgw_num(o, "sid"));
	ratelimit_record(s, status, rl);
	if (s == NULL)
		return;
	sgw_count(&s->gw, status, failed, usage, rl);
	budget_gateway(s, cJSON_IsString(model) ? model->valuestring : NULL,
	    sgw_num(usage, "input"), sgw_num(usage, "output"),
	    sgw_num(usage, "cache_read"), sgw_num(usage, "cache_write"));
	log_debug("session %s: gateway %d %s in %llu out %llu", s->name,
	    status, cJSON_IsString(model) ? model->valuestring : "-",
	    (unsigned long long)sgw_num(usage, "input"),
	    (unsigned long long)sgw_num(usage, "output"));
}

static void
sgw_read(struct bufferevent *bev, void *arg)
{
	char		*line;
	size_t		 len;
	cJSON		*o;
	const cJSON	*t;

	for (;;) {
		switch (line_next(&sgw.reader, bufferevent_get_input(bev),
		    &line, &len)) {
		case LINE_NONE:
			return;
		case LINE_OK:
			o = cJSON_ParseWithLength(line, len);
			free(line);
			t = cJSON_GetObjectItemCaseSensitive(o, "t");
			if (cJSON_IsString(t) && strcmp(t->valuestring,
			    "rec") == 0)
				sgw_record(o);
			else
				log_warnx("gateway: unknown line");
			cJSON_Delete(o);
			break;
		default:
			log_warnx("gateway: over-long line");
			break;
		}
	}
}

static void
sgw_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/*
		 * The key lived only there: without it no session can work,
		 * and a new one cannot read the key again from our scrubbed
		 * environment.  Stop, as privsep daemons do when a child dies.
		 */
		if (hp.shutting_down) {
			bufferevent_free(sgw.chan);
			sgw.chan = NULL;
			return;
		}
		fatalx("the gateway exited; stopping");
	}
}

void
server_gateway_start(void)
{
	if (sgw.chan_fd == -1)		/* gateway = off */
		return;
	line_init(&sgw.reader, GATEWAY_LINE_MAX);
	util_set_nonblock(sgw.chan_fd);
	sgw.chan = bufferevent_socket_new(hp.base, sgw.chan_fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(sgw.chan, sgw_read, NULL, sgw_event, NULL);
	/* Its questions hold up the turns of the sessions asking. */
	bufferevent_priority_set(sgw.chan, HP_PRIO_IO);
	bufferevent_enable(sgw.chan, EV_READ);
}

static void
sgw_send(cJSON *o)
{
	char	*s;

	if (sgw.chan == NULL) {
		cJSON_Delete(o);
		return;
	}
	s = json_print(o);
	bufferevent_write(sgw.chan, s, strlen(s));
	bufferevent_write(sgw.chan, "\n", 1);
	explicit_bzero(s, strlen(s));
	cJSON_free(s);
	cJSON_Delete(o);
}

void
server_gateway_reload(void)
{
	cJSON	*o = cJSON_CreateObject(), *a;
	size_t	 i;

	if (sgw.chan == NULL)
		return;
	if (hp.conf->egress_allow.n > 0 && sgw.proxy_fd == -1)
		log_warnx("reload: egress_allow needs a restart to start the "
		    "CONNECT proxy");
	cJSON_AddStringToObject(o, "t", "allow");
	a = cJSON_AddArrayToObject(o, "egress_allow");
	for (i = 0; i < hp.conf->egress_allow.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->egress_allow.v[i]));
	sgw_send(o);
}

void
server_gateway_stop(void)
{
	/*
	 * libevent closes a freed bufferevent's socket only when the loop
	 * (or event_base_free) runs its finalizer: shut it down now, the
	 * gateway's cue to end.
	 */
	if (sgw.chan != NULL) {
		shutdown(bufferevent_getfd(sgw.chan), SHUT_RDWR);
		bufferevent_free(sgw.chan);
	}
	sgw.chan = NULL;
	server_gateway_stats_clear(&sgw.account);
	sgw_wait();
}

void
server_gateway_session_close(struct session *s)
{
	cJSON	*o;

	if (s->gw_token[0] == '\0')
		return;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "t", "del");
	cJSON_AddStringToObject(o, "token", s->gw_token);
	sgw_send(o);
	explicit_bzero(s->gw_token, sizeof s->gw_token);
}

void
server_gateway_session_open(struct session *s, cJSON *open)
{
	unsigned char	 r[GATEWAY_TOKEN_BYTES];
	char		 tok[sizeof GATEWAY_TOKEN_PREFIX + GATEWAY_TOKEN_LEN];
	char		*url;
	cJSON		*o, *g;
	size_t		 i;

	/* A new CLI, a new token: the old one dies with the old CLI. */
	server_gateway_session_close(s);
	if (sgw.chan == NULL)		/* gateway = off */
		return;
	if (s->gw_sid == 0) {
		s->gw_sid = ++sgw.next_sid;
		LIST_INSERT_HEAD(sgw_bucket(s->gw_sid), s, gw_entry);
	}
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		fatal("getrandom");
	for (i = 0; i < sizeof r; i++)
		snprintf(s->gw_token + 2 * i, 3, "%02x", r[i]);
	explicit_bzero(r, sizeof r);

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "t", "add");
	cJSON_AddStringToObject(o, "token", s->gw_token);
	cJSON_AddNumberToObject(o, "sid", (double)s->gw_sid);
	cJSON_AddStringToObject(o, "session", s->name);
	cJSON_AddNumberToObject(o, "uid", (double)s->uid);
	sgw_send(o);

	g = cJSON_AddObjectToObject(open, "gateway");
	xasprintf(&url, "http://%s:%d", sgw.host, sgw.api_port);
	cJSON_AddStringToObject(g, "url", url);
	free(url);
	snprintf(tok, sizeof tok, "%s%s", GATEWAY_TOKEN_PREFIX, s->gw_token);
	cJSON_AddStringToObject(g, "token", tok);
	explicit_bzero(tok, sizeof tok);
	cJSON_AddStringToObject(g, "egress", hp.conf->egress);
	cJSON_AddNumberToObject(g, "port", sgw.api_port);
	if (sgw.proxy_port != 0) {
		xasprintf(&url, "http://%s:%d", sgw.host, sgw.proxy_port);
		cJSON_AddStringToObject(g, "proxy", url);
		free(url);
		cJSON_AddNumberToObject(g, "proxy_port", sgw.proxy_port);
	}
}

void
server_gateway_stats_json(const struct gateway_stats *g, cJSON *into)
{
	cJSON	*o = cJSON_AddObjectToObject(into, "gateway"), *t;

	cJSON_AddNumberToObject(o, "requests", (double)g->requests);
	cJSON_AddNumberToObject(o, "errors", (double)g->errors);
	cJSON_AddNumberToObject(o, "rate_limited", (double)g->rate_limited);
	cJSON_AddNumberToObject(o, "overloaded", (double)g->overloaded);
	cJSON_AddNumberToObject(o, "last_status", g->last_status);
	t = cJSON_AddObjectToObject(o, "tokens");
	cJSON_AddNumberToObject(t, "input", (double)g->input);
	cJSON_AddNumberToObject(t, "output", (double)g->output);
	cJSON_AddNumberToObject(t, "cache_read", (double)g->cache_read);
	cJSON_AddNumberToObject(t, "cache_write", (double)g->cache_write);
	if (g->ratelimit != NULL)
		cJSON_AddItemToObject(o, "ratelimit",
		    cJSON_Duplicate(g->ratelimit, 1));
}

void
server_gateway_stats_add(struct gateway_stats *to,
    const struct gateway_stats *from)
{
	to->requests += from->requests;
	to->errors += from->errors;
	to->rate_limited += from->rate_limited;
	to->overloaded += from->overloaded;
	to->input += from->input;
	to->output += from->output;
	to->cache_read += from->cache_read;
	to->cache_write += from->cache_write;
}

void
server_gateway_stats_clear(struct gateway_stats *g)
{
	cJSON_Delete(g->ratelimit);
	memset(g, 0, sizeof *g);
}

/* The session leaves the table: its token dies, its sid is forgotten. */
void
server_gateway_session_free(struct session *s)
{
	server_gateway_session_close(s);
	if (s->gw_sid != 0)
		LIST_REMOVE(s, gw_entry);
	s->gw_sid = 0;
	server_gateway_stats_clear(&s->gw);
}

const struct gateway_stats *
server_gateway_account(void)
{
	return &sgw.account;
}
