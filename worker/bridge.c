/*
 * The stream-json bridge: one Claude CLI stdout line in, HotPlex events
 * and per-turn stats out (PROTOCOL.md section 3, DESIGN.md sections 3
 * and 5).
 *
 * Text reaches the host twice when the CLI runs with partial messages:
 * as stream_event deltas and again as one complete assistant line per
 * content block.  Deltas are forwarded as they come; an assistant block
 * is forwarded only when its text was not streamed: no partial messages,
 * or the non-streaming fallback after a broken stream (PROTOCOL.md
 * gotcha 9), whose message.id is usually new but may match the broken
 * one.  So streamed blocks are matched by content (length and hash of
 * their deltas), not by id alone.
 *
 * Times come from the caller, so transcripts replay with synthetic clocks.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/stats.h"
#include "common/xmalloc.h"
#include "worker/bridge.h"

#define BRIDGE_ID_MAX		128	/* message and tool ids kept */
#define BRIDGE_MAX_BLOCKS	64	/* content blocks tracked per message */
#define BRIDGE_MAX_TOOLS	1024	/* tool calls tracked per turn */
#define BRIDGE_TOOLS_GROW	16	/* first size of the tool table */
#define BRIDGE_REASON_MAX	512	/* error text kept as a denial reason */
#define BRIDGE_DENIAL_REASON	"denied by the CLI permission mode"
/* Counts read from the CLI: beyond 2^53 a JSON number is not exact. */
#define BRIDGE_UINT_MAX		9007199254740992.0
#define BRIDGE_FNV_OFFSET	0xcbf29ce484222325ULL	/* FNV-1a 64 */
#define BRIDGE_FNV_PRIME	0x100000001b3ULL

enum bridge_kind {
	BRIDGE_BLOCK_OTHER,
	BRIDGE_BLOCK_THINKING,
	BRIDGE_BLOCK_REDACTED,		/* redacted_thinking: timed, no text */
	BRIDGE_BLOCK_TEXT,
	BRIDGE_BLOCK_TOOL
};

/* One content block of the message being streamed. */
struct bridge_block {
	int			 index;
	enum bridge_kind	 kind;
	int			 open;
	int			 consumed;	/* an assistant line matched */
	size_t			 text_len;	/* of the text deltas so far */
	uint64_t		 text_hash;
	uint64_t		 start_ms;
	char			 tool_id[BRIDGE_ID_MAX];
};

/* One tool call of the turn, from its tool_use to its tool_result. */
struct bridge_tool {
	char			 id[BRIDGE_ID_MAX];
	char			 name[STATS_TOOL_NAME_MAX];
	char			*file;		/* path it writes, if any */
	char			*error;		/* head of an error result */
	int			 seen_use;	/* its tool_use was counted */
	int			 started;	/* its clock runs */
	int			 done;
	int			 denied;
	uint64_t		 start_ms;
};

struct bridge {
	struct bridge_cb	 cb;
	struct bridge_counters	 counters;

	/* Process-wide. */
	double			 last_cost;	/* total_cost_usd: cumulative */
	int			 interrupting;

	/* The turn in flight. */
	int			 turn_active;
	uint64_t		 turn_start_ms;
	int			 have_ttft;
	uint64_t		 ttft_ms;
	uint64_t		 thinking_ms;
	uint64_t		 generation_ms;
	uint64_t		 tool_ms;	/* wall time any tool running */
	unsigned		 tools_running;
	uint64_t		 tools_since_ms;
	struct stats		 stats;		/* counts; times come last */
	struct stats_tokens	 stream_tokens;	/* from message_start/delta */

	/* The main-thread message being streamed. */
	char			 msg_id[BRIDGE_ID_MAX];
	struct stats_tokens	 msg_tokens;
	size_t			 nblocks;
	struct bridge_block	 blocks[BRIDGE_MAX_BLOCKS];

	struct bridge_tool	*tools;
	size_t			 ntools;
	size_t			 tools_cap;

	struct stats		 snapshot;	/* bridge_turn_stats's answer */
	struct stats		 ended;		/* handed to turn_end */
};

/* System subtypes worth showing as progress, forwarded as `system`. */
static const char *bridge_system_forward[] = {
	"status", "api_retry", "task_started", "task_progress",
	"task_updated", "task_notification", "background_tasks_changed",
	"compact_boundary",
	"local_command_output", "model_refusal_fallback",
	"model_refusal_no_fallback", "notification", "informational",
	"worker_shutting_down"
};

/* System subtypes known and deliberately dropped (internal chatter). */
static const char *bridge_system_ignore[] = {
	"thinking_tokens", "hook_started", "hook_progress", "hook_response",
	"session_state_changed", "files_persisted", "memory_recall",
	"elicitation_complete", "commands_changed", "plugin_install",
	"mirror_error"
};

/* Top-level types known and deliberately dropped. */
static const char *bridge_type_ignore[] = {
	"tool_use_summary", "auth_status",
	"prompt_suggestion", "keep_alive"
};

/* api_retry errors that mean the account is limited (PROTOCOL.md 3.3). */
static const char *bridge_limit_errors[] = { "rate_limit", "overloaded" };

#define nitems(a)	(sizeof (a) / sizeof (a)[0])

