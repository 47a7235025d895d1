/*
 * hotplexctl: the user and admin tool, on libhotplex.  Its commands map
 * one to one onto protocol operations (hotplex-protocol(7)).
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "client/hotplex.h"
#include "common/xmalloc.h"

#define CTL_EXIT_OK		0
#define CTL_EXIT_FAIL		1
#define CTL_EXIT_USAGE		2
#define CTL_EXIT_SIGINT		130	/* 128 + SIGINT, as the shell does */

#define CTL_PROMPT_MAX		(1024 * 1024)	/* the daemon's default request bound */
#define CTL_TOOL_SUMMARY_MAX	120	/* characters of a tool call shown */
#define CTL_RESULT_LINE_MAX	120	/* characters of a failed tool's output */
#define CTL_MAX_TOOL_ARGS	64	/* --allow / --deny given */
#define CTL_TIMEOUT_MAX_S	(24 * 60 * 60)
#define CTL_MAX_TURNS_MAX	10000
#define CTL_SESSION_COL_MAX	32	/* widest SESSION column in the table */
#define CTL_MS_PER_S		1000
#define CTL_ANSWER_MAX		64	/* a y/n line */
#define CTL_BUDGET_MAX		1000000.0	/* dollars, as the daemon */

#define ANSI_DIM		"\033[2m"
#define ANSI_RESET		"\033[0m"

struct ctl {
	const char		*socket;
	int			 json;
	struct hp_client	*h;
};

static int	ctl_ok(const struct ctl *);

/* Options shared by exec and open. */
struct ctl_turn {
	const char		*session;
	const char		*workdir;
	struct hp_options	 opt;
	const char		*allow[CTL_MAX_TOOL_ARGS + 1];
	const char		*deny[CTL_MAX_TOOL_ARGS + 1];
	size_t			 nallow, ndeny;
	int			 approve;	/* exec --approve */
	int			 prompt_stdin;	/* exec - */
};

enum ctl_mode { MODE_NONE, MODE_THINKING, MODE_ANSWER };

/* What the exec callback knows about the turn so far. */
struct ctl_exec {
	int		 json;
	int		 tty;
	int		 at_bol;	/* stdout is at the start of a line */
	enum ctl_mode	 mode;
	int		 finished;
	int		 failed;	/* error line, or done without ok */
	int		 interrupted;
	char		*terminal_reason;
	struct hp_error	 err;
	int		 have_stats;
	struct hp_stats	 stats;
	/* --approve: permission requests asked on the terminal */
	int		 approve;
	struct hp_client *h;
	const char	*session;
	FILE		*answers;	/* /dev/tty, else stdin */
};

static volatile sig_atomic_t ctl_sigints;
static volatile sig_atomic_t ctl_dim_on;
static int ctl_sigpipe[2] = { -1, -1 };

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status == CTL_EXIT_OK ? stdout : stderr,
	    "usage: hotplexctl [-S socket] [--json] command [args]\n"
	    "  exec -s session [-w workdir] [-m model] [--permission-mode mode]\n"
	    "       [--allow tool]... [--deny tool]... [--timeout sec]\n"
	    "       [--max-turns n] [--append-system-prompt text]\n"
	    "       [--slash-commands] [--approve] [--queue]\n"
	    "       [--budget usd] prompt... | -\n"
	    "  open -s session -w workdir [-m model] [--permission-mode mode]\n"
	    "       [--allow tool]... [--deny tool]...\n"
	    "  sessions\n"
	    "  stats [session]\n"
	    "  status\n"
	    "  stop [-r reason] session\n"
	    "  reset session\n"
	    "  interrupt session\n"
	    "  attach [--since seq] session\n"
	    "  detach session\n"
	    "  reload\n"
	    "  shutdown\n"
	    "  drain\n"
	    "  undrain\n"
	    "  policy check [-t prompt|bash|path] text... | -f file\n"
	    "  audit [--since time] [session]\n"
	    "  permission [-m message] session request-id allow|deny\n"
	    "  configure [-m model] [--permission-mode mode] [--budget usd]\n"
	    "       session\n");
	exit(status);
}

/* A command line that lacks something: name it, not the whole usage. */
static void __attribute__((noreturn))
ctl_missing(const char *cmd, const char *what)
{
	fprintf(stderr, "hotplexctl: %s: %s is required\n", cmd, what);
	exit(CTL_EXIT_USAGE);
}

static void
ctl_error(const struct hp_error *err)
{
	fprintf(stderr, "hotplexctl: %s%s%s\n", err->code,
	    err->message[0] != '\0' ? ": " : "", err->message);
}

/* Connects and says hello, once the command line was found good. */
static int
ctl_connect(struct ctl *c)
{
	struct hp_error	err;
	struct hp_hello	hello;

	if ((c->h = hp_connect(c->socket, &err)) == NULL) {
		ctl_error(&err);
		return -1;
	}
	if (hp_hello(c->h, "hotplexctl/" HOTPLEX_VERSION, &hello, &err) == -1) {
		ctl_error(&err);
		return -1;
	}
	if (hello.proto != HP_PROTO_VERSION) {
		fprintf(stderr, "hotplexctl: server speaks protocol %d, not "
		    "%d\n", hello.proto, HP_PROTO_VERSION);
		return -1;
	}
	return 0;
}

/* ---- argument helpers -------------------------------------------------- */

static long
ctl_number(const char *s, long min, long max, const char *what)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "hotplexctl: %s: bad %s (%ld..%ld)\n", s, what,
		    min, max);
		exit(CTL_EXIT_USAGE);
	}
	return v;
}

