/* Shared cJSON helpers and checks on JSON text from less trusted peers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/xmalloc.h"

#define JSON_EVENT_MEMBERS	2	/* "type" and "data" */

/* Event types only the master writes: a worker forging one is lying. */
static const char *json_master_types[] = {
	"done", "error", "session_start", "session_stats", "danger_block",
};

static void *
json_malloc(size_t n)
{
	/* cJSON may ask for nothing; xmalloc refuses zero. */
	return xmalloc(n == 0 ? 1 : n);
}

void
json_init(void)
{
	cJSON_Hooks	hooks = { json_malloc, free };

	cJSON_InitHooks(&hooks);
}

const char *
json_str(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A number member, or def if missing or not a number. */
double
json_num(const cJSON *o, const char *key, double def)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* 1 if the member is true. */
int
json_bool(const cJSON *o, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

char *
json_print(const cJSON *j)
{
	char	*s;

	if ((s = cJSON_PrintUnformatted(j)) == NULL)
		fatalx("json_print: out of memory");
	return s;
}

/* Bytes of the valid UTF-8 character at s[0..len), or 0. */
static size_t
json_utf8_char(const unsigned char *p, size_t len)
{
	size_t		 n, k;
	uint32_t	 c = p[0], min;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		min = 0x80;
		c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		min = 0x800;
		c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		min = 0x10000;
		c &= 0x07;
	} else
		return 0;	/* a continuation, C0/C1 or F5..FF */
	if (len <= n)
		return 0;
	for (k = 1; k <= n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n + 1;
}

void
json_utf8_clean(char *s)
{
	size_t	len = strlen(s), i = 0, n;

	while (i < len) {
		if ((n = json_utf8_char((unsigned char *)s + i, len - i)) == 0) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

int
json_utf8_valid(const char *s, size_t len)
{
	size_t	i = 0, n;

	while (i < len) {
		if ((n = json_utf8_char((const unsigned char *)s + i,
		    len - i)) == 0)
			return 0;
		i += n;
	}
	return 1;
}

int
json_tail_is(const char *s, size_t len, const char *prefix)
{
	size_t	n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

cJSON *
json_tail_parse(const char *s, size_t len)
{
	cJSON		*j;
	const char	*end;
	char		*text;

	text = xmalloc(len + 2);
	text[0] = '{';
	memcpy(text + 1, s, len);
	text[len + 1] = '\0';
	/* Nothing may follow the object. */
	j = cJSON_ParseWithOpts(text, &end, 1);
	free(text);
	return j;
}

int
json_event_tail_valid(const char *s, size_t len)
{
	cJSON		*j;
	const cJSON	*type, *data;
	size_t		 i;
	int		 ok = 0;

	/* The object ends the tail: not even a space may follow. */
	if (len == 0 || s[len - 1] != '}' || !json_utf8_valid(s, len))
		return 0;
	/* cJSON's own output has no raw control byte: any is forged. */
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20)
			return 0;
	if ((j = json_tail_parse(s, len)) == NULL)
		return 0;
	type = cJSON_GetObjectItemCaseSensitive(j, "type");
	data = cJSON_GetObjectItemCaseSensitive(j, "data");
	if (cJSON_IsObject(j) && cJSON_GetArraySize(j) == JSON_EVENT_MEMBERS &&
	    cJSON_IsString(type) && *type->valuestring != '\0' &&
	    cJSON_IsObject(data)) {
		ok = 1;
		for (i = 0; i < sizeof json_master_types /
		    sizeof json_master_types[0]; i++)
			if (strcmp(type->valuestring, json_master_types[i]) == 0)
				ok = 0;
	}
	cJSON_Delete(j);
	return ok;
}
