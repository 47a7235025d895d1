/* Protocol names and validation shared by all programs. */
#include <string.h>

#include "common/proto.h"

const char *
proto_state_name(enum session_state st)
{
	switch (st) {
	case SESSION_STARTING:	return "starting";
	case SESSION_READY:	return "ready";
	case SESSION_BUSY:	return "busy";
	case SESSION_STOPPING:	return "stopping";
	case SESSION_ENDED:	return "ended";
	case SESSION_DORMANT:	return "dormant";
	}
	return "unknown";
}

int
proto_valid_session(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > PROTO_SESSION_MAX)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._:@-") == n;
}

cJSON *
proto_error(const char *req, const char *session, const char *code,
    const char *message)
{
	cJSON	*o = cJSON_CreateObject(), *d;

	if (req != NULL)
		cJSON_AddStringToObject(o, "id", req);
	else
		cJSON_AddNullToObject(o, "id");
	if (session != NULL)
		cJSON_AddStringToObject(o, "session", session);
	cJSON_AddStringToObject(o, "type", "error");
	d = cJSON_AddObjectToObject(o, "data");
	cJSON_AddStringToObject(d, "code", code);
	cJSON_AddStringToObject(d, "message", message);
	return o;
}