/* Reads all of fd up to CTL_PROMPT_MAX; trailing newlines dropped. */
static char *
ctl_slurp(int fd, const char *name)
{
	char	*buf = NULL;
	size_t	 len = 0, size = 0;
	ssize_t	 n;

	for (;;) {
		if (size - len < BUFSIZ) {
			size = len + BUFSIZ + 1;
			buf = xreallocarray(buf, 1, size);
		}
		n = read(fd, buf + len, size - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(stderr, "hotplexctl: %s: %s\n", name,
			    strerror(errno));
			exit(CTL_EXIT_FAIL);
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CTL_PROMPT_MAX) {
			fprintf(stderr, "hotplexctl: %s: longer than %d bytes\n",
			    name, CTL_PROMPT_MAX);
			exit(CTL_EXIT_FAIL);
		}
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	return buf;
}

/* The words of argv joined by spaces, or stdin for a lone "-". */
static char *
ctl_words(int argc, char **argv)
{
	char	*s;
	size_t	 len = 0, off = 0;
	int	 i;

	if (argc == 1 && strcmp(argv[0], "-") == 0)
		return ctl_slurp(STDIN_FILENO, "stdin");
	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	s = xmalloc(len + 1);
	for (i = 0; i < argc; i++)
		off += (size_t)sprintf(s + off, "%s%s", i > 0 ? " " : "",
		    argv[i]);
	s[off] = '\0';
	return s;
}

/* ---- output helpers ---------------------------------------------------- */

/* A duration: milliseconds below a second, else seconds. */
static void
ctl_secs(FILE *f, const char *label, uint64_t ms)
{
	if (ms < CTL_MS_PER_S)
		fprintf(f, "%s%llu ms", label, (unsigned long long)ms);
	else
		fprintf(f, "%s%llu.%02llu s", label,
		    (unsigned long long)(ms / CTL_MS_PER_S),
		    (unsigned long long)(ms % CTL_MS_PER_S / 10));
}

/* One set of counters, one aspect a line, each line after indent. */
static void
ctl_print_usage(FILE *f, const char *indent, const struct hp_usage *u)
{
	size_t	i;

	fprintf(f, "%stokens      in %llu, out %llu, cache read %llu, "
	    "cache write %llu (total %llu)\n", indent,
	    (unsigned long long)u->tokens.input,
	    (unsigned long long)u->tokens.output,
	    (unsigned long long)u->tokens.cache_read,
	    (unsigned long long)u->tokens.cache_write,
	    (unsigned long long)u->tokens.total);
	fprintf(f, "%scost        $%.4f\n", indent, u->cost_usd);
	fprintf(f, "%s", indent);
	ctl_secs(f, "time        ", u->duration_ms.total);
	ctl_secs(f, ": thinking ", u->duration_ms.thinking);
	ctl_secs(f, ", tool ", u->duration_ms.tool);
	ctl_secs(f, ", generation ", u->duration_ms.generation);
	ctl_secs(f, ", other ", u->duration_ms.other);
	ctl_secs(f, "; first token ", u->duration_ms.ttft);
	fprintf(f, "\n%stools       %llu call%s", indent,
	    (unsigned long long)u->tool_calls, u->tool_calls == 1 ? "" : "s");
	for (i = 0; i < u->ntools; i++) {
		const struct hp_tool_usage *t = &u->tools[i];

		fprintf(f, "%s %s %llu", i == 0 ? ":" : ",", t->name,
		    (unsigned long long)t->calls);
		if (t->errors > 0)
			fprintf(f, " (%llu failed)",
			    (unsigned long long)t->errors);
	}
	fprintf(f, "\n");
	if (u->nfiles > 0)
		fprintf(f, "%sfiles       %zu written or edited\n", indent,
		    u->nfiles);
	if (u->permission_denials + u->danger_blocks + u->errors > 0)
		fprintf(f, "%sincidents   %llu denied, %llu blocked, "
		    "%llu errors\n", indent,
		    (unsigned long long)u->permission_denials,
		    (unsigned long long)u->danger_blocks,
		    (unsigned long long)u->errors);
}

/* A tool call on one line: the telling input field, else the JSON. */
static void
ctl_tool_summary(const char *input_json, char *out, size_t size)
{
	static const char *const keys[] = {
		"command", "file_path", "path", "pattern", "url", "query",
		"description", "prompt"
	};
	const cJSON	*v = NULL;
	cJSON		*in;
	const char	*s = input_json != NULL ? input_json : "";
	size_t		 i, n;

	in = cJSON_Parse(s);
	for (i = 0; in != NULL && i < sizeof keys / sizeof keys[0]; i++) {
		v = cJSON_GetObjectItemCaseSensitive(in, keys[i]);
		if (cJSON_IsString(v)) {
			s = v->valuestring;
			break;
		}
	}
	for (n = 0; *s != '\0' && n + 1 < size; s++)
		out[n++] = (*s == '\n' || *s == '\t') ? ' ' : *s;
	if (*s != '\0' && n >= 3)
		memcpy(out + n - 3, "...", 3);
	out[n] = '\0';
	cJSON_Delete(in);
}

static void
ctl_dim(struct ctl_exec *x, int on)
{
	if (!x->tty || ctl_dim_on == on)
		return;
	fputs(on ? ANSI_DIM : ANSI_RESET, stdout);
	ctl_dim_on = on;
}

static void
ctl_text(struct ctl_exec *x, const char *s)
{
	size_t	len;

	if (s == NULL || *s == '\0')
		return;
	len = strlen(s);
	fwrite(s, 1, len, stdout);
	x->at_bol = s[len - 1] == '\n';
}

/* Starts a line of its own for a tool call or a notice. */
static void
ctl_own_line(struct ctl_exec *x)
{
	ctl_dim(x, 0);
	if (!x->at_bol)
		fputc('\n', stdout);
	x->at_bol = 1;
	x->mode = MODE_NONE;
}

/* ---- exec -------------------------------------------------------------- */

/*
 * --approve: asks on the terminal (or standard input, without one) whether
 * the tool call may run, and answers the daemon; end of input denies.
 */
static void
ctl_approve(struct ctl_exec *x, const struct hp_event *ev)
{
	struct hp_error	 err;
	char		 line[CTL_ANSWER_MAX];
	int		 allow = 0;

	if (ev->request_id == NULL || ev->session == NULL)
		return;
	fflush(stdout);
	for (;;) {
		fprintf(stderr, "allow %s? [y/n] ", ev->tool_name != NULL ?
		    ev->tool_name : "this tool call");
		fflush(stderr);
		if (x->answers == NULL ||
		    fgets(line, sizeof line, x->answers) == NULL) {
			fprintf(stderr, "\n");
			break;
		}
		if (line[0] == 'y' || line[0] == 'Y') {
			allow = 1;
			break;
		}
		if (line[0] == 'n' || line[0] == 'N')
			break;
	}
	if (hp_permission(x->h, ev->session, ev->request_id, allow ? "allow" :
	    "deny", allow ? NULL : "denied at the terminal", NULL, &err) == -1 &&
	    strcmp(err.code, "not_found") != 0)
		ctl_error(&err);
}

static void
ctl_exec_event(const struct hp_event *ev, void *arg)
{
	struct ctl_exec	*x = arg;
	char		 buf[CTL_TOOL_SUMMARY_MAX + 1];

	if (x->json) {
		fwrite(ev->line, 1, ev->line_len, stdout);
		fputc('\n', stdout);
	}
	switch (ev->type) {
	case HP_EV_THINKING:
		if (x->json)
			break;
		if (x->mode != MODE_THINKING && !x->at_bol)
			ctl_own_line(x);
		ctl_dim(x, 1);
		x->mode = MODE_THINKING;
		ctl_text(x, ev->text);
		break;
	case HP_EV_ANSWER:
		if (x->json)
			break;
		if (x->mode == MODE_THINKING)
			ctl_own_line(x);
		x->mode = MODE_ANSWER;
		ctl_text(x, ev->text);
		break;
	case HP_EV_TOOL_USE:
		if (x->json)
			break;
		ctl_own_line(x);
		ctl_tool_summary(ev->input_json, buf, sizeof buf);
		printf("> %s: %s\n", ev->tool_name != NULL ? ev->tool_name :
		    "?", buf);
		break;
	case HP_EV_TOOL_RESULT:
		if (x->json)
			break;
		ctl_own_line(x);
		printf("< %s", ev->is_error ? "error" : "ok");
		if (ev->duration_ms >= 0)
			printf(" %lld ms", (long long)ev->duration_ms);
		if (ev->is_error && ev->output != NULL) {
			snprintf(buf, sizeof buf, "%.*s",
			    CTL_RESULT_LINE_MAX, ev->output);
			buf[strcspn(buf, "\n")] = '\0';
			printf(": %s", buf);
		}
		printf("\n");
		break;
	case HP_EV_PERMISSION_DENIED:
		if (x->json)
			break;
		ctl_own_line(x);
		printf("! denied %s (%s)%s%s\n", ev->tool_name != NULL ?
		    ev->tool_name : "?", ev->by != NULL ? ev->by : "?",
		    ev->reason != NULL ? ": " : "",
		    ev->reason != NULL ? ev->reason : "");
		break;
	case HP_EV_DANGER_BLOCK:
		if (x->json)
			break;
		ctl_own_line(x);
		printf("! blocked by rule %s (%s, %s, score %g)%s%s\n",
		    ev->rule != NULL ? ev->rule : "?",
		    ev->category != NULL ? ev->category : "?",
		    ev->severity != NULL ? ev->severity : "?", ev->score,
		    ev->reason != NULL ? ": " : "",
		    ev->reason != NULL ? ev->reason : "");
		break;
	case HP_EV_QUEUED:
		if (!x->json)
			fprintf(stderr, "hotplexctl: queued at position %lld\n",
			    (long long)ev->position);
		break;
	case HP_EV_CLI_TURN:
		/* The lines before it were the CLI's own turn, not a client's. */
		if (x->json)
			break;
		ctl_own_line(x);
		printf("~ the CLI's own turn ended%s\n", ev->is_error ?
		    " with an error" : "");
		break;
	case HP_EV_PERMISSION_REQUEST:
		if (!x->json) {
			ctl_own_line(x);
			ctl_tool_summary(ev->input_json, buf, sizeof buf);
			printf("? %s: %s\n", ev->tool_name != NULL ?
			    ev->tool_name : "?", buf);
		}
		if (x->approve)
			ctl_approve(x, ev);
		break;
	case HP_EV_PERMISSION_CANCELLED:
		if (x->json)
			break;
		ctl_own_line(x);
		printf("! %s: request withdrawn\n", ev->tool_name != NULL ?
		    ev->tool_name : "?");
		break;
	case HP_EV_SESSION_STATS:
		if (ev->stats != NULL && !x->have_stats) {
			x->stats = *ev->stats;
			x->have_stats = 1;
		}
		break;
	case HP_EV_DONE:
		x->finished = 1;
		x->interrupted = ev->interrupted;
		x->failed = !ev->ok || ev->is_error || ev->interrupted;
		if (ev->terminal_reason != NULL)
			x->terminal_reason = xstrdup(ev->terminal_reason);
		if (ev->stats != NULL) {
			x->stats = *ev->stats;	/* done's own stats win */
			x->have_stats = 1;
		}
		if (!x->json && x->mode != MODE_NONE)
			ctl_own_line(x);
		break;
	case HP_EV_ERROR:
		x->finished = x->failed = 1;
		snprintf(x->err.code, sizeof x->err.code, "%s",
		    ev->code != NULL ? ev->code : "internal");
		snprintf(x->err.message, sizeof x->err.message, "%s",
		    ev->message != NULL ? ev->message : "");
		if (!x->json && x->mode != MODE_NONE)
			ctl_own_line(x);
		break;
	default:
		break;
	}
	fflush(stdout);
}

static void
ctl_sigint(int sig)
{
	static const char reset[] = ANSI_RESET "\n";
	int	saved = errno;

	if (ctl_sigints++ > 0) {
		if (ctl_dim_on)
			(void)!write(STDOUT_FILENO, reset, sizeof reset - 1);
		_exit(CTL_EXIT_SIGINT);
	}
	(void)!write(ctl_sigpipe[1], "i", 1);
	errno = saved;
}

static void
ctl_sigint_setup(void)
{
	struct sigaction	sa;
	int			i;

	if (pipe(ctl_sigpipe) == -1) {
		perror("hotplexctl: pipe");
		exit(CTL_EXIT_FAIL);
	}
	for (i = 0; i < 2; i++)
		(void)fcntl(ctl_sigpipe[i], F_SETFL, O_NONBLOCK);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = ctl_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
}

/* The footer on stderr: the turn's counters. */
static void
ctl_footer(const struct ctl_exec *x)
{
	const struct hp_usage	*u;

	if (!x->have_stats)
		return;
	u = x->stats.has_last_turn ? &x->stats.last_turn : &x->stats.total;
	fprintf(stderr, "--\n");
	ctl_print_usage(stderr, "", u);
}

/* Waits for the daemon's socket or a signal (the self-pipe, drained). */
static int
ctl_wait(const struct ctl *c)
{
	struct pollfd	pfd[2];
	char		drain[16];

	pfd[0].fd = hp_fd(c->h);
	pfd[0].events = POLLIN;
	pfd[1].fd = ctl_sigpipe[0];
	pfd[1].events = POLLIN;
	if (poll(pfd, 2, -1) == -1 && errno != EINTR) {
		perror("hotplexctl: poll");
		return -1;
	}
	while (read(ctl_sigpipe[0], drain, sizeof drain) > 0)
		;
	return 0;
}

/*
 * Drives the turn from our own poll loop, so that SIGINT (through a
 * self-pipe) can send interrupt while events keep streaming.
 */
static int
ctl_exec_run(struct ctl *c, struct ctl_turn *t, const char *prompt)
{
	struct ctl_exec	 x;
	struct hp_error	 err;
	int		 interrupting = 0;

	memset(&x, 0, sizeof x);
	x.json = c->json;
	x.tty = isatty(STDOUT_FILENO);
	x.at_bol = 1;
	x.h = c->h;
	x.session = t->session;
	if ((x.approve = t->approve)) {
		/* The prompt may have come from stdin: the terminal first. */
		if ((x.answers = fopen("/dev/tty", "r")) == NULL &&
		    !t->prompt_stdin)
			x.answers = stdin;
	}
	ctl_sigint_setup();
	if (hp_execute_start(c->h, t->session, prompt, t->workdir, &t->opt,
	    ctl_exec_event, &x, &err) == 0) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	while (!x.finished) {
		if (ctl_wait(c) == -1)
			return CTL_EXIT_FAIL;
		if (ctl_sigints > 0 && !interrupting) {
			interrupting = 1;
			ctl_own_line(&x);
			fprintf(stderr, "hotplexctl: interrupting %s "
			    "(^C again to quit)\n", t->session);
			if (hp_interrupt(c->h, t->session, &err) == -1)
				ctl_error(&err);
		}
		if (hp_pump(c->h, &err) == -1 && !x.finished) {
			ctl_error(&err);
			return CTL_EXIT_FAIL;
		}
	}
	ctl_dim(&x, 0);
	fflush(stdout);
	if (!x.json)
		ctl_footer(&x);
	if (x.err.code[0] != '\0')
		ctl_error(&x.err);
	else if (x.interrupted)
		fprintf(stderr, "hotplexctl: turn interrupted%s%s\n",
		    x.terminal_reason != NULL ? ": " : "",
		    x.terminal_reason != NULL ? x.terminal_reason : "");
	else if (x.failed)
		fprintf(stderr, "hotplexctl: turn failed%s%s\n",
		    x.terminal_reason != NULL ? ": " : "",
		    x.terminal_reason != NULL ? x.terminal_reason : "");
	free(x.terminal_reason);
	if (x.answers != NULL && x.answers != stdin)
		fclose(x.answers);
	return x.failed ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

enum {
	OPT_PERMISSION_MODE = CHAR_MAX + 1,
	OPT_ALLOW,
	OPT_DENY,
	OPT_TIMEOUT,
	OPT_MAX_TURNS,
	OPT_APPEND_SYSTEM_PROMPT,
	OPT_SLASH_COMMANDS,
	OPT_JSON,
	OPT_APPROVE,
	OPT_QUEUE,
	OPT_BUDGET
};

/* A dollar amount for --budget. */
static double
ctl_usd(const char *s)
{
	char	*end;
	double	 d;

	errno = 0;
	d = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(d >= 0) ||
	    d > CTL_BUDGET_MAX) {
		fprintf(stderr, "hotplexctl: bad budget: %s\n", s);
		exit(CTL_EXIT_USAGE);
	}
	return d;
}

/* Parses exec/open options; returns optind. */
static int
ctl_turn_parse(struct ctl *c, struct ctl_turn *t, int argc, char **argv,
    int is_exec)
{
	static const struct option longopts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "model", required_argument, NULL, 'm' },
		{ "permission-mode", required_argument, NULL,
		    OPT_PERMISSION_MODE },
		{ "allow", required_argument, NULL, OPT_ALLOW },
		{ "deny", required_argument, NULL, OPT_DENY },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "max-turns", required_argument, NULL, OPT_MAX_TURNS },
		{ "append-system-prompt", required_argument, NULL,
		    OPT_APPEND_SYSTEM_PROMPT },
		{ "slash-commands", no_argument, NULL, OPT_SLASH_COMMANDS },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "approve", no_argument, NULL, OPT_APPROVE },
		{ "queue", no_argument, NULL, OPT_QUEUE },
		{ "budget", required_argument, NULL, OPT_BUDGET },
		{ NULL, 0, NULL, 0 }
	};
	int	ch;

	memset(t, 0, sizeof *t);
	optind = 0;	/* glibc: start over on a new argv */
	while ((ch = getopt_long(argc, argv, "+s:w:m:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			t->session = optarg;
			break;
		case 'w':
			t->workdir = optarg;
			break;
		case 'm':
			t->opt.model = optarg;
			break;
		case OPT_PERMISSION_MODE:
			t->opt.permission_mode = optarg;
			break;
		case OPT_ALLOW:
		case OPT_DENY:
			if ((ch == OPT_ALLOW ? t->nallow : t->ndeny) ==
			    CTL_MAX_TOOL_ARGS) {
				fprintf(stderr, "hotplexctl: more than %d "
				    "tools\n", CTL_MAX_TOOL_ARGS);
				exit(CTL_EXIT_USAGE);
			}
			if (ch == OPT_ALLOW)
				t->allow[t->nallow++] = optarg;
			else
				t->deny[t->ndeny++] = optarg;
			break;
		case OPT_TIMEOUT:
			if (!is_exec)
				usage(CTL_EXIT_USAGE);
			t->opt.timeout_ms = ctl_number(optarg, 1,
			    CTL_TIMEOUT_MAX_S, "timeout") * CTL_MS_PER_S;
			break;
		case OPT_MAX_TURNS:
			t->opt.max_turns = (int)ctl_number(optarg, 1,
			    CTL_MAX_TURNS_MAX, "turn count");
			break;
		case OPT_APPEND_SYSTEM_PROMPT:
			t->opt.append_system_prompt = optarg;
			break;
		case OPT_SLASH_COMMANDS:
			t->opt.slash_commands = 1;
			break;
		case OPT_APPROVE:
			if (!is_exec)
				usage(CTL_EXIT_USAGE);
			t->approve = 1;
			t->opt.approvals = "client";
			break;
		case OPT_QUEUE:
			if (!is_exec)
				usage(CTL_EXIT_USAGE);
			t->opt.queue = 1;
			break;
		case OPT_BUDGET:
			t->opt.max_budget_usd = ctl_usd(optarg);
			break;
		case OPT_JSON:
			c->json = 1;
			break;
		default:
			usage(CTL_EXIT_USAGE);
		}
	}
	if (t->session == NULL)
		ctl_missing(argv[0], "-s SESSION");
	if (t->nallow > 0)
		t->opt.allowed_tools = t->allow;
	if (t->ndeny > 0)
		t->opt.disallowed_tools = t->deny;
	return optind;
}

