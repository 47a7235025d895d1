/*
 * SessionStats (DESIGN.md section 5): what a turn and a session cost.
 * The worker fills one per turn from the CLI's events; the master adds the
 * turns of a session together (stats_add) and keeps totals per uid.
 */
#ifndef HP_STATS_H
#define HP_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define STATS_MAX_TOOLS		64	/* distinct tool names kept */
#define STATS_MAX_FILES		128	/* distinct written/edited paths kept */
#define STATS_TOOL_NAME_MAX	64
#define STATS_PATH_MAX		1024

struct stats_tokens {
	uint64_t	input;
	uint64_t	output;
	uint64_t	cache_read;
	uint64_t	cache_write;
};

struct stats_durations {		/* milliseconds */
	uint64_t	total;
	uint64_t	thinking;
	uint64_t	tool;
	uint64_t	generation;
	uint64_t	other;
	uint64_t	ttft;		/* time to first token (last turn; max over a session is not useful: kept as last) */
};

struct stats_tool {
	char		name[STATS_TOOL_NAME_MAX];
	uint64_t	calls;
	uint64_t	errors;
	uint64_t	duration_ms;
};

struct stats {
	uint64_t		turns;
	struct stats_tokens	tokens;
	double			cost_usd;
	struct stats_durations	duration_ms;
	uint64_t		tool_calls;
	size_t			ntools;
	struct stats_tool	tools[STATS_MAX_TOOLS];
	size_t			nfiles;
	char			*files[STATS_MAX_FILES];	/* owned */
	uint64_t		permission_denials;
	uint64_t		danger_blocks;
	uint64_t		errors;
};

void	 stats_init(struct stats *);
void	 stats_clear(struct stats *);		/* frees files, zeroes */
void	 stats_copy(struct stats *dst, const struct stats *src);
/* dst += src; ttft takes src's value when src->turns > 0. */
void	 stats_add(struct stats *dst, const struct stats *src);
uint64_t stats_tokens_total(const struct stats *);
/*
 * Tool accounting; names beyond STATS_MAX_TOOLS go to an "(other)" slot,
 * an empty or NULL name to "(unknown)".
 */
struct stats_tool *stats_tool(struct stats *, const char *name);
void	 stats_file(struct stats *, const char *path);

/* The JSON of DESIGN.md section 5 (without the session-level fields). */
cJSON	*stats_to_json(const struct stats *);
/* Inverse of stats_to_json; unknown fields ignored; -1 on a bad shape. */
int	 stats_from_json(struct stats *, const cJSON *);

#endif
