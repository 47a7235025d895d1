/*
 * libFuzzer target: the stream-json bridge.  The input is a CLI stdout
 * transcript; each line goes to one bridge, with a clock that steps by a
 * byte of the line so that durations see odd orders too.  Everything the
 * bridge hands out is serialized, and the turn stats go through their
 * JSON and back, so bad pointers and shapes show up here.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/stats.h"
#include "worker/bridge.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fuzz_stats(const struct stats *s)
{
	struct stats	 back;
	cJSON		*o = stats_to_json(s);
	char		*str = cJSON_PrintUnformatted(o);

	stats_init(&back);
	if (stats_from_json(&back, o) != 0)
		abort();
	stats_clear(&back);
	free(str);
	cJSON_Delete(o);
}

static void
fuzz_event(void *arg, const char *type, cJSON *data)
{
	char	*s = cJSON_PrintUnformatted(data);

	if (s == NULL || type == NULL)
		abort();
	free(s);
	cJSON_Delete(data);
}

static void
fuzz_init(void *arg, const char *sid)
{
	(void)strlen(sid);
}

static void
fuzz_turn_end(void *arg, const struct bridge_turn *t)
{
	const struct stats_durations *d = &t->stats->duration_ms;

	if (t->result != NULL && strlen(t->result) > BRIDGE_RESULT_MAX)
		abort();
	/* "other" is what is left, never a wrapped-around negative. */
	if (d->other > d->total)
		abort();
	fuzz_stats(t->stats);
}

static void
fuzz_control_request(void *arg, const char *id, const cJSON *req)
{
	char	*s = cJSON_PrintUnformatted(req);

	(void)strlen(id);
	free(s);
}

static void
fuzz_control_response(void *arg, const char *id, int ok, const cJSON *resp)
{
	(void)strlen(id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bridge_cb	 cb = {
		fuzz_event, fuzz_init, fuzz_turn_end, fuzz_control_request,
		fuzz_control_response, NULL, NULL
	};
	struct bridge		*b = bridge_new(&cb);
	const char		*p = (const char *)data, *end = p + size, *nl;
	uint64_t		 now = 0;

	bridge_turn_start(b, now);
	while (p < end) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		now += (size_t)(nl - p) > 0 ? (unsigned char)p[0] % 7 : 1;
		bridge_line(b, p, nl - p, now);
		/* Now and then, what the worker does between lines. */
		if (nl - p == 1 && p[0] == 'S')
			bridge_turn_start(b, now);
		else if (nl - p == 1 && p[0] == 'I')
			bridge_interrupting(b);
		else if (nl - p == 1 && p[0] == 'D')
			bridge_line_dropped(b, size);
		else if (nl - p > 1 && p[0] == 'P') {
			char	*id = strndup(p + 1, nl - p - 1);

			if (id == NULL)
				abort();
			bridge_permission_denied(b, id);
			free(id);
		}
		p = nl + 1;
	}
	fuzz_stats(bridge_turn_stats(b, now + 1));
	bridge_free(b);
	return 0;
}
