/*
 * Prompt screening in the master: the firewall policy (policy/firewall/), the
 * built-in rules plus those of firewall_rules, compiled once and checked
 * against every execute's prompt, with an audit line for every block; the
 * same rule texts go to every new session's worker for its tool calls.
 */
#ifndef HP_SCREEN_H
#define HP_SCREEN_H

#include <sys/types.h>

#include <stddef.h>

#include <cJSON.h>

struct config;
struct policy;

struct screen {
	struct policy	*policy;	/* NULL: firewall = off */
	cJSON		*files;		/* array of the rule files' names */
	cJSON		*rules;		/* [{name,text}]: what workers compile */
	int		 threshold;
};

/* A new screen from the config; NULL with err on a rule that fails. */
struct screen	*screen_load(const struct config *, char *err, size_t errlen);
void		 screen_free(struct screen *);
/* -1 with err when a rule file firewall_rules names cannot be read now. */
int		 screen_readable(const struct config *, char *err, size_t errlen);
struct policy_verdict;
void		 screen_audit(uid_t, pid_t, const char *session,
		    const struct policy_verdict *);

#endif
