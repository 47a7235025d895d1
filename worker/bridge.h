/*
 * The stream-json bridge: turns each stdout line of the Claude CLI into
 * HotPlex events (DESIGN.md section 3) and per-turn stats (section 5).
 * One bridge per CLI process.  Pure: no I/O, no clock of its own (callers
 * pass a monotonic time in ms), so recorded transcripts replay in tests.
 */
#ifndef HP_BRIDGE_H
#define HP_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/stats.h"

#define BRIDGE_TOOL_OUTPUT_MAX	(16 * 1024)	/* tool_result output cap */
#define BRIDGE_RESULT_MAX	(1024 * 1024)	/* done.result cap */

/* How a turn ended, handed to bridge_cb.turn_end. */
struct bridge_turn {
	int		 is_error;	/* result.is_error */
	int		 interrupted;	/* we asked for an interrupt and it ended */
	const char	*subtype;	/* result.subtype */
	const char	*result;	/* final text, may be NULL */
	const char	*terminal_reason; /* may be NULL */
	const char	*stop_reason;	/* may be NULL */
	const cJSON	*errors;	/* result.errors array or NULL */
	const cJSON	*origin;	/* a turn the CLI began itself, or NULL */
	struct stats	*stats;		/* this turn: turns=1, tokens, cost delta, durations, tools, files */
};

struct bridge_cb {
	/*
	 * A normalized event: type is an event type of DESIGN.md section 3
	 * (thinking, answer, tool_use, tool_result, permission_denied,
	 * system); data ownership passes to the callee.
	 */
	void	(*event)(void *arg, const char *type, cJSON *data);
	/* system/init seen: the CLI's session id (may differ after /clear). */
	void	(*init)(void *arg, const char *cli_session_id);
	/*
	 * result seen: the turn is over; t, its strings and t->stats live
	 * for the call (stats_copy to keep them).  The bridge is already
	 * idle: bridge_turn_start may be called from here.
	 */
	void	(*turn_end)(void *arg, const struct bridge_turn *t);
	/* The CLI asks the host something (can_use_tool, ...); request borrowed. */
	void	(*control_request)(void *arg, const char *request_id,
		    const cJSON *request);
	/* Answer to one of our control requests; response borrowed, may be NULL. */
	void	(*control_response)(void *arg, const char *request_id,
		    int ok, const cJSON *response);
	void	*arg;
	/* The CLI withdrew its control request request_id (may be NULL). */
	void	(*control_cancel)(void *arg, const char *request_id);
};

struct bridge;

struct bridge	*bridge_new(const struct bridge_cb *);
void		 bridge_free(struct bridge *);
/* A user turn was written to the CLI at now_ms. */
void		 bridge_turn_start(struct bridge *, uint64_t now_ms);
/* We sent an interrupt: the result that follows ends the turn interrupted. */
void		 bridge_interrupting(struct bridge *);
/*
 * One stdout line (without its newline), not NUL-terminated.  Non-JSON
 * lines and unknown types are counted and ignored, never fatal.
 */
void		 bridge_line(struct bridge *, const char *line, size_t len,
		    uint64_t now_ms);
/* A line over the cap was dropped: emits system/line_dropped. */
void		 bridge_line_dropped(struct bridge *, size_t len);
/*
 * The host denied this tool call itself (can_use_tool): counted once in
 * the turn's permission_denials and not reported again as a CLI denial.
 */
void		 bridge_permission_denied(struct bridge *, const char *tool_id);
/*
 * The stats of the turn in flight so far (for a turn ended by us):
 * durations up to now_ms, tokens from the streamed usage (no result, so
 * cost 0: the next result's cumulative cost carries it).  Does not end
 * the turn; turns = 0 if none is in flight.  The stats belong to the
 * bridge and stay valid until the next bridge_turn_stats or bridge_free.
 */
struct stats	*bridge_turn_stats(struct bridge *, uint64_t now_ms);

/* Counters, for logs and tests. */
struct bridge_counters {
	uint64_t	lines;
	uint64_t	bad_json;
	uint64_t	unknown;	/* unknown type or subtype */
	uint64_t	ignored;	/* known and deliberately ignored */
	uint64_t	dropped;	/* over the line cap */
};
const struct bridge_counters *bridge_counters(const struct bridge *);

#endif