static int
bridge_in(const char *s, const char **list, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

static uint64_t
bridge_elapsed(uint64_t from, uint64_t to)
{
	return to > from ? to - from : 0;
}

static uint64_t
bridge_uint(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
	    v->valuedouble < 0)
		return 0;
	if (v->valuedouble > BRIDGE_UINT_MAX)
		return (uint64_t)BRIDGE_UINT_MAX;
	return (uint64_t)v->valuedouble;
}

static void
bridge_copy_id(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src != NULL ? src : "");
}

static void
bridge_emit(struct bridge *b, const char *type, cJSON *data)
{
	if (b->cb.event != NULL)
		b->cb.event(b->cb.arg, type, data);
	else
		cJSON_Delete(data);
}

static void
bridge_emit_text(struct bridge *b, const char *type, const char *text)
{
	cJSON	*data;

	if (text == NULL || *text == '\0')
		return;
	data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "text", text);
	bridge_emit(b, type, data);
}

/* Bytes of s[0..len) to keep under cap without splitting a UTF-8 char. */
static size_t
bridge_utf8_cut(const char *s, size_t len, size_t cap)
{
	size_t	k;

	if (len <= cap)
		return len;
	/* s[k] is the first byte dropped: back off over a split char. */
	for (k = cap; k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80; k--)
		;
	return k;
}

/* A bounded output buffer. */
struct bridge_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 truncated;
};

static void
bridge_buf_add(struct bridge_buf *bb, const char *s, size_t n)
{
	size_t	keep;

	if (bb->truncated)
		return;
	keep = bridge_utf8_cut(s, n, bb->cap - bb->len);
	if (keep < n)
		bb->truncated = 1;
	bb->p = xreallocarray(bb->p, bb->len + keep + 1, 1);
	memcpy(bb->p + bb->len, s, keep);
	bb->len += keep;
	bb->p[bb->len] = '\0';
}

/* Tool calls. */

static struct bridge_tool *
bridge_tool_find(struct bridge *b, const char *id)
{
	size_t	i;

	if (id == NULL || *id == '\0')
		return NULL;
	for (i = 0; i < b->ntools; i++)
		if (strncmp(b->tools[i].id, id, sizeof b->tools[i].id - 1) == 0)
			return &b->tools[i];
	return NULL;
}

/* Finds or adds; NULL when the id is empty or the table is full. */
static struct bridge_tool *
bridge_tool_get(struct bridge *b, const char *id, const char *name)
{
	struct bridge_tool	*t;

	if ((t = bridge_tool_find(b, id)) != NULL || id == NULL || *id == '\0')
		goto out;
	if (b->ntools == BRIDGE_MAX_TOOLS) {
		log_debug("%s: tool table full, %s not tracked", __func__, id);
		return NULL;
	}
	if (b->ntools == b->tools_cap) {
		b->tools_cap = b->tools_cap == 0 ? BRIDGE_TOOLS_GROW :
		    b->tools_cap * 2;
		if (b->tools_cap > BRIDGE_MAX_TOOLS)
			b->tools_cap = BRIDGE_MAX_TOOLS;
		b->tools = xreallocarray(b->tools, b->tools_cap,
		    sizeof *b->tools);
	}
	t = &b->tools[b->ntools++];
	memset(t, 0, sizeof *t);
	bridge_copy_id(t->id, sizeof t->id, id);
out:
	if (t != NULL && t->name[0] == '\0' && name != NULL)
		bridge_copy_id(t->name, sizeof t->name, name);
	return t;
}

static void
bridge_tools_reset(struct bridge *b)
{
	size_t	i;

	for (i = 0; i < b->ntools; i++) {
		free(b->tools[i].file);
		free(b->tools[i].error);
	}
	b->ntools = 0;
}

/* The tool's clock starts: counts toward the union of tool time. */
static void
bridge_tool_start(struct bridge *b, struct bridge_tool *t, uint64_t now)
{
	if (t->started || t->done)
		return;
	t->started = 1;
	t->start_ms = now;
	if (b->tools_running++ == 0)
		b->tools_since_ms = now;
}

/* The tool's clock stops; returns how long it ran. */
static uint64_t
bridge_tool_stop(struct bridge *b, struct bridge_tool *t, uint64_t now)
{
	uint64_t	d;

	if (t->done)
		return 0;
	t->done = 1;
	if (!t->started)
		return 0;
	d = bridge_elapsed(t->start_ms, now);
	if (t->name[0] != '\0')
		stats_tool(&b->stats, t->name)->duration_ms += d;
	if (--b->tools_running == 0)
		b->tool_ms += bridge_elapsed(b->tools_since_ms, now);
	return d;
}

/* Counts a denial once per tool call; returns 1 the first time. */
static int
bridge_deny(struct bridge *b, const char *id, const char *name)
{
	struct bridge_tool	*t = bridge_tool_get(b, id, name);

	if (t != NULL) {
		if (t->denied)
			return 0;
		t->denied = 1;
	}
	b->stats.permission_denials++;
	return 1;
}

