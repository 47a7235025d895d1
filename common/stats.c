/*
 * SessionStats: one turn's or one session's accounting, and its JSON
 * (DESIGN.md section 5).  Every list is bounded: tool names beyond
 * STATS_MAX_TOOLS share an "(other)" slot, paths beyond STATS_MAX_FILES
 * are dropped (the first ones are the ones kept).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/stats.h"
#include "common/xmalloc.h"

#define STATS_OTHER_TOOL	"(other)"
#define STATS_UNKNOWN_TOOL	"(unknown)"	/* a call without a name */
/* Counters are uint64_t: a JSON number must lie below 2^64. */
#define STATS_JSON_UINT_LIMIT	18446744073709551616.0

void
stats_init(struct stats *s)
{
	memset(s, 0, sizeof *s);
}

void
stats_clear(struct stats *s)
{
	size_t	i;

	for (i = 0; i < s->nfiles; i++)
		free(s->files[i]);
	stats_init(s);
}

void
stats_copy(struct stats *dst, const struct stats *src)
{
	size_t	i;

	if (dst == src)
		return;
	stats_clear(dst);
	memcpy(dst, src, sizeof *dst);
	for (i = 0; i < src->nfiles; i++)
		dst->files[i] = xstrdup(src->files[i]);
}

uint64_t
stats_tokens_total(const struct stats *s)
{
	return s->tokens.input + s->tokens.output + s->tokens.cache_read +
	    s->tokens.cache_write;
}

static struct stats_tool *
stats_tool_find(struct stats *s, const char *name)
{
	size_t	i;

	for (i = 0; i < s->ntools; i++)
		if (strcmp(s->tools[i].name, name) == 0)
			return &s->tools[i];
	return NULL;
}

static struct stats_tool *
stats_tool_append(struct stats *s, const char *name)
{
	struct stats_tool	*t = &s->tools[s->ntools++];

	memset(t, 0, sizeof *t);
	memcpy(t->name, name, strnlen(name, sizeof t->name - 1));
	return t;
}

struct stats_tool *
stats_tool(struct stats *s, const char *name)
{
	char			 key[STATS_TOOL_NAME_MAX];
	struct stats_tool	*t;

	/* Compare on the name as stored, so a long name finds its slot. */
	if (name == NULL || *name == '\0')
		name = STATS_UNKNOWN_TOOL;
	snprintf(key, sizeof key, "%s", name);
	if ((t = stats_tool_find(s, key)) != NULL)
		return t;
	/* The last slot is kept for "(other)". */
	if (s->ntools < STATS_MAX_TOOLS - 1)
		return stats_tool_append(s, key);
	if ((t = stats_tool_find(s, STATS_OTHER_TOOL)) != NULL)
		return t;
	return stats_tool_append(s, STATS_OTHER_TOOL);
}

void
stats_file(struct stats *s, const char *path)
{
	size_t	i;

	if (path == NULL || *path == '\0' || strlen(path) >= STATS_PATH_MAX)
		return;
	for (i = 0; i < s->nfiles; i++)
		if (strcmp(s->files[i], path) == 0)
			return;
	if (s->nfiles >= STATS_MAX_FILES)
		return;
	s->files[s->nfiles++] = xstrdup(path);
}

void
stats_add(struct stats *dst, const struct stats *src)
{
	struct stats_tool	*t;
	size_t			 i;

	dst->turns += src->turns;
	dst->tokens.input += src->tokens.input;
	dst->tokens.output += src->tokens.output;
	dst->tokens.cache_read += src->tokens.cache_read;
	dst->tokens.cache_write += src->tokens.cache_write;
	dst->cost_usd += src->cost_usd;
	dst->duration_ms.total += src->duration_ms.total;
	dst->duration_ms.thinking += src->duration_ms.thinking;
	dst->duration_ms.tool += src->duration_ms.tool;
	dst->duration_ms.generation += src->duration_ms.generation;
	dst->duration_ms.other += src->duration_ms.other;
	if (src->turns > 0)
		dst->duration_ms.ttft = src->duration_ms.ttft;
	dst->tool_calls += src->tool_calls;
	for (i = 0; i < src->ntools; i++) {
		t = stats_tool(dst, src->tools[i].name);
		t->calls += src->tools[i].calls;
		t->errors += src->tools[i].errors;
		t->duration_ms += src->tools[i].duration_ms;
	}
	for (i = 0; i < src->nfiles; i++)
		stats_file(dst, src->files[i]);
	dst->permission_denials += src->permission_denials;
	dst->danger_blocks += src->danger_blocks;
	dst->errors += src->errors;
}

