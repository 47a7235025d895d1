/*
 * fake-claude: a stand-in for the Claude Code CLI in stream-json mode, for
 * HotPlex integration tests.  It speaks the CLI's NDJSON protocol with the
 * line shapes recorded from the real CLI (PROTOCOL.md, tests/fixtures) and
 * obeys directives written in the user text (see README.md): stream N
 * deltas, stall, crash, print garbage or huge lines, run a Bash "tool"
 * (asking for permission first with --permission-prompt-tool stdio), fork
 * children that escape the process group, and so on.
 *
 * One thread and one ppoll(2) loop serve stdin, the running tool's pipes and
 * the turn's timers, so control requests are answered while a turn streams,
 * stalls or waits for a tool.  A turn is a short list of steps run one at a
 * time; a step that has to wait (delay, stall, permission, tool) returns to
 * the loop.
 */

#include <sys/types.h>
#include <sys/random.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

/* What we pretend to be (PROTOCOL.md: the pinned CLI). */
#define FC_VERSION		"2.1.197"
#define FC_BUILD_TIME		"2026-06-29T19:08:42Z"
#define FC_DEFAULT_MODEL	"claude-opus-4-8[1m]"
#define FC_CONTEXT_WINDOW	1000000
#define FC_MAX_OUTPUT_TOKENS	64000

/* Prices in USD per token ($5/$25 per Mtok, cache read 0.1x, write 1.25x). */
#define FC_PRICE_IN		(5.0 / 1e6)
#define FC_PRICE_OUT		(25.0 / 1e6)
#define FC_PRICE_CACHE_READ	(0.5 / 1e6)
#define FC_PRICE_CACHE_WRITE	(6.25 / 1e6)

/* Default usage of one API round: input, output, cache read, cache write. */
#define FC_DEF_IN		100
#define FC_DEF_OUT		20
#define FC_DEF_CACHE_READ	1000
#define FC_DEF_CACHE_WRITE	50

#define FC_UUID_LEN		36
#define FC_ID_HEX		24	/* random hex digits of msg_... ids */
#define FC_ID_MAX		48
#define FC_TIMESTAMP_MAX	48
#define FC_READ_CHUNK		65536
#define FC_MAX_INPUT_LINE	(256L * 1024 * 1024)
#define FC_MAX_TOOL_OUTPUT	(1024L * 1024)
#define FC_DEFAULT_DELTAS	3
#define FC_MAX_DELTAS		100000L
#define FC_MAX_MS		(24L * 3600 * 1000)
#define FC_MAX_HUGE		(512L * 1024 * 1024)
#define FC_MAX_FLOOD		(1024L * 1024 * 1024)
#define FC_MAX_TOKENS		1000000000L
#define FC_FLOOD_CHUNK		256	/* bytes of text per flood delta */
#define FC_STEP_BATCH		64	/* steps run between two polls */
#define FC_MAX_STEPS		64
#define FC_MAX_ROUNDS		2	/* a tool call, then the final answer */
#define FC_MAX_BLOCKS		4
#define FC_TOOL_DELTA_BYTES	16	/* per input_json_delta */
#define FC_TOOL_PREAMBLE	"I will run a tool."
#define FC_TOOL_DESC_PREFIX	"Run "
#define FC_NO_OUTPUT		"(Bash completed with no output)"
#define FC_CHARS_PER_TOKEN	4	/* thinking_tokens estimate */
/* base64 of "fake-signature" */
#define FC_SIGNATURE		"ZmFrZS1zaWduYXR1cmU="
#define FC_TOOL_KEY		"tool:"
#define FC_TOOL_KEY_LEN		(sizeof FC_TOOL_KEY - 1)
#define FC_TOOL_DEFAULT		"true"	/* toolsleep without tool: */
#define FC_ANSWER_EXTRA		64	/* slash prefix, turn tag, NULs */
#define FC_ALPHABET		26	/* flood text is a..z repeated */
#define FC_UTF8_CONT_MASK	0xc0
#define FC_UTF8_CONT		0x80	/* 10xxxxxx: inside a character */
#define FC_THINK_DELTAS		2
#define FC_ESCAPE_SECONDS	300
#define FC_CLOSE_FDS_MAX	1024	/* fds closed in children before exec */
#define FC_EXIT_SIGTERM		143
#define FC_EXIT_CRASH		3
#define FC_NS			1000000000L
#define FC_MS_PER_S		1000L
#define FC_SESSION_ID_MAX	128	/* --session-id/--resume kept up to */
#define FC_MEMORY_PATH_EXTRA	64	/* "/.claude/projects/.../memory/" */
#define FC_EXIT_SIGNALED	128	/* shell convention for a killed tool */
#define FC_MS_NS		1000000L

#define FC_INTERRUPTED_TEXT	"[Request interrupted by user]"
#define FC_INTERRUPTED_TOOL_TEXT "[Request interrupted by user for tool use]"
#define FC_REJECTED_TEXT	"The user doesn't want to proceed with this " \
	"tool use. The tool use was rejected (eg. if it was a file edit, the " \
	"new_string was NOT written to the file). STOP what you are doing " \
	"and wait for the user to tell you how to proceed."
#define FC_REJECTED_RESULT	"User rejected tool use"
#define FC_EDE_DIAGNOSTIC \
	"[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=%s"
#define FC_API_ERROR_STATUS	500
#define FC_API_ERROR_TEXT \
	"API Error: 500 Internal server error. This is a server-side " \
	"issue, usually temporary \xe2\x80\x94 try again in a moment."

struct fc_opts {
	char		 session_id[FC_SESSION_ID_MAX];
	const char	*model;
	const char	*permission_mode;
	int		 partial;	/* --include-partial-messages */
	int		 perm_stdio;	/* --permission-prompt-tool stdio */
};

enum fc_usage_idx { U_IN, U_OUT, U_CR, U_CW, U_N };

/* What the user text asks for; see README.md. */
struct fc_directives {
	int	 think, stall, ignore_intr, crash, garbage, escape, exit_after;
	int	 error, slash, echo, settings, ratelimit, bgturn;
	int	 twice;		/* two tool_use blocks of the command */
	int	 bgtasks;	/* -1: none said; else the tasks listed */
	long	 deltas;
	long	 delay_ms;
	char	*tool;		/* owned; the Bash command */
	long	 toolsleep_ms;
	long	 hugeline;
	long	 flood;
	int	 has_usage;
	long	 usage[U_N];	/* input, output, cache read, cache write */
	int	 has_cost;
	double	 cost;
};

enum fc_block_type { BLK_THINKING, BLK_TEXT, BLK_TOOL_USE };

struct fc_block {
	enum fc_block_type type;
	char		*text;		/* owned; tool_use: its input as JSON */
	size_t		 len;
	size_t		*cuts;		/* owned; ndeltas + 1 offsets in text */
	size_t		 ncuts;		/* deltas cut at cuts[] ... */
	size_t		 flood_from;	/* ... then FC_FLOOD_CHUNK pieces */
	char		 tool_id[FC_ID_MAX];
	char		*cmd;		/* owned; tool_use: the command */
};

struct fc_round {
	char		 msg_id[FC_ID_MAX];
	char		 req_id[FC_ID_MAX];
	struct fc_block	 blocks[FC_MAX_BLOCKS];
	int		 nblocks;
	long		 usage[U_N];
	const char	*stop_reason;
	struct timespec	 start;
};

enum fc_step_kind {
	ST_INIT, ST_STATUS, ST_MSG_START, ST_BLOCK_START, ST_DELTAS,
	ST_SIGNATURE, ST_ASSISTANT, ST_BLOCK_STOP, ST_MSG_DELTA, ST_MSG_STOP,
	ST_GARBAGE, ST_ESCAPE, ST_STALL, ST_CRASH, ST_API_ERROR, ST_PERMIT_ASK,
	ST_PERMIT_WAIT, ST_TOOL, ST_TOOL_RESULT, ST_RESULT, ST_EXIT
};

struct fc_step {
	enum fc_step_kind kind;
	int		 round;
	int		 block;
	long		 limit;		/* ST_DELTAS: at most this many */
};

enum fc_phase { PH_STREAM, PH_TOOL };

enum fc_perm { PERM_NONE, PERM_ASKED, PERM_ANSWERED };

struct fc_turn {
	char			*prompt;	/* owned */
	int			 own;		/* begun by us (bgturn) */
	struct fc_directives	 d;
	struct fc_round		 rounds[FC_MAX_ROUNDS];
	int			 nrounds;
	int			 rounds_done;
	struct fc_step		 steps[FC_MAX_STEPS];
	int			 nsteps;
	int			 next;
	enum fc_phase		 phase;
	struct timespec		 start;
	int			 first_token_seen;
	long			 ttft_ms;
	long			 think_tokens;	/* thinking_tokens estimate */
	const char		*last_stop;	/* last completed round's */

	/* ST_DELTAS and delays. */
	size_t			 dcur;
	int			 waiting;
	struct timespec		 deadline;

	/* ST_PERMIT_ASK, ST_PERMIT_WAIT. */
	char			 perm_id[FC_UUID_LEN + 1];
	enum fc_perm		 perm_state;
	int			 perm_allow;
	char			*perm_msg;	/* owned; deny message */
	char			*perm_cmd;	/* owned; from updatedInput */

	/* ST_TOOL. */
	int			 tool_block;	/* the call asked or run */
	pid_t			 tool_pid;
	int			 tool_fd[2];	/* stdout, stderr; -1 closed */
	char			*tool_out[2];	/* owned */
	size_t			 tool_len[2];
	int			 tool_status;
	int			 tool_reaped;
	int			 tool_started;
	struct timespec		 tool_deadline;
	cJSON			*denials;	/* owned; permission_denials */
	long			 usage[U_N];	/* completed rounds */
};

enum fc_step_ret { STEP_MORE, STEP_WAIT, STEP_DONE };

static struct fc_opts	 opts;
static struct fc_turn	*turn;
static char		*queued;	/* owned; prompts merged while busy */
static int		 stdin_eof;
static int		 last_is_error;
static long		 turn_count;
static double		 total_cost;
static long		 model_usage[U_N];
static int		 model_used;
static long		 total_api_ms;
static char		 cwd[PATH_MAX];
static volatile sig_atomic_t got_sigint, got_sigchld;
static volatile sig_atomic_t tool_pid_for_signal;
static sigset_t		 loop_mask;	/* signals let through during ppoll */

static void	fc_turn_start(char *);
static void	fc_turn_end(void);
static void	fc_cleanup(void);
static void	fc_die(int, const char *, ...)
		    __attribute__((format(printf, 2, 3), noreturn));

/* Out of memory is fatal here, once; cJSON allocates through these. */
static void *
fc_malloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL) {
		fprintf(stderr, "fake-claude: out of memory\n");
		_exit(1);
	}
	return p;
}

static void *
fc_realloc(void *o, size_t n)
{
	void	*p;

	if ((p = realloc(o, n == 0 ? 1 : n)) == NULL) {
		fprintf(stderr, "fake-claude: out of memory\n");
		_exit(1);
	}
	return p;
}