static void
bridge_emit_denial(struct bridge *b, const char *id, const char *name,
    const char *reason)
{
	cJSON	*data;

	if (!bridge_deny(b, id, name))
		return;
	data = cJSON_CreateObject();
	if (id != NULL)
		cJSON_AddStringToObject(data, "tool_id", id);
	else
		cJSON_AddNullToObject(data, "tool_id");
	if (name != NULL)
		cJSON_AddStringToObject(data, "name", name);
	else
		cJSON_AddNullToObject(data, "name");
	cJSON_AddStringToObject(data, "by", "cli");
	cJSON_AddStringToObject(data, "reason",
	    reason != NULL && *reason != '\0' ? reason : BRIDGE_DENIAL_REASON);
	bridge_emit(b, "permission_denied", data);
}

/* Turns. */

static void
bridge_turn_reset(struct bridge *b)
{
	b->turn_active = 0;
	b->turn_start_ms = 0;
	b->have_ttft = 0;
	b->ttft_ms = 0;
	b->thinking_ms = b->generation_ms = b->tool_ms = 0;
	b->tools_running = 0;
	b->tools_since_ms = 0;
	stats_clear(&b->stats);
	memset(&b->stream_tokens, 0, sizeof b->stream_tokens);
	memset(&b->msg_tokens, 0, sizeof b->msg_tokens);
	b->msg_id[0] = '\0';
	b->nblocks = 0;
	bridge_tools_reset(b);
}

void
bridge_turn_start(struct bridge *b, uint64_t now_ms)
{
	bridge_turn_reset(b);
	b->turn_active = 1;
	b->turn_start_ms = now_ms;
	b->interrupting = 0;
}

static void
bridge_turn_implicit(struct bridge *b, uint64_t now)
{
	/* Lines with no turn started: the turn started with them. */
	if (!b->turn_active)
		bridge_turn_start(b, now);
}

static void
bridge_ttft(struct bridge *b, uint64_t now)
{
	if (b->have_ttft)
		return;
	b->have_ttft = 1;
	b->ttft_ms = bridge_elapsed(b->turn_start_ms, now);
}

void
bridge_interrupting(struct bridge *b)
{
	b->interrupting = 1;
}

/*
 * Fills dst with the turn's stats as of now: open blocks and running tools
 * count up to now, "other" is what is left of the wall time.
 */
static void
bridge_fill_times(struct bridge *b, struct stats *dst, uint64_t now)
{
	struct stats_durations	*d = &dst->duration_ms;
	uint64_t		 rest;
	size_t			 i;

	d->thinking = b->thinking_ms;
	d->generation = b->generation_ms;
	d->tool = b->tool_ms;
	for (i = 0; i < b->nblocks; i++) {
		if (!b->blocks[i].open)
			continue;
		if (b->blocks[i].kind == BRIDGE_BLOCK_THINKING ||
		    b->blocks[i].kind == BRIDGE_BLOCK_REDACTED)
			d->thinking +=
			    bridge_elapsed(b->blocks[i].start_ms, now);
		else if (b->blocks[i].kind != BRIDGE_BLOCK_OTHER)
			d->generation +=
			    bridge_elapsed(b->blocks[i].start_ms, now);
	}
	if (b->tools_running > 0)
		d->tool += bridge_elapsed(b->tools_since_ms, now);
	d->total = bridge_elapsed(b->turn_start_ms, now);
	d->ttft = b->ttft_ms;
	rest = d->thinking + d->generation + d->tool;
	d->other = rest < d->total ? d->total - rest : 0;
	for (i = 0; i < b->ntools; i++) {
		struct bridge_tool	*t = &b->tools[i];

		if (t->started && !t->done && t->name[0] != '\0')
			stats_tool(dst, t->name)->duration_ms +=
			    bridge_elapsed(t->start_ms, now);
	}
}

struct stats *
bridge_turn_stats(struct bridge *b, uint64_t now_ms)
{
	stats_clear(&b->snapshot);
	if (!b->turn_active)
		return &b->snapshot;
	stats_copy(&b->snapshot, &b->stats);
	b->snapshot.turns = 1;
	/* No result: the streamed usage is the best count there is. */
	b->snapshot.tokens = b->stream_tokens;
	b->snapshot.tokens.input += b->msg_tokens.input;
	b->snapshot.tokens.output += b->msg_tokens.output;
	b->snapshot.tokens.cache_read += b->msg_tokens.cache_read;
	b->snapshot.tokens.cache_write += b->msg_tokens.cache_write;
	bridge_fill_times(b, &b->snapshot, now_ms);
	return &b->snapshot;
}

/* Streaming (stream_event). */

/* One usage field; absent leaves *v alone when only_present. */
static void
bridge_usage_field(const cJSON *usage, const char *name, uint64_t *v,
    int only_present)
{
	if (only_present &&
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(usage, name)))
		return;
	*v = bridge_uint(usage, name);
}

/* The API's usage object into tokens (message_delta: only_present). */
static void
bridge_usage(struct stats_tokens *tok, const cJSON *usage, int only_present)
{
	if (!cJSON_IsObject(usage))
		return;
	bridge_usage_field(usage, "input_tokens", &tok->input, only_present);
	bridge_usage_field(usage, "output_tokens", &tok->output,
	    only_present);
	bridge_usage_field(usage, "cache_read_input_tokens",
	    &tok->cache_read, only_present);
	bridge_usage_field(usage, "cache_creation_input_tokens",
	    &tok->cache_write, only_present);
}

