/*
 * Normalized copies of a text for the firewall: each rule is matched
 * against every form, so that folding, quoting and encoding tricks do not
 * hide a pattern.  Every function appends to a caller-owned buffer and
 * bounds its output by a fixed multiple of its input.
 */
#ifndef HP_NORMALIZE_H
#define HP_NORMALIZE_H

#include <stddef.h>

/* Findings made while folding. */
#define NORMALIZE_INVALID_UTF8	0x1U
#define NORMALIZE_NUL		0x2U

#define NORMALIZE_DECODE_LEVELS	2	/* base64 of hex of ... at most */
#define NORMALIZE_B64_MIN	8	/* shortest base64 run decoded */
#define NORMALIZE_HEX_MIN	8	/* shortest bare hex run decoded */
#define NORMALIZE_ESC_MIN	2	/* escapes needed to decode a text */
#define NORMALIZE_DECODED_MIN	4	/* shortest decoded run kept */
#define NORMALIZE_BRACE_MAX	16	/* alternatives in one {a,b} */

/* A growable output buffer; data is NUL-terminated, len excludes it. */
struct norm_buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

void		 normalize_buf_reset(struct norm_buf *);
void		 normalize_buf_free(struct norm_buf *);

/* The raw text made safe to search: invalid UTF-8 becomes U+FFFD. */
unsigned	 normalize_raw(const char *, size_t, struct norm_buf *);
/* Compatibility and case folding, invisibles removed, look-alikes mapped. */
unsigned	 normalize_fold(const char *, size_t, struct norm_buf *);
/*
 * Quotes, escapes, $IFS, $'..', {a,b} undone, simple variables expanded
 * (a=rm; $a), whitespace collapsed.
 */
void		 normalize_shell(const char *, size_t, struct norm_buf *);
/*
 * The shell form of only the lines whose quoting, escapes or expansions
 * it changes, each with the lines before and after it as context: of
 * the others, the folded form already says all (blanks aside).
 */
void		 normalize_shell_changed(const char *, size_t,
		    struct norm_buf *);
/*
 * base64, hex, \x.. and %XX runs decoded, up to NORMALIZE_DECODE_LEVELS;
 * words fed to rev or tr SET1 SET2 in a pipeline, reversed or translated.
 */
void		 normalize_decode(const char *, size_t, struct norm_buf *);

#endif