static char *
fc_strndup(const char *s, size_t n)
{
	char	*p;

	p = fc_malloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *
fc_strdup(const char *s)
{
	return fc_strndup(s, strlen(s));
}

static void
fc_die(int code, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* Time. */

static struct timespec
fc_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

static long
fc_ms_between(struct timespec a, struct timespec b)
{
	return (b.tv_sec - a.tv_sec) * FC_MS_PER_S +
	    (b.tv_nsec - a.tv_nsec) / FC_MS_NS;
}

static struct timespec
fc_after_ms(long ms)
{
	struct timespec	ts = fc_now();

	ts.tv_sec += ms / FC_MS_PER_S;
	ts.tv_nsec += (ms % FC_MS_PER_S) * FC_MS_NS;
	if (ts.tv_nsec >= FC_NS) {
		ts.tv_sec++;
		ts.tv_nsec -= FC_NS;
	}
	return ts;
}

static int
fc_reached(struct timespec t)
{
	struct timespec	now = fc_now();

	return now.tv_sec > t.tv_sec ||
	    (now.tv_sec == t.tv_sec && now.tv_nsec >= t.tv_nsec);
}

static void
fc_sleep_ms(long ms)
{
	struct timespec	ts = fc_after_ms(ms);

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	    EINTR)
		;
}

static void
fc_timestamp(char *buf, size_t len)
{
	struct timespec	ts;
	struct tm	tm;
	char		tmp[FC_TIMESTAMP_MAX];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%.20s.%03dZ", tmp, (int)(ts.tv_nsec / FC_MS_NS));
}

/* Identifiers. */

static void
fc_random(void *buf, size_t len)
{
	unsigned char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		if ((n = getrandom(p, len, 0)) == -1) {
			if (errno == EINTR)
				continue;
			fc_die(1, "fake-claude: getrandom: %s",
			    strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
}

static void
fc_uuid(char out[FC_UUID_LEN + 1])
{
	unsigned char	b[16];

	fc_random(b, sizeof b);
	b[6] = (b[6] & 0x0f) | 0x40;	/* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	snprintf(out, FC_UUID_LEN + 1,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void
fc_id(char *out, size_t len, const char *prefix)
{
	unsigned char	b[FC_ID_HEX / 2];
	size_t		i, n;

	fc_random(b, sizeof b);
	n = (size_t)snprintf(out, len, "%s", prefix);
	for (i = 0; i < sizeof b && n + 2 < len; i++, n += 2)
		snprintf(out + n, len - n, "%02x", b[i]);
}

/* Output: one JSON object per line, written at once. */

static void
fc_write(const char *buf, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(STDOUT_FILENO, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			exit(1);	/* nobody listens any more */
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void
fc_emit(cJSON *o)
{
	char	*s;
	size_t	 len;

	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		fc_die(1, "fake-claude: out of memory");
	len = strlen(s);
	s[len] = '\n';		/* cJSON's NUL; the buffer ends there */
	fc_write(s, len + 1);
	cJSON_free(s);
	cJSON_Delete(o);
}

static size_t
fc_line_length(cJSON *o)
{
	char	*s;
	size_t	 len;

	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		fc_die(1, "fake-claude: out of memory");
	len = strlen(s);
	cJSON_free(s);
	return len;
}

static void
fc_add_uuid(cJSON *o)
{
	char	u[FC_UUID_LEN + 1];

	fc_uuid(u);
	cJSON_AddStringToObject(o, "uuid", u);
}

/* Line builders: shapes from the real CLI, key order included. */

static cJSON *
fc_usage_obj(const long u[U_N], int full)
{
	cJSON	*o, *c;

	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "input_tokens", u[U_IN]);
	cJSON_AddNumberToObject(o, "cache_creation_input_tokens", u[U_CW]);
	cJSON_AddNumberToObject(o, "cache_read_input_tokens", u[U_CR]);
	cJSON_AddNumberToObject(o, "output_tokens", u[U_OUT]);
	if (!full)
		return o;
	c = cJSON_AddObjectToObject(o, "server_tool_use");
	cJSON_AddNumberToObject(c, "web_search_requests", 0);
	cJSON_AddNumberToObject(c, "web_fetch_requests", 0);
	cJSON_AddStringToObject(o, "service_tier", "standard");
	c = cJSON_AddObjectToObject(o, "cache_creation");
	cJSON_AddNumberToObject(c, "ephemeral_1h_input_tokens", 0);
	cJSON_AddNumberToObject(c, "ephemeral_5m_input_tokens", 0);
	cJSON_AddStringToObject(o, "inference_geo", "");
	cJSON_AddArrayToObject(o, "iterations");
	cJSON_AddStringToObject(o, "speed", "standard");
	return o;
}

static const char *
fc_api_model(void)
{
	static char	 buf[128];
	const char	*m = opts.model;
	size_t		 n;

	/* init says "claude-opus-4-8[1m]", the API "claude-opus-4-8". */
	n = strcspn(m, "[");
	snprintf(buf, sizeof buf, "%.*s", (int)n, m);
	return buf;
}

static void
fc_memory_path(char *buf, size_t len)
{
	const char	*base, *home;
	char		 key[PATH_MAX];
	size_t		 i;

	for (i = 0; cwd[i] != '\0' && i + 1 < sizeof key; i++)
		key[i] = isalnum((unsigned char)cwd[i]) ? cwd[i] : '-';
	key[i] = '\0';
	if ((base = getenv("CLAUDE_CONFIG_DIR")) != NULL)
		snprintf(buf, len, "%s/projects/%s/memory/", base, key);
	else {
		home = getenv("HOME");
		snprintf(buf, len, "%s/.claude/projects/%s/memory/",
		    home != NULL ? home : "", key);
	}
}

static void
fc_add_strings(cJSON *o, const char *name, const char *const *v)
{
	cJSON	*a;

	a = cJSON_AddArrayToObject(o, name);
	for (; *v != NULL; v++)
		cJSON_AddItemToArray(a, cJSON_CreateString(*v));
}

static const char *const fc_tools[] = {
	"Task", "Bash", "CronCreate", "CronDelete", "CronList", "Edit",
	"EnterWorktree", "ExitWorktree", "NotebookEdit", "Read",
	"ReportFindings", "ScheduleWakeup", "SendMessage", "Skill",
	"TaskCreate", "TaskGet", "TaskList", "TaskOutput", "TaskStop",
	"TaskUpdate", "WebFetch", "WebSearch", "Workflow", "Write", NULL
};
/* With a permission prompt tool the CLI offers the interactive tools too. */
static const char *const fc_tools_prompting[] = {
	"Task", "AskUserQuestion", "Bash", "CronCreate", "CronDelete",
	"CronList", "Edit", "EnterPlanMode", "EnterWorktree", "ExitPlanMode",
	"ExitWorktree", "NotebookEdit", "Read", "ReportFindings",
	"ScheduleWakeup", "SendMessage", "Skill", "TaskCreate", "TaskGet",
	"TaskList", "TaskOutput", "TaskStop", "TaskUpdate", "WebFetch",
	"WebSearch", "Workflow", "Write", NULL
};
static const char *const fc_skills[] = {
	"deep-research", "update-config", "verify", "debug", "code-review",
	"simplify", "batch", "fewer-permission-prompts", "loop", "claude-api",
	"run", "run-skill-generator", NULL
};
static const char *const fc_slash_commands[] = {
	"deep-research", "update-config", "verify", "debug", "code-review",
	"simplify", "batch", "fewer-permission-prompts", "loop", "claude-api",
	"run", "run-skill-generator", "clear", "compact", "config", "context",
	"heapdump", "init", "reload-skills", "review", "security-review",
	"usage", "insights", "goal", "team-onboarding", NULL
};
static const char *const fc_agents[] = {
	"claude", "Explore", "general-purpose", "Plan", "statusline-setup",
	NULL
};

static cJSON *
fc_line_init(void)
{
	cJSON	*o, *m;
	char	 mem[PATH_MAX + FC_MEMORY_PATH_EXTRA];

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "system");
	cJSON_AddStringToObject(o, "subtype", "init");
	cJSON_AddStringToObject(o, "cwd", cwd);
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_add_strings(o, "tools", opts.perm_stdio ? fc_tools_prompting :
	    fc_tools);
	cJSON_AddArrayToObject(o, "mcp_servers");
	cJSON_AddStringToObject(o, "model", opts.model);
	cJSON_AddStringToObject(o, "permissionMode", opts.permission_mode);
	fc_add_strings(o, "slash_commands", fc_slash_commands);
	cJSON_AddStringToObject(o, "apiKeySource", "ANTHROPIC_API_KEY");
	cJSON_AddStringToObject(o, "claude_code_version", FC_VERSION);
	cJSON_AddStringToObject(o, "output_style", "default");
	fc_add_strings(o, "agents", fc_agents);
	fc_add_strings(o, "skills", fc_skills);
	cJSON_AddArrayToObject(o, "plugins");
	cJSON_AddTrueToObject(o, "analytics_disabled");
	cJSON_AddTrueToObject(o, "product_feedback_disabled");
	fc_add_uuid(o);
	m = cJSON_AddObjectToObject(o, "memory_paths");
	fc_memory_path(mem, sizeof mem);
	cJSON_AddStringToObject(m, "auto", mem);
	cJSON_AddStringToObject(o, "fast_mode_state", "off");
	return o;
}

static cJSON *
fc_line_status(void)
{
	cJSON	*o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "system");
	cJSON_AddStringToObject(o, "subtype", "status");
	cJSON_AddStringToObject(o, "status", "requesting");
	fc_add_uuid(o);
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	return o;
}

/*
 * The CLI's list of background tasks, as recorded (background_turn
 * .stdout.jsonl): one running Bash task, or none.
 */
static cJSON *
fc_line_bg_tasks(int n)
{
	cJSON	*o, *a, *t;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "system");
	cJSON_AddStringToObject(o, "subtype", "background_tasks_changed");
	a = cJSON_AddArrayToObject(o, "tasks");
	if (n > 0) {
		t = cJSON_CreateObject();
		cJSON_AddStringToObject(t, "task_id", "bfake0001");
		cJSON_AddStringToObject(t, "run_id", "0fake0001-00000001");
		cJSON_AddStringToObject(t, "task_type", "local_bash");
		cJSON_AddStringToObject(t, "description", "bg");
		cJSON_AddItemToArray(a, t);
	}
	fc_add_uuid(o);
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	return o;
}

/* An API retry after a 429, as recorded (api_retry.stdout.jsonl has 529). */
static cJSON *
fc_line_api_retry_429(void)
{
	cJSON	*o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "system");
	cJSON_AddStringToObject(o, "subtype", "api_retry");
	cJSON_AddNumberToObject(o, "attempt", 1);
	cJSON_AddNumberToObject(o, "max_retries", 2);
	cJSON_AddNumberToObject(o, "retry_delay_ms", 583.4593755514844);
	cJSON_AddNumberToObject(o, "error_status", 429);
	cJSON_AddStringToObject(o, "error", "rate_limit");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_add_uuid(o);
	return o;
}

static cJSON *
fc_line_stream(cJSON *event, long ttft_ms)
{
	cJSON	*o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "stream_event");
	cJSON_AddItemToObject(o, "event", event);
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	cJSON_AddNullToObject(o, "parent_tool_use_id");
	fc_add_uuid(o);
	if (ttft_ms >= 0)
		cJSON_AddNumberToObject(o, "ttft_ms", ttft_ms);
	return o;
}

/* The message as message_start announces it: provisional usage. */
static cJSON *
fc_message(struct fc_round *r)
{
	cJSON	*m;
	long	 u[U_N];

	memcpy(u, r->usage, sizeof u);
	u[U_OUT] = 1;
	m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "id", r->msg_id);
	cJSON_AddStringToObject(m, "type", "message");
	cJSON_AddStringToObject(m, "role", "assistant");
	cJSON_AddStringToObject(m, "model", fc_api_model());
	cJSON_AddArrayToObject(m, "content");
	cJSON_AddNullToObject(m, "stop_reason");
	cJSON_AddNullToObject(m, "stop_sequence");
	cJSON_AddItemToObject(m, "usage", fc_usage_obj(u, 0));
	return m;
}

static cJSON *
fc_block_json(struct fc_block *b)
{
	cJSON	*o, *in;

	o = cJSON_CreateObject();
	switch (b->type) {
	case BLK_THINKING:
		cJSON_AddStringToObject(o, "type", "thinking");
		cJSON_AddStringToObject(o, "thinking", b->text);
		cJSON_AddStringToObject(o, "signature", FC_SIGNATURE);
		break;
	case BLK_TEXT:
		cJSON_AddStringToObject(o, "type", "text");
		cJSON_AddStringToObject(o, "text", b->text);
		break;
	case BLK_TOOL_USE:
		cJSON_AddStringToObject(o, "type", "tool_use");
		cJSON_AddStringToObject(o, "id", b->tool_id);
		cJSON_AddStringToObject(o, "name", "Bash");
		in = cJSON_Parse(b->text);
		cJSON_AddItemToObject(o, "input", in);
		break;
	}
	return o;
}