static int
cmd_exec(struct ctl *c, int argc, char **argv)
{
	struct ctl_turn	 t;
	char		*prompt;
	int		 i, rc;

	i = ctl_turn_parse(c, &t, argc, argv, 1);
	if (i == argc)
		ctl_missing(argv[0], "a PROMPT (or - for standard input)");
	t.prompt_stdin = argc - i == 1 && strcmp(argv[i], "-") == 0;
	prompt = ctl_words(argc - i, argv + i);
	if (*prompt == '\0') {
		fprintf(stderr, "hotplexctl: empty prompt\n");
		free(prompt);
		return CTL_EXIT_USAGE;
	}
	if (ctl_connect(c) == -1)
		rc = CTL_EXIT_FAIL;
	else
		rc = ctl_exec_run(c, &t, prompt);
	free(prompt);
	return rc;
}

static int
cmd_open(struct ctl *c, int argc, char **argv)
{
	struct ctl_turn	 t;
	struct hp_error	 err;

	if (ctl_turn_parse(c, &t, argc, argv, 0) != argc)
		usage(CTL_EXIT_USAGE);
	if (t.workdir == NULL)
		ctl_missing(argv[0], "-w WORKDIR");
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (hp_open(c->h, t.session, t.workdir, &t.opt, &err) == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	return ctl_ok(c);
}

/* A command that answers only "ok": say so in --json mode. */
static int
ctl_ok(const struct ctl *c)
{
	if (c->json)
		printf("{\"type\":\"ok\"}\n");
	return CTL_EXIT_OK;
}

/* Parses the options of a command that takes only --json. */
static int
ctl_plain_parse(struct ctl *c, int argc, char **argv, const char *optstr,
    const char **optval)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 }
	};
	int	ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, optstr, longopts, NULL)) != -1) {
		if (ch == OPT_JSON)
			c->json = 1;
		else if (ch != '?' && optval != NULL && strchr(optstr + 1,
		    ch) != NULL)
			optval[(unsigned char)ch] = optarg;
		else
			usage(CTL_EXIT_USAGE);
	}
	return optind;
}

