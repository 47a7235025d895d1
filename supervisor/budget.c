/*
 * Budgets: max_budget_usd per session and uid_budget_usd per uid.  What a
 * session has spent is the CLI's cost of its ended turns (stats) plus, for
 * the turn that runs, what the gateway saw of its API responses, priced
 * here with the CLI's own table: the CLI reports cost only at a turn's
 * end, the gateway as each response ends.  A running turn that crosses a
 * budget is interrupted and ends error budget_exceeded; later turns are
 * refused until configure (or the config, for a uid) raises the budget.
 *
 * A uid's spending is the sum over its sessions in the table (restored
 * from the store) and what the sessions the table has forgotten had cost
 * (max_ended_sessions), kept with the store's totals.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"

#define BUDGET_UIDS_MAX		65536	/* forgotten-cost rows kept */
#define BUDGET_MTOK		1e6

/*
 * USD per million tokens, as the CLI prices them (PROTOCOL.md: $5/$25
 * for the default model); cache reads cost a tenth of the input price,
 * cache writes (5-minute) a quarter more.  The first entry whose name is
 * part of the model's wins; the last is the default.
 */
static const struct budget_price {
	const char	*part;
	double		 in, out;
} budget_prices[] = {
	{ "opus-4-1", 15, 75 },
	{ "opus-4-0", 15, 75 },
	{ "opus-4-2025", 15, 75 },
	{ "3-opus", 15, 75 },
	{ "sonnet", 3, 15 },
	{ "3-5-haiku", 0.8, 4 },
	{ "3-haiku", 0.25, 1.25 },
	{ "haiku", 1, 5 },
	{ "", 5, 25 },		/* opus 4.5 and later, and the unknown */
};
#define BUDGET_CACHE_READ	0.1
#define BUDGET_CACHE_WRITE	1.25

/* What the sessions the table forgot had cost, per uid. */
struct budget_uid {
	uid_t	uid;
	double	usd;
};
static struct budget_uid	*budget_uids;
static size_t			 budget_nuids;

double
budget_price(const char *model, uint64_t in, uint64_t out,
    uint64_t cache_read, uint64_t cache_write)
{
	const struct budget_price	*p = budget_prices;

	while (*p->part != '\0' && (model == NULL ||
	    strstr(model, p->part) == NULL))
		p++;
	return ((double)in * p->in + (double)out * p->out +
	    (double)cache_read * p->in * BUDGET_CACHE_READ +
	    (double)cache_write * p->in * BUDGET_CACHE_WRITE) / BUDGET_MTOK;
}

/* The session's max_budget_usd (its option, else the daemon's); 0: none. */
double
budget_session(const struct session *s)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(s->options,
			    "max_budget_usd");

	if (cJSON_IsNumber(v))
		return v->valuedouble;
	return hp.conf->max_budget_usd;
}

/* Ended turns as the CLI counted them, and the running one's API calls. */
double
budget_spent(const struct session *s)
{
	return s->total.cost_usd + s->cur.gw_cost_usd;
}

static struct budget_uid *
budget_uid_find(uid_t uid)
{
	size_t	i;

	for (i = 0; i < budget_nuids; i++)
		if (budget_uids[i].uid == uid)
			return &budget_uids[i];
	return NULL;
}

/* Walks the table: only with uid_budget_usd set. */
double
budget_uid_spent(uid_t uid)
{
	const struct budget_uid	*u = budget_uid_find(uid);
	const struct session	*s;
	double			 usd = u != NULL ? u->usd : 0;

	TAILQ_FOREACH(s, &hp.sessions, entry)
		if (s->uid == uid)
			usd += budget_spent(s);
	return usd;
}