static cJSON *
fc_line_assistant(struct fc_round *r, struct fc_block *b)
{
	cJSON	*o, *m, *c, *u;
	long	 us[U_N];

	memcpy(us, r->usage, sizeof us);
	us[U_OUT] = 1;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "assistant");
	m = cJSON_AddObjectToObject(o, "message");
	cJSON_AddStringToObject(m, "id", r->msg_id);
	cJSON_AddStringToObject(m, "type", "message");
	cJSON_AddStringToObject(m, "role", "assistant");
	cJSON_AddStringToObject(m, "model", fc_api_model());
	c = cJSON_AddArrayToObject(m, "content");
	cJSON_AddItemToArray(c, fc_block_json(b));
	cJSON_AddNullToObject(m, "stop_reason");
	cJSON_AddNullToObject(m, "stop_sequence");
	u = fc_usage_obj(us, 0);
	cJSON_AddItemToObject(m, "usage", u);
	cJSON_AddNullToObject(m, "context_management");
	cJSON_AddNullToObject(o, "parent_tool_use_id");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_add_uuid(o);
	cJSON_AddStringToObject(o, "request_id", r->req_id);
	return o;
}

/* An API failure: a synthetic assistant line (as observed). */
static cJSON *
fc_line_api_error(struct fc_round *r, const char *text)
{
	cJSON	*o, *m, *c, *b, *u, *x;
	char	 id[FC_UUID_LEN + 1];

	fc_uuid(id);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "assistant");
	m = cJSON_AddObjectToObject(o, "message");
	cJSON_AddStringToObject(m, "id", id);
	cJSON_AddNullToObject(m, "container");
	cJSON_AddStringToObject(m, "model", "<synthetic>");
	cJSON_AddStringToObject(m, "role", "assistant");
	cJSON_AddNullToObject(m, "stop_details");
	cJSON_AddStringToObject(m, "stop_reason", "stop_sequence");
	cJSON_AddStringToObject(m, "stop_sequence", "");
	cJSON_AddStringToObject(m, "type", "message");
	u = cJSON_AddObjectToObject(m, "usage");
	cJSON_AddNumberToObject(u, "input_tokens", 0);
	cJSON_AddNumberToObject(u, "output_tokens", 0);
	cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
	cJSON_AddNumberToObject(u, "cache_read_input_tokens", 0);
	x = cJSON_AddObjectToObject(u, "server_tool_use");
	cJSON_AddNumberToObject(x, "web_search_requests", 0);
	cJSON_AddNumberToObject(x, "web_fetch_requests", 0);
	cJSON_AddNullToObject(u, "service_tier");
	x = cJSON_AddObjectToObject(u, "cache_creation");
	cJSON_AddNumberToObject(x, "ephemeral_1h_input_tokens", 0);
	cJSON_AddNumberToObject(x, "ephemeral_5m_input_tokens", 0);
	cJSON_AddNullToObject(u, "inference_geo");
	cJSON_AddNullToObject(u, "iterations");
	cJSON_AddNullToObject(u, "speed");
	c = cJSON_AddArrayToObject(m, "content");
	b = cJSON_CreateObject();
	cJSON_AddStringToObject(b, "type", "text");
	cJSON_AddStringToObject(b, "text", text);
	cJSON_AddItemToArray(c, b);
	cJSON_AddNullToObject(m, "context_management");
	cJSON_AddNullToObject(o, "parent_tool_use_id");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_add_uuid(o);
	cJSON_AddStringToObject(o, "error", "server_error");
	cJSON_AddStringToObject(o, "request_id", r->req_id);
	return o;
}

static cJSON *
fc_line_user(cJSON *content, cJSON *tool_use_result)
{
	cJSON	*o, *m;
	char	 ts[FC_TIMESTAMP_MAX];

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "user");
	m = cJSON_AddObjectToObject(o, "message");
	cJSON_AddStringToObject(m, "role", "user");
	cJSON_AddItemToObject(m, "content", content);
	cJSON_AddNullToObject(o, "parent_tool_use_id");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_add_uuid(o);
	fc_timestamp(ts, sizeof ts);
	cJSON_AddStringToObject(o, "timestamp", ts);
	if (tool_use_result != NULL)
		cJSON_AddItemToObject(o, "tool_use_result", tool_use_result);
	return o;
}

static cJSON *
fc_model_usage(void)
{
	cJSON	*o, *m;

	o = cJSON_CreateObject();
	if (!model_used)
		return o;
	m = cJSON_AddObjectToObject(o, opts.model);
	cJSON_AddNumberToObject(m, "inputTokens", model_usage[U_IN]);
	cJSON_AddNumberToObject(m, "outputTokens", model_usage[U_OUT]);
	cJSON_AddNumberToObject(m, "cacheReadInputTokens", model_usage[U_CR]);
	cJSON_AddNumberToObject(m, "cacheCreationInputTokens",
	    model_usage[U_CW]);
	cJSON_AddNumberToObject(m, "webSearchRequests", 0);
	cJSON_AddNumberToObject(m, "costUSD", total_cost);
	cJSON_AddNumberToObject(m, "contextWindow", FC_CONTEXT_WINDOW);
	cJSON_AddNumberToObject(m, "maxOutputTokens", FC_MAX_OUTPUT_TOKENS);
	return o;
}

static cJSON *
fc_control_response(const char *id, const char *error, cJSON *response)
{
	cJSON	*o, *r;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "control_response");
	r = cJSON_AddObjectToObject(o, "response");
	cJSON_AddStringToObject(r, "subtype", error != NULL ? "error" :
	    "success");
	cJSON_AddStringToObject(r, "request_id", id);
	if (error != NULL)
		cJSON_AddStringToObject(r, "error", error);
	if (response != NULL)
		cJSON_AddItemToObject(r, "response", response);
	return o;
}

/* Directives. */

