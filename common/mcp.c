/*
 * Per-session MCP servers (mcp.h): the shape of option mcp_config, and
 * its file for the CLI's --mcp-config.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/mcp.h"

/* An array of at most MCP_ARGS_MAX strings (or an object of them). */
static int
mcp_strings(const cJSON *v, int object)
{
	const cJSON	*e;
	int		 n = 0;

	if (object ? !cJSON_IsObject(v) : !cJSON_IsArray(v))
		return -1;
	cJSON_ArrayForEach(e, v)
		if (!cJSON_IsString(e) || ++n > MCP_ARGS_MAX)
			return -1;
	return 0;
}

static int
mcp_name_ok(const char *s)
{
	size_t	n = strlen(s), i;

	if (n == 0 || n > MCP_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		    s[i] == '-'))
			return 0;
	return 1;
}

int
mcp_config_check(const cJSON *cfg, char *why, size_t len)
{
	const cJSON	*servers, *sv, *f;
	char		*text;
	size_t		 n;
	int		 count = 0;

	if (!cJSON_IsObject(cfg) || cJSON_GetArraySize(cfg) != 1 ||
	    !cJSON_IsObject(servers = cJSON_GetObjectItemCaseSensitive(cfg,
	    "mcpServers"))) {
		snprintf(why, len, "options.mcp_config must be "
		    "{\"mcpServers\": {NAME: {\"command\", \"args\", "
		    "\"env\"}}}");
		return -1;
	}
	if ((text = cJSON_PrintUnformatted(cfg)) == NULL)
		return -1;
	n = strlen(text);
	cJSON_free(text);
	if (n > MCP_CONFIG_MAX) {
		snprintf(why, len, "options.mcp_config is over %d bytes",
		    MCP_CONFIG_MAX);
		return -1;
	}
	cJSON_ArrayForEach(sv, servers) {
		if (++count > MCP_SERVERS_MAX || !mcp_name_ok(sv->string)) {
			snprintf(why, len, "options.mcp_config: at most %d "
			    "servers, named with letters, digits, - and _ "
			    "(%d at most)", MCP_SERVERS_MAX, MCP_NAME_MAX);
			return -1;
		}
		if (!cJSON_IsObject(sv)) {
			snprintf(why, len, "options.mcp_config: server %.64s "
			    "is not an object", sv->string);
			return -1;
		}
		cJSON_ArrayForEach(f, sv) {
			if (strcmp(f->string, "command") == 0 &&
			    cJSON_IsString(f) && f->valuestring[0] != '\0')
				continue;
			if (strcmp(f->string, "type") == 0 &&
			    cJSON_IsString(f) &&
			    strcmp(f->valuestring, "stdio") == 0)
				continue;
			if (strcmp(f->string, "args") == 0 &&
			    mcp_strings(f, 0) == 0)
				continue;
			if (strcmp(f->string, "env") == 0 &&
			    mcp_strings(f, 1) == 0)
				continue;
			snprintf(why, len, "options.mcp_config: server %.64s: "
			    "\"%.64s\" is not allowed (stdio servers only: "
			    "\"command\", \"args\" (%d strings), \"env\", "
			    "\"type\": \"stdio\")", sv->string, f->string,
			    MCP_ARGS_MAX);
			return -1;
		}
		if (json_str(sv, "command") == NULL) {
			snprintf(why, len, "options.mcp_config: server %.64s "
			    "needs a \"command\"", sv->string);
			return -1;
		}
	}
	return 0;
}

int
mcp_config_write(const char *dir, const cJSON *cfg, char *path,
    size_t pathlen, char *err, size_t errlen)
{
	char	*text;
	size_t	 n, off = 0;
	ssize_t	 w;
	int	 fd;

	if ((size_t)snprintf(path, pathlen, "%s/%s", dir, MCP_FILE) >=
	    pathlen) {
		snprintf(err, errlen, "mcp_config: path too long");
		return -1;
	}
	if ((text = cJSON_PrintUnformatted(cfg)) == NULL) {
		snprintf(err, errlen, "mcp_config: cannot print");
		return -1;
	}
	/* Our own private dir; a link planted there is not followed. */
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		snprintf(err, errlen, "mcp_config: %s: %s", path,
		    strerror(errno));
		cJSON_free(text);
		return -1;
	}
	n = strlen(text);
	while (off < n) {
		if ((w = write(fd, text + off, n - off)) == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "mcp_config: write %s: %s", path,
			    strerror(errno));
			close(fd);
			cJSON_free(text);
			return -1;
		}
		off += (size_t)w;
	}
	cJSON_free(text);
	if (close(fd) == -1) {
		snprintf(err, errlen, "mcp_config: close %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}
