#include "taskexec/base64.hpp"

#include <array>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#define TASKEXEC_BASE64_AVX2 1
#endif

namespace taskexec {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Two output characters for each 12-bit value: half the lookups of one per
// 6 bits (an exec session's output is all base64).
constexpr std::array<std::array<char, 2>, 4096> pairs = [] {
  std::array<std::array<char, 2>, 4096> t{};
  for (std::size_t i = 0; i < 4096; ++i)
    t[i] = {alphabet[i >> 6], alphabet[i & 63]};
  return t;
}();

// For each position in a group of four, the character's 6 bits already in
// place; `bad` marks a character outside the alphabet (or '=').
constexpr std::uint32_t bad = 1u << 24;
constexpr std::array<std::array<std::uint32_t, 256>, 4> decode_tables = [] {
  std::array<std::array<std::uint32_t, 256>, 4> t{};
  for (auto& pos : t)
    for (auto& v : pos)
      v = bad;
  for (std::uint32_t i = 0; i < 64; ++i) {
    const auto c = static_cast<unsigned char>(alphabet[i]);
    t[0][c] = i << 18;
    t[1][c] = i << 12;
    t[2][c] = i << 6;
    t[3][c] = i;
  }
  return t;
}();

std::uint32_t group(const unsigned char* in) {
  return decode_tables[0][in[0]] | decode_tables[1][in[1]] | decode_tables[2][in[2]] |
         decode_tables[3][in[3]];
}

#if TASKEXEC_BASE64_AVX2
// 24 bytes to 32 characters and 32 characters to 24 bytes per step, after
// Wojciech Mula and Daniel Lemire ("Faster Base64 Encoding and Decoding
// using AVX2 Instructions", 2018). An exec session's data is all base64, on
// both sides of the socket.
bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// Returns how many input bytes were encoded (a multiple of 24; at least 4
// bytes are left for the scalar tail, as each step reads 28).
__attribute__((target("avx2"))) std::size_t encode_avx2(const unsigned char* in, std::size_t n,
                                                        char* out) {
  const __m256i shuffle = _mm256_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1, 14, 15,
                                          13, 14, 11, 12, 10, 11, 8, 9, 7, 8, 5, 6, 4, 5);
  const __m256i offsets =
      _mm256_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0, 65, 71, -4,
                       -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0);
  std::size_t i = 0;
  for (; i + 28 <= n; i += 24) {
    // Bytes 0..11 at 4..15 of the low lane, 12..23 at 0..11 of the high one.
    const __m128i lo = _mm_slli_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)), 4);
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + 12));
    __m256i v = _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), shuffle);
    // Four 6-bit values per 3 bytes, each in a byte of its own.
    const __m256i t0 = _mm256_and_si256(v, _mm256_set1_epi32(0x0fc0fc00));
    const __m256i t1 = _mm256_mulhi_epu16(t0, _mm256_set1_epi32(0x04000040));
    const __m256i t2 = _mm256_and_si256(v, _mm256_set1_epi32(0x003f03f0));
    const __m256i t3 = _mm256_mullo_epi16(t2, _mm256_set1_epi32(0x01000010));
    v = _mm256_or_si256(t1, t3);
    // 0..25 'A', 26..51 'a', 52..61 '0', 62 '+', 63 '/'.
    __m256i idx = _mm256_subs_epu8(v, _mm256_set1_epi8(51));
    idx = _mm256_sub_epi8(idx, _mm256_cmpgt_epi8(v, _mm256_set1_epi8(25)));
    v = _mm256_add_epi8(v, _mm256_shuffle_epi8(offsets, idx));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i / 3 * 4), v);
  }
  return i;
}