static int
fc_num(const char *s, size_t len, long max, long *out)
{
	char	buf[32], *end;
	long	v;

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static void
fc_directive(struct fc_directives *d, const char *w, size_t n)
{
	const char	*colon, *arg;
	size_t		 klen, alen;
	char		 buf[64], *end;
	long		 v;
	int		 i;

	colon = memchr(w, ':', n);
	klen = colon != NULL ? (size_t)(colon - w) : n;
	arg = colon != NULL ? colon + 1 : w + n;
	alen = n - (size_t)(arg - w);

#define KEY(k) (klen == sizeof(k) - 1 && memcmp(w, k, klen) == 0)
	if (colon == NULL) {
		if (KEY("think"))
			d->think = 1;
		else if (KEY("stall"))
			d->stall = 1;
		else if (KEY("ignore-interrupt"))
			d->ignore_intr = 1;
		else if (KEY("crash"))
			d->crash = 1;
		else if (KEY("garbage"))
			d->garbage = 1;
		else if (KEY("fork-escape"))
			d->escape = 1;
		else if (KEY("exit"))
			d->exit_after = 1;
		else if (KEY("error"))
			d->error = 1;
		else if (KEY("slash"))
			d->slash = 1;
		else if (KEY("echo"))
			d->echo = 1;
		else if (KEY("settings"))
			d->settings = 1;
		else if (KEY("ratelimit"))
			d->ratelimit = 1;
		else if (KEY("bgturn"))
			d->bgturn = 1;
		else if (KEY("twice"))
			d->twice = 1;
		else if (KEY("bgtask"))
			d->bgtasks = 1;
		else if (KEY("bgdone"))
			d->bgtasks = 0;
		return;
	}
	if (KEY("stream") && fc_num(arg, alen, FC_MAX_DELTAS, &v) == 0 &&
	    v > 0)
		d->deltas = v;
	else if (KEY("delay") && fc_num(arg, alen, FC_MAX_MS, &v) == 0)
		d->delay_ms = v;
	else if (KEY("toolsleep") && fc_num(arg, alen, FC_MAX_MS, &v) == 0)
		d->toolsleep_ms = v;
	else if (KEY("hugeline") && fc_num(arg, alen, FC_MAX_HUGE, &v) == 0)
		d->hugeline = v;
	else if (KEY("flood") && fc_num(arg, alen, FC_MAX_FLOOD, &v) == 0)
		d->flood = v;
	else if (KEY("usage")) {
		for (i = 0; i < U_N; i++) {
			const char *c = memchr(arg, ',', alen);
			size_t l = c != NULL ? (size_t)(c - arg) : alen;

			if (fc_num(arg, l, FC_MAX_TOKENS, &d->usage[i]) != 0)
				return;
			if (c == NULL)
				break;
			alen -= l + 1;
			arg = c + 1;
		}
		d->has_usage = (i == U_N - 1);
	} else if (KEY("cost") && alen > 0 && alen < sizeof buf) {
		memcpy(buf, arg, alen);
		buf[alen] = '\0';
		d->cost = strtod(buf, &end);
		d->has_cost = (*end == '\0' && d->cost >= 0);
	}
#undef KEY
}

/*
 * Directives are whitespace-separated words anywhere in the text; tool:CMD
 * takes the rest of its line, so that CMD may hold spaces.
 */
static void
fc_directives_parse(struct fc_directives *d, const char *s)
{
	const char	*w, *eol;
	size_t		 n;

	memset(d, 0, sizeof *d);
	d->deltas = FC_DEFAULT_DELTAS;
	d->bgtasks = -1;
	while (*s != '\0') {
		while (*s != '\0' && isspace((unsigned char)*s))
			s++;
		if (*s == '\0')
			break;
		w = s;
		if (strncmp(w, FC_TOOL_KEY, FC_TOOL_KEY_LEN) == 0) {
			eol = strchr(w, '\n');
			n = eol != NULL ? (size_t)(eol - w) : strlen(w);
			s = w + n;
			while (n > FC_TOOL_KEY_LEN &&
			    isspace((unsigned char)w[n - 1]))
				n--;
			free(d->tool);
			d->tool = fc_strndup(w + FC_TOOL_KEY_LEN,
			    n - FC_TOOL_KEY_LEN);
			continue;
		}
		while (*s != '\0' && !isspace((unsigned char)*s))
			s++;
		fc_directive(d, w, (size_t)(s - w));
	}
	if (d->tool == NULL && d->toolsleep_ms > 0)
		d->tool = fc_strdup(FC_TOOL_DEFAULT);
	if (d->tool != NULL && d->tool[0] == '\0') {
		free(d->tool);
		d->tool = fc_strdup(FC_TOOL_DEFAULT);
	}
}

/* Turn construction. */

/* Cuts text into n pieces of about equal size, never inside a character. */
static void
fc_block_cut(struct fc_block *b, size_t n)
{
	size_t	i, off;

	if (n == 0)
		n = 1;
	b->cuts = fc_malloc((n + 1) * sizeof *b->cuts);
	b->cuts[0] = 0;
	for (i = 1; i < n; i++) {
		off = b->flood_from * i / n;
		if (off < b->cuts[i - 1])
			off = b->cuts[i - 1];
		while (off < b->flood_from &&
		    ((unsigned char)b->text[off] & FC_UTF8_CONT_MASK) ==
		    FC_UTF8_CONT)
			off++;
		b->cuts[i] = off;
	}
	b->cuts[n] = b->flood_from;
	b->ncuts = n;
}

static size_t
fc_block_ndeltas(struct fc_block *b)
{
	return b->ncuts + (b->len - b->flood_from + FC_FLOOD_CHUNK - 1) /
	    FC_FLOOD_CHUNK;
}

static void
fc_block_delta(struct fc_block *b, size_t k, size_t *off, size_t *len)
{
	if (k < b->ncuts) {
		*off = b->cuts[k];
		*len = b->cuts[k + 1] - b->cuts[k];
		return;
	}
	*off = b->flood_from + (k - b->ncuts) * FC_FLOOD_CHUNK;
	*len = b->len - *off < FC_FLOOD_CHUNK ? b->len - *off :
	    FC_FLOOD_CHUNK;
}

static struct fc_block *
fc_block_add(struct fc_round *r, enum fc_block_type type, char *text,
    size_t ndeltas)
{
	struct fc_block	*b;

	if (r->nblocks == FC_MAX_BLOCKS)
		fc_die(1, "fake-claude: too many blocks");
	b = &r->blocks[r->nblocks++];
	memset(b, 0, sizeof *b);
	b->type = type;
	b->text = text;
	b->len = strlen(text);
	b->flood_from = b->len;
	fc_block_cut(b, ndeltas);
	return b;
}

static void
fc_round_init(struct fc_turn *t, struct fc_round *r, int idx, int n)
{
	int	i;

	memset(r, 0, sizeof *r);
	fc_id(r->msg_id, sizeof r->msg_id, "msg_fake_");
	fc_id(r->req_id, sizeof r->req_id, "req_fake_");
	/* The turn's usage is split over its rounds, the rest on the last. */
	for (i = 0; i < U_N; i++) {
		if (!t->d.has_usage) {
			static const long def[U_N] = { FC_DEF_IN, FC_DEF_OUT,
			    FC_DEF_CACHE_READ, FC_DEF_CACHE_WRITE };
			r->usage[i] = def[i];
		} else
			r->usage[i] = t->d.usage[i] / n +
			    (idx == n - 1 ? t->d.usage[i] % n : 0);
	}
}

static void
fc_step_add(struct fc_turn *t, enum fc_step_kind kind, int round, int block,
    long limit)
{
	struct fc_step	*s;

	if (t->nsteps == FC_MAX_STEPS)
		fc_die(1, "fake-claude: too many steps");
	s = &t->steps[t->nsteps++];
	s->kind = kind;
	s->round = round;
	s->block = block;
	s->limit = limit;
}

static void
fc_steps_block(struct fc_turn *t, int ri, int bi)
{
	fc_step_add(t, ST_BLOCK_START, ri, bi, 0);
	fc_step_add(t, ST_DELTAS, ri, bi, 0);
	if (t->rounds[ri].blocks[bi].type == BLK_THINKING)
		fc_step_add(t, ST_SIGNATURE, ri, bi, 0);
	fc_step_add(t, ST_ASSISTANT, ri, bi, 0);
	fc_step_add(t, ST_BLOCK_STOP, ri, bi, 0);
}

/* Pads the huge block so that its assistant line is exactly n bytes. */
static void
fc_hugeline_fill(struct fc_round *r, struct fc_block *b, long n)
{
	cJSON	*probe;
	size_t	 base, want;

	probe = fc_line_assistant(r, b);
	base = fc_line_length(probe);
	cJSON_Delete(probe);
	want = (size_t)n > base ? (size_t)n - base : 0;
	free(b->text);
	free(b->cuts);
	b->text = fc_malloc(want + 1);
	memset(b->text, 'h', want);
	b->text[want] = '\0';
	b->len = b->flood_from = want;
	fc_block_cut(b, 1);
}

static char *
fc_answer_text(struct fc_turn *t)
{
	char	*s, *p;
	size_t	 len;
	long	 i;

	len = strlen(t->prompt) + FC_ANSWER_EXTRA + (size_t)t->d.deltas;
	if (t->d.settings)
		len += strlen(opts.model ? opts.model : "-") +
		    strlen(opts.permission_mode ? opts.permission_mode : "-") +
		    FC_ANSWER_EXTRA;
	s = p = fc_malloc(len);
	if (t->d.settings)	/* what set_model / set_permission_mode set */
		p += sprintf(p, "model:%s mode:%s ",
		    opts.model ? opts.model : "-",
		    opts.permission_mode ? opts.permission_mode : "-");
	if (t->d.slash)
		p += sprintf(p, "slash:%s ",
		    t->prompt[0] == '/' ? "yes" : "no");
	if (t->d.echo)
		p += sprintf(p, "%s ", t->prompt);
	p += sprintf(p, "fake-claude turn %ld.", turn_count);
	/* At least one byte per delta. */
	for (i = (long)(p - s); i < t->d.deltas; i++)
		*p++ = '.';
	*p = '\0';
	return s;
}

/* The final round: thinking unless a tool came first, then the answer. */
static void
fc_final_round(struct fc_turn *t)
{
	struct fc_round	*r;
	struct fc_block	*b;
	char		*text, *flood;
	int		 ri = t->nrounds++, bi;
	size_t		 len;
	long		 i;

	r = &t->rounds[ri];
	fc_round_init(t, r, ri, t->d.tool != NULL ? 2 : 1);
	r->stop_reason = "end_turn";
	if (t->d.think && ri == 0)
		fc_block_add(r, BLK_THINKING,
		    fc_strdup("The user wants a fake answer; thinking."),
		    FC_THINK_DELTAS);
	if (t->d.hugeline > 0) {
		b = fc_block_add(r, BLK_TEXT, fc_strdup(""), 1);
		fc_hugeline_fill(r, b, t->d.hugeline);
	}
	text = fc_answer_text(t);
	if (t->d.flood > 0) {
		len = strlen(text);
		flood = fc_realloc(text, len + (size_t)t->d.flood + 1);
		for (i = 0; i < t->d.flood; i++)
			flood[len + (size_t)i] = (char)('a' + i % FC_ALPHABET);
		flood[len + (size_t)t->d.flood] = '\0';
		text = flood;
		b = fc_block_add(r, BLK_TEXT, text, 0);
		b->flood_from = len;
		free(b->cuts);
		fc_block_cut(b, (size_t)t->d.deltas);
	} else
		fc_block_add(r, BLK_TEXT, text, (size_t)t->d.deltas);

	if (opts.partial)
		fc_step_add(t, ST_STATUS, ri, 0, 0);
	fc_step_add(t, ST_MSG_START, ri, 0, 0);
	if (t->d.stall && ri == 0) {
		/* As the real CLI shows an API stalled after a block start. */
		fc_step_add(t, ST_BLOCK_START, ri, 0, 0);
		fc_step_add(t, ST_STALL, ri, 0, 0);
		return;
	}
	for (bi = 0; bi < r->nblocks; bi++) {
		if (t->d.crash && bi == r->nblocks - 1) {
			fc_step_add(t, ST_BLOCK_START, ri, bi, 0);
			fc_step_add(t, ST_DELTAS, ri, bi, 1);
			fc_step_add(t, ST_CRASH, ri, bi, 0);
			return;
		}
		fc_steps_block(t, ri, bi);
		if (t->d.garbage)
			fc_step_add(t, ST_GARBAGE, ri, bi, 0);
	}
	fc_step_add(t, ST_MSG_DELTA, ri, 0, 0);
	fc_step_add(t, ST_MSG_STOP, ri, 0, 0);
	fc_step_add(t, ST_RESULT, ri, 0, 0);
	if (t->d.exit_after)
		fc_step_add(t, ST_EXIT, ri, 0, 0);
}

/*
 * A tool call first: [thinking], a text, tool_use Bash; as in the recorded
 * transcripts, can_use_tool is asked right after the tool_use assistant
 * line, before the stream ends, and the tool runs after message_stop.
 */
static void
fc_tool_round(struct fc_turn *t)
{
	struct fc_round	*r;
	struct fc_block	*b;
	cJSON		*in;
	char		*json, *desc;
	int		 ri = t->nrounds++, bi, first, i;
	int		 ntools = t->d.twice ? 2 : 1;

	r = &t->rounds[ri];
	fc_round_init(t, r, ri, 2);
	r->stop_reason = "tool_use";
	if (t->d.think)
		fc_block_add(r, BLK_THINKING,
		    fc_strdup("The user wants a command run; thinking."),
		    FC_THINK_DELTAS);
	fc_block_add(r, BLK_TEXT, fc_strdup(FC_TOOL_PREAMBLE), 1);
	desc = fc_malloc(strlen(t->d.tool) + sizeof FC_TOOL_DESC_PREFIX);
	sprintf(desc, FC_TOOL_DESC_PREFIX "%s", t->d.tool);
	in = cJSON_CreateObject();
	cJSON_AddStringToObject(in, "command", t->d.tool);
	cJSON_AddStringToObject(in, "description", desc);
	free(desc);
	if ((json = cJSON_PrintUnformatted(in)) == NULL)
		fc_die(1, "fake-claude: out of memory");
	cJSON_Delete(in);
	for (i = 0; i < ntools; i++) {
		b = fc_block_add(r, BLK_TOOL_USE, fc_strdup(json),
		    (strlen(json) + FC_TOOL_DELTA_BYTES - 1) /
		    FC_TOOL_DELTA_BYTES);
		b->cmd = fc_strdup(t->d.tool);
		fc_id(b->tool_id, sizeof b->tool_id, "toolu_fake_");
	}
	cJSON_free(json);

	if (opts.partial)
		fc_step_add(t, ST_STATUS, ri, 0, 0);
	fc_step_add(t, ST_MSG_START, ri, 0, 0);
	if (t->d.stall) {
		fc_step_add(t, ST_BLOCK_START, ri, 0, 0);
		fc_step_add(t, ST_STALL, ri, 0, 0);
		return;
	}
	for (bi = 0; bi < r->nblocks - ntools; bi++) {
		fc_steps_block(t, ri, bi);
		if (t->d.garbage)
			fc_step_add(t, ST_GARBAGE, ri, bi, 0);
	}
	for (t->tool_block = first = bi; bi < r->nblocks; bi++) {
		fc_step_add(t, ST_BLOCK_START, ri, bi, 0);
		fc_step_add(t, ST_DELTAS, ri, bi, 0);
		fc_step_add(t, ST_ASSISTANT, ri, bi, 0);
		if (opts.perm_stdio && bi == first)
			fc_step_add(t, ST_PERMIT_ASK, ri, bi, 0);
		fc_step_add(t, ST_BLOCK_STOP, ri, bi, 0);
	}
	fc_step_add(t, ST_MSG_DELTA, ri, 0, 0);
	fc_step_add(t, ST_MSG_STOP, ri, 0, 0);
	/* twice: both calls are in flight; they run one after the other. */
	for (bi = first; bi < r->nblocks; bi++) {
		if (opts.perm_stdio && bi != first)
			fc_step_add(t, ST_PERMIT_ASK, ri, bi, 0);
		if (opts.perm_stdio)
			fc_step_add(t, ST_PERMIT_WAIT, ri, bi, 0);
		fc_step_add(t, ST_TOOL, ri, bi, 0);
		fc_step_add(t, ST_TOOL_RESULT, ri, bi, 0);
	}
}

/* twice: the first call's result is out; the second starts afresh. */
static void
fc_tool_reset(struct fc_turn *t)
{
	int	i;

	for (i = 0; i < 2; i++) {
		free(t->tool_out[i]);
		t->tool_out[i] = NULL;
		t->tool_len[i] = 0;
	}
	t->tool_pid = -1;
	t->tool_status = t->tool_reaped = t->tool_started = 0;
	free(t->perm_msg);
	free(t->perm_cmd);
	t->perm_msg = t->perm_cmd = NULL;
	t->perm_state = PERM_NONE;
	t->perm_allow = 0;
}

static void
fc_turn_start(char *prompt)
{
	struct fc_turn	*t;

	t = fc_malloc(sizeof *t);
	memset(t, 0, sizeof *t);
	t->prompt = prompt;
	t->tool_fd[0] = t->tool_fd[1] = -1;
	t->tool_pid = -1;
	t->start = fc_now();
	t->denials = cJSON_CreateArray();
	turn_count++;
	fc_directives_parse(&t->d, prompt);
	turn = t;

	fc_step_add(t, ST_INIT, 0, 0, 0);
	if (t->d.garbage)
		fc_step_add(t, ST_GARBAGE, 0, 0, 0);
	if (t->d.escape)
		fc_step_add(t, ST_ESCAPE, 0, 0, 0);
	if (t->d.error) {
		t->nrounds = 1;
		fc_round_init(t, &t->rounds[0], 0, 1);
		if (opts.partial)
			fc_step_add(t, ST_STATUS, 0, 0, 0);
		fc_step_add(t, ST_API_ERROR, 0, 0, 0);
		fc_step_add(t, ST_RESULT, 0, 0, 0);
		if (t->d.exit_after)
			fc_step_add(t, ST_EXIT, 0, 0, 0);
		return;
	}
	if (t->d.tool != NULL)
		fc_tool_round(t);
	else
		fc_final_round(t);
}

static void
fc_turn_free(struct fc_turn *t)
{
	int	ri, bi, i;

	for (ri = 0; ri < t->nrounds; ri++)
		for (bi = 0; bi < t->rounds[ri].nblocks; bi++) {
			free(t->rounds[ri].blocks[bi].text);
			free(t->rounds[ri].blocks[bi].cuts);
			free(t->rounds[ri].blocks[bi].cmd);
		}
	for (i = 0; i < 2; i++) {
		if (t->tool_fd[i] != -1)
			close(t->tool_fd[i]);
		free(t->tool_out[i]);
	}
	free(t->perm_msg);
	free(t->perm_cmd);
	free(t->d.tool);
	free(t->prompt);
	cJSON_Delete(t->denials);
	free(t);
}

/* Children: tools and escapees start clean. */

static void
fc_child_reset(void)
{
	struct sigaction	sa;
	sigset_t		none;
	static const int	sigs[] = { SIGINT, SIGTERM, SIGCHLD, SIGPIPE };
	size_t			i;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void
fc_child_fds(int out, int err)
{
	int	null, fd;

	if ((null = open("/dev/null", O_RDWR)) == -1)
		_exit(1);
	dup2(null, STDIN_FILENO);
	dup2(out != -1 ? out : null, STDOUT_FILENO);
	dup2(err != -1 ? err : null, STDERR_FILENO);
	for (fd = STDERR_FILENO + 1; fd < FC_CLOSE_FDS_MAX; fd++)
		close(fd);
}

static void
fc_escapee(int new_session)
{
	fc_child_reset();
	if (new_session)
		setsid();
	fc_child_fds(-1, -1);
	fc_sleep_ms(FC_ESCAPE_SECONDS * FC_MS_PER_S);
	_exit(0);
}

/*
 * fork-escape: a child in a new session and an orphaned grandchild, both
 * sleeping, as tools that try to outlive the session would.
 */
static void
fc_escape(void)
{
	const char	*path;
	pid_t		 child, mid, grand = -1;
	int		 p[2], sync[2], fd;
	char		 buf[64];
	int		 n;

	/* The child closes its end of sync once it is in its own session. */
	if (pipe(sync) == -1 || (child = fork()) == -1)
		fc_die(1, "fake-claude: pipe/fork: %s", strerror(errno));
	if (child == 0)
		fc_escapee(1);
	close(sync[1]);
	while (read(sync[0], buf, sizeof buf) == -1 && errno == EINTR)
		;
	close(sync[0]);
	if (pipe(p) == -1 || (mid = fork()) == -1)
		fc_die(1, "fake-claude: pipe/fork: %s", strerror(errno));
	if (mid == 0) {
		close(p[0]);
		if ((grand = fork()) == 0) {
			close(p[1]);
			fc_escapee(0);
		}
		if (write(p[1], &grand, sizeof grand) != sizeof grand)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &grand, sizeof grand) != sizeof grand)
		grand = -1;
	close(p[0]);
	while (waitpid(mid, NULL, 0) == -1 && errno == EINTR)
		;
	if ((path = getenv("FAKE_CLAUDE_PIDFILE")) == NULL)
		return;
	n = snprintf(buf, sizeof buf, "%ld\n%ld\n", (long)child, (long)grand);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		fc_die(1, "fake-claude: %s: %s", path, strerror(errno));
	if (write(fd, buf, (size_t)n) != n)
		fc_die(1, "fake-claude: %s: short write", path);
	close(fd);
}

static void
fc_tool_spawn(struct fc_turn *t, const char *cmd)
{
	int	out[2], err[2], i;
	pid_t	pid;

	if (pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1)
		fc_die(1, "fake-claude: pipe: %s", strerror(errno));
	if ((pid = fork()) == -1)
		fc_die(1, "fake-claude: fork: %s", strerror(errno));
	if (pid == 0) {
		fc_child_reset();
		fc_child_fds(out[1], err[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	t->tool_fd[0] = out[0];
	t->tool_fd[1] = err[0];
	for (i = 0; i < 2; i++)
		fcntl(t->tool_fd[i], F_SETFL,
		    fcntl(t->tool_fd[i], F_GETFL) | O_NONBLOCK);
	t->tool_pid = pid;
	tool_pid_for_signal = pid;
}

static void
fc_tool_read(struct fc_turn *t, int i)
{
	char	buf[FC_READ_CHUNK];
	ssize_t	n;
	size_t	keep;

	for (;;) {
		n = read(t->tool_fd[i], buf, sizeof buf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close(t->tool_fd[i]);
			t->tool_fd[i] = -1;
			return;
		}
		/* Output past the bound is read and dropped. */
		keep = (size_t)n;
		if (t->tool_len[i] + keep > (size_t)FC_MAX_TOOL_OUTPUT)
			keep = (size_t)FC_MAX_TOOL_OUTPUT - t->tool_len[i];
		t->tool_out[i] = fc_realloc(t->tool_out[i],
		    t->tool_len[i] + keep + 1);
		memcpy(t->tool_out[i] + t->tool_len[i], buf, keep);
		t->tool_len[i] += keep;
		t->tool_out[i][t->tool_len[i]] = '\0';
	}
}

static void
fc_tool_kill(struct fc_turn *t)
{
	if (t->tool_pid > 0 && !t->tool_reaped)
		kill(t->tool_pid, SIGKILL);
	tool_pid_for_signal = 0;
}

static const char *
fc_trimmed(char *s, size_t *len)
{
	if (s == NULL) {
		*len = 0;
		return "";
	}
	while (*len > 0 && s[*len - 1] == '\n')
		s[--*len] = '\0';
	return s;
}

static cJSON *
fc_line_tool_result(struct fc_turn *t, struct fc_block *b)
{
	cJSON		*content, *r, *tur, *d, *in;
	const char	*out, *err;
	size_t		 olen = t->tool_len[0], elen = t->tool_len[1];
	char		*text;
	size_t		 n;
	int		 code = 0, is_error;

	if (t->perm_state == PERM_ANSWERED && !t->perm_allow) {
		is_error = 1;
		text = fc_strdup(t->perm_msg != NULL ? t->perm_msg :
		    "Permission denied");
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "tool_name", "Bash");
		cJSON_AddStringToObject(d, "tool_use_id", b->tool_id);
		in = cJSON_Parse(b->text);
		cJSON_AddItemToObject(d, "tool_input", in);
		cJSON_AddItemToArray(t->denials, d);
	} else {
		out = fc_trimmed(t->tool_out[0], &olen);
		err = fc_trimmed(t->tool_out[1], &elen);
		if (WIFEXITED(t->tool_status))
			code = WEXITSTATUS(t->tool_status);
		else if (WIFSIGNALED(t->tool_status))
			code = FC_EXIT_SIGNALED + WTERMSIG(t->tool_status);
		is_error = code != 0;
		n = olen + elen + sizeof "Exit code 000\n\n";
		text = fc_malloc(n);
		if (is_error)
			snprintf(text, n, "Exit code %d\n%s%s%s", code, out,
			    olen > 0 && elen > 0 ? "\n" : "", err);
		else
			snprintf(text, n, "%s%s%s", out,
			    olen > 0 && elen > 0 ? "\n" : "", err);
	}
	if (*text == '\0') {
		free(text);
		text = fc_strdup(FC_NO_OUTPUT);
	}
	/* Key order differs between results and errors, as recorded. */
	content = cJSON_CreateArray();
	r = cJSON_CreateObject();
	if (!is_error)
		cJSON_AddStringToObject(r, "tool_use_id", b->tool_id);
	cJSON_AddStringToObject(r, "type", "tool_result");
	cJSON_AddStringToObject(r, "content", text);
	cJSON_AddBoolToObject(r, "is_error", is_error);
	if (is_error)
		cJSON_AddStringToObject(r, "tool_use_id", b->tool_id);
	cJSON_AddItemToArray(content, r);
	if (is_error) {
		char	*e;

		e = fc_malloc(strlen(text) + sizeof "Error: ");
		sprintf(e, "Error: %s", text);
		tur = cJSON_CreateString(e);
		free(e);
	} else {
		tur = cJSON_CreateObject();
		cJSON_AddStringToObject(tur, "stdout",
		    fc_trimmed(t->tool_out[0], &olen));
		cJSON_AddStringToObject(tur, "stderr",
		    fc_trimmed(t->tool_out[1], &elen));
		cJSON_AddFalseToObject(tur, "interrupted");
		cJSON_AddFalseToObject(tur, "isImage");
		cJSON_AddBoolToObject(tur, "noOutputExpected",
		    olen + elen == 0);
	}
	free(text);
	return fc_line_user(content, tur);
}

static cJSON *
fc_line_can_use_tool(struct fc_turn *t, struct fc_block *b)
{
	cJSON		*o, *r, *in, *sug, *e, *a, *x;
	const char	*word;
	char		*path;

	fc_uuid(t->perm_id);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "control_request");
	cJSON_AddStringToObject(o, "request_id", t->perm_id);
	r = cJSON_AddObjectToObject(o, "request");
	cJSON_AddStringToObject(r, "subtype", "can_use_tool");
	cJSON_AddStringToObject(r, "tool_name", "Bash");
	cJSON_AddStringToObject(r, "display_name", "Bash");
	in = cJSON_Parse(b->text);
	cJSON_AddItemToObject(r, "input", in);
	cJSON_AddStringToObject(r, "description", cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(in, "description")));
	sug = cJSON_AddArrayToObject(r, "permission_suggestions");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "type", "addRules");
	a = cJSON_AddArrayToObject(e, "rules");
	x = cJSON_CreateObject();
	cJSON_AddStringToObject(x, "toolName", "Bash");
	cJSON_AddStringToObject(x, "ruleContent", b->cmd);
	cJSON_AddItemToArray(a, x);
	cJSON_AddStringToObject(e, "behavior", "allow");
	cJSON_AddStringToObject(e, "destination", "localSettings");
	cJSON_AddItemToArray(sug, e);
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "type", "addDirectories");
	a = cJSON_AddArrayToObject(e, "directories");
	cJSON_AddItemToArray(a, cJSON_CreateString(cwd));
	cJSON_AddStringToObject(e, "destination", "session");
	cJSON_AddItemToArray(sug, e);
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "type", "setMode");
	cJSON_AddStringToObject(e, "mode", "acceptEdits");
	cJSON_AddStringToObject(e, "destination", "session");
	cJSON_AddItemToArray(sug, e);
	/* The path the command's last word names, as for `touch FILE`. */
	word = strrchr(b->cmd, ' ');
	word = word != NULL ? word + 1 : b->cmd;
	path = fc_malloc(strlen(cwd) + strlen(word) + 2);
	sprintf(path, "%s/%s", cwd, word);
	cJSON_AddStringToObject(r, "blocked_path", path);
	free(path);
	cJSON_AddStringToObject(r, "tool_use_id", b->tool_id);
	return o;
}

