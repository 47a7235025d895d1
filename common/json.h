/*
 * The small cJSON helpers every program shares: cJSON allocating through
 * xmalloc, a string getter, printing that cannot return NULL, and the
 * checks on text that crosses a trust boundary (UTF-8, control bytes,
 * the event tail a worker sends).
 */
#ifndef HP_JSON_H
#define HP_JSON_H

#include <stddef.h>

#include <cJSON.h>

/* Points cJSON at xmalloc/free: out of memory is fatal in one place. */
void		 json_init(void);
/* o[key] if it is a string, else NULL. */
const char	*json_str(const cJSON *o, const char *key);
/* o[key] if it is a number, else def; 1 if o[key] is true. */
double		 json_num(const cJSON *o, const char *key, double def);
int		 json_bool(const cJSON *o, const char *key);
/* The unformatted text of j; never NULL (free with cJSON_free). */
char		*json_print(const cJSON *j);
/* 1 if s[0..len) is valid UTF-8 (no overlong form, no surrogate). */
int		 json_utf8_valid(const char *s, size_t len);
/* Replaces each byte of s that is not part of valid UTF-8 with '?'. */
void		 json_utf8_clean(char *s);
/*
 * 1 if s[0..len) is what a worker may send as an MSG_EVENT: `{` before it
 * makes exactly one JSON object {"type":T,"data":{...}} on one line, in
 * valid UTF-8 with no raw control byte, where T is none of the lines the
 * master writes itself (done, error, ...).
 */
int		 json_event_tail_valid(const char *s, size_t len);
/* 1 if an event's tail s[0..len) begins with prefix (`"type":"T"...`). */
int		 json_tail_is(const char *s, size_t len, const char *prefix);
/* The object `{` and the tail s[0..len) make, or NULL (free: cJSON_Delete). */
cJSON		*json_tail_parse(const char *s, size_t len);

#endif