// Returns how many characters were decoded (a multiple of 32); stops at the
// first block holding anything but the alphabet (the scalar code judges
// it). Each step writes 32 bytes of which 24 count: `out_room` must allow.
__attribute__((target("avx2"))) std::size_t decode_avx2(const unsigned char* in, std::size_t n,
                                                        char* out, std::size_t out_room) {
  const __m256i lut_lo =
      _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B,
                       0x1B, 0x1B, 0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                       0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
  const __m256i lut_hi =
      _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10,
                       0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10,
                       0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
  const __m256i lut_roll =
      _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 19, 4, -65,
                       -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256i mask_2f = _mm256_set1_epi8(0x2f);
  const __m256i pack = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2,
                                        1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
  std::size_t i = 0, o = 0;
  for (; i + 32 <= n && o + 32 <= out_room; i += 32, o += 24) {
    __m256i str = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    const __m256i hi_nibbles = _mm256_and_si256(_mm256_srli_epi32(str, 4), mask_2f);
    const __m256i lo_nibbles = _mm256_and_si256(str, mask_2f);
    const __m256i lo = _mm256_shuffle_epi8(lut_lo, lo_nibbles);
    const __m256i hi = _mm256_shuffle_epi8(lut_hi, hi_nibbles);
    if (!_mm256_testz_si256(lo, hi))
      break;  // not the alphabet ('=' included)
    const __m256i eq_2f = _mm256_cmpeq_epi8(str, mask_2f);
    const __m256i roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(eq_2f, hi_nibbles));
    str = _mm256_add_epi8(str, roll);
    // Four 6-bit values to three bytes, big-endian, 12 per lane, then 24 in a row.
    const __m256i ab_bc = _mm256_maddubs_epi16(str, _mm256_set1_epi32(0x01400140));
    __m256i v = _mm256_madd_epi16(ab_bc, _mm256_set1_epi32(0x00011000));
    v = _mm256_shuffle_epi8(v, pack);
    v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, -1, -1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + o), v);
  }
  return i;
}
#endif

}  // namespace

void base64_append(std::string& out, std::string_view bytes) {
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  const std::size_t start = out.size();
  out.resize(start + (n + 2) / 3 * 4);
  char* o = out.data() + start;
  std::size_t i = 0;
#if TASKEXEC_BASE64_AVX2
  if (have_avx2()) {
    i = encode_avx2(in, n, o);
    o += i / 3 * 4;
  }
#endif
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v =
        (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    std::memcpy(o, pairs[v >> 12].data(), 2);
    std::memcpy(o + 2, pairs[v & 0xfff].data(), 2);
    o += 4;
  }
  if (i < n) {
    std::uint32_t v = std::uint32_t{in[i]} << 16;
    if (i + 1 < n)
      v |= std::uint32_t{in[i + 1]} << 8;
    *o++ = alphabet[v >> 18];
    *o++ = alphabet[(v >> 12) & 63];
    *o++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  base64_append(out, bytes);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  if (!base64_decode_append(out, text))
    return std::nullopt;
  return out;
}

bool base64_decode_append(std::string& out, std::string_view text) {
  const std::size_t n = text.size();
  if (n % 4 != 0)
    return false;
  if (n == 0)
    return true;
  const std::size_t start = out.size();
  out.resize(start + n / 4 * 3);
  char* o = out.data() + start;
  auto fail = [&] {
    out.resize(start);
    return false;
  };
  const auto* in = reinterpret_cast<const unsigned char*>(text.data());
  // Every group but the last: no padding allowed.
  const std::size_t body = n - 4;
  std::size_t i = 0;
#if TASKEXEC_BASE64_AVX2
  if (have_avx2()) {
    i = decode_avx2(in, body, o, out.size() - start);
    o += i / 4 * 3;
  }
#endif
  for (; i < body; i += 4) {
    const std::uint32_t v = group(in + i);
    if (v & bad)
      return fail();
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    o[2] = static_cast<char>(v);
    o += 3;
  }
  // The last group: "xxxx", "xxx=" or "xx==".
  const unsigned char* last = in + body;
  std::size_t keep = 3;
  unsigned char g[4] = {last[0], last[1], last[2], last[3]};
  if (g[3] == '=') {
    keep = g[2] == '=' ? 1 : 2;
    g[3] = 'A';
    if (keep == 1)
      g[2] = 'A';
  }
  const std::uint32_t v = group(g);
  if (v & bad)
    return fail();
  // The bits padding covers must be zero (RFC 4648 3.5): only the
  // canonical text of some bytes decodes, so text and bytes map one to one.
  if ((keep == 1 && (v & 0xffff)) || (keep == 2 && (v & 0xff)))
    return fail();
  o[0] = static_cast<char>(v >> 16);
  if (keep > 1)
    o[1] = static_cast<char>(v >> 8);
  if (keep > 2)
    o[2] = static_cast<char>(v);
  out.resize(static_cast<std::size_t>(o - out.data()) + keep);
  return true;
}

}  // namespace taskexec