/* Results. */

static void
fc_account_round(struct fc_turn *t, struct fc_round *r)
{
	int	i;

	for (i = 0; i < U_N; i++) {
		t->usage[i] += r->usage[i];
		model_usage[i] += r->usage[i];
	}
	model_used = 1;
	if (!t->d.has_cost)
		total_cost += r->usage[U_IN] * FC_PRICE_IN +
		    r->usage[U_OUT] * FC_PRICE_OUT +
		    r->usage[U_CR] * FC_PRICE_CACHE_READ +
		    r->usage[U_CW] * FC_PRICE_CACHE_WRITE;
	total_api_ms += fc_ms_between(r->start, fc_now());
	t->rounds_done++;
	t->last_stop = r->stop_reason;
	if (strcmp(r->stop_reason, "tool_use") == 0)
		t->phase = PH_TOOL;
}

static const char *
fc_result_text(struct fc_turn *t)
{
	struct fc_round	*r;
	int		 bi;

	if (t->nrounds == 0)
		return "";
	r = &t->rounds[t->nrounds - 1];
	for (bi = r->nblocks - 1; bi >= 0; bi--)
		if (r->blocks[bi].type == BLK_TEXT)
			return r->blocks[bi].text;
	return "";
}

static cJSON *
fc_line_result(struct fc_turn *t)
{
	cJSON		*o;
	static const long zero[U_N];
	long		 ms = fc_ms_between(t->start, fc_now());

	if (t->d.has_cost)
		total_cost += t->d.cost;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "result");
	cJSON_AddStringToObject(o, "subtype", "success");
	cJSON_AddBoolToObject(o, "is_error", t->d.error);
	if (t->d.error)
		cJSON_AddNumberToObject(o, "api_error_status",
		    FC_API_ERROR_STATUS);
	else
		cJSON_AddNullToObject(o, "api_error_status");
	cJSON_AddNumberToObject(o, "duration_ms", ms);
	cJSON_AddNumberToObject(o, "duration_api_ms", total_api_ms);
	if (!t->d.error) {
		cJSON_AddNumberToObject(o, "ttft_ms", t->ttft_ms);
		cJSON_AddNumberToObject(o, "ttft_stream_ms", t->ttft_ms);
		cJSON_AddNumberToObject(o, "time_to_request_ms", 0);
	}
	cJSON_AddNumberToObject(o, "num_turns", t->d.error ? 1 :
	    t->rounds_done);
	cJSON_AddStringToObject(o, "result", t->d.error ? FC_API_ERROR_TEXT :
	    fc_result_text(t));
	cJSON_AddStringToObject(o, "stop_reason", t->d.error ?
	    "stop_sequence" : "end_turn");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	cJSON_AddNumberToObject(o, "total_cost_usd", total_cost);
	cJSON_AddItemToObject(o, "usage", fc_usage_obj(t->d.error ? zero :
	    t->usage, 1));
	cJSON_AddItemToObject(o, "modelUsage", fc_model_usage());
	cJSON_AddItemToObject(o, "permission_denials",
	    cJSON_Duplicate(t->denials, 1));
	cJSON_AddStringToObject(o, "terminal_reason", "completed");
	cJSON_AddStringToObject(o, "fast_mode_state", "off");
	if (t->own) {
		/* As recorded (fixture background_turn). */
		cJSON	*og = cJSON_AddObjectToObject(o, "origin");

		cJSON_AddStringToObject(og, "kind", "task-notification");
		cJSON_AddStringToObject(og, "producer", "session-task");
		cJSON_AddStringToObject(og, "runId", "fake-run");
	}
	fc_add_uuid(o);
	return o;
}

