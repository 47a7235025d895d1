/*
 * hotplexd -n beyond the configuration: what a turn needs at run time is
 * there.  The worker the daemon would run exists and is executable, the
 * CLI answers `--version`, and the model API settings the CLI will see are
 * named.  Each finding is printed, so that an operator sees what was
 * found, not only that something was.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"

#define CHECK_VERSION_MAX	256	/* bytes of `cli --version` kept */
#define CHECK_CLI_TIMEOUT_MS	60000	/* a cold node start on a busy host */
#define CHECK_STORE_MAX		512	/* what the store check found */

/* Model API settings the CLI reads (PROTOCOL.md), in the order shown. */
static const char *const check_api_env[] = {
	"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
	"CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", NULL
};

/* Runs `path --version`; its first line into out.  0 ok, -1 with why. */
static int
check_cli_version(const char *path, char *out, size_t outlen)
{
	struct pollfd	pfd;
	struct timespec	t0, t1;
	pid_t		pid;
	int		p[2], status, null, waited;
	size_t		len = 0;
	ssize_t		n;

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(out, outlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(out, outlen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		if ((null = open("/dev/null", O_RDWR)) != -1)
			dup2(null, STDIN_FILENO);
		dup2(p[1], STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		execlp(path, path, "--version", (char *)NULL);
		dprintf(STDOUT_FILENO, "%s", strerror(errno));
		_exit(127);
	}
	close(p[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pfd.fd = p[0];
	pfd.events = POLLIN;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		waited = (int)((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
		if (waited >= CHECK_CLI_TIMEOUT_MS ||
		    poll(&pfd, 1, CHECK_CLI_TIMEOUT_MS - waited) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(p[0]);
			snprintf(out, outlen, "no answer to --version in %d s",
			    CHECK_CLI_TIMEOUT_MS / 1000);
			return -1;
		}
		n = read(p[0], out + len, outlen - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == outlen - 1) {
			kill(pid, SIGKILL);
			break;
		}
	}
	close(p[0]);
	out[len] = '\0';
	out[strcspn(out, "\n")] = '\0';
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			return -1;	/* out holds exec's error */
		if (*out == '\0')
			snprintf(out, outlen, "--version failed (status %d)",
			    WIFEXITED(status) ? WEXITSTATUS(status) :
			    128 + WTERMSIG(status));
		return -1;
	}
	return 0;
}

int
check_install(const struct config *c, const char *worker_path)
{
	char		 ver[CHECK_VERSION_MAX];
	const char	*v;
	int		 i, rc = 0, api = 0;

	/* Findings on stdout, failures on stderr: in the order found. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access(worker_path, X_OK) == -1) {
		fprintf(stderr, "hotplexd: worker %s: %s\n", worker_path,
		    strerror(errno));
		rc = -1;
	} else
		printf("hotplexd: worker %s OK\n", worker_path);

	if (check_cli_version(c->cli_path, ver, sizeof ver) == -1) {
		fprintf(stderr, "hotplexd: cli_path %s: %s\n", c->cli_path, ver);
		rc = -1;
	} else
		printf("hotplexd: cli_path %s: %s\n", c->cli_path, ver);

	/* The shared store, as the connection the daemon would make. */
	if (c->store != NULL) {
		char	found[CHECK_STORE_MAX];

		if (store_pg_check(c->store, found, sizeof found) == -1) {
			fprintf(stderr, "hotplexd: store: %s\n", found);
			rc = -1;
		} else
			printf("hotplexd: store: %s\n", found);
	}

	/* The CLI can log in by itself: no key is a warning, not an error. */
	for (i = 0; check_api_env[i] != NULL; i++) {
		if ((v = getenv(check_api_env[i])) == NULL || *v == '\0')
			continue;
		api = 1;
		if (strcmp(check_api_env[i], "ANTHROPIC_BASE_URL") == 0)
			printf("hotplexd: model API: %s=%s\n", check_api_env[i],
			    v);
		else
			printf("hotplexd: model API: %s is set\n",
			    check_api_env[i]);
	}
	if (c->api_key_file != NULL)
		printf("hotplexd: model API: the key comes from %s\n",
		    c->api_key_file);
	else if (!api && c->gateway)
		printf("hotplexd: model API: no ANTHROPIC_API_KEY or "
		    "ANTHROPIC_AUTH_TOKEN in the environment; the gateway "
		    "forwards without credentials\n");
	else if (!api)
		printf("hotplexd: model API: no ANTHROPIC_API_KEY or "
		    "ANTHROPIC_AUTH_TOKEN in the environment; sessions rely on "
		    "the CLI's own login\n");
	return rc;
}
