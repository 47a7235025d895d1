/*
 * Prompt screening in the master: the firewall policy (policy/firewall/), the
 * built-in rules plus those of firewall_rules, compiled once and checked
 * against every execute's prompt, with an audit line for every block.  The
 * same rule texts go to every worker when it is spawned (MSG_POLICY), which
 * compiles them while a spare, for its session's tool calls.  A screen is
 * counted: the daemon holds the one in force, each worker and session the
 * one it was given, so a reload changes both sides for new sessions only.
 */
#ifndef HP_SCREEN_H
#define HP_SCREEN_H

#include <sys/types.h>

#include <stddef.h>

#include <cJSON.h>

#include "common/msg.h"
#include "policy/firewall/firewall.h"

struct config;

struct screen {
	struct policy	*policy;	/* NULL: firewall = off */
	int		 threshold;
	int		 refs;
	uint64_t	 generation;	/* 1, 2, ...: a load each */
	char		 digest[POLICY_DIGEST_LEN + 1];
	struct msg_policy msg;		/* what the workers get: the texts */
	char		*bufs[2 * POLICY_MAX_FILES];	/* texts, names */
	size_t		 nbufs;
};

/* A new screen from the config; NULL with err on a rule that fails. */
struct screen	*screen_load(const struct config *, char *err, size_t errlen);
/* Puts it in force (hp.screen), unless the rules are the same. */
void		 screen_install(struct screen *);
struct screen	*screen_ref(struct screen *);
/* Drops a reference; the last frees it.  NULL is ignored. */
void		 screen_unref(struct screen *);
/* -1 with err when a rule file firewall_rules names cannot be read now. */
int		 screen_readable(const struct config *, char *err, size_t errlen);
struct policy_verdict;
void		 screen_audit(uid_t, pid_t, const char *session,
		    const struct policy_verdict *);

#endif