/*
 * The result of an interrupted turn, as recorded: during the stream, or
 * during a tool (running or waiting for permission), where the CLI also
 * counts the tool round and reports its usage.
 */
static cJSON *
fc_line_result_interrupted(struct fc_turn *t, int in_tool)
{
	cJSON	*o, *e;
	char	 diag[sizeof FC_EDE_DIAGNOSTIC + FC_ID_MAX];

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "result");
	cJSON_AddStringToObject(o, "subtype", "error_during_execution");
	cJSON_AddNumberToObject(o, "duration_ms",
	    fc_ms_between(t->start, fc_now()));
	cJSON_AddNumberToObject(o, "duration_api_ms", total_api_ms);
	cJSON_AddTrueToObject(o, "is_error");
	cJSON_AddNumberToObject(o, "num_turns", t->nrounds + 1 + in_tool);
	if (t->last_stop != NULL)
		cJSON_AddStringToObject(o, "stop_reason", t->last_stop);
	else
		cJSON_AddNullToObject(o, "stop_reason");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	cJSON_AddNumberToObject(o, "total_cost_usd", total_cost);
	cJSON_AddItemToObject(o, "usage", fc_usage_obj(t->usage, 1));
	cJSON_AddItemToObject(o, "modelUsage", fc_model_usage());
	cJSON_AddItemToObject(o, "permission_denials",
	    cJSON_Duplicate(t->denials, 1));
	cJSON_AddStringToObject(o, "terminal_reason", in_tool ?
	    "aborted_tools" : "aborted_streaming");
	cJSON_AddStringToObject(o, "fast_mode_state", "off");
	fc_add_uuid(o);
	e = cJSON_AddArrayToObject(o, "errors");
	snprintf(diag, sizeof diag, FC_EDE_DIAGNOSTIC, t->last_stop != NULL ?
	    t->last_stop : "null");
	cJSON_AddItemToArray(e, cJSON_CreateString(diag));
	return o;
}

/* Deliberately broken output for the garbage directive. */
static void
fc_garbage(void)
{
	static const char	 junk[] = "this line is not JSON\n";
	static const char	 half[] =
	    "{\"type\":\"assistant\",\"message\":\n";
	cJSON			*o;

	fc_write(junk, sizeof junk - 1);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "fake_unknown_type");
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_add_uuid(o);
	fc_emit(o);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "system");
	cJSON_AddStringToObject(o, "subtype", "fake_unknown_subtype");
	fc_add_uuid(o);
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_emit(o);
	fc_write(half, sizeof half - 1);
}

/* Stream events. */

static cJSON *
fc_event(const char *type, int index)
{
	cJSON	*e;

	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "type", type);
	if (index >= 0)
		cJSON_AddNumberToObject(e, "index", index);
	return e;
}

static void
fc_emit_event(cJSON *e)
{
	if (opts.partial)
		fc_emit(fc_line_stream(e, -1));
	else
		cJSON_Delete(e);
}

static void
fc_emit_block_start(struct fc_block *b, int index)
{
	cJSON	*e, *c;

	e = fc_event("content_block_start", index);
	c = cJSON_AddObjectToObject(e, "content_block");
	switch (b->type) {
	case BLK_THINKING:
		cJSON_AddStringToObject(c, "type", "thinking");
		cJSON_AddStringToObject(c, "thinking", "");
		cJSON_AddStringToObject(c, "signature", "");
		break;
	case BLK_TEXT:
		cJSON_AddStringToObject(c, "type", "text");
		cJSON_AddStringToObject(c, "text", "");
		break;
	case BLK_TOOL_USE:
		cJSON_AddStringToObject(c, "type", "tool_use");
		cJSON_AddStringToObject(c, "id", b->tool_id);
		cJSON_AddStringToObject(c, "name", "Bash");
		cJSON_AddObjectToObject(c, "input");
		break;
	}
	fc_emit_event(e);
}

static void
fc_emit_delta(struct fc_block *b, int index, size_t k)
{
	static const char *const types[] = { "thinking_delta", "text_delta",
	    "input_json_delta" };
	static const char *const keys[] = { "thinking", "text",
	    "partial_json" };
	cJSON	*e, *d;
	char	*piece;
	size_t	 off, len;

	if (!opts.partial)
		return;
	fc_block_delta(b, k, &off, &len);
	piece = fc_strndup(b->text + off, len);
	e = fc_event("content_block_delta", index);
	d = cJSON_AddObjectToObject(e, "delta");
	cJSON_AddStringToObject(d, "type", types[b->type]);
	cJSON_AddStringToObject(d, keys[b->type], piece);
	free(piece);
	fc_emit_event(e);
}

/* Progress the CLI reports before each thinking delta. */
static void
fc_emit_thinking_tokens(struct fc_turn *t, struct fc_block *b, size_t k)
{
	cJSON	*o;
	size_t	 off, len;
	long	 est;

	fc_block_delta(b, k, &off, &len);
	est = (long)((len + FC_CHARS_PER_TOKEN - 1) / FC_CHARS_PER_TOKEN);
	t->think_tokens += est;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "system");
	cJSON_AddStringToObject(o, "subtype", "thinking_tokens");
	cJSON_AddNumberToObject(o, "estimated_tokens", t->think_tokens);
	cJSON_AddNumberToObject(o, "estimated_tokens_delta", est);
	fc_add_uuid(o);
	cJSON_AddStringToObject(o, "session_id", opts.session_id);
	fc_emit(o);
}

/* Runs one step of the turn; a timed STEP_WAIT says until when. */
static enum fc_step_ret
fc_step(struct fc_turn *t, int *timed, struct timespec *wake)
{
	struct fc_step	*s;
	struct fc_round	*r;
	struct fc_block	*b;
	cJSON		*e, *d;
	size_t		 n;

	*timed = 0;
	if (t->next >= t->nsteps)
		return STEP_DONE;
	s = &t->steps[t->next];
	r = &t->rounds[s->round];
	b = &r->blocks[s->block];
	switch (s->kind) {
	case ST_INIT:
		fc_emit(fc_line_init());
		break;
	case ST_STATUS:
		r->start = fc_now();
		fc_emit(fc_line_status());
		if (t->d.ratelimit && s->round == 0)
			fc_emit(fc_line_api_retry_429());
		if (t->d.bgtasks >= 0 && s->round == 0)
			fc_emit(fc_line_bg_tasks(t->d.bgtasks));
		break;
	case ST_MSG_START:
		if (r->start.tv_sec == 0 && r->start.tv_nsec == 0)
			r->start = fc_now();
		if (!t->first_token_seen) {
			t->first_token_seen = 1;
			t->ttft_ms = fc_ms_between(t->start, fc_now());
		}
		if (opts.partial) {
			e = fc_event("message_start", -1);
			cJSON_AddItemToObject(e, "message", fc_message(r));
			fc_emit(fc_line_stream(e, fc_ms_between(r->start,
			    fc_now())));
		}
		break;
	case ST_BLOCK_START:
		fc_emit_block_start(b, s->block);
		break;
	case ST_DELTAS:
		if (t->waiting) {
			if (!fc_reached(t->deadline)) {
				*timed = 1;
				*wake = t->deadline;
				return STEP_WAIT;
			}
			t->waiting = 0;
		}
		n = fc_block_ndeltas(b);
		if (s->limit > 0 && n > (size_t)s->limit)
			n = (size_t)s->limit;
		if (t->dcur < n) {
			if (b->type == BLK_THINKING)
				fc_emit_thinking_tokens(t, b, t->dcur);
			fc_emit_delta(b, s->block, t->dcur++);
			if (t->dcur < n && t->d.delay_ms > 0) {
				t->waiting = 1;
				t->deadline = fc_after_ms(t->d.delay_ms);
			}
			return STEP_MORE;
		}
		t->dcur = 0;
		break;
	case ST_SIGNATURE:
		e = fc_event("content_block_delta", s->block);
		d = cJSON_AddObjectToObject(e, "delta");
		cJSON_AddStringToObject(d, "type", "signature_delta");
		cJSON_AddStringToObject(d, "signature", FC_SIGNATURE);
		fc_emit_event(e);
		break;
	case ST_ASSISTANT:
		fc_emit(fc_line_assistant(r, b));
		break;
	case ST_BLOCK_STOP:
		fc_emit_event(fc_event("content_block_stop", s->block));
		break;
	case ST_MSG_DELTA:
		e = fc_event("message_delta", -1);
		d = cJSON_AddObjectToObject(e, "delta");
		cJSON_AddStringToObject(d, "stop_reason", r->stop_reason);
		cJSON_AddNullToObject(d, "stop_sequence");
		cJSON_AddItemToObject(e, "usage", fc_usage_obj(r->usage, 0));
		fc_emit_event(e);
		break;
	case ST_MSG_STOP:
		fc_emit_event(fc_event("message_stop", -1));
		fc_account_round(t, r);
		break;
	case ST_GARBAGE:
		fc_garbage();
		break;
	case ST_ESCAPE:
		fc_escape();
		break;
	case ST_STALL:
		return STEP_WAIT;
	case ST_CRASH:
		fprintf(stderr, "fake-claude: crashing mid-turn as told\n");
		_exit(FC_EXIT_CRASH);
	case ST_API_ERROR:
		fc_emit(fc_line_api_error(r, FC_API_ERROR_TEXT));
		break;
	case ST_PERMIT_ASK:
		t->tool_block = s->block;
		fc_emit(fc_line_can_use_tool(t, b));
		t->perm_state = PERM_ASKED;
		break;
	case ST_PERMIT_WAIT:
		if (t->perm_state == PERM_ASKED)
			return STEP_WAIT;
		break;
	case ST_TOOL:
		if (t->perm_state == PERM_ANSWERED && !t->perm_allow)
			break;
		if (!t->tool_started) {
			t->tool_block = s->block;
			t->tool_started = 1;
			t->phase = PH_TOOL;
			t->tool_deadline = fc_after_ms(t->d.toolsleep_ms);
			fc_tool_spawn(t, t->perm_cmd != NULL ? t->perm_cmd :
			    b->cmd);
		}
		if (t->tool_fd[0] != -1 || t->tool_fd[1] != -1 ||
		    !t->tool_reaped)
			return STEP_WAIT;
		if (!fc_reached(t->tool_deadline)) {
			*timed = 1;
			*wake = t->tool_deadline;
			return STEP_WAIT;
		}
		break;
	case ST_TOOL_RESULT:
		fc_emit(fc_line_tool_result(t, b));
		if (s->block < r->nblocks - 1) {
			fc_tool_reset(t);	/* twice: the next call */
			break;
		}
		t->phase = PH_STREAM;
		t->next++;
		fc_final_round(t);
		return STEP_MORE;
	case ST_RESULT:
		fc_emit(fc_line_result(t));
		last_is_error = t->d.error;
		break;
	case ST_EXIT:
		fc_cleanup();
		exit(0);
	}
	t->next++;
	return STEP_MORE;
}

static void
fc_turn_end(void)
{
	char	*next;
	int	 bg = turn->d.bgturn && !turn->own;

	fc_turn_free(turn);
	turn = NULL;
	/*
	 * bgturn: a turn of our own follows, as the real CLI starts one when
	 * a background task ends; it stalls until the next control request
	 * (a deterministic window for tests), then ends with origin.
	 */
	if (bg) {
		fc_turn_start(fc_strdup("stall"));
		turn->own = 1;
		return;
	}
	if (queued != NULL) {
		next = queued;
		queued = NULL;
		fc_turn_start(next);
	}
}