static void
ctl_idle(char *buf, size_t size, int64_t ms)
{
	int64_t	s = ms / CTL_MS_PER_S;

	if (ms < 0)
		snprintf(buf, size, "-");
	else if (s < 60)
		snprintf(buf, size, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm", (long long)(s / 60));
	else
		snprintf(buf, size, "%lldh", (long long)(s / 3600));
}

static double
ctl_jnum(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *
ctl_jstr(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : "-";
}

/* One screen: what the daemon is, runs, and whether it is ready. */
static void
ctl_print_status(const cJSON *d)
{
	const cJSON	*o, *e;
	long		 up = (long)ctl_jnum(d, "uptime_s");

	printf("hotplexd    %s, pid %.0f, up %ldd %02ld:%02ld:%02ld\n",
	    ctl_jstr(d, "version"), ctl_jnum(d, "pid"), up / 86400,
	    up % 86400 / 3600, up % 3600 / 60, up % 60);
	printf("ready       %s\n", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
	    d, "ready")) ? "yes" : "no");
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "checks"))
		printf("  %-9s %s: %s\n", ctl_jstr(e, "name"),
		    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ok")) ?
		    "ok" : "FAILED", ctl_jstr(e, "detail"));
	printf("sessions   ");
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "sessions"))
		if (cJSON_IsNumber(e))
			printf(" %s %.0f", e->string, e->valuedouble);
	printf("\n");
	printf("workers     %.0f (%.0f spare), clients %.0f\n",
	    ctl_jnum(d, "workers"), ctl_jnum(d, "spares"),
	    ctl_jnum(d, "clients"));
	printf("isolation  ");
	o = cJSON_GetObjectItemCaseSensitive(d, "isolation");
	cJSON_ArrayForEach(e, o) {
		if (cJSON_IsString(e))
			printf(" %s=%s", e->string, e->valuestring);
		else if (cJSON_IsBool(e))
			printf(" %s=%s", e->string, cJSON_IsTrue(e) ? "on" :
			    "off");
		else if (cJSON_IsNumber(e))
			printf(" %s=%g", e->string, e->valuedouble);
		else if (cJSON_IsObject(e) && cJSON_IsString(
		    cJSON_GetObjectItemCaseSensitive(e, "mode")))
			printf(" %s=%s", e->string, ctl_jstr(e, "mode"));
	}
	printf("\n");
	printf("rules       %.0f\n", ctl_jnum(d, "rules"));
}

