/*
 * The account's rate limits as the gateway sees them: each API answer's
 * anthropic-ratelimit-* headers (limit, remaining and reset of requests,
 * tokens, input and output tokens; the unified status and reset of
 * subscription accounts) and its status (429, with retry-after).  A
 * session whose answer shows the account over rate_limit_threshold per
 * cent of a limit, or refused, gets a system event {subtype:"rate_limit",
 * source:"gateway", ...}.  With rate_limit_admission on, a new turn while
 * the account is over it, until the limit resets, is refused at once
 * (error rate_limited {retry_after_ms}) rather than left to stall in the
 * CLI's retries.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/hotplexd.h"

#define RL_PREFIX		"anthropic-ratelimit-"
#define RL_RETRY_DEFAULT_MS	10000	/* a 429 that says not when */
#define RL_RETRY_MAX_MS		(24 * 3600 * 1000)	/* a bound on resets */
#define RL_KIND_MAX		32

/* The limits the API reports, each with -limit, -remaining, -reset. */
static const char *const rl_kinds[] = {
	"requests", "tokens", "input-tokens", "output-tokens",
};

static struct {
	int	 over;			/* over the threshold, or refused */
	int64_t	 until_ms;		/* ... until then (wall clock) */
	double	 utilization;		/* of the fullest limit, 0..1 */
	char	 kind[RL_KIND_MAX];	/* which */
} rl;

/* A header's value, by its name (case as sent). */
static const char *
rl_header(const cJSON *h, const char *name)
{
	const cJSON	*v;

	cJSON_ArrayForEach(v, h)
		if (cJSON_IsString(v) && strcasecmp(v->string, name) == 0)
			return v->valuestring;
	return NULL;
}

/* RFC 3339 ("2026-12-07T15:30:00Z", fraction ignored) or epoch seconds. */
static int64_t
rl_time_ms(const char *s)
{
	struct tm	 tm;
	const char	*end;
	char		*e;
	long long	 n;

	if (s == NULL)
		return 0;
	n = strtoll(s, &e, 10);
	if (e != s && *e == '\0' && n > 0)
		return (int64_t)n * 1000;
	memset(&tm, 0, sizeof tm);
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return 0;
	return (int64_t)timegm(&tm) * 1000;
}

/* How long until then, bounded; 0 if past. */
static uint64_t
rl_left_ms(int64_t until, int64_t now)
{
	if (until <= now)
		return 0;
	if (until - now > RL_RETRY_MAX_MS)
		return RL_RETRY_MAX_MS;
	return (uint64_t)(until - now);
}

/*
 * The fullest limit the headers show: its utilization, name and reset.
 * -1 if they show none.
 */
static int
rl_fullest(const cJSON *h, double *util, const char **kind, int64_t *reset)
{
	char		 name[64];
	const char	*lim, *rem, *st;
	double		 l, r, u;
	size_t		 i;
	int		 found = 0;

	*util = 0;
	for (i = 0; i < sizeof rl_kinds / sizeof rl_kinds[0]; i++) {
		snprintf(name, sizeof name, RL_PREFIX "%s-limit", rl_kinds[i]);
		lim = rl_header(h, name);
		snprintf(name, sizeof name, RL_PREFIX "%s-remaining",
		    rl_kinds[i]);
		rem = rl_header(h, name);
		if (lim == NULL || rem == NULL || (l = atof(lim)) <= 0)
			continue;
		r = atof(rem);
		u = r >= l ? 0 : r <= 0 ? 1 : 1 - r / l;
		if (!found || u > *util) {
			*util = u;
			*kind = rl_kinds[i];
			snprintf(name, sizeof name, RL_PREFIX "%s-reset",
			    rl_kinds[i]);
			*reset = rl_time_ms(rl_header(h, name));
		}
		found = 1;
	}
	/* Subscription accounts: one unified status. */
	if ((st = rl_header(h, RL_PREFIX "unified-status")) != NULL) {
		u = strcmp(st, "rejected") == 0 ? 1 :
		    strcmp(st, "allowed_warning") == 0 ?
		    (double)hp.conf->rate_limit_threshold / 100 : 0;
		if (!found || u > *util) {
			*util = u;
			*kind = "unified";
			*reset = rl_time_ms(rl_header(h,
			    RL_PREFIX "unified-reset"));
		}
		found = 1;
	}
	return found ? 0 : -1;
}