static cJSON *
fc_text_content(const char *text)
{
	cJSON	*c, *b;

	c = cJSON_CreateArray();
	b = cJSON_CreateObject();
	cJSON_AddStringToObject(b, "type", "text");
	cJSON_AddStringToObject(b, "text", text);
	cJSON_AddItemToArray(c, b);
	return c;
}

/*
 * Ends the turn as interrupted, with the lines the real CLI writes: a
 * pending permission request is cancelled first, then the interrupt is
 * answered (req_id NULL: SIGINT), and a tool in flight is rejected.
 */
static void
fc_turn_interrupt(const char *req_id)
{
	struct fc_turn	*t = turn;
	struct fc_block	*b;
	cJSON		*o, *c, *r, *d;
	int		 in_tool;

	in_tool = t->phase == PH_TOOL || t->perm_state == PERM_ASKED;
	fc_tool_kill(t);
	if (t->perm_state == PERM_ASKED) {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "type", "control_cancel_request");
		cJSON_AddStringToObject(o, "request_id", t->perm_id);
		fc_emit(o);
	}
	if (req_id != NULL)
		fc_emit(fc_control_response(req_id, NULL, NULL));
	if (in_tool) {
		b = &t->rounds[0].blocks[t->tool_block];
		if (t->perm_state == PERM_ASKED) {
			d = cJSON_CreateObject();
			cJSON_AddStringToObject(d, "tool_name", "Bash");
			cJSON_AddStringToObject(d, "tool_use_id", b->tool_id);
			cJSON_AddItemToObject(d, "tool_input",
			    cJSON_Parse(b->text));
			cJSON_AddItemToArray(t->denials, d);
		}
		c = cJSON_CreateArray();
		r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "type", "tool_result");
		cJSON_AddStringToObject(r, "content", FC_REJECTED_TEXT);
		cJSON_AddTrueToObject(r, "is_error");
		cJSON_AddStringToObject(r, "tool_use_id", b->tool_id);
		cJSON_AddItemToArray(c, r);
		fc_emit(fc_line_user(c,
		    cJSON_CreateString(FC_REJECTED_RESULT)));
		fc_emit(fc_line_user(fc_text_content(FC_INTERRUPTED_TOOL_TEXT),
		    NULL));
	} else
		fc_emit(fc_line_user(fc_text_content(FC_INTERRUPTED_TEXT),
		    NULL));
	fc_emit(fc_line_result_interrupted(t, in_tool));
	last_is_error = 1;
	fc_turn_end();
}

/* Control requests from the host. */

static cJSON *
fc_initialize_response(void)
{
	cJSON	*o, *a, *e, *l;

	o = cJSON_CreateObject();
	a = cJSON_AddArrayToObject(o, "commands");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "name", "debug");
	cJSON_AddStringToObject(e, "description",
	    "Enable debug logging for this session and help diagnose issues");
	cJSON_AddStringToObject(e, "argumentHint", "[issue description]");
	cJSON_AddItemToArray(a, e);
	a = cJSON_AddArrayToObject(o, "agents");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "name", "claude");
	cJSON_AddStringToObject(e, "description",
	    "Catch-all for any task that doesn't fit another agent");
	cJSON_AddItemToArray(a, e);
	cJSON_AddStringToObject(o, "output_style", "default");
	a = cJSON_AddArrayToObject(o, "available_output_styles");
	cJSON_AddItemToArray(a, cJSON_CreateString("default"));
	a = cJSON_AddArrayToObject(o, "models");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "value", "default");
	cJSON_AddStringToObject(e, "resolvedModel", FC_DEFAULT_MODEL);
	cJSON_AddStringToObject(e, "displayName", "Default (recommended)");
	cJSON_AddStringToObject(e, "description", "Use the default model");
	cJSON_AddTrueToObject(e, "supportsEffort");
	l = cJSON_AddArrayToObject(e, "supportedEffortLevels");
	cJSON_AddItemToArray(l, cJSON_CreateString("low"));
	cJSON_AddItemToArray(l, cJSON_CreateString("high"));
	cJSON_AddTrueToObject(e, "supportsAdaptiveThinking");
	cJSON_AddTrueToObject(e, "supportsFastMode");
	cJSON_AddTrueToObject(e, "supportsAutoMode");
	cJSON_AddItemToArray(a, e);
	e = cJSON_AddObjectToObject(o, "account");
	cJSON_AddStringToObject(e, "tokenSource", "none");
	cJSON_AddStringToObject(e, "apiKeySource", "ANTHROPIC_API_KEY");
	cJSON_AddStringToObject(e, "apiProvider", "firstParty");
	cJSON_AddNumberToObject(o, "pid", getpid());
	return o;
}

static void
fc_set_string(const char **slot, cJSON *v)
{
	if (!cJSON_IsString(v))
		return;
	free((char *)*slot);
	*slot = fc_strdup(v->valuestring);
}

static void
fc_cleanup(void)
{
	if (turn != NULL) {
		fc_tool_kill(turn);
		fc_turn_free(turn);
		turn = NULL;
	}
	free(queued);
	queued = NULL;
	free((char *)opts.model);
	free((char *)opts.permission_mode);
	opts.model = opts.permission_mode = NULL;
}

static void
fc_control_request(cJSON *msg, const char *line)
{
	cJSON		*req, *idj, *sub;
	const char	*id, *subtype;
	char		 err[256];

	req = cJSON_GetObjectItemCaseSensitive(msg, "request");
	sub = cJSON_GetObjectItemCaseSensitive(req, "subtype");
	if (!cJSON_IsObject(req)) {
		fprintf(stderr, "Error parsing streaming input line: %s: "
		    "TypeError: undefined is not an object (evaluating "
		    "'e.request.subtype')\n", line);
		cJSON_Delete(msg);
		fc_cleanup();
		exit(1);
	}
	idj = cJSON_GetObjectItemCaseSensitive(msg, "request_id");
	id = cJSON_IsString(idj) ? idj->valuestring : "";
	subtype = cJSON_IsString(sub) ? sub->valuestring : "undefined";

	/* bgturn: our own turn ends at the host's next control request. */
	if (turn != NULL && turn->own && strcmp(subtype, "interrupt") != 0) {
		fc_emit(fc_line_result(turn));
		fc_turn_end();
	}
	if (strcmp(subtype, "interrupt") == 0) {
		if (turn != NULL && !turn->d.ignore_intr)
			fc_turn_interrupt(id);
		else
			fc_emit(fc_control_response(id, NULL, NULL));
	} else if (strcmp(subtype, "initialize") == 0)
		fc_emit(fc_control_response(id, NULL,
		    fc_initialize_response()));
	else if (strcmp(subtype, "get_binary_version") == 0) {
		cJSON	*v = cJSON_CreateObject();

		cJSON_AddStringToObject(v, "version", FC_VERSION);
		cJSON_AddStringToObject(v, "buildTime", FC_BUILD_TIME);
		fc_emit(fc_control_response(id, NULL, v));
	} else if (strcmp(subtype, "end_session") == 0) {
		fc_emit(fc_control_response(id, NULL, NULL));
		cJSON_Delete(msg);
		fc_cleanup();
		exit(0);
	} else if (strcmp(subtype, "set_model") == 0) {
		fc_set_string(&opts.model,
		    cJSON_GetObjectItemCaseSensitive(req, "model"));
		fc_emit(fc_control_response(id, NULL, NULL));
	} else if (strcmp(subtype, "set_permission_mode") == 0) {
		fc_set_string(&opts.permission_mode,
		    cJSON_GetObjectItemCaseSensitive(req, "mode"));
		fc_emit(fc_control_response(id, NULL, NULL));
	} else if (strcmp(subtype, "set_max_thinking_tokens") == 0)
		fc_emit(fc_control_response(id, NULL, NULL));
	else {
		snprintf(err, sizeof err,
		    "Unsupported control request subtype: %s", subtype);
		fc_emit(fc_control_response(id, err, NULL));
	}
}

/* An answer to our can_use_tool request. */
static void
fc_control_response_in(cJSON *msg)
{
	cJSON	*resp, *id, *sub, *r, *beh, *m, *upd, *cmd;

	resp = cJSON_GetObjectItemCaseSensitive(msg, "response");
	id = cJSON_GetObjectItemCaseSensitive(resp, "request_id");
	if (turn == NULL || turn->perm_state != PERM_ASKED ||
	    !cJSON_IsString(id) || strcmp(id->valuestring, turn->perm_id) != 0)
		return;
	sub = cJSON_GetObjectItemCaseSensitive(resp, "subtype");
	r = cJSON_GetObjectItemCaseSensitive(resp, "response");
	beh = cJSON_GetObjectItemCaseSensitive(r, "behavior");
	turn->perm_state = PERM_ANSWERED;
	turn->perm_allow = cJSON_IsString(sub) &&
	    strcmp(sub->valuestring, "success") == 0 && cJSON_IsString(beh) &&
	    strcmp(beh->valuestring, "allow") == 0;
	if (turn->perm_allow) {
		upd = cJSON_GetObjectItemCaseSensitive(r, "updatedInput");
		cmd = cJSON_GetObjectItemCaseSensitive(upd, "command");
		if (cJSON_IsString(cmd))
			turn->perm_cmd = fc_strdup(cmd->valuestring);
		return;
	}
	m = cJSON_GetObjectItemCaseSensitive(r, "message");
	if (!cJSON_IsString(m))
		m = cJSON_GetObjectItemCaseSensitive(resp, "error");
	if (cJSON_IsString(m))
		turn->perm_msg = fc_strdup(m->valuestring);
}

/* The text of a user message: a string, or its text blocks joined. */
static char *
fc_user_text(cJSON *content)
{
	cJSON	*blk, *tx;
	char	*s;
	size_t	 len = 0, n;

	if (cJSON_IsString(content))
		return fc_strdup(content->valuestring);
	s = fc_strdup("");
	cJSON_ArrayForEach(blk, content) {
		tx = cJSON_GetObjectItemCaseSensitive(blk, "text");
		if (!cJSON_IsString(tx))
			continue;
		n = strlen(tx->valuestring);
		s = fc_realloc(s, len + n + 2);
		if (len > 0)
			s[len++] = '\n';
		memcpy(s + len, tx->valuestring, n + 1);
		len += n;
	}
	return s;
}

static void
fc_user(cJSON *msg, const char *line)
{
	cJSON	*m, *role, *content;
	char	*text, *merged;
	size_t	 n;

	m = cJSON_GetObjectItemCaseSensitive(msg, "message");
	role = cJSON_GetObjectItemCaseSensitive(m, "role");
	content = cJSON_GetObjectItemCaseSensitive(m, "content");
	if (!cJSON_IsObject(m)) {
		fprintf(stderr, "Error parsing streaming input line: %s: "
		    "TypeError: undefined is not an object (evaluating "
		    "'t.message.role')\n", line);
		goto fatal;
	}
	if (!cJSON_IsString(role) || strcmp(role->valuestring, "user") != 0) {
		fprintf(stderr, "Error: Expected message role 'user', got "
		    "'%s'\n", cJSON_IsString(role) ? role->valuestring :
		    "undefined");
		goto fatal;
	}
	if (!cJSON_IsString(content) && !cJSON_IsArray(content)) {
		fprintf(stderr, "fake-claude: unsupported message content\n");
		goto fatal;
	}
	text = fc_user_text(content);
	if (turn == NULL) {
		fc_turn_start(text);
		return;
	}
	/* Busy: queued prompts merge into the next turn, as in the CLI. */
	if (queued == NULL) {
		queued = text;
		return;
	}
	n = strlen(queued);
	merged = fc_realloc(queued, n + strlen(text) + 2);
	merged[n] = '\n';
	strcpy(merged + n + 1, text);
	queued = merged;
	free(text);
	return;
fatal:
	cJSON_Delete(msg);
	fc_cleanup();
	exit(1);
}