static int
cmd_status(struct ctl *c, int argc, char **argv)
{
	struct hp_error	 err;
	cJSON		*j;
	char		*raw;

	if (ctl_plain_parse(c, argc, argv, "+", NULL) != argc)
		usage(CTL_EXIT_USAGE);
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (hp_status(c->h, &raw, &err) == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	if (c->json)
		printf("%s\n", raw);
	else if ((j = cJSON_Parse(raw)) != NULL) {
		ctl_print_status(cJSON_GetObjectItemCaseSensitive(j, "data"));
		cJSON_Delete(j);
	}
	free(raw);
	return CTL_EXIT_OK;
}

static int
cmd_sessions(struct ctl *c, int argc, char **argv)
{
	struct hp_session_info	*list;
	struct hp_error		 err;
	char			*raw, idle[16];
	size_t			 n, i;
	int			 w = (int)strlen("SESSION"), l;

	if (ctl_plain_parse(c, argc, argv, "+", NULL) != argc)
		usage(CTL_EXIT_USAGE);
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (hp_sessions(c->h, &list, &n, &raw, &err) == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	if (c->json)
		printf("%s\n", raw);
	else {
		for (i = 0; i < n; i++) {
			l = (int)strlen(list[i].session);
			if (l > w)
				w = l > CTL_SESSION_COL_MAX ?
				    CTL_SESSION_COL_MAX : l;
		}
		printf("%-*s %-9s %6s %7s %7s %5s %5s %9s %s\n", w,
		    "SESSION", "STATE", "UID", "WORKER", "CLI", "TURNS",
		    "IDLE", "COST", "WORKDIR");
		for (i = 0; i < n; i++) {
			const struct hp_session_info *s = &list[i];

			ctl_idle(idle, sizeof idle, s->idle_ms);
			printf("%-*s %-9s %6ld %7ld %7ld %5llu %5s %9.4f %s\n",
			    w, s->session, s->state, s->uid, s->worker_pid,
			    s->cli_pid, (unsigned long long)s->turns, idle,
			    s->cost_usd, s->workdir != NULL ? s->workdir : "-");
		}
	}
	free(raw);
	hp_sessions_free(list, n);
	return CTL_EXIT_OK;
}

static int
cmd_stats(struct ctl *c, int argc, char **argv)
{
	struct hp_stats	*st;
	struct hp_error	 err;
	const char	*session = NULL;
	char		*raw;
	int		 i;

	i = ctl_plain_parse(c, argc, argv, "+", NULL);
	if (argc - i > 1)
		usage(CTL_EXIT_USAGE);
	if (i < argc)
		session = argv[i];
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	st = xmalloc(sizeof *st);
	if (hp_stats(c->h, session, st, &raw, &err) == -1) {
		ctl_error(&err);
		free(st);
		return CTL_EXIT_FAIL;
	}
	if (c->json)
		printf("%s\n", raw);
	else {
		if (st->session[0] != '\0')
			printf("session     %s%s%s%s\n", st->session,
			    st->state[0] != '\0' ? " (" : "", st->state,
			    st->state[0] != '\0' ? ")" : "");
		else
			printf("session     (all)\n");
		if (st->sessions >= 0)
			printf("sessions    %lld, workers %lld (%lld spare)\n",
			    (long long)st->sessions, (long long)st->workers,
			    (long long)st->spares);
		if (st->cli_session_id[0] != '\0')
			printf("cli session %s\n", st->cli_session_id);
		printf("turns       %llu\n",
		    (unsigned long long)st->total.turns);
		ctl_print_usage(stdout, "", &st->total);
		if (st->has_last_turn) {
			printf("last turn:\n");
			ctl_print_usage(stdout, "  ", &st->last_turn);
		}
	}
	free(raw);
	free(st);
	return CTL_EXIT_OK;
}

/* stop, reset, interrupt: one session, one op. */
static int
cmd_session_op(struct ctl *c, int argc, char **argv)
{
	struct hp_error	 err;
	const char	*optval[UCHAR_MAX + 1] = { NULL };
	const char	*session;
	int		 i, rc;
	int		 is_stop = strcmp(argv[0], "stop") == 0;

	i = ctl_plain_parse(c, argc, argv, is_stop ? "+r:" : "+", optval);
	if (argc == i)
		ctl_missing(argv[0], "SESSION");
	if (argc - i != 1)
		usage(CTL_EXIT_USAGE);
	session = argv[i];
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (is_stop)
		rc = hp_stop(c->h, session, optval['r'] != NULL ?
		    optval['r'] : "hotplexctl stop", &err);
	else if (strcmp(argv[0], "reset") == 0)
		rc = hp_reset(c->h, session, &err);
	else if (strcmp(argv[0], "detach") == 0)
		rc = hp_detach(c->h, session, &err);
	else
		rc = hp_interrupt(c->h, session, &err);
	if (rc == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	return ctl_ok(c);
}

/* permission [-m message] session request-id allow|deny */
static int
cmd_permission(struct ctl *c, int argc, char **argv)
{
	struct hp_error	 err;
	const char	*optval[UCHAR_MAX + 1] = { NULL };
	int		 i;

	i = ctl_plain_parse(c, argc, argv, "+m:", optval);
	if (argc - i != 3)
		ctl_missing(argv[0], "SESSION REQUEST-ID allow|deny");
	if (strcmp(argv[i + 2], "allow") != 0 &&
	    strcmp(argv[i + 2], "deny") != 0)
		usage(CTL_EXIT_USAGE);
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (hp_permission(c->h, argv[i], argv[i + 1], argv[i + 2],
	    optval['m'], NULL, &err) == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	return ctl_ok(c);
}

/* configure [-m model] [--permission-mode mode] [--budget usd] session */
static int
cmd_configure(struct ctl *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "permission-mode", required_argument, NULL,
		    OPT_PERMISSION_MODE },
		{ "budget", required_argument, NULL, OPT_BUDGET },
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 }
	};
	struct hp_error	 err;
	const char	*model = NULL, *mode = NULL;
	double		 budget = -1;
	int		 ch, live = 0;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+m:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			model = optarg;
			break;
		case OPT_PERMISSION_MODE:
			mode = optarg;
			break;
		case OPT_BUDGET:
			budget = ctl_usd(optarg);
			break;
		case OPT_JSON:
			c->json = 1;
			break;
		default:
			usage(CTL_EXIT_USAGE);
		}
	}
	if (argc - optind != 1)
		ctl_missing(argv[0], "SESSION");
	if (model == NULL && mode == NULL && budget < 0)
		ctl_missing(argv[0], "-m, --permission-mode or --budget");
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (hp_configure(c->h, argv[optind], model, mode, budget, &live,
	    &err) == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	if (c->json)
		printf("{\"type\":\"ok\",\"data\":{\"live\":%s}}\n",
		    live ? "true" : "false");
	else
		printf("%s\n", live ? "configured (the running CLI changed)" :
		    "configured (for the next CLI)");
	return CTL_EXIT_OK;
}

