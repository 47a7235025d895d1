/*
 * Prompt and tool-call firewall: rule files of Oniguruma patterns matched
 * against normalized copies of a text (raw, Unicode-folded, shell-cleaned,
 * decoded), behind a literal prefilter, with bounded searches.
 *
 * A loaded policy is immutable but for one thing: policy_check() takes it
 * const and keeps all its scratch state on the call, so one policy may be
 * shared by any number of callers in one thread; a policy from
 * policy_load_texts_again() compiles each pattern the first time a check
 * needs it (a worker runs few of its rules), so such a policy is not for
 * several threads at once.  A verdict owns copies of everything it
 * reports and stays valid after the policy is freed.  See
 * hotplex-policy(5).
 */
#ifndef HP_POLICY_H
#define HP_POLICY_H

#include <stddef.h>

#include <cJSON.h>

#define POLICY_MAX_INPUT	(1024 * 1024)	/* longer texts are blocked */
#define POLICY_MAX_FILES	64		/* rule files per policy */
#define POLICY_MAX_RULES	4096		/* rules per policy */
#define POLICY_MAX_LINE		4096		/* bytes per rule file line */
#define POLICY_MAX_HINTS	32		/* literal hints (needs) per rule */
#define POLICY_MAX_HINT		64		/* bytes per literal hint */
#define POLICY_MAX_ID		64		/* bytes per rule id, with NUL */
#define POLICY_MAX_PATTERN	16384		/* bytes per expanded pattern */
#define POLICY_MAX_MACROS	64		/* "define"s per rule file */
#define POLICY_MAX_CATEGORY	32		/* bytes per category, with NUL */
#define POLICY_MAX_MESSAGE	160		/* bytes per message, with NUL */
#define POLICY_MAX_MATCHES	16		/* matches kept in a verdict */
#define POLICY_MAX_EXCERPT	96		/* bytes of excerpt, without NUL */
#define POLICY_DEFAULT_THRESHOLD 5		/* score that blocks */
#define POLICY_DEFAULT_REACH	0		/* match start to its hint, max */
#define POLICY_MAX_REACH	1024		/* ... as a rule may set it */
#define POLICY_RETRY_LIMIT	100000UL	/* backtracks per match attempt */
#define POLICY_SEARCH_LIMIT	1000000UL	/* backtracks per search */
#define POLICY_CONTEXT_DIVISOR	2	/* a quoted command's share, 1/N */

/* What a text is: a user prompt, a Bash tool command, a file path. */
enum policy_target {
	POLICY_PROMPT = 0,
	POLICY_BASH,
	POLICY_PATH
};

enum policy_severity {
	POLICY_SEV_NOTICE = 2,
	POLICY_SEV_WARNING = 3,
	POLICY_SEV_ERROR = 4,
	POLICY_SEV_CRITICAL = 5
};

/* The copy of the text a rule matched in. */
enum policy_form {
	POLICY_FORM_RAW = 0,
	POLICY_FORM_FOLDED,
	POLICY_FORM_SHELL,
	POLICY_FORM_DECODED,
	POLICY_NFORMS
};

struct policy_match {
	char			 rule[POLICY_MAX_ID];
	char			 category[POLICY_MAX_CATEGORY];
	char			 message[POLICY_MAX_MESSAGE];
	int			 severity;
	enum policy_form	 form;
	int			 overrun;	/* retry limit hit: counted */
	int			 allowed;	/* cancelled by an allow rule */
};

struct policy_verdict {
	int			 blocked;
	int			 score;
	int			 threshold;
	int			 quoted;	/* a prompt quoting commands */
	size_t			 nmatches;	/* entries used in matches[] */
	size_t			 nfound;	/* all matches, even past max */
	struct policy_match	 matches[POLICY_MAX_MATCHES];
	char			 excerpt[POLICY_MAX_EXCERPT + 1];
};

/* Target bits of a rule: which texts it screens. */
#define POLICY_TARGET_BIT(t)	(1U << (t))
#define POLICY_TARGET_ANY	(POLICY_TARGET_BIT(POLICY_PROMPT) | \
				 POLICY_TARGET_BIT(POLICY_BASH) | \
				 POLICY_TARGET_BIT(POLICY_PATH))