static void
fc_input_line(char *line, size_t len)
{
	cJSON		*msg, *type;
	const char	*t;
	size_t		 i;

	for (i = 0; i < len && isspace((unsigned char)line[i]); i++)
		;
	if (i == len)
		return;
	if ((msg = cJSON_ParseWithLength(line, len)) == NULL) {
		fprintf(stderr, "Error parsing streaming input line: %s: "
		    "SyntaxError: JSON Parse error: Unexpected token\n", line);
		fc_cleanup();
		exit(1);
	}
	type = cJSON_GetObjectItemCaseSensitive(msg, "type");
	t = cJSON_IsString(type) ? type->valuestring : "";
	if (strcmp(t, "user") == 0)
		fc_user(msg, line);
	else if (strcmp(t, "control_request") == 0)
		fc_control_request(msg, line);
	else if (strcmp(t, "control_response") == 0)
		fc_control_response_in(msg);
	/* keep_alive and unknown types are ignored, like the CLI does. */
	cJSON_Delete(msg);
}

struct fc_inbuf {
	char	*buf;
	size_t	 len;
	size_t	 cap;
};

/* Splits what stdin gave into lines; an unterminated tail waits. */
static void
fc_input(struct fc_inbuf *in, int eof)
{
	char	*nl, *line;
	size_t	 off = 0, n;

	while ((nl = memchr(in->buf + off, '\n', in->len - off)) != NULL) {
		n = (size_t)(nl - (in->buf + off));
		line = fc_strndup(in->buf + off, n);
		off += n + 1;
		fc_input_line(line, n);
		free(line);
	}
	memmove(in->buf, in->buf + off, in->len - off);
	in->len -= off;
	if (eof && in->len > 0) {
		line = fc_strndup(in->buf, in->len);
		n = in->len;
		in->len = 0;
		fc_input_line(line, n);
		free(line);
	}
}

static int
fc_read_stdin(struct fc_inbuf *in)
{
	ssize_t	n;

	if (in->cap - in->len < FC_READ_CHUNK) {
		if (in->cap + FC_READ_CHUNK > (size_t)FC_MAX_INPUT_LINE)
			fc_die(1, "fake-claude: input line too long");
		in->cap += FC_READ_CHUNK;
		in->buf = fc_realloc(in->buf, in->cap);
	}
	n = read(STDIN_FILENO, in->buf + in->len, in->cap - in->len);
	if (n == -1)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (n == 0)
		return -1;
	in->len += (size_t)n;
	return 0;
}

/* Signals. */

static void
fc_on_sigterm(int sig)
{
	if (tool_pid_for_signal > 0)
		kill(tool_pid_for_signal, SIGKILL);
	_exit(FC_EXIT_SIGTERM);
}

static void
fc_on_flag(int sig)
{
	if (sig == SIGINT)
		got_sigint = 1;
	else
		got_sigchld = 1;
}

static void
fc_signals(void)
{
	struct sigaction	sa;
	sigset_t		block;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = fc_on_sigterm;
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = fc_on_flag;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	/* SIGINT and SIGCHLD are only let in while ppoll waits. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &loop_mask);
	sigdelset(&loop_mask, SIGINT);
	sigdelset(&loop_mask, SIGCHLD);
}

static void
fc_reap(void)
{
	pid_t	pid;
	int	status;

	got_sigchld = 0;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (turn != NULL && pid == turn->tool_pid) {
			turn->tool_status = status;
			turn->tool_reaped = 1;
			tool_pid_for_signal = 0;
		}
}

/* Start-up. */

static void
fc_log_start(int argc, char **argv)
{
	extern char	**environ;
	const char	 *path, *dir;
	struct timespec	  ts;
	cJSON		 *o, *a;
	char		**e, *s, *rel = NULL;
	size_t		  len;
	int		  fd, i;

	if ((path = getenv("FAKE_CLAUDE_LOG")) == NULL)
		return;
	/*
	 * A relative name is in the config dir, which the sandbox lets the
	 * CLI write (Landlock refuses the test's own directory).
	 */
	if (path[0] != '/' && (dir = getenv("CLAUDE_CONFIG_DIR")) != NULL &&
	    dir[0] == '/') {
		len = strlen(dir) + strlen(path) + 2;
		rel = fc_malloc(len);
		snprintf(rel, len, "%s/%s", dir, path);
		path = rel;
	}
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "pid", getpid());
	cJSON_AddNumberToObject(o, "ppid", getppid());
	cJSON_AddNumberToObject(o, "pgid", getpgrp());
	cJSON_AddNumberToObject(o, "sid", getsid(0));
	cJSON_AddStringToObject(o, "cwd", cwd);
	a = cJSON_AddArrayToObject(o, "argv");
	for (i = 0; i < argc; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(argv[i]));
	a = cJSON_AddArrayToObject(o, "env");
	for (e = environ; *e != NULL; e++) {
		s = fc_strndup(*e, strcspn(*e, "="));
		cJSON_AddItemToArray(a, cJSON_CreateString(s));
		free(s);
	}
	cJSON_AddNumberToObject(o, "uid", getuid());
	/* Orders the starts of several logs (one per config dir). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	cJSON_AddNumberToObject(o, "mono_ns", (double)ts.tv_sec * 1e9 +
	    (double)ts.tv_nsec);
	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		fc_die(1, "fake-claude: out of memory");
	cJSON_Delete(o);
	len = strlen(s);
	s[len] = '\n';
	/* One write(2) with O_APPEND: concurrent starts don't interleave. */
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0644)) == -1 || write(fd, s, len + 1) != (ssize_t)(len + 1))
		fc_die(1, "fake-claude: %s: %s", path, strerror(errno));
	close(fd);
	cJSON_free(s);
	free(rel);
}

/* Flags the real CLI takes a value for (the value may follow or be =). */
static const char *const fc_value_flags[] = {
	"--input-format", "--output-format", "--session-id", "--resume", "-r",
	"--model", "--permission-mode", "--append-system-prompt",
	"--system-prompt", "--max-turns", "--permission-prompt-tool",
	"--allowedTools", "--allowed-tools", "--disallowedTools",
	"--disallowed-tools", "--tools", "--add-dir", "--mcp-config",
	"--settings", "--fallback-model", "--max-budget-usd", "--json-schema",
	"--betas", "--agents", "--setting-sources", "--debug-file",
	"--max-thinking-tokens", NULL
};

static void
fc_args(int argc, char **argv)
{
	const char	*a, *v, *eq, *out_format = NULL, *sid = NULL;
	const char	*model = FC_DEFAULT_MODEL, *mode = "default";
	const char	*const *f;
	char		 name[64];
	int		 i, print = 0, verbose = 0;
	size_t		 n;

	for (i = 1; i < argc; i++) {
		a = argv[i];
		v = NULL;
		n = strlen(a);
		if (strncmp(a, "--", 2) == 0 && (eq = strchr(a, '=')) != NULL) {
			n = (size_t)(eq - a);
			v = eq + 1;
		}
		if (n >= sizeof name)
			continue;
		memcpy(name, a, n);
		name[n] = '\0';
		for (f = fc_value_flags; *f != NULL; f++)
			if (strcmp(name, *f) == 0)
				break;
		if (*f != NULL && v == NULL) {
			if (i + 1 == argc)
				fc_die(1, "error: option '%s' argument "
				    "missing", name);
			v = argv[++i];
		}
		if (strcmp(name, "-p") == 0 || strcmp(name, "--print") == 0)
			print = 1;
		else if (strcmp(name, "--verbose") == 0)
			verbose = 1;
		else if (strcmp(name, "--include-partial-messages") == 0)
			opts.partial = 1;
		else if (strcmp(name, "--output-format") == 0)
			out_format = v;
		else if (strcmp(name, "--session-id") == 0 ||
		    strcmp(name, "--resume") == 0 || strcmp(name, "-r") == 0)
			sid = v;
		else if (strcmp(name, "--model") == 0)
			model = v;
		else if (strcmp(name, "--permission-mode") == 0)
			mode = v;
		else if (strcmp(name, "--permission-prompt-tool") == 0)
			opts.perm_stdio = strcmp(v, "stdio") == 0;
	}
	if (print && out_format != NULL &&
	    strcmp(out_format, "stream-json") == 0 && !verbose)
		fc_die(1, "Error: When using --print, "
		    "--output-format=stream-json requires --verbose");
	if (sid != NULL && strlen(sid) < sizeof opts.session_id)
		snprintf(opts.session_id, sizeof opts.session_id, "%s", sid);
	else
		fc_uuid(opts.session_id);
	opts.model = fc_strdup(model);
	opts.permission_mode = fc_strdup(mode);
}

/* FAKE_CLAUDE_START: exit:N, sleep:MS or hang, before stdin is read. */
static void
fc_start_behaviour(void)
{
	const char	*s;
	long		 v;

	if ((s = getenv("FAKE_CLAUDE_START")) == NULL || *s == '\0')
		return;
	if (strncmp(s, "exit:", 5) == 0 &&
	    fc_num(s + 5, strlen(s + 5), UCHAR_MAX, &v) == 0) {
		fc_cleanup();
		exit((int)v);
	}
	if (strncmp(s, "sleep:", 6) == 0 &&
	    fc_num(s + 6, strlen(s + 6), FC_MAX_MS, &v) == 0)
		fc_sleep_ms(v);
	else if (strcmp(s, "hang") == 0)
		for (;;)
			pause();
	else
		fc_die(1, "fake-claude: bad FAKE_CLAUDE_START: %s", s);
}

/* Runs up to a batch of steps; returns the ppoll timeout to use. */
static struct timespec *
fc_advance(struct timespec *ts)
{
	struct timespec	wake, now;
	enum fc_step_ret ret = STEP_MORE;
	int		timed = 0, i;

	for (i = 0; i < FC_STEP_BATCH && turn != NULL; i++) {
		ret = fc_step(turn, &timed, &wake);
		if (ret == STEP_DONE) {
			fc_turn_end();
			ret = STEP_MORE;
		} else if (ret == STEP_WAIT)
			break;
	}
	if (turn == NULL || ret == STEP_MORE) {
		ts->tv_sec = ts->tv_nsec = 0;
		return turn != NULL ? ts : NULL;
	}
	if (!timed)
		return NULL;
	now = fc_now();
	ts->tv_sec = wake.tv_sec - now.tv_sec;
	ts->tv_nsec = wake.tv_nsec - now.tv_nsec;
	if (ts->tv_nsec < 0) {
		ts->tv_sec--;
		ts->tv_nsec += FC_NS;
	}
	if (ts->tv_sec < 0)
		ts->tv_sec = ts->tv_nsec = 0;
	return ts;
}

int
main(int argc, char **argv)
{
	cJSON_Hooks	 hooks = { fc_malloc, free };
	struct fc_inbuf	 in = { NULL, 0, 0 };
	struct pollfd	 pfd[3];
	struct timespec	 ts, *tp;
	nfds_t		 n;
	int		 i, code;

	cJSON_InitHooks(&hooks);
	if (getcwd(cwd, sizeof cwd) == NULL)
		fc_die(1, "fake-claude: getcwd: %s", strerror(errno));
	fc_log_start(argc, argv);
	fc_args(argc, argv);
	fc_signals();
	fc_start_behaviour();

	for (;;) {
		if (got_sigchld)
			fc_reap();
		if (got_sigint) {
			/* SIGINT: end the turn as interrupted, then exit 0. */
			if (turn != NULL)
				fc_turn_interrupt(NULL);
			break;
		}
		tp = fc_advance(&ts);
		if (turn == NULL && queued == NULL && stdin_eof)
			break;
		n = 0;
		if (!stdin_eof) {
			pfd[n].fd = STDIN_FILENO;
			pfd[n++].events = POLLIN;
		}
		for (i = 0; turn != NULL && i < 2; i++)
			if (turn->tool_fd[i] != -1) {
				pfd[n].fd = turn->tool_fd[i];
				pfd[n++].events = POLLIN;
			}
		if (ppoll(pfd, n, tp, &loop_mask) == -1) {
			if (errno == EINTR)
				continue;
			fc_die(1, "fake-claude: ppoll: %s", strerror(errno));
		}
		for (i = 0; i < (int)n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (pfd[i].fd == STDIN_FILENO) {
				if (fc_read_stdin(&in) == -1)
					stdin_eof = 1;
				fc_input(&in, stdin_eof);
			} else if (turn != NULL &&
			    turn->tool_fd[0] == pfd[i].fd)
				fc_tool_read(turn, 0);
			else if (turn != NULL &&
			    turn->tool_fd[1] == pfd[i].fd)
				fc_tool_read(turn, 1);
		}
	}
	code = got_sigint ? 0 : last_is_error;
	free(in.buf);
	fc_cleanup();
	return code;
}
