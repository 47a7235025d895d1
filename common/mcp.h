/*
 * Per-session MCP servers (option mcp_config, with allow_session_mcp): the
 * object the CLI's --mcp-config takes, {"mcpServers": {NAME: {"command",
 * "args", "env"}}}, stdio servers only (a session reaches no network peer
 * but the gateway).  The master checks it; the worker writes it into the
 * session's private config dir and names it to the CLI.
 */
#ifndef HP_MCP_H
#define HP_MCP_H

#include <stddef.h>

#include <cJSON.h>

#define MCP_SERVERS_MAX		16	/* servers per session */
#define MCP_ARGS_MAX		64	/* args, env entries per server */
#define MCP_NAME_MAX		64	/* a server's name */
#define MCP_CONFIG_MAX		(64 * 1024)	/* the whole, as JSON text */
#define MCP_FILE		"hotplex-mcp.json"	/* in the config dir */

/* 0 if cfg has the shape above; else -1 with the reason in why. */
int	mcp_config_check(const cJSON *cfg, char *why, size_t len);
/*
 * Writes cfg into dir/MCP_FILE (0600, the caller's identity), its path
 * into path; -1 with the reason in err.
 */
int	mcp_config_write(const char *dir, const cJSON *cfg, char *path,
	    size_t pathlen, char *err, size_t errlen);

#endif