/* The event for a session whose answer showed the account over. */
static void
rl_event(struct session *s, int status, uint64_t retry_ms)
{
	cJSON	*d = cJSON_CreateObject();

	/* subtype first, as the bridge writes it (session.c counts it). */
	cJSON_AddStringToObject(d, "subtype", "rate_limit");
	cJSON_AddStringToObject(d, "source", "gateway");
	cJSON_AddStringToObject(d, "status", status == 429 ? "rejected" :
	    "allowed_warning");
	cJSON_AddStringToObject(d, "rateLimitType", rl.kind);
	cJSON_AddNumberToObject(d, "utilization", rl.utilization);
	cJSON_AddNumberToObject(d, "threshold",
	    (double)hp.conf->rate_limit_threshold / 100);
	cJSON_AddNumberToObject(d, "retry_after_ms", (double)retry_ms);
	if (status >= 400)
		cJSON_AddNumberToObject(d, "error_status", status);
	session_event(s, "system", d);
}

/* One API answer (s: the session whose CLI asked, or NULL). */
void
ratelimit_record(struct session *s, int status, const cJSON *headers)
{
	int64_t		 now = util_wall_ms(), reset = 0;
	const char	*kind = "requests", *ra;
	double		 util;
	int		 known;

	known = cJSON_IsObject(headers) &&
	    rl_fullest(headers, &util, &kind, &reset) == 0;
	if (status == 429) {
		rl.over = 1;
		rl.utilization = 1;
		snprintf(rl.kind, sizeof rl.kind, "%s", known ? kind :
		    "requests");
		ra = cJSON_IsObject(headers) ? rl_header(headers,
		    "retry-after") : NULL;
		if (ra != NULL && atof(ra) > 0)
			rl.until_ms = now + (int64_t)(atof(ra) * 1000);
		else if (known && reset > now)
			rl.until_ms = reset;
		else
			rl.until_ms = now + RL_RETRY_DEFAULT_MS;
	} else if (known) {
		rl.utilization = util;
		snprintf(rl.kind, sizeof rl.kind, "%s", kind);
		rl.over = util * 100 >= hp.conf->rate_limit_threshold;
		rl.until_ms = reset > now ? reset : now +
		    RL_RETRY_DEFAULT_MS;
	} else
		return;		/* nothing said about the limits */
	if (!rl.over)
		return;
	log_info("rate limit: %s at %.0f%% (threshold %d%%), for %llu ms%s",
	    rl.kind, rl.utilization * 100, hp.conf->rate_limit_threshold,
	    (unsigned long long)rl_left_ms(rl.until_ms, now),
	    status == 429 ? " (429)" : "");
	if (s != NULL)
		rl_event(s, status, rl_left_ms(rl.until_ms, now));
}

/*
 * rate_limit_admission: may a new turn start?  0 if so; else -1 and how
 * long until the limit resets.
 */
int
ratelimit_admit(uint64_t *retry_after_ms)
{
	int64_t	now;

	if (!hp.conf->rate_limit_admission || !rl.over)
		return 0;
	now = util_wall_ms();
	if (rl.until_ms <= now) {
		rl.over = 0;		/* the limit has reset */
		return 0;
	}
	*retry_after_ms = rl_left_ms(rl.until_ms, now);
	return -1;
}

/* For status and the metrics: the account as last seen. */
void
ratelimit_json(cJSON *into)
{
	cJSON	*o = cJSON_AddObjectToObject(into, "rate_limit");
	int64_t	 now = util_wall_ms();

	cJSON_AddBoolToObject(o, "over", rl.over && rl.until_ms > now);
	cJSON_AddStringToObject(o, "rateLimitType", rl.kind);
	cJSON_AddNumberToObject(o, "utilization", rl.utilization);
	cJSON_AddNumberToObject(o, "retry_after_ms",
	    rl.over ? (double)rl_left_ms(rl.until_ms, now) : 0);
}