static int
cmd_policy(struct ctl *c, int argc, char **argv)
{
	struct hp_verdict	 v;
	struct hp_error		 err;
	const char		*optval[UCHAR_MAX + 1] = { NULL };
	const char		*target;
	char			*text, *raw;
	size_t			 i;
	int			 fd, n;

	if (argc < 2)
		ctl_missing(argv[0], "check");
	if (strcmp(argv[1], "check") != 0)
		usage(CTL_EXIT_USAGE);
	n = 1 + ctl_plain_parse(c, argc - 1, argv + 1, "+f:t:", optval);
	target = optval['t'];
	if (target != NULL && strcmp(target, "prompt") != 0 &&
	    strcmp(target, "bash") != 0 && strcmp(target, "path") != 0)
		usage(CTL_EXIT_USAGE);
	if (optval['f'] != NULL) {
		if (n != argc)
			usage(CTL_EXIT_USAGE);
		if (strcmp(optval['f'], "-") == 0)
			fd = STDIN_FILENO;
		else if ((fd = open(optval['f'], O_RDONLY | O_CLOEXEC)) == -1) {
			fprintf(stderr, "hotplexctl: %s: %s\n", optval['f'],
			    strerror(errno));
			return CTL_EXIT_FAIL;
		}
		text = ctl_slurp(fd, optval['f']);
		if (fd != STDIN_FILENO)
			close(fd);
	} else {
		if (n == argc)
			ctl_missing("policy check", "TEXT (or -f FILE)");
		text = ctl_words(argc - n, argv + n);
	}
	if (ctl_connect(c) == -1) {
		free(text);
		return CTL_EXIT_FAIL;
	}
	if (hp_policy_check(c->h, text, target, &v, &raw, &err) == -1) {
		ctl_error(&err);
		free(text);
		return CTL_EXIT_FAIL;
	}
	if (c->json)
		printf("%s\n", raw);
	else {
		printf("%s (score %g)\n", v.blocked ? "blocked" : "allowed",
		    v.score);
		for (i = 0; i < v.nmatches; i++)
			printf("  %s\t%s\t%s\t%s\n", v.matches[i].rule,
			    v.matches[i].category, v.matches[i].severity,
			    v.matches[i].form);
	}
	n = v.blocked ? CTL_EXIT_FAIL : CTL_EXIT_OK;
	hp_verdict_free(&v);
	free(raw);
	free(text);
	return n;
}

/*
 * --since: an ISO 8601 UTC time (2026-01-02T03:04:05Z, or a day), a Unix
 * time in seconds (@N), or an age (90s, 30m, 12h, 7d ago); Unix ms or -1.
 */