static void
bridge_msg_commit(struct bridge *b)
{
	b->stream_tokens.input += b->msg_tokens.input;
	b->stream_tokens.output += b->msg_tokens.output;
	b->stream_tokens.cache_read += b->msg_tokens.cache_read;
	b->stream_tokens.cache_write += b->msg_tokens.cache_write;
	memset(&b->msg_tokens, 0, sizeof b->msg_tokens);
}

static struct bridge_block *
bridge_block_find(struct bridge *b, int index)
{
	size_t	i;

	for (i = 0; i < b->nblocks; i++)
		if (b->blocks[i].index == index)
			return &b->blocks[i];
	return NULL;
}

static enum bridge_kind
bridge_kind(const char *type)
{
	if (type == NULL)
		return BRIDGE_BLOCK_OTHER;
	if (strcmp(type, "thinking") == 0)
		return BRIDGE_BLOCK_THINKING;
	if (strcmp(type, "redacted_thinking") == 0)
		return BRIDGE_BLOCK_REDACTED;
	if (strcmp(type, "text") == 0)
		return BRIDGE_BLOCK_TEXT;
	if (strcmp(type, "tool_use") == 0 ||
	    strcmp(type, "server_tool_use") == 0)
		return BRIDGE_BLOCK_TOOL;
	return BRIDGE_BLOCK_OTHER;
}

static void
bridge_block_stop(struct bridge *b, struct bridge_block *blk, uint64_t now)
{
	struct bridge_tool	*t;
	uint64_t		 d;

	if (!blk->open)
		return;
	blk->open = 0;
	d = bridge_elapsed(blk->start_ms, now);
	switch (blk->kind) {
	case BRIDGE_BLOCK_THINKING:
	case BRIDGE_BLOCK_REDACTED:
		b->thinking_ms += d;
		break;
	case BRIDGE_BLOCK_TEXT:
		b->generation_ms += d;
		break;
	case BRIDGE_BLOCK_TOOL:
		/* Its input is generated; the tool runs from here. */
		b->generation_ms += d;
		if ((t = bridge_tool_find(b, blk->tool_id)) != NULL)
			bridge_tool_start(b, t, now);
		break;
	case BRIDGE_BLOCK_OTHER:
		break;
	}
}

static void
bridge_blocks_stop(struct bridge *b, uint64_t now)
{
	size_t	i;

	for (i = 0; i < b->nblocks; i++)
		bridge_block_stop(b, &b->blocks[i], now);
}

static void
bridge_msg_start(struct bridge *b, const cJSON *msg, uint64_t now)
{
	const char	*id = json_str(msg, "id");

	bridge_blocks_stop(b, now);
	bridge_msg_commit(b);
	b->nblocks = 0;
	bridge_copy_id(b->msg_id, sizeof b->msg_id, id);
	bridge_usage(&b->msg_tokens, cJSON_GetObjectItemCaseSensitive(msg,
	    "usage"), 0);
}

static int
bridge_event_index(const cJSON *ev)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(ev, "index");

	if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
	    v->valuedouble > INT32_MAX)
		return -1;
	return (int)v->valuedouble;
}

static void
bridge_block_start(struct bridge *b, const cJSON *ev, uint64_t now)
{
	const cJSON		*cb = cJSON_GetObjectItemCaseSensitive(ev,
				    "content_block");
	struct bridge_block	*blk;
	int			 index = bridge_event_index(ev);

	if (index < 0)
		return;
	if ((blk = bridge_block_find(b, index)) == NULL) {
		if (b->nblocks == BRIDGE_MAX_BLOCKS)
			return;		/* untimed; deltas still flow */
		blk = &b->blocks[b->nblocks++];
	}
	memset(blk, 0, sizeof *blk);
	blk->index = index;
	blk->kind = bridge_kind(json_str(cb, "type"));
	blk->open = 1;
	blk->start_ms = now;
	blk->text_hash = BRIDGE_FNV_OFFSET;
	bridge_copy_id(blk->tool_id, sizeof blk->tool_id, json_str(cb, "id"));
}

static uint64_t
bridge_hash(uint64_t h, const char *s, size_t *len)
{
	for (; *s != '\0'; s++, (*len)++)
		h = (h ^ (unsigned char)*s) * BRIDGE_FNV_PRIME;
	return h;
}

static void
bridge_block_delta(struct bridge *b, const cJSON *ev, uint64_t now)
{
	const cJSON		*delta = cJSON_GetObjectItemCaseSensitive(ev,
				    "delta");
	const char		*dtype = json_str(delta, "type");
	struct bridge_block	*blk = bridge_block_find(b,
				    bridge_event_index(ev));
	const char		*text = NULL, *type = NULL;

	if (dtype == NULL || strcmp(dtype, "signature_delta") == 0)
		return;		/* not content */
	bridge_ttft(b, now);
	if (strcmp(dtype, "text_delta") == 0) {
		text = json_str(delta, "text");
		type = "answer";
	} else if (strcmp(dtype, "thinking_delta") == 0) {
		text = json_str(delta, "thinking");
		type = "thinking";
	}
	if (text == NULL)
		return;
	if (blk != NULL)
		blk->text_hash = bridge_hash(blk->text_hash, text,
		    &blk->text_len);
	bridge_emit_text(b, type, text);
}