static void
stats_json_uint(cJSON *o, const char *name, uint64_t v)
{
	cJSON_AddNumberToObject(o, name, (double)v);
}

cJSON *
stats_to_json(const struct stats *s)
{
	cJSON	*o, *tok, *dur, *tools, *tool, *files;
	size_t	 i;

	o = cJSON_CreateObject();
	stats_json_uint(o, "turns", s->turns);

	tok = cJSON_AddObjectToObject(o, "tokens");
	stats_json_uint(tok, "input", s->tokens.input);
	stats_json_uint(tok, "output", s->tokens.output);
	stats_json_uint(tok, "cache_read", s->tokens.cache_read);
	stats_json_uint(tok, "cache_write", s->tokens.cache_write);
	stats_json_uint(tok, "total", stats_tokens_total(s));

	cJSON_AddNumberToObject(o, "cost_usd", s->cost_usd);

	dur = cJSON_AddObjectToObject(o, "duration_ms");
	stats_json_uint(dur, "total", s->duration_ms.total);
	stats_json_uint(dur, "thinking", s->duration_ms.thinking);
	stats_json_uint(dur, "tool", s->duration_ms.tool);
	stats_json_uint(dur, "generation", s->duration_ms.generation);
	stats_json_uint(dur, "other", s->duration_ms.other);
	stats_json_uint(dur, "ttft", s->duration_ms.ttft);

	stats_json_uint(o, "tool_calls", s->tool_calls);
	tools = cJSON_AddArrayToObject(o, "tools");
	for (i = 0; i < s->ntools; i++) {
		tool = cJSON_CreateObject();
		cJSON_AddStringToObject(tool, "name", s->tools[i].name);
		stats_json_uint(tool, "calls", s->tools[i].calls);
		stats_json_uint(tool, "errors", s->tools[i].errors);
		stats_json_uint(tool, "duration_ms", s->tools[i].duration_ms);
		cJSON_AddItemToArray(tools, tool);
	}
	files = cJSON_AddArrayToObject(o, "files");
	for (i = 0; i < s->nfiles; i++)
		cJSON_AddItemToArray(files, cJSON_CreateString(s->files[i]));

	stats_json_uint(o, "permission_denials", s->permission_denials);
	stats_json_uint(o, "danger_blocks", s->danger_blocks);
	stats_json_uint(o, "errors", s->errors);
	return o;
}

/*
 * Reads o[name] into *v: absent is 0 (older writers), anything but a
 * non-negative integral number is a bad shape.
 */
static int
stats_json_get_uint(const cJSON *o, const char *name, uint64_t *v)
{
	const cJSON	*n;
	double		 d;

	if ((n = cJSON_GetObjectItemCaseSensitive(o, name)) == NULL) {
		*v = 0;
		return 0;
	}
	if (!cJSON_IsNumber(n))
		return -1;
	d = n->valuedouble;
	if (!isfinite(d) || d < 0 || d >= STATS_JSON_UINT_LIMIT ||
	    d != floor(d))
		return -1;
	*v = (uint64_t)d;
	return 0;
}

