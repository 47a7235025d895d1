/*
 * Normalized forms of a text for the firewall (see normalize.h).
 *
 * Folding is a compact, table-driven subset of NFKC plus case folding:
 * enough to undo the look-alike, width, style and invisible-character
 * tricks used to dodge a pattern, without pulling in a Unicode library.
 */
#include <fnmatch.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "policy/firewall/normalize.h"

#define NB_MIN_CAP	64	/* first allocation of a buffer */
#define UTF8_MAX	4	/* bytes per encoded code point */
#define CP_REPLACEMENT	0xFFFDU
#define CP_MAX		0x10FFFFU
#define CP_DROP		0xFFFFFFFFU	/* fold: remove this code point */

/* Shell form grows only by brace expansion: this many times the input. */
#define SHELL_GROWTH	4

/*
 * Variable indirection (a=rm; $a -rf /): assignments remembered per text,
 * and the bytes their expansions may add, as a multiple of the input.
 */
#define SHELL_VARS	16
#define SHELL_VAR_NAME	32
#define SHELL_VAR_VALUE	128
#define SHELL_VAR_GROWTH 2

/* Decoded runs must look like text: this share of printable bytes, in %. */
#define DECODE_PRINTABLE_PCT	90

void
normalize_buf_reset(struct norm_buf *nb)
{
	nb->len = 0;
	if (nb->data != NULL)
		nb->data[0] = '\0';
}

void
normalize_buf_free(struct norm_buf *nb)
{
	free(nb->data);
	memset(nb, 0, sizeof *nb);
}

static void
nb_reserve(struct norm_buf *nb, size_t extra)
{
	size_t	need = nb->len + extra + 1;

	if (need <= nb->cap)
		return;
	if (need < NB_MIN_CAP)
		need = NB_MIN_CAP;
	if (need < nb->cap * 2)
		need = nb->cap * 2;
	nb->data = xreallocarray(nb->data, need, 1);
	nb->cap = need;
}

static inline void
nb_putc(struct norm_buf *nb, char c)
{
	if (nb->len + 1 >= nb->cap)
		nb_reserve(nb, 1);
	nb->data[nb->len++] = c;
}

static void
nb_put(struct norm_buf *nb, const char *s, size_t n)
{
	nb_reserve(nb, n);
	memcpy(nb->data + nb->len, s, n);
	nb->len += n;
}

static void
nb_swap(struct norm_buf *a, struct norm_buf *b)
{
	struct norm_buf	t = *a;

	*a = *b;
	*b = t;
}

static void
nb_finish(struct norm_buf *nb)
{
	nb_reserve(nb, 0);
	nb->data[nb->len] = '\0';
}

static void
nb_put_cp(struct norm_buf *nb, uint32_t cp)
{
	char	u[UTF8_MAX];
	size_t	n;

	if (cp < 0x80) {
		nb_putc(nb, (char)cp);
		return;
	}
	if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	nb_put(nb, u, n);
}


#define ASCII_WORD_ONES		0x0101010101010101ULL
#define ASCII_WORD_HIGHS	0x8080808080808080ULL

/*
 * The length of the run of bytes 0x01 to 0x7F at s, eight at a time: a
 * word with a high bit set, or a zero byte (which borrows), stops it.
 */
static size_t
ascii_run(const unsigned char *s, size_t len)
{
	uint64_t	v;
	size_t		i = 0;

	for (; i + sizeof v <= len; i += sizeof v) {
		memcpy(&v, s + i, sizeof v);
		if (((v - ASCII_WORD_ONES) | v) & ASCII_WORD_HIGHS)
			break;
	}
	while (i < len && s[i] != 0 && s[i] < 0x80)
		i++;
	return i;
}
/*
 * Decodes one UTF-8 sequence at s (n bytes left).  Returns its length and
 * sets *cp, or returns 0 for an invalid sequence (overlong, surrogate,
 * truncated, out of range).
 */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t	c;
	size_t		len, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		len = 2;
		c = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		len = 3;
		c = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		len = 4;
		c = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xD800 && c <= 0xDFFF) || c > CP_MAX)
		return 0;
	*cp = c;
	return len;
}

unsigned
normalize_raw(const char *in, size_t len, struct norm_buf *out)
{
	const unsigned char	*s = (const unsigned char *)in;
	uint32_t		 cp;
	unsigned		 flags = 0;
	size_t			 i = 0, n, start;

	nb_reserve(out, len);
	while (i < len) {
		/* Copy valid stretches whole. */
		start = i;
		while (i < len) {
			if ((n = ascii_run(s + i, len - i)) > 0) {
				i += n;
				continue;
			}
			if ((n = utf8_decode(s + i, len - i, &cp)) == 0)
				break;
			if (cp == 0)
				flags |= NORMALIZE_NUL;
			i += n;
		}
		nb_put(out, in + start, i - start);
		if (i < len) {
			flags |= NORMALIZE_INVALID_UTF8;
			nb_put_cp(out, CP_REPLACEMENT);
			i++;
		}
	}
	nb_finish(out);
	return flags;
}

/* Base letters of U+00C0..U+00FF; '\0' keeps the code point. */
static const char fold_latin1[] =
    "aaaaaaaceeeeiiiidnooooox" "ouuuuyts" "aaaaaaaceeeeiiii" "dnooooo\0ouuuuyty";
/* Base letters of U+0100..U+017F (Latin Extended-A). */
static const char fold_latin_ext_a[] =
    "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiiijjkkk"
    "llllllllllnnnnnnnnnoooooooorrrrrrsssssssstttttt"
    "uuuuuuuuuuuuwwyyyzzzzzzs";

/* Single code points folded to ASCII: look-alikes, letterlike, punctuation. */
static const struct fold_map {
	uint32_t	cp;
	const char	*to;
} fold_table[] = {
	{ 0x00A0, " " }, { 0x00AA, "a" }, { 0x00B2, "2" }, { 0x00B3, "3" },
	{ 0x00B4, "'" }, { 0x00B5, "u" }, { 0x00B9, "1" }, { 0x00BA, "o" },
	{ 0x01C0, "|" }, { 0x0251, "a" }, { 0x0261, "g" }, { 0x026A, "i" },
	{ 0x0280, "r" }, { 0x028F, "y" }, { 0x02B0, "h" }, { 0x02B2, "j" },
	{ 0x02B3, "r" }, { 0x02B7, "w" }, { 0x02B8, "y" }, { 0x02BC, "'" },
	{ 0x02C8, "'" }, { 0x02DC, "~" }, { 0x037E, ";" }, { 0x0391, "a" },
	{ 0x0392, "b" }, { 0x0395, "e" }, { 0x0396, "z" }, { 0x0397, "h" },
	{ 0x0399, "i" }, { 0x039A, "k" }, { 0x039C, "m" }, { 0x039D, "n" },
	{ 0x039F, "o" }, { 0x03A1, "p" }, { 0x03A4, "t" }, { 0x03A5, "y" },
	{ 0x03A7, "x" }, { 0x03B1, "a" }, { 0x03B5, "e" }, { 0x03B9, "i" },
	{ 0x03BA, "k" }, { 0x03BD, "v" }, { 0x03BF, "o" }, { 0x03C1, "p" },
	{ 0x03C4, "t" }, { 0x03C5, "u" }, { 0x03C7, "x" }, { 0x03F2, "c" },
	{ 0x03F3, "j" }, { 0x0400, "e" }, { 0x0401, "e" }, { 0x0405, "s" },
	{ 0x0406, "i" }, { 0x0407, "i" }, { 0x0408, "j" }, { 0x0410, "a" },
	{ 0x0412, "b" }, { 0x0415, "e" }, { 0x041A, "k" }, { 0x041C, "m" },
	{ 0x041D, "h" }, { 0x041E, "o" }, { 0x0420, "p" }, { 0x0421, "c" },
	{ 0x0422, "t" }, { 0x0423, "y" }, { 0x0425, "x" }, { 0x0430, "a" },
	{ 0x0432, "b" }, { 0x0433, "r" }, { 0x0435, "e" }, { 0x043A, "k" },
	{ 0x043C, "m" }, { 0x043D, "h" }, { 0x043E, "o" }, { 0x0440, "p" },
	{ 0x0441, "c" }, { 0x0442, "t" }, { 0x0443, "y" }, { 0x0445, "x" },
	{ 0x0450, "e" }, { 0x0451, "e" }, { 0x0455, "s" }, { 0x0456, "i" },
	{ 0x0457, "i" }, { 0x0458, "j" }, { 0x04BB, "h" }, { 0x04CF, "l" },
	{ 0x0501, "d" }, { 0x051B, "q" }, { 0x051D, "w" }, { 0x0589, ":" },
	{ 0x05C0, "|" }, { 0x0660, "0" }, { 0x06F0, "0" }, { 0x1D00, "a" },
	{ 0x1D04, "c" }, { 0x1D05, "d" }, { 0x1D07, "e" }, { 0x1D0A, "j" },
	{ 0x1D0B, "k" }, { 0x1D0D, "m" }, { 0x1D0F, "o" }, { 0x1D18, "p" },
	{ 0x1D1B, "t" }, { 0x1D1C, "u" }, { 0x1D20, "v" }, { 0x1D21, "w" },
	{ 0x1D22, "z" }, { 0x2010, "-" }, { 0x2011, "-" }, { 0x2012, "-" },
	{ 0x2013, "-" }, { 0x2014, "-" }, { 0x2015, "-" }, { 0x2018, "'" },
	{ 0x2019, "'" }, { 0x201A, "'" }, { 0x201B, "'" }, { 0x201C, "\"" },
	{ 0x201D, "\"" }, { 0x201E, "\"" }, { 0x2024, "." },
	{ 0x2028, "\n" }, { 0x2029, "\n" }, { 0x2032, "'" },
	{ 0x2033, "\"" }, { 0x2039, "<" }, { 0x203A, ">" }, { 0x2044, "/" },
	{ 0x204E, "*" }, { 0x2053, "~" }, { 0x2070, "0" }, { 0x2071, "i" },
	{ 0x207F, "n" }, { 0x2102, "c" }, { 0x210A, "g" }, { 0x210B, "h" },
	{ 0x210C, "h" }, { 0x210D, "h" }, { 0x210E, "h" }, { 0x2110, "i" },
	{ 0x2111, "i" }, { 0x2112, "l" }, { 0x2113, "l" }, { 0x2115, "n" },
	{ 0x2119, "p" }, { 0x211A, "q" }, { 0x211B, "r" }, { 0x211C, "r" },
	{ 0x211D, "r" }, { 0x2124, "z" }, { 0x212A, "k" }, { 0x212B, "a" },
	{ 0x212C, "b" }, { 0x212D, "c" }, { 0x212F, "e" }, { 0x2130, "e" },
	{ 0x2131, "f" }, { 0x2133, "m" }, { 0x2134, "o" }, { 0x2139, "i" },
	{ 0x2160, "i" }, { 0x2164, "v" }, { 0x2169, "x" }, { 0x216C, "l" },
	{ 0x216D, "c" }, { 0x216E, "d" }, { 0x216F, "m" }, { 0x2170, "i" },
	{ 0x2174, "v" }, { 0x2179, "x" }, { 0x217C, "l" }, { 0x217D, "c" },
	{ 0x217E, "d" }, { 0x217F, "m" }, { 0x2212, "-" }, { 0x2215, "/" },
	{ 0x2216, "\\" }, { 0x2217, "*" }, { 0x2223, "|" }, { 0x2236, ":" },
	{ 0x223C, "~" }, { 0x29F8, "/" }, { 0x29F9, "\\" }, { 0x2CBD, "o" },
	{ 0x3000, " " }, { 0x30FC, "-" }, { 0xA731, "s" }, { 0xA76A, "z" },
	{ 0xFB00, "ff" }, { 0xFB01, "fi" }, { 0xFB02, "fl" },
	{ 0xFB03, "ffi" }, { 0xFB04, "ffl" }, { 0xFB05, "st" },
	{ 0xFB06, "st" }, { 0xFE68, "\\" }, { 0xFF5E, "~" },
};