/* Returns 0 if handled, -1 for an unknown event type. */
static int
bridge_stream_event(struct bridge *b, const cJSON *line, uint64_t now)
{
	const cJSON		*ev = cJSON_GetObjectItemCaseSensitive(line,
				    "event");
	const char		*type = json_str(ev, "type");
	struct bridge_block	*blk;

	if (type == NULL)
		return -1;
	if (strcmp(type, "message_start") == 0)
		bridge_msg_start(b, cJSON_GetObjectItemCaseSensitive(ev,
		    "message"), now);
	else if (strcmp(type, "content_block_start") == 0)
		bridge_block_start(b, ev, now);
	else if (strcmp(type, "content_block_delta") == 0)
		bridge_block_delta(b, ev, now);
	else if (strcmp(type, "content_block_stop") == 0) {
		blk = bridge_block_find(b, bridge_event_index(ev));
		if (blk != NULL)
			bridge_block_stop(b, blk, now);
	} else if (strcmp(type, "message_delta") == 0)
		bridge_usage(&b->msg_tokens,
		    cJSON_GetObjectItemCaseSensitive(ev, "usage"), 1);
	else if (strcmp(type, "message_stop") == 0)
		bridge_blocks_stop(b, now);
	else if (strcmp(type, "ping") != 0 && strcmp(type, "error") != 0)
		return -1;
	return 0;
}

/* Complete messages (assistant, user). */

/*
 * Was this text of message id streamed as deltas already?  The first
 * block of the same kind that no assistant line has claimed is its
 * stream; it counts only if it carried exactly this text (a broken
 * stream's partial deltas do not hide the fallback's whole text).
 */
static int
bridge_streamed(struct bridge *b, const char *id, enum bridge_kind kind,
    const char *text)
{
	struct bridge_block	*blk;
	size_t			 i, len = 0;

	if (id == NULL || text == NULL ||
	    strncmp(id, b->msg_id, BRIDGE_ID_MAX - 1) != 0)
		return 0;
	for (i = 0; i < b->nblocks; i++) {
		blk = &b->blocks[i];
		if (blk->kind != kind || blk->consumed)
			continue;
		blk->consumed = 1;
		return blk->text_len > 0 &&
		    bridge_hash(BRIDGE_FNV_OFFSET, text, &len) ==
		    blk->text_hash && len == blk->text_len;
	}
	return 0;
}

static void
bridge_tool_use(struct bridge *b, const cJSON *block, const char *parent,
    uint64_t now)
{
	const char		*id = json_str(block, "id");
	const char		*name = json_str(block, "name");
	const cJSON		*input = cJSON_GetObjectItemCaseSensitive(block,
				    "input");
	const char		*path;
	struct bridge_tool	*t;
	struct bridge_block	*blk;
	cJSON			*data;
	size_t			 i;

	if (id == NULL || name == NULL)
		return;
	t = bridge_tool_get(b, id, name);
	if (t != NULL) {
		if (t->seen_use)
			return;		/* repeated by a fallback */
		t->seen_use = 1;
	}
	b->stats.tool_calls++;
	stats_tool(&b->stats, name)->calls++;
	if (t != NULL && (path = proto_tool_file(name, input)) != NULL)
		t->file = xstrdup(path);
	if (t != NULL) {
		/* Streamed: the clock starts when its input is complete. */
		blk = NULL;
		for (i = 0; i < b->nblocks; i++)
			if (b->blocks[i].open && b->blocks[i].kind ==
			    BRIDGE_BLOCK_TOOL &&
			    strcmp(b->blocks[i].tool_id, t->id) == 0)
				blk = &b->blocks[i];
		if (blk == NULL)
			bridge_tool_start(b, t, now);
	}

	data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "tool_id", id);
	cJSON_AddStringToObject(data, "name", name);
	if (cJSON_IsObject(input))
		cJSON_AddItemToObject(data, "input",
		    cJSON_Duplicate(input, 1));
	else
		cJSON_AddObjectToObject(data, "input");
	if (parent != NULL)
		cJSON_AddStringToObject(data, "parent_tool_id", parent);
	bridge_emit(b, "tool_use", data);
}

static void
bridge_assistant(struct bridge *b, const cJSON *line, uint64_t now)
{
	const cJSON	*msg = cJSON_GetObjectItemCaseSensitive(line,
			    "message");
	const cJSON	*content = cJSON_GetObjectItemCaseSensitive(msg,
			    "content");
	const char	*id = json_str(msg, "id");
	const char	*parent = json_str(line, "parent_tool_use_id");
	const cJSON	*block;
	const char	*btype, *text, *type;
	enum bridge_kind kind;

	cJSON_ArrayForEach(block, content) {
		if ((btype = json_str(block, "type")) == NULL)
			continue;
		kind = bridge_kind(btype);
		if (kind != BRIDGE_BLOCK_OTHER)
			bridge_ttft(b, now);
		if (strcmp(btype, "tool_use") == 0) {
			bridge_tool_use(b, block, parent, now);
			continue;
		}
		if (strcmp(btype, "text") == 0) {
			text = json_str(block, "text");
			type = "answer";
		} else if (strcmp(btype, "thinking") == 0) {
			text = json_str(block, "thinking");
			type = "thinking";
		} else
			continue;
		/* A sub-agent's own words stay inside its Task. */
		if (parent != NULL || bridge_streamed(b, id, kind, text))
			continue;
		bridge_emit_text(b, type, text);
	}
}