/*
 * What a context rule says of a prompt: that it asks about a command
 * (to explain, review or lint it) or asks to run one.  A prompt that
 * asks about commands and asks to run none counts every rule that also
 * screens Bash commands at 1/POLICY_CONTEXT_DIVISOR of its severity.
 */
enum policy_context {
	POLICY_CONTEXT_NONE = 0,
	POLICY_CONTEXT_ASK,
	POLICY_CONTEXT_RUN
};

/*
 * One rule as written in a rule file, handed to a callback by the parser.
 * The strings live in the parser's scratch space and are valid only during
 * the call.  allow is NULL for an ordinary rule.
 */
struct policy_rule_def {
	const char		*file;
	unsigned		 line;
	const char		*id;
	const char		*category;
	const char		*message;
	const char		*pattern;
	const char		*allow;
	const char		*hints[POLICY_MAX_HINTS];
	size_t			 nhints;
	const char		*needs[POLICY_MAX_HINTS];
	size_t			 nneeds;
	int			 severity;
	unsigned		 targets;	/* POLICY_TARGET_BIT()s */
	int			 reach;		/* -1: POLICY_DEFAULT_REACH */
	int			 line_only;	/* starts on the hint's line */
	enum policy_context	 context;	/* a context rule: what it says */
};

/* Returns 0 to go on, -1 after writing "why" to err to stop the parse. */
typedef int	(*policy_rule_cb)(const struct policy_rule_def *, void *,
		    char *, size_t);

struct policy;

int		 policy_parse_rules(const char *name, const char *buf,
		    size_t len, policy_rule_cb, void *, char *err,
		    size_t errlen);

/*
 * Loads rule files in order into a new policy; NULL with "file:line: why"
 * in err if any file, line or pattern is bad.  The first call initializes
 * Oniguruma (process-wide, once).
 */
struct policy	*policy_load(const char *const *files, size_t nfiles,
		    char *err, size_t errlen);
struct policy	*policy_load_buffer(const char *name, const char *buf,
		    size_t len, char *err, size_t errlen);
/* A rule file's text, named for errors (hotplex-policy(5)). */
struct policy_text {
	const char	*name;
	const char	*text;
	size_t		 len;
};
/* Loads rule texts in order into a new policy, as policy_load does files. */
struct policy	*policy_load_texts(const struct policy_text *, size_t n,
		    char *err, size_t errlen);
/*
 * The same for texts policy_load_texts accepted before (the master's, in a
 * worker): no pattern is checked again, and each is compiled the first
 * time a check runs its rule, not at load.
 */
struct policy	*policy_load_texts_again(const struct policy_text *,
		    size_t n, char *err, size_t errlen);
/*
 * The rule set's digest (digest.c, links libcrypto): hex SHA-256 over each
 * text's name and bytes, in order.
 */
#define POLICY_DIGEST_LEN	64
void		 policy_digest(const struct policy_text *, size_t n,
		    char out[POLICY_DIGEST_LEN + 1]);
/* Reads a rule file (bounded); 0, or -1 with "path: why" in err. */
int		 policy_read_file(const char *path, char **buf, size_t *len,
		    char *err, size_t errlen);
/* The default rules (the files of policy/firewall/rules), built into the binaries. */
extern const struct policy_text	policy_builtin[];
extern const size_t		policy_nbuiltin;
void		 policy_free(struct policy *);
size_t		 policy_nrules(const struct policy *);
void		 policy_set_retry_limit(struct policy *, unsigned long);

/*
 * Screens len bytes of text (NUL and invalid UTF-8 allowed: they are
 * findings) as the given target.  threshold <= 0 means the default.
 * Always fills the verdict; returns 1 if blocked, 0 if not, and -1 on a
 * misuse (NULL policy, bad target), which also sets blocked.
 */
int		 policy_check(const struct policy *, enum policy_target,
		    const char *text, size_t len, int threshold,
		    struct policy_verdict *);
cJSON		*policy_verdict_json(const struct policy_verdict *);

const char	*policy_form_name(enum policy_form);
const char	*policy_target_name(enum policy_target);
int		 policy_target_parse(const char *, enum policy_target *);

#endif