/* A session leaves the table: its cost stays with its uid. */
void
budget_forget(const struct session *s)
{
	struct budget_uid	*u;

	if (s->total.cost_usd <= 0)
		return;
	if ((u = budget_uid_find(s->uid)) == NULL) {
		if (budget_nuids == BUDGET_UIDS_MAX) {
			log_warnx("budget: %d uids; uid %ld's forgotten "
			    "sessions not counted", BUDGET_UIDS_MAX,
			    (long)s->uid);
			return;
		}
		budget_uids = xreallocarray(budget_uids, budget_nuids + 1,
		    sizeof *budget_uids);
		u = &budget_uids[budget_nuids++];
		u->uid = s->uid;
		u->usd = 0;
	}
	u->usd += s->total.cost_usd;
}

/* {"UID": usd, ...}: kept with the store's totals. */
cJSON *
budget_totals_json(void)
{
	cJSON	*o = cJSON_CreateObject();
	char	 k[32];
	size_t	 i;

	for (i = 0; i < budget_nuids; i++) {
		snprintf(k, sizeof k, "%ld", (long)budget_uids[i].uid);
		cJSON_AddNumberToObject(o, k, budget_uids[i].usd);
	}
	return o;
}

void
budget_totals_load(const cJSON *o)
{
	const cJSON	*e;
	struct session	 fake;
	char		*end;
	long		 uid;

	budget_free();
	memset(&fake, 0, sizeof fake);
	cJSON_ArrayForEach(e, o) {
		uid = strtol(e->string, &end, 10);
		if (*end != '\0' || uid < 0 || !cJSON_IsNumber(e) ||
		    e->valuedouble <= 0)
			continue;
		fake.uid = (uid_t)uid;
		fake.total.cost_usd = e->valuedouble;
		budget_forget(&fake);
	}
}

void
budget_free(void)
{
	free(budget_uids);
	budget_uids = NULL;
	budget_nuids = 0;
}

/*
 * Is the session, or its uid, at its budget?  0 if not; else 1 with the
 * reason in why.
 */
int
budget_reached(const struct session *s, char *why, size_t len)
{
	double	b = budget_session(s), spent;

	if (b > 0 && (spent = budget_spent(s)) >= b) {
		snprintf(why, len, "session \"%s\" has cost $%.4f of its "
		    "max_budget_usd $%.4f", s->name, spent, b);
		return 1;
	}
	b = hp.conf->uid_budget_usd;
	if (b > 0 && (spent = budget_uid_spent(s->uid)) >= b) {
		snprintf(why, len, "uid %ld's sessions have cost $%.4f of "
		    "uid_budget_usd $%.4f", (long)s->uid, spent, b);
		return 1;
	}
	return 0;
}

/* Interrupts s's running turn, once: it will end budget_exceeded. */
static void
budget_stop(struct session *s, const char *why)
{
	if (s->state != SESSION_BUSY || !s->cur.sent || s->cur.budget_stop ||
	    s->worker == NULL)
		return;
	log_info("session %s turn %u: stopped: %s", s->name, s->turn, why);
	s->cur.budget_stop = 1;
	pool_send(s->worker, MSG_INTERRUPT, s->turn, NULL);
}

/*
 * One API response of s's CLI, as the gateway saw it: priced, added to
 * the running turn (a response outside a turn is the CLI's own business
 * and counts when its result does), and the budgets checked.
 */
void
budget_gateway(struct session *s, const char *model, uint64_t in,
    uint64_t out, uint64_t cache_read, uint64_t cache_write)
{
	struct session	*o;
	char		 why[256];

	if (s->state != SESSION_BUSY || !s->cur.sent)
		return;
	s->cur.gw_cost_usd += budget_price(model, in, out, cache_read,
	    cache_write);
	if (!budget_reached(s, why, sizeof why))
		return;
	budget_stop(s, why);
	/* Over the uid's: each of its running turns stops. */
	if (hp.conf->uid_budget_usd > 0 &&
	    budget_uid_spent(s->uid) >= hp.conf->uid_budget_usd)
		TAILQ_FOREACH(o, &hp.sessions, entry)
			if (o->uid == s->uid)
				budget_stop(o, why);
}