static int64_t
ctl_parse_since(const char *s)
{
	static const struct { char u; int64_t ms; } units[] = {
		{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 },
		{ 'd', 86400000 },
	};
	struct tm	 tm;
	const char	*end;
	char		*e;
	long long	 n;
	size_t		 i;

	if (s[0] == '@') {
		errno = 0;
		n = strtoll(s + 1, &e, 10);
		return errno == 0 && e != s + 1 && *e == '\0' && n >= 0 ?
		    (int64_t)n * CTL_MS_PER_S : -1;
	}
	memset(&tm, 0, sizeof tm);
	if (((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) != NULL &&
	    *end == '\0') || ((end = strptime(s, "%Y-%m-%d", &tm)) != NULL &&
	    *end == '\0'))
		return (int64_t)timegm(&tm) * CTL_MS_PER_S;
	errno = 0;
	n = strtoll(s, &e, 10);
	if (errno != 0 || e == s || n < 0 || e[0] == '\0' || e[1] != '\0')
		return -1;
	for (i = 0; i < sizeof units / sizeof units[0]; i++)
		if (*e == units[i].u)
			return (int64_t)time(NULL) * CTL_MS_PER_S -
			    (int64_t)n * units[i].ms;
	return -1;
}

#define CTL_AUDIT_FILES_MAX	1024	/* bytes of a row's file list shown */

/* Appends what, then the n paths, to buf (of len). */
static void
ctl_audit_files(char *buf, size_t len, char *const *paths, size_t n,
    const char *what)
{
	size_t	i, used = strlen(buf);

	if (n == 0)
		return;
	used += snprintf(buf + used, len - used, "%s", what);
	for (i = 0; i < n && used < len; i++)
		used += snprintf(buf + used, len - used, " %s", paths[i]);
}

static void
ctl_print_audit_row(const struct hp_audit_row *r)
{
	const char	*what;
	char		 when[32], dur[24], line[CTL_TOOL_SUMMARY_MAX + 1];
	char		 files[CTL_AUDIT_FILES_MAX];
	struct tm	 tm;
	time_t		 t;
	size_t		 i;

	t = (time_t)(r->time_ms / CTL_MS_PER_S);
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(when, sizeof when, "-");
	if (r->duration_ms >= 0)
		snprintf(dur, sizeof dur, "%lld", (long long)r->duration_ms);
	else
		snprintf(dur, sizeof dur, "-");
	/* What was refused or failed says why; else what it ran. */
	what = r->detail != NULL ? r->detail : r->excerpt != NULL ?
	    r->excerpt : "";
	/* One line per row: the text's own line breaks become spaces. */
	for (i = 0; what[i] != '\0' && i < sizeof line - 1; i++)
		line[i] = (unsigned char)what[i] < ' ' ? ' ' : what[i];
	line[i] = '\0';
	files[0] = '\0';
	ctl_audit_files(files, sizeof files, r->files, r->nfiles, " wrote:");
	ctl_audit_files(files, sizeof files, r->files_deleted,
	    r->nfiles_deleted, " deleted:");
	if (r->files_truncated && strlen(files) < sizeof files - 1)
		snprintf(files + strlen(files), sizeof files - strlen(files),
		    " (files truncated)");
	/* Its files may be the other call's: inotify does not say who. */
	if (r->overlapped && strlen(files) < sizeof files - 1)
		snprintf(files + strlen(files), sizeof files - strlen(files),
		    " (overlapped another Bash call)");
	printf("%-20s %-16.32s %5lu %-8s %-12.24s %-6s %-8s %6s %-3s %s%s\n",
	    when, r->session, (unsigned long)r->turn, r->kind,
	    r->tool != NULL ? r->tool : "", r->decision != NULL ?
	    r->decision : "", r->decided_by != NULL ? r->decided_by : "", dur,
	    r->error ? "yes" : "no", line, files);
}

/* --json: the reply's rows as they came, one object per line. */
static void
ctl_print_audit_json(const char *raw)
{
	const cJSON	*row;
	cJSON		*j = cJSON_Parse(raw);
	char		*line;

	cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(j, "data"), "rows"))
		if ((line = cJSON_PrintUnformatted(row)) != NULL) {
			printf("%s\n", line);
			cJSON_free(line);
		}
	cJSON_Delete(j);
}

/* audit [--since TIME] [SESSION]: every page, in order. */
static int
cmd_audit(struct ctl *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "since", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};
	struct hp_audit_query	 q;
	struct hp_audit		 au;
	struct hp_error		 err;
	char			*raw;
	size_t			 i;
	int			 ch, more;

	memset(&q, 0, sizeof q);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+s:", longopts, NULL)) != -1) {
		if (ch == OPT_JSON)
			c->json = 1;
		else if (ch == 's') {
			if ((q.since_ms = ctl_parse_since(optarg)) < 0) {
				fprintf(stderr, "hotplexctl: audit: --since %s: "
				    "expected YYYY-MM-DD[THH:MM:SSZ], @SECONDS "
				    "or an age such as 7d\n", optarg);
				return CTL_EXIT_USAGE;
			}
		} else
			usage(CTL_EXIT_USAGE);
	}
	if (argc - optind > 1)
		usage(CTL_EXIT_USAGE);
	if (optind < argc)
		q.session = argv[optind];
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (!c->json)
		printf("%-20s %-16s %5s %-8s %-12s %-6s %-8s %6s %-3s %s\n",
		    "TIME", "SESSION", "TURN", "KIND", "TOOL", "DECIDE", "BY",
		    "MS", "ERR", "WHAT");
	do {
		if (hp_audit(c->h, &q, &au, c->json ? &raw : NULL,
		    &err) == -1) {
			ctl_error(&err);
			return CTL_EXIT_FAIL;
		}
		if (c->json) {
			ctl_print_audit_json(raw);
			free(raw);
		}
		for (i = 0; i < au.nrows; i++) {
			q.after_id = au.rows[i].id;
			if (!c->json)
				ctl_print_audit_row(&au.rows[i]);
		}
		more = au.more && au.nrows > 0;
		hp_audit_free(&au);
	} while (more);
	return CTL_EXIT_OK;
}

/* ---- attach ------------------------------------------------------------ */

/* Following a session: the exec printer, and where the replay ends. */
struct ctl_attach {
	struct ctl_exec	 x;
	const char	*session;
	int64_t		 seq;		/* the session's last line at attach */
	int64_t		 seen;		/* the last seq printed */
	int		 followed;	/* a terminal line after the replay */
};

static void
ctl_attach_event(const struct hp_event *ev, void *arg)
{
	struct ctl_attach	*a = arg;

	if (!ev->local && (ev->session == NULL ||
	    strcmp(ev->session, a->session) != 0))
		return;
	ctl_exec_event(ev, &a->x);
	if (ev->seq > a->seen)
		a->seen = ev->seq;
	/* A turn that ended before we came is history, not the end. */
	if (a->x.finished && !ev->local && ev->seq <= a->seq) {
		a->x.finished = 0;
		a->x.failed = 0;
		a->x.err.code[0] = '\0';
	} else if (a->x.finished)
		a->followed = 1;
}