static int
fold_cmp(const void *key, const void *elem)
{
	uint32_t		 cp = *(const uint32_t *)key;
	const struct fold_map	*m = elem;

	return cp < m->cp ? -1 : cp > m->cp;
}

/* Code points that only hide things: zero-width, bidi, tags, marks. */
static int
fold_invisible(uint32_t cp)
{
	return cp == 0x00AD || cp == 0x034F || cp == 0x061C ||
	    cp == 0x115F || cp == 0x1160 || cp == 0x17B4 || cp == 0x17B5 ||
	    (cp >= 0x180B && cp <= 0x180F) ||
	    (cp >= 0x200B && cp <= 0x200F) ||
	    (cp >= 0x202A && cp <= 0x202E) ||
	    (cp >= 0x2060 && cp <= 0x206F) ||
	    cp == 0x3164 || cp == 0xFEFF || cp == 0xFFA0 ||
	    (cp >= 0xFE00 && cp <= 0xFE0F) ||
	    (cp >= 0x0300 && cp <= 0x036F) ||
	    (cp >= 0x1AB0 && cp <= 0x1AFF) ||
	    (cp >= 0x1DC0 && cp <= 0x1DFF) ||
	    (cp >= 0x20D0 && cp <= 0x20FF) ||
	    (cp >= 0xFE20 && cp <= 0xFE2F) ||
	    (cp >= 0x1D173 && cp <= 0x1D17A) ||
	    (cp >= 0xE0000 && cp <= 0xE007F) ||
	    (cp >= 0xE0100 && cp <= 0xE01EF) ||
	    (cp >= 0x80 && cp <= 0x9F);
}


/*
 * What an ASCII byte folds to: printable ones to lower case, blanks and
 * line ends to themselves ("\r" to "\n", "\v" and "\f" to " "); 0 for
 * the bytes folding handles one by one (other controls, non-ASCII).
 */
