/* The request parser: line -> struct request | error, no side effect. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/proto.h"
#include "supervisor/request.h"

#define REQUEST_NUL_ESCAPE	"\\u0000"

static int
request_fail(struct request_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
request_fail(struct request_error *err, const char *fmt, ...)
{
	va_list	ap;

	err->code = ERR_BAD_REQUEST;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	/* A cut may split a character: the reply stays valid UTF-8. */
	json_utf8_clean(err->message);
	return -1;
}

/*
 * 1 if a string of the line holds a raw control character or an escaped
 * NUL (cJSON would cut the string there), or a control character other
 * than JSON's white space sits between tokens.
 */
static int
request_bad_bytes(const char *s, size_t len)
{
	size_t	i;
	int	in = 0;

	for (i = 0; i < len; i++) {
		unsigned char	c = (unsigned char)s[i];

		if (!in) {
			if (c == '"')
				in = 1;
			else if (c < 0x20 && c != ' ' && c != '\t' && c != '\r')
				return 1;
			continue;
		}
		if (c < 0x20)
			return 1;
		if (c == '"')
			in = 0;
		else if (c == '\\') {
			if (len - i >= strlen(REQUEST_NUL_ESCAPE) &&
			    strncmp(s + i, REQUEST_NUL_ESCAPE,
			    strlen(REQUEST_NUL_ESCAPE)) == 0)
				return 1;
			i++;	/* the escaped character */
		}
	}
	return 0;
}

int
request_parse(const char *line, size_t len, struct request *req,
    struct request_error *err)
{
	const cJSON	*id, *op;

	memset(req, 0, sizeof *req);
	memset(err, 0, sizeof *err);
	if (!json_utf8_valid(line, len))
		return request_fail(err, "request is not valid UTF-8");
	if (request_bad_bytes(line, len))
		return request_fail(err, "request holds a raw control "
		    "character or a NUL");
	if ((req->json = cJSON_ParseWithLength(line, len)) == NULL ||
	    !cJSON_IsObject(req->json)) {
		request_clear(req);
		return request_fail(err, "request is not a JSON object");
	}
	id = cJSON_GetObjectItemCaseSensitive(req->json, "id");
	if (!cJSON_IsString(id) || strlen(id->valuestring) > PROTO_ID_MAX)
		return request_fail(err, "\"id\" must be a string of at most "
		    "%d bytes", PROTO_ID_MAX);
	req->id = err->id = id->valuestring;
	op = cJSON_GetObjectItemCaseSensitive(req->json, "op");
	if (!cJSON_IsString(op))
		return request_fail(err, "\"op\" must be a string");
	req->op = op->valuestring;
	return 0;
}

void
request_clear(struct request *req)
{
	cJSON_Delete(req->json);
	memset(req, 0, sizeof *req);
}

void
request_unknown_op(const struct request *req, struct request_error *err)
{
	request_fail(err, "unknown op \"%.64s\"", req->op);
	err->code = ERR_UNKNOWN_OP;
	err->id = req->id;
}
