/*
 * The model-API gateway: the only holder of the API credentials and the
 * only network peer a session may reach.
 *
 * It runs as its own process, forked by the master at start-up before the
 * master reads any client line (gateway.c), in the privilege-separation
 * manner of the OpenBSD daemons: the master parses what local clients send
 * and must never hold the key in its memory; the gateway parses only what
 * the sessions' CLIs and the upstream API send, holds the key, and drops
 * to an unprivileged user.  The master binds the gateway's sockets (so that
 * the port is known before any session starts) and talks to it over a
 * socketpair in JSON lines (server-gateway.c):
 *
 *	master -> gateway	{"t":"add","token":T,"sid":N,"session":S,"uid":U}
 *				{"t":"del","token":T}
 *				{"t":"allow","egress_allow":["host:port",...]}
 *	gateway -> master	{"t":"rec","sid":N,"status":..,"model":..,
 *				 "usage":{..},"ratelimit":{..},"ms":..}
 */
#ifndef HP_GATEWAY_H
#define HP_GATEWAY_H

#include <stddef.h>
#include <sys/types.h>

#include <stdint.h>

#include <cJSON.h>

struct session;
struct config;

#define GATEWAY_TOKEN_BYTES	32	/* random bytes of a session token */
#define GATEWAY_TOKEN_LEN	(GATEWAY_TOKEN_BYTES * 2)	/* in hex */
#define GATEWAY_TOKEN_PREFIX	"hpx-"	/* tells a token from a key */
#define GATEWAY_LINE_MAX	(64 * 1024)	/* a channel line */
#define GATEWAY_DEFAULT_UPSTREAM "https://api.anthropic.com"

/* What the gateway recorded of a session's requests (server-gateway.c). */
struct gateway_stats {
	uint64_t	requests;
	uint64_t	errors;		/* status >= 400 or no answer */
	uint64_t	rate_limited;	/* 429 */
	uint64_t	overloaded;	/* 529 */
	uint64_t	input, output, cache_read, cache_write;
	int		last_status;
	cJSON		*ratelimit;	/* last anthropic-ratelimit-* seen */
};

/* gateway.c: the gateway process; never returns. */
void	 gateway_main(int chan, int api_fd, int proxy_fd)
	    __attribute__((noreturn));

/* gateway-proxy.c: the CONNECT proxy for egress_allow, in the gateway. */
struct event_base;
struct evdns_base;
void	 gateway_proxy_start(struct event_base *, struct evdns_base *, int fd);
void	 gateway_proxy_allow(const cJSON *list);
int	 gateway_proxy_upstream(struct event_base *, struct evdns_base *,
	    const char *proxy_host, int proxy_port, const char *target);

/* server-gateway.c: the master's side. */
int	 server_gateway_check(const struct config *, char *err, size_t errlen);
int	 server_gateway_listen(void);	/* bind, before daemon() */
void	 server_gateway_spawn(void);	/* fork; scrubs our environment */
void	 server_gateway_start(void);	/* the channel on the loop */
void	 server_gateway_reload(void);
void	 server_gateway_stop(void);
/* Adds the session's gateway object (URL, token, ports) to an open. */
void	 server_gateway_session_open(struct session *, cJSON *open);
void	 server_gateway_session_close(struct session *);
void	 server_gateway_stats_json(const struct gateway_stats *, cJSON *into);
void	 server_gateway_stats_add(struct gateway_stats *,
	    const struct gateway_stats *);
void	 server_gateway_stats_clear(struct gateway_stats *);
void	 server_gateway_session_free(struct session *);
const struct gateway_stats *server_gateway_account(void);
int	 server_gateway_egress_enforced(void);
pid_t	 server_gateway_pid(void);
int	 server_gateway_reaped(pid_t, int);
int	 server_gateway_up(void);

#endif