static const unsigned char fold_ascii[UCHAR_MAX + 1] = {
	[' '] = ' ', ['!'] = '!', ['"'] = '"', ['#'] = '#', ['$'] = '$',
	['%'] = '%', ['&'] = '&', ['\''] = '\'', ['('] = '(',
	[')'] = ')', ['*'] = '*', ['+'] = '+', [','] = ',', ['-'] = '-',
	['.'] = '.', ['/'] = '/', ['0'] = '0', ['1'] = '1', ['2'] = '2',
	['3'] = '3', ['4'] = '4', ['5'] = '5', ['6'] = '6', ['7'] = '7',
	['8'] = '8', ['9'] = '9', [':'] = ':', [';'] = ';', ['<'] = '<',
	['='] = '=', ['>'] = '>', ['?'] = '?', ['@'] = '@', ['A'] = 'a',
	['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f',
	['G'] = 'g', ['H'] = 'h', ['I'] = 'i', ['J'] = 'j', ['K'] = 'k',
	['L'] = 'l', ['M'] = 'm', ['N'] = 'n', ['O'] = 'o', ['P'] = 'p',
	['Q'] = 'q', ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u',
	['V'] = 'v', ['W'] = 'w', ['X'] = 'x', ['Y'] = 'y', ['Z'] = 'z',
	['['] = '[', ['\\'] = '\\', [']'] = ']', ['^'] = '^',
	['_'] = '_', ['`'] = '`', ['a'] = 'a', ['b'] = 'b', ['c'] = 'c',
	['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['g'] = 'g', ['h'] = 'h',
	['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l', ['m'] = 'm',
	['n'] = 'n', ['o'] = 'o', ['p'] = 'p', ['q'] = 'q', ['r'] = 'r',
	['s'] = 's', ['t'] = 't', ['u'] = 'u', ['v'] = 'v', ['w'] = 'w',
	['x'] = 'x', ['y'] = 'y', ['z'] = 'z', ['{'] = '{', ['|'] = '|',
	['}'] = '}', ['~'] = '~', ['\t'] = '\t', ['\n'] = '\n',
	['\r'] = '\n', ['\v'] = ' ', ['\f'] = ' ',
};

/*
 * Folds one non-ASCII code point.  Returns the ASCII letter or symbol it
 * stands for in *ascii (a NUL-terminated string), or the code point to
 * emit, or CP_DROP.
 */
static uint32_t
fold_cp(uint32_t cp, const char **ascii)
{
	const struct fold_map	*m;
	uint32_t		 off;

	*ascii = NULL;
	if (fold_invisible(cp))
		return CP_DROP;
	if ((cp >= 0x2000 && cp <= 0x200A) || cp == 0x1680 || cp == 0x202F ||
	    cp == 0x205F) {
		*ascii = " ";
		return 0;
	}
	if (cp >= 0xC0 && cp <= 0xFF && fold_latin1[cp - 0xC0] != '\0') {
		off = cp - 0xC0;
		/* Thorn and sharp s stand for two letters. */
		if (cp == 0xDE || cp == 0xFE)
			*ascii = "th";
		else if (cp == 0xDF)
			*ascii = "ss";
		else if (cp == 0xC6 || cp == 0xE6)
			*ascii = "ae";
		else {
			*ascii = &fold_latin1[off];
			return 1;	/* one byte of the table */
		}
		return 0;
	}
	if (cp >= 0x100 && cp <= 0x17F) {
		*ascii = &fold_latin_ext_a[cp - 0x100];
		return 1;
	}
	/* Fullwidth ASCII. */
	if (cp >= 0xFF01 && cp <= 0xFF5D)
		return cp - 0xFEE0;
	/* Mathematical alphanumeric letters: 13 styles of A-Z a-z. */
	if (cp >= 0x1D400 && cp <= 0x1D6A3) {
		off = (cp - 0x1D400) % 52;
		return off < 26 ? 'a' + off : 'a' + off - 26;
	}
	if (cp >= 0x1D7CE && cp <= 0x1D7FF)
		return '0' + (cp - 0x1D7CE) % 10;
	/* Circled, parenthesized, squared and regional-indicator letters. */
	if (cp >= 0x249C && cp <= 0x24B5)
		return 'a' + (cp - 0x249C);
	if (cp >= 0x24B6 && cp <= 0x24CF)
		return 'a' + (cp - 0x24B6);
	if (cp >= 0x24D0 && cp <= 0x24E9)
		return 'a' + (cp - 0x24D0);
	if (cp >= 0x1F130 && cp <= 0x1F149)
		return 'a' + (cp - 0x1F130);
	if (cp >= 0x1F150 && cp <= 0x1F169)
		return 'a' + (cp - 0x1F150);
	if (cp >= 0x1F170 && cp <= 0x1F189)
		return 'a' + (cp - 0x1F170);
	if (cp >= 0x1F1E6 && cp <= 0x1F1FF)
		return 'a' + (cp - 0x1F1E6);
	/* Superscript and subscript digits, circled digits. */
	if (cp >= 0x2074 && cp <= 0x2079)
		return '4' + (cp - 0x2074);
	if (cp >= 0x2080 && cp <= 0x2089)
		return '0' + (cp - 0x2080);
	if (cp >= 0x2460 && cp <= 0x2468)
		return '1' + (cp - 0x2460);
	m = bsearch(&cp, fold_table, sizeof fold_table / sizeof fold_table[0],
	    sizeof fold_table[0], fold_cmp);
	if (m != NULL) {
		*ascii = m->to;
		return 0;
	}
	/* Case folding of the scripts the tables above do not cover. */
	if (cp >= 0x0391 && cp <= 0x03A9)
		return cp + 0x20;
	if (cp >= 0x0410 && cp <= 0x042F)
		return cp + 0x20;
	if (cp >= 0x0400 && cp <= 0x040F)
		return cp + 0x50;
	return cp;
}

#define ASCII_WORD(b)		(ASCII_WORD_ONES * (b))

/*
 * Folds printable ASCII (0x20 to 0x7E) eight bytes at a time into o, as
 * fold_ascii does: upper-case letters get 0x20, the rest stays.  Returns
 * the bytes done, up to the first word with any other byte.  The sums
 * below never carry out of a byte of less than 0x80.
 */
static size_t
fold_ascii_words(const unsigned char *s, size_t len, char *o)
{
	uint64_t	v, odd, upper;
	size_t		i;

	for (i = 0; i + sizeof v <= len; i += sizeof v) {
		memcpy(&v, s + i, sizeof v);
		/* High bit set, below 0x20 (no carry from + 0x60), or 0x7F. */
		odd = v | ~(v + ASCII_WORD(0x60)) | (v + ASCII_WORD_ONES);
		if (odd & ASCII_WORD_HIGHS)
			break;
		/* At or above 'A' and not at or above 'Z' + 1. */
		upper = (v + ASCII_WORD(0x80 - 'A')) &
		    ~(v + ASCII_WORD(0x80 - 'Z' - 1)) & ASCII_WORD_HIGHS;
		v |= upper >> 2;
		memcpy(o + i, &v, sizeof v);
	}
	return i;
}

unsigned
normalize_fold(const char *in, size_t len, struct norm_buf *out)
{
	const unsigned char	*s = (const unsigned char *)in;
	const char		*ascii;
	char			*o;
	uint32_t		 cp, to;
	unsigned		 flags = 0;
	size_t			 i = 0, n, run, stop;
	unsigned char		 c, t;

	/* Folding never grows the text: every mapping is at most as long. */
	nb_reserve(out, len);
	while (i < len) {
		/* The common case: printable ASCII, a word at a time... */
		n = fold_ascii_words(s + i, len - i, out->data + out->len);
		i += n;
		out->len += n;
		/* ... then the bytes of the word that stopped it. */
		stop = len - i > sizeof(uint64_t) ? i + sizeof(uint64_t) : len;
		for (o = out->data + out->len, run = i; i < stop &&
		    (t = fold_ascii[s[i]]) != 0; i++)
			*o++ = (char)t;
		out->len += i - run;
		if (i == len)
			break;
		if (i == stop)
			continue;
		c = s[i];
		if (c < 0x80) {
			/* Controls split words invisibly: drop them. */
			if (c == 0)
				flags |= NORMALIZE_NUL;
			i++;
			continue;
		}
		if ((n = utf8_decode(s + i, len - i, &cp)) == 0) {
			flags |= NORMALIZE_INVALID_UTF8;
			i++;
			continue;
		}
		i += n;
		to = fold_cp(cp, &ascii);
		if (to == CP_DROP)
			continue;
		if (ascii != NULL) {
			/* A table entry: a string, or one byte of a string. */
			if (to == 1)
				nb_putc(out, *ascii);
			else
				nb_put(out, ascii, strlen(ascii));
			continue;
		}
		if (to >= 'A' && to <= 'Z')
			to += 'a' - 'A';
		nb_put_cp(out, to);
	}
	nb_finish(out);
	return flags;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decodes one backslash escape at s[0] == '\\' as bash's $'...' does.
 * Returns the bytes consumed (0: not an escape we know) and appends the
 * decoded code point or byte.
 */
static size_t
shell_escape(const char *s, size_t n, struct norm_buf *out)
{
	static const char	 simple[] = "n\nt\tr\ra\ab\be\033f\fv\v";
	uint32_t		 v = 0;
	size_t			 i, max;
	int			 d;
	const char		*p;

	if (n < 2)
		return 0;
	switch (s[1]) {
	case 'x':
	case 'u':
	case 'U':
		max = s[1] == 'x' ? 2 : s[1] == 'u' ? 4 : 8;
		for (i = 2; i < n && i < 2 + max &&
		    (d = hexval((unsigned char)s[i])) >= 0; i++)
			v = (v << 4) | (uint32_t)d;
		if (i == 2)
			return 0;
		if (s[1] == 'x')
			nb_putc(out, (char)v);
		else if (v <= CP_MAX && (v < 0xD800 || v > 0xDFFF))
			nb_put_cp(out, v);
		return i;
	case '0': case '1': case '2': case '3':
	case '4': case '5': case '6': case '7':
		for (i = 1; i < n && i < 4 && s[i] >= '0' && s[i] <= '7'; i++)
			v = (v << 3) | (uint32_t)(s[i] - '0');
		nb_putc(out, (char)v);
		return i;
	default:
		for (p = simple; *p != '\0'; p += 2) {
			if (s[1] == p[0]) {
				nb_putc(out, p[1]);
				return 2;
			}
		}
		nb_putc(out, s[1]);
		return 2;
	}
}

/*
 * One escape as echo -e and printf %b read it: \0NNN takes up to three
 * octal digits after its 0 (echo -e '\0162\0155' prints rm, where $'..'
 * reads \016 and a 2); the others as shell_escape().
 */
static size_t
shell_escape_echo(const char *s, size_t n, struct norm_buf *out)
{
	uint32_t	v = 0;
	size_t		i;

	if (n < 3 || s[1] != '0' || s[2] < '0' || s[2] > '7')
		return shell_escape(s, n, out);
	for (i = 2; i < n && i < 5 && s[i] >= '0' && s[i] <= '7'; i++)
		v = (v << 3) | (uint32_t)(s[i] - '0');
	nb_putc(out, (char)v);
	return i;
}

/* Length of an expansion at s[0] == '$' that is empty or blank in use. */
static size_t
shell_dollar(const char *s, size_t n, int *blank)
{
	static const char *const	 empties[] = { "$@", "$*", "$()", "${}" };
	size_t				 i, k;

	*blank = 0;
	if (n >= 6 && memcmp(s, "${ifs", 5) == 0) {
		/* ${IFS}, ${IFS%??} and friends: a separator. */
		for (i = 5; i < n && s[i] != '}' && i < 16; i++)
			;
		if (i < n && s[i] == '}') {
			*blank = 1;
			return i + 1;
		}
	}
	if (n >= 4 && memcmp(s, "$ifs", 4) == 0) {
		*blank = 1;
		return 4;
	}
	for (k = 0; k < sizeof empties / sizeof empties[0]; k++) {
		i = strlen(empties[k]);
		if (n >= i && memcmp(s, empties[k], i) == 0)
			return i;
	}
	/* Positional parameters are empty in a fresh shell. */
	if (n >= 2 && s[1] >= '1' && s[1] <= '9')
		return 2;
	return 0;
}

/* Simple assignments of a text, NAME=value, the last of each name. */
struct shell_vars {
	struct {
		char	name[SHELL_VAR_NAME];
		size_t	nlen;
		char	value[SHELL_VAR_VALUE];
		size_t	vlen;
	}	 v[SHELL_VARS];
	size_t	 n;
	size_t	 budget;	/* bytes expansions may still add */
};

/* Where an unquoted assignment value ends. */
static int
shell_blank_byte(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' ||
	    c == '|' || c == ')';
}

static int
shell_name_char(int c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	    (!first && c >= '0' && c <= '9');
}

/* Bytes after which a word, and so an assignment, may start. */
static const unsigned char shell_word_start[UCHAR_MAX + 1] = {
	[' '] = 1, ['\t'] = 1, ['\n'] = 1, [';'] = 1, ['&'] = 1, ['|'] = 1,
	['('] = 1, ['{'] = 1, ['`'] = 1,
};

/* Records NAME=value, the last of each name; 0 if the table is full. */
static int
shell_var_store(const char *name, size_t nlen, const char *value,
    size_t vlen, struct shell_vars *vars)
{
	size_t	k;

	for (k = 0; k < vars->n; k++) {
		if (vars->v[k].nlen == nlen &&
		    memcmp(vars->v[k].name, name, nlen) == 0)
			break;
	}
	if (k == vars->n) {
		if (vars->n == SHELL_VARS)
			return 0;
		vars->n++;
	}
	memcpy(vars->v[k].name, name, nlen);
	vars->v[k].nlen = nlen;
	memcpy(vars->v[k].value, value, vlen);
	vars->v[k].vlen = vlen;
	return 1;
}

static size_t	shell_escape(const char *, size_t, struct norm_buf *);

/*
 * NAME=$'..' (a=$'\x72\x6d'), name i bytes long: the value decoded as
 * bash does.  Returns the assignment's length, or 0.
 */
static size_t
shell_var_ansi(const char *s, size_t i, size_t n, struct shell_vars *vars)
{
	struct norm_buf	 val;
	size_t		 k = i + 3, e;

	memset(&val, 0, sizeof val);
	while (k < n && s[k] != '\'' && val.len < SHELL_VAR_VALUE) {
		if (s[k] == '\\' && (e = shell_escape(s + k, n - k, &val)) != 0)
			k += e;
		else
			nb_putc(&val, s[k++]);
	}
	if (k >= n || s[k] != '\'' || val.len >= SHELL_VAR_VALUE ||
	    !shell_var_store(s, i, val.data != NULL ? val.data : "", val.len,
	    vars))
		k = 0;
	normalize_buf_free(&val);
	return k == 0 ? 0 : k + 1;
}

/*
 * Remembers the assignment at s (NAME=value, value quoted or a plain
 * word, with no expansion of its own) and returns its length, or 0.
 */
static size_t
shell_var_scan(const char *s, size_t n, struct shell_vars *vars)
{
	size_t		 i = 0, v0, v1;
	char		 q = 0;

	while (i < n && i < SHELL_VAR_NAME - 1 &&
	    shell_name_char((unsigned char)s[i], i == 0))
		i++;
	if (i == 0 || i >= n || s[i] != '=' || (i + 1 < n && s[i + 1] == '='))
		return 0;
	v0 = i + 1;
	if (v0 + 1 < n && s[v0] == '$' && s[v0 + 1] == '\'')
		return shell_var_ansi(s, i, n, vars);
	if (v0 < n && (s[v0] == '\'' || s[v0] == '"'))
		q = s[v0++];
	for (v1 = v0; v1 < n; v1++) {
		if (q != 0 ? s[v1] == q : shell_blank_byte(s[v1]))
			break;
		if (s[v1] == '$' || s[v1] == '`' || (q == 0 && (s[v1] == '\'' ||
		    s[v1] == '"')))
			return 0;	/* an expansion: not followed */
	}
	if (v1 - v0 >= SHELL_VAR_VALUE || (q != 0 && v1 == n) ||
	    !shell_var_store(s, i, s + v0, v1 - v0, vars))
		return 0;
	return v1 + (q != 0);
}

/*
 * The assignments of a whole text, so that a later line sees them: from
 * each "=", back over the name before it to where a word starts.
 */
static void
shell_vars_scan(const char *s, size_t len, struct shell_vars *vars)
{
	const char	*eq;
	size_t		 at, b;

	vars->n = 0;
	vars->budget = SHELL_VAR_GROWTH * len;
	if (memchr(s, '$', len) == NULL)
		return;
	for (eq = memchr(s, '=', len); eq != NULL;
	    eq = memchr(eq + 1, '=', (size_t)(s + len - eq - 1))) {
		at = (size_t)(eq - s);
		for (b = at; b > 0 && at - b < SHELL_VAR_NAME &&
		    shell_name_char((unsigned char)s[b - 1], 0); b--)
			;
		if (b == at || !shell_name_char((unsigned char)s[b], 1) ||
		    (b > 0 && !shell_word_start[(unsigned char)s[b - 1]]))
			continue;
		(void)shell_var_scan(s + b, len - b, vars);
	}
}

/*
 * Expands $NAME or ${NAME} at s[0] == '$' if the text assigned NAME;
 * returns the bytes consumed, or 0.
 */
static size_t
shell_var(const char *s, size_t n, struct shell_vars *vars,
    struct norm_buf *out)
{
	size_t	i = 1, k, v, brace = 0, mod = 0;

	if (vars == NULL || vars->n == 0)
		return 0;
	if (i < n && s[i] == '{')
		brace = i++;
	for (k = i; k < n && shell_name_char((unsigned char)s[k], k == i); k++)
		;
	/* ${a,,} ${a^^} ${a~}: case changes, which folding makes moot. */
	while (brace && mod < 2 && k + mod < n && (s[k + mod] == ',' ||
	    s[k + mod] == '^' || s[k + mod] == '~'))
		mod++;
	if (k == i || (brace && (k + mod >= n || s[k + mod] != '}')))
		return 0;
	for (v = 0; v < vars->n; v++) {
		if (vars->v[v].nlen != k - i ||
		    memcmp(vars->v[v].name, s + i, k - i) != 0)
			continue;
		if (vars->v[v].vlen > vars->budget)
			return 0;
		vars->budget -= vars->v[v].vlen;
		nb_put(out, vars->v[v].value, vars->v[v].vlen);
		return k + mod + (brace != 0);
	}
	return 0;
}

/*
 * Slices of variables whose start every shell agrees on: ${PWD:0:1} is
 * "/" wherever it runs.  Each value is only the part that is sure; a
 * slice past it is left alone.
 */
static const struct {
	const char	*name;
	const char	*value;
} shell_known_vars[] = {
	{ "pwd", "/" }, { "oldpwd", "/" }, { "home", "/" },
	{ "path", "/" }, { "shell", "/bin/" }, { "tmpdir", "/" },
};

/* A decimal number of at most SLICE_DIGITS digits at s; its length. */
#define SLICE_DIGITS	4

static size_t
shell_number(const char *s, size_t n, size_t *v)
{
	size_t	i;

	*v = 0;
	for (i = 0; i < n && i < SLICE_DIGITS && s[i] >= '0' && s[i] <= '9';
	    i++)
		*v = *v * 10 + (size_t)(s[i] - '0');
	return i;
}

/*
 * Expands ${NAME:OFFSET} or ${NAME:OFFSET:LENGTH} at s[0] == '$' when
 * NAME was assigned by the text or is one of shell_known_vars and the
 * slice lies in the part known; returns the bytes consumed, or 0.
 */
static size_t
shell_slice(const char *s, size_t n, struct shell_vars *vars,
    struct norm_buf *out)
{
	const char	*val = NULL;
	size_t		 i = 2, k, v, off, cnt = SIZE_MAX, d, nlen, vlen = 0;
	int		 known = 0;

	if (n < 6 || s[1] != '{')
		return 0;
	for (k = i; k < n && shell_name_char((unsigned char)s[k], k == i); k++)
		;
	if (k == i || k >= n || s[k] != ':')
		return 0;
	nlen = k - i;
	if ((d = shell_number(s + k + 1, n - k - 1, &off)) == 0)
		return 0;
	k += 1 + d;
	if (k < n && s[k] == ':') {
		if ((d = shell_number(s + k + 1, n - k - 1, &cnt)) == 0)
			return 0;
		k += 1 + d;
	}
	if (k >= n || s[k] != '}')
		return 0;
	for (v = 0; vars != NULL && v < vars->n && val == NULL; v++) {
		if (vars->v[v].nlen == nlen &&
		    memcmp(vars->v[v].name, s + i, nlen) == 0) {
			val = vars->v[v].value;
			vlen = vars->v[v].vlen;
		}
	}
	for (v = 0; val == NULL && v < sizeof shell_known_vars /
	    sizeof shell_known_vars[0]; v++) {
		if (strlen(shell_known_vars[v].name) == nlen &&
		    memcmp(shell_known_vars[v].name, s + i, nlen) == 0) {
			val = shell_known_vars[v].value;
			vlen = strlen(val);
			known = 1;
		}
	}
	if (val == NULL || off >= vlen)
		return 0;
	if (cnt == SIZE_MAX || cnt > vlen - off) {
		/* Past the part of a well-known value that is sure. */
		if (known)
			return 0;
		cnt = vlen - off;
	}
	if (!known) {
		if (cnt > vars->budget)
			return 0;
		vars->budget -= cnt;
	}
	nb_put(out, val + off, cnt);
	return k + 1;
}

/*
 * ${NAME:-WORD} and ${NAME-WORD}: WORD (plain bytes only) when the text
 * never assigns NAME, as the shell gives it for an unset name; the value
 * when it does.  Returns the bytes consumed, or 0.
 */
#define SHELL_DEFAULT_MAX	64	/* longest WORD followed */

static size_t
shell_default(const char *s, size_t n, struct shell_vars *vars,
    struct norm_buf *out)
{
	size_t	i = 2, k, w, v;

	if (n < 5 || s[1] != '{')
		return 0;
	for (k = i; k < n && shell_name_char((unsigned char)s[k], k == i); k++)
		;
	if (k == i || k + 1 >= n)
		return 0;
	w = k + (s[k] == ':') + 1;
	if (w > n || s[w - 1] != '-')
		return 0;
	for (v = w; v < n && v - w < SHELL_DEFAULT_MAX && s[v] != '}'; v++) {
		if (strchr("$`'\"\\{", s[v]) != NULL)
			return 0;
	}
	if (v >= n || s[v] != '}')
		return 0;
	for (i = 0; vars != NULL && i < vars->n; i++) {
		if (vars->v[i].nlen == k - 2 &&
		    memcmp(vars->v[i].name, s + 2, k - 2) == 0) {
			if (vars->v[i].vlen > vars->budget)
				return 0;
			vars->budget -= vars->v[i].vlen;
			nb_put(out, vars->v[i].value, vars->v[i].vlen);
			return v + 1;
		}
	}
	nb_put(out, s + w, v - w);
	return v + 1;
}

/*
 * Command substitutions that only print a constant: $(printf FMT ARGS),
 * $(echo ARGS), the same in backquotes.  Their words, split and unquoted
 * as the shell does, are kept in one buffer.
 */
#define SUB_ARGS	16	/* words of one substitution */
#define SUB_PASSES	8	/* times printf reuses its format */
#define SUB_GROWTH	4	/* output bound: this many times the input */

struct sub_words {
	struct norm_buf	 buf;
	size_t		 off[SUB_ARGS];
	size_t		 len[SUB_ARGS];
	size_t		 n;
};

/* Bytes that end a simple command where no closing byte is expected. */
static int
sub_end(char c)
{
	return c == '|' || c == ';' || c == '&' || c == '\n' || c == '<' ||
	    c == '>' || c == ')';
}

/*
 * Splits s into words up to the byte close (')' or '`'), or with close
 * 0 up to the end of the simple command.  Returns the bytes consumed,
 * close included, or 0 for anything but quoted and plain words (another
 * expansion, a redirection, a pipe inside a substitution).
 */
static size_t
sub_split(const char *s, size_t n, char close, struct sub_words *sw)
{
	size_t	i = 0, k;
	char	c;

	sw->n = 0;
	normalize_buf_reset(&sw->buf);
	for (;;) {
		while (i < n && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i >= n)
			return close == 0 ? i : 0;
		if (close != 0 && s[i] == close)
			return i + 1;
		if (close == 0 && sub_end(s[i]))
			return i;
		if (sw->n == SUB_ARGS)
			return 0;
		sw->off[sw->n] = sw->buf.len;
		while (i < n && s[i] != ' ' && s[i] != '\t' &&
		    !(close != 0 ? s[i] == close : sub_end(s[i]))) {
			c = s[i];
			if (c == '\'') {
				for (k = i + 1; k < n && s[k] != '\''; k++)
					;
				if (k >= n)
					return 0;
				nb_put(&sw->buf, s + i + 1, k - i - 1);
				i = k + 1;
			} else if (c == '"') {
				for (i++; i < n && s[i] != '"'; i++) {
					if (s[i] == '$' || s[i] == '`')
						return 0;
					if (s[i] == '\\' && i + 1 < n &&
					    strchr("\"\\$`", s[i + 1]) != NULL)
						i++;
					nb_putc(&sw->buf, s[i]);
				}
				if (i >= n)
					return 0;
				i++;
			} else if (c == '\\' && i + 1 < n) {
				nb_putc(&sw->buf, s[i + 1]);
				i += 2;
			} else if (c == '$' || c == '`' || c == '(' ||
			    c == '|' || c == ';' || c == '&' || c == '<' ||
			    c == '>' || c == '\n' || c == ')')
				return 0;
			else
				nb_putc(&sw->buf, s[i++]);
		}
		sw->len[sw->n] = sw->buf.len - sw->off[sw->n];
		sw->n++;
	}
}

/* Appends s with its backslash escapes decoded (printf %b, echo -e). */
static void
sub_escapes(const char *s, size_t n, struct norm_buf *out)
{
	size_t	i = 0, k;

	while (i < n) {
		if (s[i] == '\\' && (k = shell_escape_echo(s + i, n - i,
		    out)) != 0)
			i += k;
		else
			nb_putc(out, s[i++]);
	}
}

/* printf FMT ARGS: %s %b %c %d and escapes, the format reused. */
static int
sub_printf(const struct sub_words *sw, struct norm_buf *out)
{
	const char	*f = sw->buf.data + sw->off[1], *a;
	size_t		 flen = sw->len[1], arg = 2, i, j, alen, pass;
	int		 used;

	for (pass = 0; pass < SUB_PASSES; pass++) {
		for (used = 0, i = 0; i < flen; ) {
			if (f[i] == '\\' && (j = shell_escape(f + i, flen - i,
			    out)) != 0) {
				i += j;
				continue;
			}
			if (f[i] != '%') {
				nb_putc(out, f[i++]);
				continue;
			}
			if (i + 1 < flen && f[i + 1] == '%') {
				nb_putc(out, '%');
				i += 2;
				continue;
			}
			for (j = i + 1; j < flen &&
			    strchr("-+ #0123456789.", f[j]) != NULL; j++)
				;
			if (j >= flen)
				return 0;
			a = arg < sw->n ? sw->buf.data + sw->off[arg] : "";
			alen = arg < sw->n ? sw->len[arg] : 0;
			arg += arg < sw->n;
			used = 1;
			switch (f[j]) {
			case 's':
			case 'd':
			case 'i':
			case 'u':
				nb_put(out, a, alen);
				break;
			case 'b':
				sub_escapes(a, alen, out);
				break;
			case 'c':
				nb_put(out, a, alen > 0);
				break;
			default:
				return 0;
			}
			i = j + 1;
		}
		if (!used || arg >= sw->n)
			break;
	}
	return 1;
}

/* echo [-neE] ARGS. */
static int
sub_echo(const struct sub_words *sw, struct norm_buf *out)
{
	const char	*w;
	size_t		 i = 1, k;
	int		 esc = 0, opt;

	for (; i < sw->n; i++) {
		w = sw->buf.data + sw->off[i];
		if (sw->len[i] < 2 || w[0] != '-')
			break;
		for (opt = 1, k = 1; k < sw->len[i] && opt; k++)
			opt = w[k] == 'n' || w[k] == 'e' || w[k] == 'E';
		if (!opt)
			break;
		esc = memchr(w, 'e', sw->len[i]) != NULL;
	}
	for (k = i; k < sw->n; k++) {
		if (k > i)
			nb_putc(out, ' ');
		if (esc)
			sub_escapes(sw->buf.data + sw->off[k], sw->len[k], out);
		else
			nb_put(out, sw->buf.data + sw->off[k], sw->len[k]);
	}
	return 1;
}

/*
 * Evaluates printf or echo at s (the command's first word) up to close
 * (see sub_split), appending what it prints.  Returns the bytes
 * consumed, or 0 with out unchanged.
 */
static size_t
shell_print(const char *s, size_t n, char close, struct norm_buf *out)
{
	struct sub_words	 sw;
	size_t			 used, mark = out->len;
	int			 ok = 0;

	if (!((n > 7 && memcmp(s, "printf", 6) == 0 && (s[6] == ' ' ||
	    s[6] == '\t')) || (n > 5 && memcmp(s, "echo", 4) == 0 &&
	    (s[4] == ' ' || s[4] == '\t'))))
		return 0;
	memset(&sw, 0, sizeof sw);
	if ((used = sub_split(s, n, close, &sw)) != 0) {
		if (s[0] == 'p')
			ok = sw.n >= 2 && sub_printf(&sw, out);
		else
			ok = sub_echo(&sw, out);
	}
	normalize_buf_free(&sw.buf);
	if (!ok || out->len - mark > SUB_GROWTH * used + NB_MIN_CAP) {
		out->len = mark;
		return 0;
	}
	return used;
}

/*
 * $(printf ..) or `echo ..` at s[0]: appends what it prints and returns
 * the bytes consumed, or 0.
 */
static size_t
shell_subst(const char *s, size_t n, struct norm_buf *out)
{
	size_t	i, k;
	char	close;

	if (s[0] == '`') {
		i = 1;
		close = '`';
	} else if (n > 1 && s[0] == '$' && s[1] == '(') {
		i = 2;
		close = ')';
	} else
		return 0;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if ((k = shell_print(s + i, n - i, close, out)) == 0)
		return 0;
	return i + k;
}

/*
 * $u or ${u} (a name of at most SHELL_SPLICE_NAME bytes the text never
 * assigns) right after a letter: an unset variable spliced into a word to
 * break it up (cat$u /etc$u/shadow), empty as the shell makes it.  Not
 * after a blank, where $dir/ may well be set.  Returns the bytes to skip.
 */
#define SHELL_SPLICE_NAME	2

static size_t
shell_splice(const char *s, size_t n, const struct norm_buf *out)
{
	size_t	i = 1, k, brace = 0;
	char	prev;

	if (out->len == 0)
		return 0;
	prev = out->data[out->len - 1];
	if (!((prev >= 'a' && prev <= 'z') || (prev >= 'A' && prev <= 'Z')))
		return 0;
	if (i < n && s[i] == '{')
		brace = i++;
	for (k = i; k < n && shell_name_char((unsigned char)s[k], k == i); k++)
		;
	if (k == i || k - i > SHELL_SPLICE_NAME ||
	    (brace && (k >= n || s[k] != '}')))
		return 0;
	return k + (brace != 0);
}

/* Bytes that start something pass 1 undoes. */
static const unsigned char shell_special[UCHAR_MAX + 1] = {
	['\\'] = 1, ['\''] = 1, ['"'] = 1, ['`'] = 1, ['$'] = 1,
};

/*
 * Pass 1: quotes, escapes, $'..', $IFS and empty expansions.  Returns
 * whether it decoded $'..', whose text may hold more quoting.
 */
static int
shell_unquote(const char *s, size_t len, struct norm_buf *out,
    struct shell_vars *vars)
{
	size_t	i = 0, k;
	int	blank, ansi = 0;

	while (i < len) {
		/* Copy the run of plain bytes up to the next special one. */
		for (k = i; k < len && !shell_special[(unsigned char)s[k]]; k++)
			;
		if (k > i) {
			nb_put(out, s + i, k - i);
			i = k;
			continue;
		}
		switch (s[i]) {
		case '\\':
			if (i + 1 < len && s[i + 1] == '\n')
				i += 2;		/* line continuation */
			else if (i + 1 < len) {
				nb_putc(out, s[i + 1]);
				i += 2;
			} else
				i++;
			continue;
		case '\'':
		case '"':
			i++;
			continue;
		case '`':
			if ((k = shell_subst(s + i, len - i, out)) != 0) {
				i += k;
				continue;
			}
			/* Empty command substitution hides nothing. */
			i += (i + 1 < len && s[i + 1] == '`') ? 2 : 1;
			continue;
		case '$':
			if ((k = shell_subst(s + i, len - i, out)) != 0 ||
			    (k = shell_slice(s + i, len - i, vars, out)) != 0 ||
			    (k = shell_default(s + i, len - i, vars, out)) != 0) {
				i += k;
				continue;
			}
			if (i + 1 < len && s[i + 1] == '\'') {
				/* ANSI-C quoting: decode until the close. */
				ansi = 1;
				for (i += 2; i < len && s[i] != '\''; ) {
					if (s[i] == '\\' &&
					    (k = shell_escape(s + i, len - i,
					    out)) != 0)
						i += k;
					else
						nb_putc(out, s[i++]);
				}
				i++;
				continue;
			}
			if ((k = shell_var(s + i, len - i, vars, out)) != 0) {
				i += k;
				continue;
			}
			if ((k = shell_dollar(s + i, len - i, &blank)) != 0) {
				if (blank)
					nb_putc(out, ' ');
				i += k;
				continue;
			}
			if ((k = shell_splice(s + i, len - i, out)) != 0) {
				i += k;
				continue;
			}
			break;
		default:
			break;
		}
		nb_putc(out, s[i++]);
	}
	return ansi;
}

/* The blanks that separate words; pass 2 squeezes each run to one. */
static const unsigned char shell_blank[UCHAR_MAX + 1] = {
	[' '] = 1, ['\t'] = 1, ['\n'] = 1,
};

/*
 * Expands the first {a,b,...} of a word into words, as bash does:
 * pre{a,b}post gives "preapost prebpost".  Returns 0 if the word has no
 * such group or it would pass the growth bound.
 */
static int
shell_brace(const char *w, size_t n, struct norm_buf *out, size_t limit)
{
	const char	*open, *close, *alt, *comma;
	size_t		 pre, post, nalts = 1, need;
	const char	*p;

	if ((open = memchr(w, '{', n)) == NULL)
		return 0;
	for (close = open + 1; close < w + n && *close != '}'; close++) {
		if (*close == '{')
			return 0;
		if (*close == ',')
			nalts++;
	}
	if (close == w + n || nalts < 2 || nalts > NORMALIZE_BRACE_MAX)
		return 0;
	pre = (size_t)(open - w);
	post = (size_t)(w + n - close - 1);
	need = nalts * (pre + post + 1) + (size_t)(close - open);
	if (out->len + need > limit)
		return 0;
	for (alt = open + 1, p = open + 1; p <= close; p++) {
		if (*p != ',' && *p != '}')
			continue;
		comma = p;
		if (alt != open + 1)
			nb_putc(out, ' ');
		nb_put(out, w, pre);
		nb_put(out, alt, (size_t)(comma - alt));
		nb_put(out, close + 1, post);
		alt = p + 1;
	}
	return 1;
}

/*
 * Glob paths (/???/?at /e??/p?ss??, /b[i]n/r*) stand for the files they
 * match, which the shell finds on the disk: here, the common paths of a
 * Unix system, so that a globbed program or secret reads as its name.
 */
static const char *const glob_bin_dirs[] = {
	"/bin", "/sbin", "/usr/bin", "/usr/local/bin", "/usr/sbin",
};
static const char *const glob_bin_names[] = {
	"awk", "base32", "base64", "bash", "busybox", "cat", "chattr",
	"chmod", "chown", "cp", "crontab", "curl", "dash", "dd", "echo",
	"env", "find", "gcc", "halt", "head", "id", "insmod", "iptables",
	"kill", "ksh", "less", "ln", "ls", "mkfifo", "mkfs", "modprobe",
	"more", "mount", "nc", "ncat", "netcat", "nmap", "nohup", "openssl",
	"passwd", "perl", "php", "poweroff", "python", "python3", "reboot",
	"rm", "ruby", "scp", "sh", "shred", "shutdown", "socat", "ssh", "su",
	"sudo", "tail", "tar", "tclsh", "telnet", "uname", "useradd",
	"usermod", "visudo", "wget", "whoami", "xxd", "zsh",
};
static const char *const glob_files[] = {
	"/etc/crontab", "/etc/group", "/etc/gshadow", "/etc/hosts",
	"/etc/issue", "/etc/ld.so.preload", "/etc/passwd", "/etc/profile",
	"/etc/rc.local", "/etc/shadow", "/etc/sudoers", "/proc/self/environ",
	"/root/.bash_history", "/root/.ssh/authorized_keys",
	"/root/.ssh/id_rsa", "/var/log/auth.log", "/var/log/btmp",
	"/var/log/lastlog", "/var/log/syslog", "/var/log/wtmp",
};

#define GLOB_PATH_MAX	128	/* longest globbed path tried */
#define GLOB_MATCHES	4	/* more matches than this: too vague */

/* Bytes of a path a glob may hold. */
static int
glob_path_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '/' || c == '.' || c == '_' ||
	    c == '-' || c == '?' || c == '*' || c == '[' || c == ']' ||
	    c == '!' || c == '+';
}

/*
 * Whether p[0..n) is a glob worth trying: an absolute path with ? or [
 * in it, or a * beside a literal byte of its component (a lone "*"
 * lists a directory, which says nothing about a file).
 */
static int
glob_worth(const char *p, size_t n)
{
	size_t	i;
	int	any = 0;

	if (n < 2 || p[0] != '/')
		return 0;
	for (i = 0; i < n; i++) {
		if (p[i] == '?' || p[i] == '[')
			any = 1;
		else if (p[i] == '*' && ((i > 0 && p[i - 1] != '/' &&
		    p[i - 1] != '*') || (i + 1 < n && p[i + 1] != '/' &&
		    p[i + 1] != '*')))
			any = 1;
	}
	return any;
}

static int
glob_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Appends the paths glob p[0..n) matches, sorted as the shell lists them;
 * returns 0, appending nothing, for none or more than GLOB_MATCHES.
 */
static int
glob_expand(const char *p, size_t n, struct norm_buf *out)
{
	char		 pat[GLOB_PATH_MAX], *base;
	char		 found[GLOB_MATCHES][GLOB_PATH_MAX];
	const char	*sorted[GLOB_MATCHES];
	size_t		 d, k, lit, nfound = 0;

	if (n >= sizeof pat)
		return 0;
	memcpy(pat, p, n);
	pat[n] = '\0';
	lit = strcspn(pat, "?*[");
	/* Programs: the directory part first, then the name in each match. */
	base = strrchr(pat, '/');
	*base = '\0';
	for (d = 0; d < sizeof glob_bin_dirs / sizeof glob_bin_dirs[0]; d++) {
		if (fnmatch(pat, glob_bin_dirs[d], FNM_PATHNAME) != 0)
			continue;
		for (k = 0; k < sizeof glob_bin_names /
		    sizeof glob_bin_names[0]; k++) {
			if (fnmatch(base + 1, glob_bin_names[k], FNM_PERIOD) !=
			    0)
				continue;
			if (nfound == GLOB_MATCHES)
				return 0;
			(void)snprintf(found[nfound++], sizeof found[0],
			    "%s/%s", glob_bin_dirs[d], glob_bin_names[k]);
		}
	}
	*base = '/';
	for (k = 0; k < sizeof glob_files / sizeof glob_files[0]; k++) {
		if (strncmp(pat, glob_files[k], lit) != 0 ||
		    fnmatch(pat, glob_files[k], FNM_PATHNAME | FNM_PERIOD) != 0)
			continue;
		if (nfound == GLOB_MATCHES)
			return 0;
		(void)snprintf(found[nfound++], sizeof found[0], "%s",
		    glob_files[k]);
	}
	if (nfound == 0)
		return 0;
	for (k = 0; k < nfound; k++)
		sorted[k] = found[k];
	qsort(sorted, nfound, sizeof sorted[0], glob_cmp);
	for (k = 0; k < nfound; k++) {
		if (k > 0)
			nb_putc(out, ' ');
		nb_put(out, sorted[k], strlen(sorted[k]));
	}
	return 1;
}

/*
 * Copies word w with each glob path in it replaced by what it matches.
 * Returns 0, appending nothing, if none matched or the growth bound
 * would be passed.
 */
static int
shell_glob(const char *w, size_t n, struct norm_buf *out, size_t limit)
{
	size_t	i = 0, k, mark = out->len;
	int	any = 0;

	while (i < n) {
		/* Where a path starts; "//host/x?y" after "http:" is none. */
		if (w[i] != '/' || (i > 0 && (glob_path_char((unsigned char)
		    w[i - 1]) || w[i - 1] == ':'))) {
			nb_putc(out, w[i++]);
			continue;
		}
		for (k = i; k < n && glob_path_char((unsigned char)w[k]); k++)
			;
		if (!glob_worth(w + i, k - i) ||
		    !glob_expand(w + i, k - i, out))
			nb_put(out, w + i, k - i);
		else
			any = 1;
		i = k;
	}
	if (!any || out->len > limit) {
		out->len = mark;
		return 0;
	}
	return 1;
}

/*
 * Pass 2: words, brace expansion, one blank between words.  Neither
 * lengthens the text but for an expansion, so words are copied as they
 * are scanned, into room reserved once; the rare word with a "{" is
 * redone by shell_brace().
 */
static void
shell_words(const char *s, size_t len, struct norm_buf *out, size_t limit)
{
	const char	*end = s + len, *w;
	char		*o;
	int		 nl, brace, glob;

	nb_reserve(out, len);
	while (s < end) {
		if (shell_blank[(unsigned char)*s]) {
			for (nl = 0; s < end && shell_blank[(unsigned char)*s];
			    s++)
				nl |= *s == '\n';
			if (out->len > 0)
				out->data[out->len++] = nl ? '\n' : ' ';
			continue;
		}
		o = out->data + out->len;
		for (w = s, brace = 0, glob = 0; s < end &&
		    !shell_blank[(unsigned char)*s]; s++) {
			brace |= *s == '{';
			glob |= *s == '?' || *s == '*' || *s == '[';
			*o++ = *s;
		}
		if ((brace && shell_brace(w, (size_t)(s - w), out, limit)) ||
		    (glob && shell_glob(w, (size_t)(s - w), out, limit))) {
			nb_reserve(out, (size_t)(end - s));
			continue;
		}
		out->len += (size_t)(s - w);
	}
}

/* The shell form of in, with tmp as scratch space for pass 1. */
static void
shell_form(const char *in, size_t len, struct norm_buf *out,
    struct norm_buf *tmp, struct shell_vars *vars)
{
	struct norm_buf	again;

	normalize_buf_reset(tmp);
	nb_reserve(tmp, len);
	if (shell_unquote(in, len, tmp, vars)) {
		/* What $'..' decoded is unquoted once more, as eval would. */
		memset(&again, 0, sizeof again);
		nb_reserve(&again, tmp->len);
		(void)shell_unquote(tmp->data, tmp->len, &again, vars);
		nb_swap(tmp, &again);
		normalize_buf_free(&again);
	}
	shell_words(tmp->data, tmp->len, out,
	    out->len + SHELL_GROWTH * len + NB_MIN_CAP);
	nb_finish(out);
}

void
normalize_shell(const char *in, size_t len, struct norm_buf *out)
{
	struct norm_buf		tmp;
	struct shell_vars	vars;

	memset(&tmp, 0, sizeof tmp);
	shell_vars_scan(in, len, &vars);
	shell_form(in, len, out, &tmp, &vars);
	normalize_buf_free(&tmp);
}

/* Bytes that make the shell form of a line more than its blanks squeezed. */
static const unsigned char shell_changes[UCHAR_MAX + 1] = {
	['\\'] = 1, ['\''] = 1, ['"'] = 1, ['`'] = 1, ['$'] = 1, ['{'] = 1,
	['?'] = 1, ['*'] = 1, ['['] = 1,
};

/* A line and the lines a backslash before its newline joins to it. */
static size_t
shell_line(const char *s, size_t len)
{
	const char	*nl;
	size_t		 i = 0;

	while ((nl = memchr(s + i, '\n', len - i)) != NULL) {
		i = (size_t)(nl - s);
		if (i == 0 || s[i - 1] != '\\')
			return i;
		i++;
	}
	return len;
}

/*
 * Whether the shell form of a line is more than its blanks squeezed: a
 * quote, escape or expansion, or a "{" that opens a list ("{a,b}"), not
 * merely a block of code.
 */
static int
shell_changed(const char *s, size_t len)
{
	const char	*close;
	size_t		 i, k;

	for (i = 0; i < len; i++) {
		if (!shell_changes[(unsigned char)s[i]])
			continue;
		if (s[i] == '?' || s[i] == '*' || s[i] == '[') {
			/* A glob in a path: back to where the path starts. */
			for (k = i; k > 0 && glob_path_char((unsigned char)
			    s[k - 1]); k--)
				;
			if (s[k] == '/' && (k == 0 || s[k - 1] != ':'))
				return 1;
			continue;
		}
		if (s[i] != '{')
			return 1;
		close = memchr(s + i, '}', len - i);
		if (close != NULL && memchr(s + i, ',',
		    (size_t)(close - (s + i))) != NULL)
			return 1;
	}
	return 0;
}

void
normalize_shell_changed(const char *in, size_t len, struct norm_buf *out)
{
	const char	*s = in, *end = in + len, *prev = NULL;
	size_t		 n, prevlen = 0, start = out->len;
	int		 changed, prev_changed = 0, prev_kept = 0, kept;
	struct norm_buf	 tmp;
	struct shell_vars vars;

	memset(&tmp, 0, sizeof tmp);
	/* Assignments anywhere in the text: "a=rm" a line above "$a -rf /". */
	shell_vars_scan(in, len, &vars);

	for (; s < end; s += n + (s + n < end)) {
		n = shell_line(s, (size_t)(end - s));
		changed = shell_changed(s, n);
		kept = changed || prev_changed;
		/*
		 * The line before a changed one comes along as context.  Lines
		 * are separated, not ended, by a newline: the form of a text
		 * of one line is one line, and scores as one (firewall.c).
		 */
		if (changed && prev != NULL && !prev_kept) {
			if (out->len > start)
				nb_putc(out, '\n');
			shell_form(prev, prevlen, out, &tmp, &vars);
		}
		if (kept) {
			if (out->len > start)
				nb_putc(out, '\n');
			shell_form(s, n, out, &tmp, &vars);
		}
		prev = s;
		prevlen = n;
		prev_changed = changed;
		prev_kept = kept;
	}
	nb_finish(out);
	normalize_buf_free(&tmp);
}

/*
 * Decoded bytes are kept only if they read as text.  Most runs decoded
 * are words that only look like base64: stop at the first byte too many.
 */
static int
decode_plausible(const unsigned char *s, size_t n)
{
	size_t		i, bad = 0, k;
	uint32_t	cp;

	if (n < NORMALIZE_DECODED_MIN)
		return 0;
	for (i = 0; i < n; ) {
		if ((s[i] >= 0x20 && s[i] < 0x7F) || s[i] == '\n' ||
		    s[i] == '\t' || s[i] == '\r')
			i++;
		else if (s[i] >= 0x80 &&
		    (k = utf8_decode(s + i, n - i, &cp)) != 0)
			i += k;
		else {
			/* Text: at least DECODE_PRINTABLE_PCT percent good. */
			if (++bad * 100 > n * (100 - DECODE_PRINTABLE_PCT))
				return 0;
			i++;
		}
	}
	return 1;
}

/* Base64 digit values plus one, standard and URL-safe; 0: not a digit. */
static const unsigned char b64_table[UCHAR_MAX + 1] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6,
	['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12,
	['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17,
	['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
	['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27,
	['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
	['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37,
	['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47,
	['v'] = 48, ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52,
	['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57,
	['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62,
	['+'] = 63, ['/'] = 64, ['-'] = 63, ['_'] = 64,
};

static inline int
b64val(int c)
{
	return (int)b64_table[(unsigned char)c] - 1;
}

/* Appends a run decoded by one of the decoders if it reads as text. */
static int
decode_keep(struct norm_buf *out, size_t mark)
{
	if (decode_plausible((unsigned char *)out->data + mark,
	    out->len - mark)) {
		nb_putc(out, '\n');
		return 1;
	}
	out->len = mark;
	return 0;
}

/*
 * Whether byte c after byte prev is one decode_plausible() counts as bad
 * wherever it stands: a control byte, a byte UTF-8 never uses, a
 * continuation byte after an ASCII one, or (prev) a lead byte without its
 * continuation.  Each is a different byte of the text.
 */
static inline int
decode_bad_pair(unsigned char prev, unsigned char c, int first)
{
	if (c < 0x80) {
		if ((c < 0x20 || c == 0x7F) && c != '\n' && c != '\t' &&
		    c != '\r')
			return 1;
		return !first && prev >= 0xC2 && prev <= 0xF4;
	}
	if (c == 0xC0 || c == 0xC1 || c >= 0xF5)
		return 1;
	if (c < 0xC0)		/* a continuation */
		return first || prev < 0x80;
	return !first && prev >= 0xC2 && prev <= 0xF4;
}

/*
 * Decodes n base64 digits (standard or URL-safe) into out and keeps them
 * if they read as text.  Most runs are words that only look like base64:
 * counting, while decoding, the bytes decode_plausible() is sure to
 * refuse gives up as soon as it would, without decoding on.
 */
static int
decode_b64_text(const char *s, size_t n, struct norm_buf *out)
{
	size_t		mark = out->len, nout = n * 6 / 8, bad = 0, i;
	uint32_t	acc = 0;
	int		bits = 0;
	unsigned char	c, prev = 0;

	nb_reserve(out, nout);
	for (i = 0; i < n; i++) {
		acc = (acc << 6) | (uint32_t)b64val((unsigned char)s[i]);
		bits += 6;
		if (bits < 8)
			continue;
		bits -= 8;
		c = (unsigned char)((acc >> bits) & 0xFF);
		if (decode_bad_pair(prev, c, out->len == mark) &&
		    ++bad * 100 > nout * (100 - DECODE_PRINTABLE_PCT)) {
			out->len = mark;
			return 0;
		}
		out->data[out->len++] = (char)c;
		prev = c;
	}
	return decode_keep(out, mark);
}

/*
 * Encoded text mixes cases, digits or symbols; a run of one case of
 * letters only is a plain word, not worth four decodings.
 */
static int
decode_b64_worth(const char *s, size_t n)
{
	size_t	i;
	int	lower = 0, upper = 0;

	for (i = 0; i < n; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			lower = 1;
		else if (s[i] >= 'A' && s[i] <= 'Z')
			upper = 1;
		else
			return 1;
	}
	return lower && upper;
}

static void
decode_b64_run(const char *s, size_t n, struct norm_buf *out)
{
	size_t	skip;

	if (!decode_b64_worth(s, n))
		return;
	/* The run may start mid-word: try each alignment. */
	for (skip = 0; skip < 4 && n - skip >= NORMALIZE_B64_MIN; skip++) {
		if (decode_b64_text(s + skip, n - skip, out))
			return;
	}
}

static void
decode_hex_run(const char *s, size_t n, struct norm_buf *out)
{
	size_t	i, mark = out->len;

	for (i = 0; i + 1 < n; i += 2)
		nb_putc(out, (char)(hexval((unsigned char)s[i]) << 4 |
		    hexval((unsigned char)s[i + 1])));
	(void)decode_keep(out, mark);
}

/* Whether an escape decode_escapes() undoes starts at s[i]. */
static int
decode_escape_at(const char *s, size_t n, size_t i)
{
	if (s[i] == '\\')
		return i + 1 < n && (s[i + 1] == 'x' || s[i + 1] == 'u' ||
		    (s[i + 1] >= '0' && s[i + 1] <= '7'));
	return s[i] == '%' && i + 2 < n &&
	    hexval((unsigned char)s[i + 1]) >= 0 &&
	    hexval((unsigned char)s[i + 2]) >= 0;
}

/*
 * One escape of a text decoded whatever reads it: \0 and three octal
 * digits is echo -e's or printf %b's \0NNN (a $'..' rarely spells \016
 * followed by a digit), the others as in $'..'.
 */
static size_t
decode_escape(const char *s, size_t n, struct norm_buf *out)
{
	size_t	i;

	if (n >= 5 && s[1] == '0') {
		for (i = 2; i < 5 && s[i] >= '0' && s[i] <= '7'; i++)
			;
		if (i == 5)
			return shell_escape_echo(s, n, out);
	}
	return shell_escape(s, n, out);
}

/*
 * Undoes \xHH, \NNN, \uHHHH and %HH escapes in the lines that hold one
 * when the text has at least NORMALIZE_ESC_MIN of them; the other lines
 * have nothing to decode (copying them made a long text's decoded form as
 * long as the text, for two stray escapes).
 */
static void
decode_escapes(const char *s, size_t n, struct norm_buf *out)
{
	const char	*nl, *bs, *pc;
	size_t		 i, k, count = 0, mark, line, eol;
	int		 hi, lo, any;

	/* Escapes start with one of two bytes: memchr finds them. */
	bs = memchr(s, '\\', n);
	pc = memchr(s, '%', n);
	while ((bs != NULL || pc != NULL) && count < NORMALIZE_ESC_MIN) {
		if (bs != NULL && (pc == NULL || bs < pc)) {
			i = (size_t)(bs - s);
			bs = memchr(bs + 1, '\\', n - i - 1);
		} else {
			i = (size_t)(pc - s);
			pc = memchr(pc + 1, '%', n - i - 1);
		}
		count += decode_escape_at(s, n, i);
	}
	if (count < NORMALIZE_ESC_MIN)
		return;
	for (line = 0; line < n; line = eol + 1) {
		nl = memchr(s + line, '\n', n - line);
		eol = nl != NULL ? (size_t)(nl - s) : n;
		for (any = 0, i = line; i < eol && !any; i++)
			any = decode_escape_at(s, eol, i);
		if (!any)
			continue;
		mark = out->len;
		for (i = line; i < eol; ) {
			if (s[i] == '\\' && decode_escape_at(s, eol, i) &&
			    (k = decode_escape(s + i, eol - i, out)) != 0) {
				i += k;
				continue;
			}
			if (s[i] == '%' && decode_escape_at(s, eol, i)) {
				hi = hexval((unsigned char)s[i + 1]);
				lo = hexval((unsigned char)s[i + 2]);
				nb_putc(out, (char)(hi << 4 | lo));
				i += 3;
				continue;
			}
			nb_putc(out, s[i++]);
		}
		if (out->len > mark)
			nb_putc(out, '\n');
	}
}

/* One level: escapes through the text, then every base64 or hex run. */
static void
decode_level(const char *s, size_t n, struct norm_buf *out)
{
	size_t	i = 0, start, hex, k, shortest;
	int	allhex;

	decode_escapes(s, n, out);
	shortest = NORMALIZE_B64_MIN < NORMALIZE_HEX_MIN ?
	    NORMALIZE_B64_MIN : NORMALIZE_HEX_MIN;
	/* s[i - 1] or s[i] is no digit: no run goes on from before i. */
	while (i + shortest <= n) {
		/*
		 * A run long enough to decode that starts in the next
		 * shortest bytes holds the last of them: if that is no
		 * digit, none does, and all of them are passed at once.
		 */
		if (b64_table[(unsigned char)s[i + shortest - 1]] == 0) {
			i += shortest;
			continue;
		}
		for (start = i + shortest - 1; start > i &&
		    b64_table[(unsigned char)s[start - 1]] != 0; start--)
			;
		for (i += shortest; i < n &&
		    b64_table[(unsigned char)s[i]] != 0; i++)
			;
		hex = i - start;
		/* Shorter runs are neither: skip the test of their digits. */
		allhex = hex >= NORMALIZE_HEX_MIN;
		for (k = start; allhex && k < i; k++)
			allhex = hexval((unsigned char)s[k]) >= 0;
		if (allhex && hex >= NORMALIZE_HEX_MIN && hex % 2 == 0)
			decode_hex_run(s + start, hex, out);
		else if (hex >= NORMALIZE_B64_MIN)
			decode_b64_run(s + start, hex, out);
		while (i < n && s[i] == '=')
			i++;
	}
}

#define PIPE_TR_SETS	2	/* tr SET1 SET2 */

/* A word at s (quoted or plain) on its line: its start and length. */
static size_t
pipe_word(const char *s, size_t n, const char **w)
{
	size_t	i = 0;
	char	q;

	if (n > 0 && (s[0] == '\'' || s[0] == '"')) {
		q = s[0];
		for (i = 1; i < n && s[i] != q && s[i] != '\n'; i++)
			;
		if (i == n || s[i] != q)
			return 0;
		*w = s + 1;
		return i - 1;
	}
	while (i < n && !shell_blank_byte(s[i]) && s[i] != '<' && s[i] != '>')
		i++;
	*w = s;
	return i;
}

/*
 * The string a pipe at s[at] == '|' is fed: the quoted or plain word
 * just before it (echo "/ fr- mr" | rev).  Returns its length, or 0.
 */
static size_t
pipe_source(const char *s, size_t at, const char **w)
{
	size_t	end = at, i;
	char	q;

	while (end > 0 && (s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	if (end == 0 || s[end - 1] == '\n')
		return 0;
	if (s[end - 1] == '\'' || s[end - 1] == '"') {
		q = s[end - 1];
		for (i = end - 1; i > 0 && s[i - 1] != q && s[i - 1] != '\n'; i--)
			;
		if (i == 0 || s[i - 1] != q)
			return 0;
		*w = s + i;
		return end - 1 - i;
	}
	for (i = end; i > 0 && !shell_blank_byte(s[i - 1]); i--)
		;
	*w = s + i;
	return end - i;
}

/* Expands a tr set (ranges a-z) into set; returns its length. */
static size_t
pipe_tr_set(const char *w, size_t n, unsigned char *set, size_t max)
{
	size_t		 i, len = 0;
	unsigned	 c;

	for (i = 0; i < n && len < max; i++) {
		if (i + 2 < n && w[i + 1] == '-' &&
		    (unsigned char)w[i] <= (unsigned char)w[i + 2]) {
			for (c = (unsigned char)w[i];
			    c <= (unsigned char)w[i + 2] && len < max; c++)
				set[len++] = (unsigned char)c;
			i += 2;
		} else
			set[len++] = (unsigned char)w[i];
	}
	return len;
}

/*
 * Appends word w (len bytes) as the filter at s[k] would give it: rev
 * reversed, tr SET1 SET2 (no options) translated, one line, kept only if
 * it reads as text.  Returns 0 if s[k] is no such filter.
 */
static int
pipe_filter(const char *s, size_t n, size_t k, const char *w, size_t len,
    struct norm_buf *out)
{
	unsigned char	 set[PIPE_TR_SETS][UCHAR_MAX + 1], map[UCHAR_MAX + 1];
	const char	*a;
	size_t		 i, m, nset[PIPE_TR_SETS], mark = out->len;
	int		 rev;

	rev = n - k >= 3 && memcmp(s + k, "rev", 3) == 0 &&
	    (k + 3 == n || shell_blank_byte(s[k + 3]) || s[k + 3] == '<');
	if (!rev && !(n - k >= 3 && memcmp(s + k, "tr ", 3) == 0))
		return 0;
	if (rev) {
		for (i = len; i > 0; i--)
			nb_putc(out, w[i - 1]);
	} else {
		/* tr SET1 SET2, no options: a substitution cipher. */
		k += 3;
		for (m = 0; m < PIPE_TR_SETS; m++) {
			while (k < n && s[k] == ' ')
				k++;
			if (k >= n || s[k] == '-' || s[k] == '|' ||
			    s[k] == '\n' || s[k] == '<')
				break;
			i = pipe_word(s + k, n - k, &a);
			if (i == 0)
				break;
			nset[m] = pipe_tr_set(a, i, set[m], sizeof set[m]);
			k = (size_t)(a - s) + i + (a != s + k);
		}
		if (m < PIPE_TR_SETS || nset[0] == 0 || nset[1] == 0)
			return 0;
		for (i = 0; i <= UCHAR_MAX; i++)
			map[i] = (unsigned char)i;
		for (i = 0; i < nset[0]; i++)
			map[set[0][i]] = set[1][i < nset[1] ? i : nset[1] - 1];
		for (i = 0; i < len; i++)
			nb_putc(out, (char)map[(unsigned char)w[i]]);
	}
	(void)decode_keep(out, mark);
	return 1;
}

/*
 * Undoes rev and tr SET1 SET2 in "echo word | rev" and
 * "echo word | tr a-z n-za-m" pipelines, and in their here-string forms
 * "rev <<< word" and "tr a-z n-za-m <<< word": the word they are fed,
 * reversed or translated, one line each.  Kept only if it reads as text.
 */
static void
decode_pipes(const char *s, size_t n, struct norm_buf *out)
{
	const char	*p, *w;
	size_t		 at, len, k;

	for (p = memchr(s, '|', n); p != NULL;
	    p = memchr(p + 1, '|', (size_t)(s + n - p - 1))) {
		at = (size_t)(p - s);
		for (k = at + 1; k < n && (s[k] == ' ' || s[k] == '\t'); k++)
			;
		if ((len = pipe_source(s, at, &w)) == 0)
			continue;
		(void)pipe_filter(s, n, k, w, len, out);
	}
	for (p = memchr(s, '<', n) == NULL ? NULL : s; p != NULL &&
	    (p = memmem(p, (size_t)(s + n - p), "<<<", 3)) != NULL; p += 3) {
		at = (size_t)(p - s);
		for (k = at + 3; k < n && (s[k] == ' ' || s[k] == '\t'); k++)
			;
		if (k >= n || (len = pipe_word(s + k, n - k, &w)) == 0)
			continue;
		/* Back to where the simple command before "<<<" starts. */
		for (k = at; k > 0 && strchr("|;&(`\n", s[k - 1]) == NULL; k--)
			;
		while (k < at && (s[k] == ' ' || s[k] == '\t'))
			k++;
		(void)pipe_filter(s, n, k, w, len, out);
	}
}

#define PRINTF_MAX	16	/* printf commands evaluated per text */

/*
 * printf FMT ARGS with a conversion in its format (printf 'r%s' m | sh):
 * what it prints, one line each.  Escapes alone are decode_escapes()'s.
 */
static void
decode_printf(const char *s, size_t n, struct norm_buf *out)
{
	const char	*p = s;
	size_t		 at, used, mark, count = 0;

	/* No conversion anywhere, nothing to do: most texts. */
	if (memchr(s, '%', n) == NULL)
		return;
	while (count < PRINTF_MAX && (p = memmem(p, (size_t)(s + n - p),
	    "printf", 6)) != NULL) {
		at = (size_t)(p - s);
		p += 6;
		if (at > 0 && !shell_word_start[(unsigned char)s[at - 1]] &&
		    s[at - 1] != '/')
			continue;
		count++;
		mark = out->len;
		used = shell_print(s + at, n - at, 0, out);
		if (used == 0)
			continue;
		if (memchr(s + at, '%', used) == NULL) {
			out->len = mark;
			continue;
		}
		(void)decode_keep(out, mark);
		p = s + at + used;
	}
}

#define FEED_MAX	16	/* echo and printf commands evaluated per text */

/*
 * Whether a pipe into a shell follows s[at]: "| sh", "|sudo bash -s",
 * "| /bin/dash".  Not "||".
 */
static int
feed_shell(const char *s, size_t n, size_t at)
{
	static const char *const	 pre[] = { "sudo ", "env " };
	size_t				 i = at, k;

	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i + 1 >= n || s[i] != '|' || s[i + 1] == '|')
		return 0;
	for (i++; i < n && (s[i] == ' ' || s[i] == '\t'); i++)
		;
	for (k = 0; k < sizeof pre / sizeof pre[0]; k++) {
		if (n - i > strlen(pre[k]) &&
		    memcmp(s + i, pre[k], strlen(pre[k])) == 0) {
			for (i += strlen(pre[k]); i < n && s[i] == ' '; i++)
				;
		}
	}
	if (n - i >= 4 && memcmp(s + i, "/usr", 4) == 0)
		i += 4;
	if (n - i >= 5 && memcmp(s + i, "/bin/", 5) == 0)
		i += 5;
	if (n - i >= 2 && (memcmp(s + i, "ba", 2) == 0 ||
	    memcmp(s + i, "da", 2) == 0))
		i += 2;
	else if (n - i >= 1 && (s[i] == 'z' || s[i] == 'k'))
		i++;
	if (n - i < 2 || s[i] != 's' || s[i + 1] != 'h')
		return 0;
	return i + 2 == n || !shell_name_char((unsigned char)s[i + 2], 0);
}

/* Whether echo's options at s (after "echo") ask for escapes: -e, -ne. */
static int
feed_echo_e(const char *s, size_t n)
{
	size_t	i = 0, k;
	int	e = 0;

	for (;;) {
		while (i < n && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i + 1 >= n || s[i] != '-')
			return e;
		for (k = i + 1; k < n && (s[k] == 'n' || s[k] == 'e' ||
		    s[k] == 'E'); k++)
			if (s[k] == 'e')
				e = 1;
		if (k == i + 1 || (k < n && s[k] != ' ' && s[k] != '\t'))
			return e;
		i = k;
	}
}

/*
 * echo -e or printf with an escape in it, its output piped into a shell
 * (echo -e 'cd /tmp\nrm -rf ~' | sh): what the shell reads, escapes
 * undone (\n, \t, \xHH, \0NNN), so that each command it holds starts
 * its own line.  printf with a conversion is decode_printf()'s.
 */
static void
decode_feeds(const char *s, size_t n, struct norm_buf *out)
{
	static const char *const	 cmd[] = { "echo", "printf" };
	const char			*p, *bs;
	size_t				 at, used, mark, count = 0, c;

	if ((bs = memchr(s, '\\', n)) == NULL)
		return;
	/* Most texts pipe nothing into a shell: two searches spared. */
	for (p = memchr(bs, '|', (size_t)(s + n - bs)); p != NULL &&
	    !feed_shell(s, n, (size_t)(p - s)); p = memchr(p + 1, '|',
	    (size_t)(s + n - p - 1)))
		;
	if (p == NULL)
		return;
	for (c = 0; c < sizeof cmd / sizeof cmd[0]; c++) {
		for (p = s; count < FEED_MAX && (p = memmem(p,
		    (size_t)(s + n - p), cmd[c], strlen(cmd[c]))) != NULL;) {
			at = (size_t)(p - s);
			p += strlen(cmd[c]);
			if (at > 0 && !shell_word_start[(unsigned char)s[at - 1]]
			    && s[at - 1] != '/')
				continue;
			mark = out->len;
			if ((used = shell_print(s + at, n - at, 0, out)) == 0)
				continue;
			count++;
			if (memchr(s + at, '\\', used) == NULL ||
			    (c == 0 && !feed_echo_e(s + at + 4, used - 4)) ||
			    (c == 1 && memchr(s + at, '%', used) != NULL) ||
			    !feed_shell(s, n, at + used)) {
				out->len = mark;
				continue;
			}
			(void)decode_keep(out, mark);
			p = s + at + used;
		}
	}
}

void
normalize_decode(const char *in, size_t len, struct norm_buf *out)
{
	struct norm_buf	 cur, next;
	size_t		 level;

	memset(&cur, 0, sizeof cur);
	memset(&next, 0, sizeof next);
	decode_level(in, len, &cur);
	decode_pipes(in, len, &cur);
	decode_printf(in, len, &cur);
	decode_feeds(in, len, &cur);
	for (level = 1; level <= NORMALIZE_DECODE_LEVELS && cur.len > 0;
	    level++) {
		nb_put(out, cur.data, cur.len);
		if (level == NORMALIZE_DECODE_LEVELS)
			break;
		/* Decode what this level found, from its own buffer. */
		normalize_buf_reset(&next);
		decode_level(cur.data, cur.len, &next);
		nb_swap(&cur, &next);
	}
	nb_finish(out);
	normalize_buf_free(&cur);
	normalize_buf_free(&next);
}