/*
 * Prints the session's recent lines, then follows its turn in progress
 * until it ends (or ^C, which detaches); a session with no turn running
 * ends with the replay.
 */
static int
cmd_attach(struct ctl *c, int argc, char **argv)
{
	struct ctl_attach	 a;
	struct hp_attach	 info;
	struct hp_error		 err;
	const char		*optval[UCHAR_MAX + 1] = { NULL };
	int64_t			 since = 0;
	int			 i, ch, busy;
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "since", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+s:", longopts, NULL)) != -1) {
		if (ch == OPT_JSON)
			c->json = 1;
		else if (ch == 's')
			optval['s'] = optarg;
		else
			usage(CTL_EXIT_USAGE);
	}
	i = optind;
	if (argc == i)
		ctl_missing(argv[0], "SESSION");
	if (argc - i != 1)
		usage(CTL_EXIT_USAGE);
	if (optval['s'] != NULL)
		since = ctl_number(optval['s'], 0, LONG_MAX, "--since");
	memset(&a, 0, sizeof a);
	a.session = argv[i];
	a.x.json = c->json;
	a.x.tty = isatty(STDOUT_FILENO);
	a.x.at_bol = 1;
	a.seen = since;
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	ctl_sigint_setup();
	hp_set_orphan_cb(c->h, ctl_attach_event, &a);
	if (hp_attach(c->h, a.session, since, &info, &err) == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	if (info.lost_first >= 0)
		fprintf(stderr, "hotplexctl: lines %lld to %lld of %s are no "
		    "longer held\n", (long long)info.lost_first,
		    (long long)info.lost_last, a.session);
	if (info.ended) {
		fprintf(stderr, "hotplexctl: session %s has ended\n",
		    a.session);
		return CTL_EXIT_OK;
	}
	a.seq = info.seq;
	/* Lines no longer held will not come: the replay starts after. */
	if (info.lost_last > a.seen)
		a.seen = info.lost_last;
	busy = strcmp(info.state, "busy") == 0 ||
	    strcmp(info.state, "starting") == 0;
	for (;;) {
		/* What came with the reply is delivered before any wait. */
		if (hp_pump(c->h, &err) == -1) {
			ctl_dim(&a.x, 0);
			ctl_error(&err);
			return CTL_EXIT_FAIL;
		}
		/* The replay is over once the line of seq `seq` is printed. */
		if (a.seen >= a.seq && (!busy || a.followed))
			break;
		if (ctl_wait(c) == -1)
			return CTL_EXIT_FAIL;
		if (ctl_sigints > 0) {
			ctl_dim(&a.x, 0);
			(void)hp_detach(c->h, a.session, &err);
			return CTL_EXIT_SIGINT;
		}
	}
	ctl_dim(&a.x, 0);
	fflush(stdout);
	if (a.followed && a.x.err.code[0] != '\0')
		ctl_error(&a.x.err);
	free(a.x.terminal_reason);
	return a.followed && a.x.failed ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* reload, shutdown, drain, undrain: administrators' requests of no field. */
static int
cmd_admin(struct ctl *c, int argc, char **argv)
{
	struct hp_error	 err;
	int		 i, rc, n = 0;

	i = ctl_plain_parse(c, argc, argv, "+", NULL);
	if (argc != i)
		usage(CTL_EXIT_USAGE);
	if (ctl_connect(c) == -1)
		return CTL_EXIT_FAIL;
	if (strcmp(argv[0], "reload") == 0)
		rc = hp_reload(c->h, &err);
	else if (strcmp(argv[0], "drain") == 0)
		rc = hp_drain(c->h, &n, &err);
	else if (strcmp(argv[0], "undrain") == 0)
		rc = hp_undrain(c->h, &n, &err);
	else
		rc = hp_shutdown(c->h, &err);
	if (rc == -1) {
		ctl_error(&err);
		return CTL_EXIT_FAIL;
	}
	/* What drain and undrain answer (hotplex-protocol(7)). */
	if (strcmp(argv[0], "drain") == 0) {
		if (c->json)
			printf("{\"type\":\"ok\",\"data\":{\"sessions\":%d}}\n",
			    n);
		else
			printf("%d sessions let go\n", n);
		return CTL_EXIT_OK;
	}
	if (strcmp(argv[0], "undrain") == 0) {
		if (c->json)
			printf("{\"type\":\"ok\",\"data\":"
			    "{\"was_draining\":%s}}\n", n ? "true" : "false");
		else
			printf("%s\n", n ? "was draining" : "was not draining");
		return CTL_EXIT_OK;
	}
	return ctl_ok(c);
}

static const struct ctl_cmd {
	const char	*name;
	int		(*fn)(struct ctl *, int, char **);
} ctl_cmds[] = {
	{ "exec", cmd_exec },
	{ "open", cmd_open },
	{ "sessions", cmd_sessions },
	{ "status", cmd_status },
	{ "stats", cmd_stats },
	{ "stop", cmd_session_op },
	{ "reset", cmd_session_op },
	{ "interrupt", cmd_session_op },
	{ "attach", cmd_attach },
	{ "detach", cmd_session_op },
	{ "reload", cmd_admin },
	{ "shutdown", cmd_admin },
	{ "drain", cmd_admin },
	{ "undrain", cmd_admin },
	{ "policy", cmd_policy },
	{ "audit", cmd_audit },
	{ "permission", cmd_permission },
	{ "configure", cmd_configure },
};

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const struct ctl_cmd	*cmd = NULL;
	struct ctl		 c;
	size_t			 i;
	int			 ch, rc;

	memset(&c, 0, sizeof c);
	while ((ch = getopt_long(argc, argv, "+S:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			c.socket = optarg;
			break;
		case OPT_JSON:
			c.json = 1;
			break;
		case 'V':
			printf("hotplexctl %s\n", HOTPLEX_VERSION);
			return CTL_EXIT_OK;
		case 'h':
			usage(CTL_EXIT_OK);
		default:
			usage(CTL_EXIT_USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		fprintf(stderr, "hotplexctl: a command is required\n");
		usage(CTL_EXIT_USAGE);
	}
	for (i = 0; i < sizeof ctl_cmds / sizeof ctl_cmds[0]; i++) {
		if (strcmp(argv[0], ctl_cmds[i].name) == 0)
			cmd = &ctl_cmds[i];
	}
	if (cmd == NULL) {
		fprintf(stderr, "hotplexctl: unknown command: %s\n", argv[0]);
		usage(CTL_EXIT_USAGE);
	}

	rc = cmd->fn(&c, argc, argv);
	hp_close(c.h);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "hotplexctl: stdout: %s\n", strerror(errno));
		rc = CTL_EXIT_FAIL;
	}
	return rc;
}
