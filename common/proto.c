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

/* The CLI's tools whose input names a file they write. */
static const char *proto_writers[] = {
	"Write", "Edit", "MultiEdit", "NotebookEdit", NULL
};

int
proto_tool_writes(const char *tool)
{
	size_t	i;

	for (i = 0; tool != NULL && proto_writers[i] != NULL; i++)
		if (strcmp(tool, proto_writers[i]) == 0)
			return 1;
	return 0;
}

const char *
proto_tool_file(const char *tool, const cJSON *input)
{
	const cJSON	*v;

	if (!proto_tool_writes(tool))
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(input, "file_path");
	if (!cJSON_IsString(v))
		v = cJSON_GetObjectItemCaseSensitive(input, "notebook_path");
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

cJSON *
proto_done_json(const struct proto_done *d)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddBoolToObject(o, "ok", d->ok);
	cJSON_AddStringToObject(o, "result", d->result != NULL ?
	    d->result : "");
	cJSON_AddBoolToObject(o, "is_error", d->is_error);
	cJSON_AddBoolToObject(o, "interrupted", d->interrupted);
	if (d->terminal_reason != NULL)
		cJSON_AddStringToObject(o, "terminal_reason",
		    d->terminal_reason);
	else
		cJSON_AddNullToObject(o, "terminal_reason");
	if (d->stop_reason != NULL)
		cJSON_AddStringToObject(o, "stop_reason", d->stop_reason);
	else
		cJSON_AddNullToObject(o, "stop_reason");
	if (d->errors != NULL)
		cJSON_AddItemToObject(o, "errors",
		    cJSON_Duplicate(d->errors, 1));
	return o;
}

static const char *
proto_str_or_null(const cJSON *o, const char *k, int *bad)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (cJSON_IsString(v))
		return v->valuestring;
	if (v != NULL && !cJSON_IsNull(v))
		*bad = 1;
	return NULL;
}

static int
proto_bool(const cJSON *o, const char *k, int *bad)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (!cJSON_IsBool(v))
		*bad = 1;
	return cJSON_IsTrue(v);
}

int
proto_done_from_json(struct proto_done *d, const cJSON *o)
{
	const cJSON	*e;
	int		 bad = 0;

	memset(d, 0, sizeof *d);
	if (!cJSON_IsObject(o))
		return -1;
	d->ok = proto_bool(o, "ok", &bad);
	d->is_error = proto_bool(o, "is_error", &bad);
	d->interrupted = proto_bool(o, "interrupted", &bad);
	d->result = proto_str_or_null(o, "result", &bad);
	d->terminal_reason = proto_str_or_null(o, "terminal_reason", &bad);
	d->stop_reason = proto_str_or_null(o, "stop_reason", &bad);
	e = cJSON_GetObjectItemCaseSensitive(o, "errors");
	if (e != NULL && !cJSON_IsArray(e))
		bad = 1;
	d->errors = e;
	return bad ? -1 : 0;
}
