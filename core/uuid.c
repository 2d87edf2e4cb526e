/*
 * uuid.c - UUIDv7 generation (see uuid.h).  Per-thread generator state;
 * the only system call is getrandom() at init.
 */
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "verdict/uuid.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static uint64_t next_rand(vd_uuidgen_t *g) {
  uint64_t s1 = g->state[0];
  const uint64_t s0 = g->state[1];
  g->state[0] = s0;
  s1 ^= s1 << 23;
  g->state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return g->state[1] + s0;
}

void vd_uuidgen_init(vd_uuidgen_t *g) {
  memset(g, 0, sizeof *g);
  if (getrandom(g->state, sizeof g->state, 0) != (ssize_t)sizeof g->state) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    g->state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)g << 17);
    g->state[1] = (uint64_t)ts.tv_sec * 6364136223846793005ULL + 1;
  }
  if (!g->state[0] && !g->state[1])
    g->state[1] = 1;
}

#if defined(__SSE2__) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define UUID_SSE2 1
#else
/* "00" to "ff": a byte's two hex digits at 2 * byte. */
static const char hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

/* The byte (w >> shift) & 0xff as two hex digits at out. */
#define HEX_BYTE(out, w, shift) \
  memcpy((out), hex_pairs + 2 * (((w) >> (shift)) & 0xff), 2)
#endif

void vd_uuid_v7(vd_uuidgen_t *g, int64_t now_ms, char out[37]) {
  uint64_t r = next_rand(g), hi, lo;
  if (now_ms <= g->last_ms) {
    /* same (or a earlier) millisecond: count up; on overflow borrow the
     * next millisecond so ids stay ordered */
    if (++g->counter > 0xFFF) {
      g->counter = 0;
      g->last_ms++;
    }
    now_ms = g->last_ms;
  } else {
    g->last_ms = now_ms;
    g->counter = (unsigned)(r >> 52) & 0x3FF; /* random start, room to count */
  }
  /* the 16 bytes as two big-endian words: 48 bits of milliseconds, the
   * version and the counter; the variant and 62 random bits; written 16
   * digits at a time where SSE2 is, else each byte as a pair of digits
   * from a table (a digit at a time was 430 instructions an id) */
  hi = ((uint64_t)now_ms & 0xFFFFFFFFFFFFull) << 16 |
       (uint64_t)((0x70 | (g->counter >> 8)) & 0xFF) << 8 |
       (uint64_t)(g->counter & 0xFF);
  r = next_rand(g);
  lo = (uint64_t)(0x80 | ((r >> 56) & 0x3F)) << 56 |
       (r & 0x00FFFFFFFFFFFFFFull);
#if defined(UUID_SSE2)
  {
    /* all 32 digits at once: each byte's nibbles side by side, '0' added,
     * and 'a' - '0' - 10 more for those above 9; then placed around the
     * dashes */
    uint64_t be[2];
    char hex[32];
    __m128i v, hin, lon, d0, d1;
    const __m128i low = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9),
                  zero = _mm_set1_epi8('0'), af = _mm_set1_epi8('a' - '0' - 10);
    be[0] = __builtin_bswap64(hi);
    be[1] = __builtin_bswap64(lo);
    v = _mm_loadu_si128((const __m128i *)(const void *)be);
    hin = _mm_and_si128(_mm_srli_epi16(v, 4), low);
    lon = _mm_and_si128(v, low);
    d0 = _mm_unpacklo_epi8(hin, lon);
    d1 = _mm_unpackhi_epi8(hin, lon);
    d0 = _mm_add_epi8(_mm_add_epi8(d0, zero),
                      _mm_and_si128(_mm_cmpgt_epi8(d0, nine), af));
    d1 = _mm_add_epi8(_mm_add_epi8(d1, zero),
                      _mm_and_si128(_mm_cmpgt_epi8(d1, nine), af));
    _mm_storeu_si128((__m128i *)(void *)hex, d0);
    _mm_storeu_si128((__m128i *)(void *)(hex + 16), d1);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
  }
#else
  HEX_BYTE(out, hi, 56);
  HEX_BYTE(out + 2, hi, 48);
  HEX_BYTE(out + 4, hi, 40);
  HEX_BYTE(out + 6, hi, 32);
  out[8] = '-';
  HEX_BYTE(out + 9, hi, 24);
  HEX_BYTE(out + 11, hi, 16);
  out[13] = '-';
  HEX_BYTE(out + 14, hi, 8);
  HEX_BYTE(out + 16, hi, 0);
  out[18] = '-';
  HEX_BYTE(out + 19, lo, 56);
  HEX_BYTE(out + 21, lo, 48);
  out[23] = '-';
  HEX_BYTE(out + 24, lo, 40);
  HEX_BYTE(out + 26, lo, 32);
  HEX_BYTE(out + 28, lo, 24);
  HEX_BYTE(out + 30, lo, 16);
  HEX_BYTE(out + 32, lo, 8);
  HEX_BYTE(out + 34, lo, 0);
#endif
  out[36] = '\0';
}