/* A tool_result's content (a string or blocks), capped. */
static void
bridge_tool_output(struct bridge_buf *bb, const cJSON *content)
{
	const cJSON	*blk;
	const char	*type, *text;
	char		 tag[STATS_TOOL_NAME_MAX];
	int		 first = 1;

	if (cJSON_IsString(content)) {
		bridge_buf_add(bb, content->valuestring,
		    strlen(content->valuestring));
		return;
	}
	cJSON_ArrayForEach(blk, content) {
		if (!first)
			bridge_buf_add(bb, "\n", 1);
		first = 0;
		type = json_str(blk, "type");
		if ((text = json_str(blk, "text")) != NULL)
			bridge_buf_add(bb, text, strlen(text));
		else {
			snprintf(tag, sizeof tag, "[%s]",
			    type != NULL ? type : "?");
			bridge_buf_add(bb, tag, strlen(tag));
		}
	}
}

static void
bridge_tool_result(struct bridge *b, const cJSON *block, uint64_t now)
{
	const char		*id = json_str(block, "tool_use_id");
	int			 is_error = cJSON_IsTrue(
				    cJSON_GetObjectItemCaseSensitive(block,
				    "is_error"));
	struct bridge_tool	*t = bridge_tool_find(b, id);
	struct bridge_buf	 bb = { NULL, 0, BRIDGE_TOOL_OUTPUT_MAX, 0 };
	uint64_t		 d = 0;
	cJSON			*data;

	bridge_tool_output(&bb, cJSON_GetObjectItemCaseSensitive(block,
	    "content"));
	if (t != NULL) {
		d = bridge_tool_stop(b, t, now);
		if (t->name[0] != '\0' && is_error)
			stats_tool(&b->stats, t->name)->errors++;
		if (!is_error && t->file != NULL)
			stats_file(&b->stats, t->file);
		if (is_error && t->error == NULL && bb.p != NULL)
			t->error = xstrndup(bb.p, bridge_utf8_cut(bb.p, bb.len,
			    BRIDGE_REASON_MAX));
	}

	data = cJSON_CreateObject();
	if (id != NULL)
		cJSON_AddStringToObject(data, "tool_id", id);
	else
		cJSON_AddNullToObject(data, "tool_id");
	if (t != NULL && t->name[0] != '\0')
		cJSON_AddStringToObject(data, "name", t->name);
	else
		cJSON_AddNullToObject(data, "name");
	cJSON_AddBoolToObject(data, "is_error", is_error);
	cJSON_AddStringToObject(data, "output", bb.p != NULL ? bb.p : "");
	cJSON_AddBoolToObject(data, "truncated", bb.truncated);
	cJSON_AddNumberToObject(data, "duration_ms", (double)d);
	free(bb.p);
	bridge_emit(b, "tool_result", data);
}

/* Returns 1 if the line carried a tool result. */
static int
bridge_user(struct bridge *b, const cJSON *line, uint64_t now)
{
	const cJSON	*msg = cJSON_GetObjectItemCaseSensitive(line,
			    "message");
	const cJSON	*content = cJSON_GetObjectItemCaseSensitive(msg,
			    "content");
	const cJSON	*block;
	const char	*btype;
	int		 handled = 0;

	/* Echoes of our own input and local command output. */
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(line, "isReplay")))
		return 0;
	cJSON_ArrayForEach(block, content) {
		btype = json_str(block, "type");
		if (btype != NULL && strcmp(btype, "tool_result") == 0) {
			bridge_tool_result(b, block, now);
			handled = 1;
		}
	}
	return handled;
}

/* Control and system lines. */

/* The line as a `system` event: its fields, less the envelope. */
static void
bridge_emit_system(struct bridge *b, const cJSON *line, const char *subtype)
{
	cJSON	*data = cJSON_Duplicate(line, 1);

	cJSON_DeleteItemFromObjectCaseSensitive(data, "type");
	cJSON_DeleteItemFromObjectCaseSensitive(data, "uuid");
	cJSON_DeleteItemFromObjectCaseSensitive(data, "session_id");
	if (subtype != NULL) {
		cJSON_DeleteItemFromObjectCaseSensitive(data, "subtype");
		cJSON_AddStringToObject(data, "subtype", subtype);
	}
	bridge_emit(b, "system", data);
}

/*
 * Rate limits, one event for apps: system {subtype:"rate_limit", source,
 * ...}.  From the CLI's rate_limit_event (its rate_limit_info: status,
 * resetsAt, rateLimitType, utilization, ... as the CLI's own schema has
 * them), or from an api_retry of a 429 or 529.
 */
static void
bridge_rate_limit_event(struct bridge *b, const cJSON *line)
{
	const cJSON	*info = cJSON_GetObjectItemCaseSensitive(line,
			    "rate_limit_info");
	const cJSON	*v;
	cJSON		*d = cJSON_CreateObject();

	/* subtype first: the master recognizes the event by its start. */
	cJSON_AddStringToObject(d, "subtype", "rate_limit");
	cJSON_AddStringToObject(d, "source", "cli");
	if (cJSON_IsObject(info))
		cJSON_ArrayForEach(v, info)
			if (strcmp(v->string, "subtype") != 0 &&
			    strcmp(v->string, "source") != 0)
				cJSON_AddItemToObject(d, v->string,
				    cJSON_Duplicate(v, 1));
	bridge_emit(b, "system", d);
}

