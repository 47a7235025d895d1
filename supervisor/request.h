/*
 * A client's request line parsed, as a pure function: the daemon and the
 * fuzzer (tests/fuzz/fuzz_request.c) run the same code.  A line that is not
 * valid UTF-8, holds a raw control character (NUL included) or an escaped
 * NUL inside a string, is not a JSON object, or lacks a good "id" or "op"
 * is refused with bad_request, and nothing of it that could break a
 * client's parser is echoed back.
 */
#ifndef HP_REQUEST_H
#define HP_REQUEST_H

#include <stddef.h>

#include <cJSON.h>

#define REQUEST_ERR_MAX		256

struct request {
	cJSON		*json;	/* the request object (owned) */
	const char	*id;	/* valid UTF-8, at most PROTO_ID_MAX bytes */
	const char	*op;
};

struct request_error {
	const char	*code;			/* ERR_* */
	const char	*id;			/* echoable id, or NULL */
	char		 message[REQUEST_ERR_MAX];
};

/*
 * Parses len bytes (no newline): 0 with req filled (free with
 * request_clear), or -1 with err filled; err->id then points into req,
 * which request_clear frees too.
 */
int	 request_parse(const char *line, size_t len, struct request *req,
	    struct request_error *err);
void	 request_clear(struct request *);
/* The error for an op no table knows (unknown_op), naming it. */
void	 request_unknown_op(const struct request *, struct request_error *);

#endif
