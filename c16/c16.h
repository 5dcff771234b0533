/*
 * c16.h -- the c16 text encoding of GC/1 (General Communications).
 *
 * c16 writes every byte as two letters from 'A'..'P', LOW nibble first:
 * the letter is 'A' + nibble. So 'A' (0x41) becomes "BE" (low nibble 1 ->
 * 'B', high nibble 4 -> 'E'), 0x00 becomes "AA" and 0xFF becomes "PP".
 * n bytes always encode to exactly 2n letters; the letters contain no space,
 * LF, ';', backslash or control byte, so c16 text is safe inside a GC/1 frame
 * or a database record.
 *
 * Memory: no function here allocates. Every result goes into a buffer that
 * the caller provides and owns, so nothing can leak.
 *
 * Errors: functions that can fail return an int status, GC16_OK (0) on
 * success or one of the GC16_ERR_* codes below; they never crash on bad
 * input. Pointers may be NULL only where a length of zero is passed;
 * otherwise a NULL pointer gives GC16_ERR_NULL.
 *
 * Buffers passed to one call must not overlap.
 *
 * This replaces the prototype's 16.c, whose functions returned malloc'd
 * results nobody freed and whose intpair() wrote the low byte twice. The
 * prototype's names (encode_B, decode_B, pairint, intpair) are still
 * exported, as aliases of the gc16_* functions with caller-provided buffers;
 * define GC16_NO_ORIGINAL_NAMES before including this header to leave their
 * declarations out.
 */
#ifndef GC16_C16_H
#define GC16_C16_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */

/* Success. */
#define GC16_OK 0
/* gc16_decode: the text has an odd number of letters; c16 text always has
 * two letters per byte. Nothing useful was written. */
#define GC16_ERR_ODD_LENGTH 1
/* A byte of the text is not a letter 'A'..'P'. *err_pos (when err_pos is not
 * NULL) receives the index of the FIRST such byte in the text. */
#define GC16_ERR_INVALID_LETTER 2
/* A required pointer was NULL. */
#define GC16_ERR_NULL 3

/* A short English description of a status code, e.g. "odd number of
 * letters". Returns a pointer to a static string (never NULL, never to be
 * freed); unknown codes give "unknown c16 status". */
const char *gc16_strerror(int status);

/* ---- lengths ----------------------------------------------------------- */

/* Letters needed to encode n bytes: 2 * n. Saturates at SIZE_MAX when 2 * n
 * does not fit in a size_t (no buffer can be that large, so an allocation of
 * the result fails cleanly instead of being too small). */
size_t gc16_encoded_len(size_t n);

/* Bytes that len letters decode to: len / 2 (len must be even to decode). */
size_t gc16_decoded_len(size_t len);

/* ---- buffers ----------------------------------------------------------- */

/* Encodes the n bytes at `bytes` into exactly 2 * n letters at `out`, low
 * nibble first. `out` must have room for gc16_encoded_len(n) chars; no NUL is
 * written. `bytes` may hold any values, including NUL.
 * Returns GC16_OK, or GC16_ERR_NULL when n > 0 and a pointer is NULL. */
int gc16_encode(const void *bytes, size_t n, char *out);

/* Decodes the len letters at `text` into len / 2 bytes at `out`, which must
 * have room for gc16_decoded_len(len) bytes. The text need not be
 * NUL-terminated; exactly len bytes are read.
 * Returns:
 *   GC16_OK                  all len / 2 bytes written;
 *   GC16_ERR_ODD_LENGTH      len is odd (checked first; *err_pos = len);
 *   GC16_ERR_INVALID_LETTER  *err_pos = index of the first byte that is not
 *                            'A'..'P';
 *   GC16_ERR_NULL            len > 0 and `text` or `out` is NULL.
 * On any error the contents of `out` are unspecified. `err_pos` may be NULL;
 * it is only written on GC16_ERR_ODD_LENGTH and GC16_ERR_INVALID_LETTER. */
int gc16_decode(const char *text, size_t len, unsigned char *out,
                size_t *err_pos);

/* ---- single bytes (the prototype's API) -------------------------------- */

/* Encodes the FIRST byte of `s` (for an empty string, its NUL) as two letters
 * and a NUL terminator: out = { low letter, high letter, '\0' }. Only s[0] is
 * read. Example: gc16_encode_B("A", out) gives "BE".
 * Returns GC16_OK, or GC16_ERR_NULL when `s` or `out` is NULL. */
int gc16_encode_B(const char *s, char out[3]);

/* Decodes the two letters at `s` (low nibble first) into one byte at *out.
 * s[1] is read only when s[0] is valid, so a short NUL-terminated string such
 * as "" or "A" is safe to pass: it fails with GC16_ERR_INVALID_LETTER at the
 * NUL. Example: gc16_decode_B("BE", &b) gives b = 'A'.
 * Returns GC16_OK; GC16_ERR_INVALID_LETTER with *err_pos = 0 or 1 (the
 * first bad letter; err_pos may be NULL); or GC16_ERR_NULL when `s` or `out`
 * is NULL. *out is written only on success. */
int gc16_decode_B(const char *s, unsigned char *out, size_t *err_pos);

/* A pair of bytes as a big-endian 16-bit integer: (p[0] << 8) | p[1].
 * Example: { 0x12, 0x34 } gives 0x1234. Returns 0 when `p` is NULL. */
uint16_t gc16_pairint(const unsigned char p[2]);

/* The inverse of gc16_pairint: out[0] = (v >> 8) & 0xFF, out[1] = v & 0xFF
 * (0x1234 gives { 0x12, 0x34 }),
 * so that gc16_pairint(out) == v and, for any pair p,
 * gc16_intpair(gc16_pairint(p), out) gives out == p.
 * Does nothing when `out` is NULL. */
void gc16_intpair(uint16_t v, unsigned char out[2]);

/* ---- the prototype's names ---------------------------------------------- */

#ifndef GC16_NO_ORIGINAL_NAMES
/* Same as gc16_encode_B. */
int encode_B(const char *s, char out[3]);
/* Same as gc16_decode_B. */
int decode_B(const char *s, unsigned char *out, size_t *err_pos);
/* Same as gc16_pairint. */
uint16_t pairint(const unsigned char p[2]);
/* Same as gc16_intpair (with the prototype's precedence bug fixed). */
void intpair(uint16_t v, unsigned char out[2]);
#endif

#ifdef __cplusplus
}
#endif

#endif /* GC16_C16_H */