static void
bridge_rate_limit_retry(struct bridge *b, const cJSON *line)
{
	static const char *keep[] = { "attempt", "max_retries",
	    "retry_delay_ms", "error_status", "error" };
	const cJSON	*v;
	cJSON		*d = cJSON_CreateObject();
	size_t		 i;

	cJSON_AddStringToObject(d, "subtype", "rate_limit");
	cJSON_AddStringToObject(d, "source", "api_retry");
	cJSON_AddStringToObject(d, "status", "retrying");
	for (i = 0; i < nitems(keep); i++)
		if ((v = cJSON_GetObjectItemCaseSensitive(line, keep[i])) != NULL)
			cJSON_AddItemToObject(d, keep[i], cJSON_Duplicate(v, 1));
	bridge_emit(b, "system", d);
}

/* Returns 0 handled, 1 ignored, -1 unknown. */
static int
bridge_system(struct bridge *b, const cJSON *line, uint64_t now)
{
	const char	*sub = json_str(line, "subtype");
	const char	*sid, *reason;

	if (sub == NULL)
		return -1;
	if (strcmp(sub, "init") == 0) {
		bridge_turn_implicit(b, now);
		sid = json_str(line, "session_id");
		if (sid != NULL && b->cb.init != NULL)
			b->cb.init(b->cb.arg, sid);
		return 0;
	}
	if (strcmp(sub, "permission_denied") == 0) {
		if ((reason = json_str(line, "message")) == NULL)
			reason = json_str(line, "decision_reason");
		bridge_emit_denial(b, json_str(line, "tool_use_id"),
		    json_str(line, "tool_name"), reason);
		return 0;
	}
	if (bridge_in(sub, bridge_system_forward,
	    nitems(bridge_system_forward))) {
		bridge_emit_system(b, line, NULL);
		if (strcmp(sub, "api_retry") == 0 && json_str(line, "error") !=
		    NULL && bridge_in(json_str(line, "error"),
		    bridge_limit_errors, nitems(bridge_limit_errors)))
			bridge_rate_limit_retry(b, line);
		return 0;
	}
	if (bridge_in(sub, bridge_system_ignore, nitems(bridge_system_ignore)))
		return 1;
	return -1;
}

static void
bridge_control_request(struct bridge *b, const cJSON *line)
{
	const char	*id = json_str(line, "request_id");
	const cJSON	*req = cJSON_GetObjectItemCaseSensitive(line,
			    "request");

	if (id == NULL || !cJSON_IsObject(req)) {
		b->counters.unknown++;
		return;
	}
	if (b->cb.control_request != NULL)
		b->cb.control_request(b->cb.arg, id, req);
}

static void
bridge_control_response(struct bridge *b, const cJSON *line)
{
	const cJSON	*resp = cJSON_GetObjectItemCaseSensitive(line,
			    "response");
	const char	*id = json_str(resp, "request_id");
	const char	*sub = json_str(resp, "subtype");
	int		 ok;

	if (id == NULL || sub == NULL) {
		b->counters.unknown++;
		return;
	}
	ok = strcmp(sub, "success") == 0;
	if (b->cb.control_response == NULL)
		return;
	/* Success: the answer's body; error: the envelope with "error". */
	if (ok)
		b->cb.control_response(b->cb.arg, id, 1,
		    cJSON_GetObjectItemCaseSensitive(resp, "response"));
	else
		b->cb.control_response(b->cb.arg, id, 0, resp);
}

/* The CLI withdraws one of its control requests (can_use_tool). */
static void
bridge_control_cancel(struct bridge *b, const cJSON *line)
{
	const char	*id = json_str(line, "request_id");

	if (id == NULL) {
		b->counters.unknown++;
		return;
	}
	if (b->cb.control_cancel != NULL)
		b->cb.control_cancel(b->cb.arg, id);
}

/* The turn's end. */