static int
stats_json_tokens(struct stats *s, const cJSON *tok)
{
	struct stats_tokens	*t = &s->tokens;

	if (tok == NULL)
		return 0;
	if (!cJSON_IsObject(tok))
		return -1;
	/* "total" is derived, not stored. */
	if (stats_json_get_uint(tok, "input", &t->input) == -1 ||
	    stats_json_get_uint(tok, "output", &t->output) == -1 ||
	    stats_json_get_uint(tok, "cache_read", &t->cache_read) == -1 ||
	    stats_json_get_uint(tok, "cache_write", &t->cache_write) == -1)
		return -1;
	return 0;
}

static int
stats_json_durations(struct stats *s, const cJSON *dur)
{
	struct stats_durations	*d = &s->duration_ms;

	if (dur == NULL)
		return 0;
	if (!cJSON_IsObject(dur))
		return -1;
	if (stats_json_get_uint(dur, "total", &d->total) == -1 ||
	    stats_json_get_uint(dur, "thinking", &d->thinking) == -1 ||
	    stats_json_get_uint(dur, "tool", &d->tool) == -1 ||
	    stats_json_get_uint(dur, "generation", &d->generation) == -1 ||
	    stats_json_get_uint(dur, "other", &d->other) == -1 ||
	    stats_json_get_uint(dur, "ttft", &d->ttft) == -1)
		return -1;
	return 0;
}

static int
stats_json_tools(struct stats *s, const cJSON *tools)
{
	const cJSON		*tool, *name;
	struct stats_tool	*t;
	uint64_t		 calls, errors, ms;

	if (tools == NULL)
		return 0;
	if (!cJSON_IsArray(tools))
		return -1;
	cJSON_ArrayForEach(tool, tools) {
		if (!cJSON_IsObject(tool))
			return -1;
		name = cJSON_GetObjectItemCaseSensitive(tool, "name");
		if (!cJSON_IsString(name) || *name->valuestring == '\0')
			return -1;
		if (stats_json_get_uint(tool, "calls", &calls) == -1 ||
		    stats_json_get_uint(tool, "errors", &errors) == -1 ||
		    stats_json_get_uint(tool, "duration_ms", &ms) == -1)
			return -1;
		/* Merged by name, as stats_add does. */
		t = stats_tool(s, name->valuestring);
		t->calls += calls;
		t->errors += errors;
		t->duration_ms += ms;
	}
	return 0;
}

static int
stats_json_files(struct stats *s, const cJSON *files)
{
	const cJSON	*f;

	if (files == NULL)
		return 0;
	if (!cJSON_IsArray(files))
		return -1;
	cJSON_ArrayForEach(f, files) {
		if (!cJSON_IsString(f))
			return -1;
		stats_file(s, f->valuestring);
	}
	return 0;
}

static const cJSON *
stats_item(const cJSON *o, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(o, name);
}

int
stats_from_json(struct stats *s, const cJSON *o)
{
	const cJSON	*cost;

	stats_clear(s);
	if (!cJSON_IsObject(o))
		return -1;
	cost = stats_item(o, "cost_usd");
	if (cost != NULL) {
		if (!cJSON_IsNumber(cost) || !isfinite(cost->valuedouble) ||
		    cost->valuedouble < 0)
			goto bad;
		s->cost_usd = cost->valuedouble;
	}
	if (stats_json_get_uint(o, "turns", &s->turns) == -1 ||
	    stats_json_tokens(s, stats_item(o, "tokens")) == -1 ||
	    stats_json_durations(s, stats_item(o, "duration_ms")) == -1 ||
	    stats_json_get_uint(o, "tool_calls", &s->tool_calls) == -1 ||
	    stats_json_tools(s, stats_item(o, "tools")) == -1 ||
	    stats_json_files(s, stats_item(o, "files")) == -1 ||
	    stats_json_get_uint(o, "permission_denials",
	    &s->permission_denials) == -1 ||
	    stats_json_get_uint(o, "danger_blocks", &s->danger_blocks) == -1 ||
	    stats_json_get_uint(o, "errors", &s->errors) == -1)
		goto bad;
	return 0;
bad:
	stats_clear(s);
	return -1;
}
