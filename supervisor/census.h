/*
 * Counts of the session table kept as sessions come, change state and go:
 * sessions per state, live (not ended) sessions per uid, and per uid
 * they run as.  Admission
 * (max_sessions, max_sessions_per_uid), /metrics and the status op read
 * them instead of walking the table.
 */
#ifndef HP_CENSUS_H
#define HP_CENSUS_H

#include <sys/types.h>

#include <stddef.h>

#include "common/proto.h"

#define CENSUS_NONE	(-1)	/* not in the table */

void	census_move(uid_t, int from, int to);	/* states or CENSUS_NONE */
size_t	census_state(enum session_state);
size_t	census_live(void);		/* every state but ended */
size_t	census_live_uid(uid_t);
void	census_run(uid_t run_uid, int held);	/* a live session runs as it */
size_t	census_run_held(uid_t run_uid);
void	census_clear(void);

#endif