static void
bridge_result(struct bridge *b, const cJSON *line, uint64_t now)
{
	struct bridge_turn	 t;
	const cJSON		*v, *den;
	const char		*text;
	char			*capped = NULL;
	double			 cost;
	size_t			 i;

	bridge_turn_implicit(b, now);
	memset(&t, 0, sizeof t);
	t.is_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(line,
	    "is_error"));
	t.interrupted = b->interrupting;
	t.subtype = json_str(line, "subtype");
	t.terminal_reason = json_str(line, "terminal_reason");
	t.stop_reason = json_str(line, "stop_reason");
	v = cJSON_GetObjectItemCaseSensitive(line, "errors");
	t.errors = cJSON_IsArray(v) ? v : NULL;
	v = cJSON_GetObjectItemCaseSensitive(line, "origin");
	t.origin = cJSON_IsObject(v) ? v : NULL;
	if ((text = json_str(line, "result")) != NULL) {
		i = strlen(text);
		if (i > BRIDGE_RESULT_MAX)
			text = capped = xstrndup(text,
			    bridge_utf8_cut(text, i, BRIDGE_RESULT_MAX));
	}
	t.result = text;

	/* Denials the CLI decided alone and did not announce. */
	den = cJSON_GetObjectItemCaseSensitive(line, "permission_denials");
	cJSON_ArrayForEach(v, den) {
		const char		*id = json_str(v, "tool_use_id");
		struct bridge_tool	*tool = bridge_tool_find(b, id);

		bridge_emit_denial(b, id, json_str(v, "tool_name"),
		    tool != NULL ? tool->error : NULL);
	}

	/* Close what the turn left open: an interrupt can stop anything. */
	bridge_blocks_stop(b, now);
	for (i = 0; i < b->ntools; i++)
		bridge_tool_stop(b, &b->tools[i], now);
	bridge_msg_commit(b);

	b->stats.turns = 1;
	v = cJSON_GetObjectItemCaseSensitive(line, "usage");
	if (cJSON_IsObject(v))
		bridge_usage(&b->stats.tokens, v, 0);
	else
		b->stats.tokens = b->stream_tokens;
	v = cJSON_GetObjectItemCaseSensitive(line, "total_cost_usd");
	if (cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
	    v->valuedouble >= 0) {
		/* Cumulative per process: this turn is the increase. */
		cost = v->valuedouble;
		if (cost > b->last_cost) {
			b->stats.cost_usd = cost - b->last_cost;
			b->last_cost = cost;
		}
	}
	b->stats.errors = t.is_error ? 1 : 0;
	bridge_fill_times(b, &b->stats, now);

	/* The turn is over before turn_end runs: it may start the next. */
	stats_clear(&b->ended);
	memcpy(&b->ended, &b->stats, sizeof b->ended);	/* files move */
	stats_init(&b->stats);
	bridge_turn_reset(b);
	b->interrupting = 0;
	t.stats = &b->ended;
	if (b->cb.turn_end != NULL)
		b->cb.turn_end(b->cb.arg, &t);
	free(capped);
}

/* Lines. */

/* Returns 0 handled, 1 ignored, -1 unknown. */
static int
bridge_dispatch(struct bridge *b, const cJSON *line, uint64_t now)
{
	const char	*type = json_str(line, "type");

	if (type == NULL)
		return -1;
	if (strcmp(type, "stream_event") == 0) {
		/* Sub-agents' streams would interleave with ours. */
		if (json_str(line, "parent_tool_use_id") != NULL)
			return 1;
		bridge_turn_implicit(b, now);
		return bridge_stream_event(b, line, now);
	}
	if (strcmp(type, "assistant") == 0) {
		bridge_turn_implicit(b, now);
		bridge_assistant(b, line, now);
		return 0;
	}
	if (strcmp(type, "user") == 0) {
		bridge_turn_implicit(b, now);
		return bridge_user(b, line, now) ? 0 : 1;
	}
	if (strcmp(type, "system") == 0)
		return bridge_system(b, line, now);
	if (strcmp(type, "result") == 0) {
		bridge_result(b, line, now);
		return 0;
	}
	if (strcmp(type, "control_request") == 0) {
		bridge_control_request(b, line);
		return 0;
	}
	if (strcmp(type, "control_response") == 0) {
		bridge_control_response(b, line);
		return 0;
	}
	if (strcmp(type, "rate_limit_event") == 0) {
		bridge_rate_limit_event(b, line);
		return 0;
	}
	if (strcmp(type, "control_cancel_request") == 0) {
		bridge_control_cancel(b, line);
		return 0;
	}
	if (strcmp(type, "tool_progress") == 0) {
		bridge_emit_system(b, line, "tool_progress");
		return 0;
	}
	if (bridge_in(type, bridge_type_ignore, nitems(bridge_type_ignore)))
		return 1;
	return -1;
}

void
bridge_line(struct bridge *b, const char *line, size_t len, uint64_t now_ms)
{
	cJSON	*o;
	size_t	 i;

	b->counters.lines++;
	for (i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			break;
	if (i == len) {
		b->counters.ignored++;	/* blank */
		return;
	}
	o = cJSON_ParseWithLength(line, len);
	if (!cJSON_IsObject(o)) {
		b->counters.bad_json++;
		log_debug("%s: not a JSON object (%zu bytes)", __func__, len);
		cJSON_Delete(o);
		return;
	}
	switch (bridge_dispatch(b, o, now_ms)) {
	case 1:
		b->counters.ignored++;
		break;
	case -1:
		b->counters.unknown++;
		log_debug("%s: unknown line type %s", __func__,
		    json_str(o, "type") != NULL ? json_str(o, "type") :
		    "(none)");
		break;
	}
	cJSON_Delete(o);
}

void
bridge_line_dropped(struct bridge *b, size_t len)
{
	cJSON	*data;

	b->counters.dropped++;
	data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "subtype", "line_dropped");
	cJSON_AddNumberToObject(data, "bytes", (double)len);
	bridge_emit(b, "system", data);
}

void
bridge_permission_denied(struct bridge *b, const char *tool_id)
{
	bridge_deny(b, tool_id, NULL);
}

const struct bridge_counters *
bridge_counters(const struct bridge *b)
{
	return &b->counters;
}

struct bridge *
bridge_new(const struct bridge_cb *cb)
{
	struct bridge	*b = xcalloc(1, sizeof *b);

	b->cb = *cb;
	stats_init(&b->stats);
	stats_init(&b->snapshot);
	stats_init(&b->ended);
	return b;
}

void
bridge_free(struct bridge *b)
{
	if (b == NULL)
		return;
	bridge_turn_reset(b);
	stats_clear(&b->snapshot);
	stats_clear(&b->ended);
	free(b->tools);
	free(b);
}
