/*
 * Health: is the daemon alive (it answers), and ready to take a new
 * session (not draining, a spare worker waiting, the state directory
 * writable, the model-API gateway up)?  Served as /healthz and /readyz beside /metrics, and, with
 * the rest of a one-screen summary, by the status op.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "supervisor/census.h"
#include "supervisor/hotplexd.h"
#include "policy/firewall/firewall.h"
#include "supervisor/gateway.h"
#include "supervisor/screen.h"
#include "supervisor/store.h"

static uint64_t	health_started_ms;

void
health_init(void)
{
	health_started_ms = util_now_ms();
}

/*
 * Descriptors open now, or -1.  Counted here, in the one step that also
 * counts workers and clients, so a reader gets a consistent snapshot: a
 * count taken from outside races with spawns and connections.
 */
static int
health_nfds(void)
{
	DIR		*d;
	struct dirent	*e;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own descriptor */
}

/* Fills checks[] (HEALTH_CHECKS_MAX); returns how many, *ready if all ok. */
size_t
health_ready(struct health_check *checks, int *ready)
{
	struct health_check	*k;
	size_t			 n = 0;
	int			 spares = pool_ready_spares();
	pid_t			 gw;

	k = &checks[n++];
	k->name = "accepting";
	k->ok = !hp.shutting_down && !hp.draining;
	snprintf(k->detail, sizeof k->detail, "%s",
	    hp.shutting_down ? "shutting down" : hp.draining ? "draining" :
	    "taking new sessions");

	/* With spare_min = 0 a worker is made on demand: nothing to wait for. */
	k = &checks[n++];
	k->name = "spares";
	k->ok = spares > 0 || hp.conf->spare_min == 0;
	snprintf(k->detail, sizeof k->detail, "%d spare worker%s ready "
	    "(spare_min %d)", spares, spares == 1 ? "" : "s",
	    hp.conf->spare_min);

	k = &checks[n++];
	k->name = "store";
	if (store_shared()) {
		/* Without it no session can be taken: its lease is there. */
		k->ok = store_reachable(k->detail, sizeof k->detail);
	} else {
		k->ok = access(hp.conf->state_dir, W_OK) == 0;
		snprintf(k->detail, sizeof k->detail, "state_dir %s %s",
		    hp.conf->state_dir, k->ok ? "writable" : strerror(errno));
	}

	/* A host just started: its session table and the hosts' channel. */
	k = &checks[n++];
	k->name = "serving";
	if ((k->ok = state_serving(k->detail, sizeof k->detail)))
		snprintf(k->detail, sizeof k->detail, "session table read%s",
		    store_shared() ? ", hosts' channel listened" : "");

	/* The model-API gateway, where there is one: sessions need it. */
	if ((gw = server_gateway_pid()) > 0) {
		k = &checks[n++];
		k->name = "gateway";
		k->ok = server_gateway_up();
		snprintf(k->detail, sizeof k->detail, "gateway %ld %s",
		    (long)gw, k->ok ? "up" : "exited");
	}

	*ready = 1;
	for (k = checks; k < checks + n; k++)
		if (!k->ok)
			*ready = 0;
	return n;
}

/* The status op: version, uptime, sessions by state, workers, ... */
cJSON *
health_status(void)
{
	static const enum session_state states[] = {
		SESSION_STARTING, SESSION_READY, SESSION_BUSY,
		SESSION_STOPPING, SESSION_DORMANT, SESSION_ENDED,
	};
	struct health_check	 checks[HEALTH_CHECKS_MAX];
	cJSON			*d, *o, *a, *k;
	size_t			 i, n, nstate[sizeof states / sizeof states[0]];
	int			 ready;

	for (i = 0; i < sizeof states / sizeof states[0]; i++)
		nstate[i] = census_state(states[i]);

	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "version", HOTPLEX_VERSION);
	cJSON_AddNumberToObject(d, "pid", (double)getpid());
	cJSON_AddNumberToObject(d, "uptime_s",
	    (double)((util_now_ms() - health_started_ms) / 1000));
	o = cJSON_AddObjectToObject(d, "sessions");
	for (i = 0; i < sizeof states / sizeof states[0]; i++)
		cJSON_AddNumberToObject(o, proto_state_name(states[i]),
		    (double)nstate[i]);
	cJSON_AddNumberToObject(d, "workers", pool_count());
	cJSON_AddNumberToObject(d, "spares", pool_spares());
	cJSON_AddNumberToObject(d, "spares_ready", pool_ready_spares());
	cJSON_AddNumberToObject(d, "clients", (double)hp.nclients);
	cJSON_AddNumberToObject(d, "fds", health_nfds());
	ratelimit_json(d);

	/* The start-up isolation report, and what screens the sessions. */
	o = isolation_json();
	cJSON_AddItemToObject(d, "isolation", o);
	cJSON_AddBoolToObject(o, "firewall", hp.screen->policy != NULL);
	cJSON_AddBoolToObject(o, "tool_gate", hp.conf->tool_gate);
	cJSON_AddBoolToObject(o, "egress_gateway_only",
	    server_gateway_egress_enforced());
	cJSON_AddNumberToObject(d, "rules", hp.screen->policy != NULL ?
	    (double)policy_nrules(hp.screen->policy) : 0);
	/* The rules new sessions get, on both sides. */
	o = cJSON_AddObjectToObject(d, "policy");
	cJSON_AddNumberToObject(o, "generation", (double)hp.screen->generation);
	cJSON_AddStringToObject(o, "digest", hp.screen->digest);

	if (store_shared()) {
		char	detail[HEALTH_DETAIL_MAX];
		int	up = store_reachable(detail, sizeof detail);

		o = cJSON_AddObjectToObject(d, "store");
		cJSON_AddStringToObject(o, "state", up ? "connected" :
		    "reconnecting");
		cJSON_AddStringToObject(o, "detail", detail);
	}

	n = health_ready(checks, &ready);
	cJSON_AddBoolToObject(d, "ready", ready);
	a = cJSON_AddArrayToObject(d, "checks");
	for (i = 0; i < n; i++) {
		k = cJSON_CreateObject();
		cJSON_AddStringToObject(k, "name", checks[i].name);
		cJSON_AddBoolToObject(k, "ok", checks[i].ok);
		cJSON_AddStringToObject(k, "detail", checks[i].detail);
		cJSON_AddItemToArray(a, k);
	}
	return d;
}
