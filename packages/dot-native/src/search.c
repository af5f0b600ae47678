// The gallery search kernel of src/gallery/kernel/search.wat, for CPUs with AVX-512 VNNI, which
// V8 does not use: one VPDPBUSD multiplies 64 row codes (unsigned, 0..127) by 64 query codes
// (signed, -63..63) and adds them in fours to 16 sums. Eight queries over a million faces took
// 1.55x less time than with the WebAssembly kernel (AMD EPYC, 2026-12-07); one, bound by memory,
// the same.
// Same memory, same arguments, same candidates as the WebAssembly kernel: every row's score is
// the same float32, and each query's rows are offered to its heap in the same order, so the heaps
// end the same. dot-kernel.ts checks that at start, as it does for each WebAssembly form.
//
// Sums. Each of the 16 rows of a group gets a 512-bit vector of 16 partial sums; a tree of
// shuffles and adds turns the 16 vectors into one vector of the 16 rows' sums (in a lane order
// of its own, put back in row order by one permutation).
#include <immintrin.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

#define GROUP_ROWS 16
#define CHUNK_BYTES 64

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

// Candidates, as search.wat keeps them at `state`: worst[queries] f32, used[queries] i32, then per
// query kept[count] f32 and found[count] i32, a min-heap of scores and row numbers.
typedef struct {
  uint8_t *memory;
  uint32_t state, queries, count;
} Candidates;

static float *worst_of(const Candidates *c, uint32_t q) { return (float *)(c->memory + c->state) + q; }
static int32_t *used_of(const Candidates *c, uint32_t q) { return (int32_t *)(c->memory + c->state + c->queries * 4) + q; }
static float *kept_of(const Candidates *c, uint32_t q) { return (float *)(c->memory + c->state + c->queries * 8 + q * c->count * 8); }

// search.wat's $siftUp and $siftDown, comparisons as written there.
static void sift_up(float *kept, int32_t *found, uint32_t place, float score, int32_t row) {
  while (place > 0) {
    uint32_t parent = (place - 1) >> 1;
    if (kept[parent] <= score) break;
    kept[place] = kept[parent];
    found[place] = found[parent];
    place = parent;
  }
  kept[place] = score;
  found[place] = row;
}

static void sift_down(float *kept, int32_t *found, uint32_t count, float score, int32_t row) {
  uint32_t place = 0;
  for (;;) {
    uint32_t child = 2 * place + 1;
    if (child >= count) break;
    if (child + 1 < count && kept[child + 1] < kept[child]) child++;
    if (kept[child] >= score) break;
    kept[place] = kept[child];
    found[place] = found[child];
    place = child;
  }
  kept[place] = score;
  found[place] = row;
}

// search.wat's $offer.
static void offer(const Candidates *c, uint32_t q, float score, int32_t row) {
  float *worst = worst_of(c, q);
  if (!(score > *worst)) return;
  int32_t *used = used_of(c, q);
  float *kept = kept_of(c, q);
  int32_t *found = (int32_t *)(kept + c->count);
  uint32_t filled = (uint32_t)*used;
  if (filled < c->count) {
    sift_up(kept, found, filled, score, row);
    *used = (int32_t)++filled;
    if (filled == c->count) *worst = kept[0];
  } else {
    sift_down(kept, found, c->count, score, row);
    *worst = kept[0];
  }
}

// The 64 bytes at `at`, or the first 32 of them when only those belong to the row (stride a
// multiple of 32): masked loads never touch the bytes left out.
VNNI static inline __m512i load_chunk(const uint8_t *at, uint32_t left) {
  return left >= CHUNK_BYTES ? _mm512_loadu_si512(at) : _mm512_maskz_loadu_epi8(0xFFFFFFFFull, at);
}

// Lane 4k + j of the tree's result holds the sum of row k + 4j (derived from the shuffles below),
// so row r's sum is in lane ROW_LANE[r] of this table, which is its own inverse.
static const int32_t ROW_LANE[GROUP_ROWS] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// The 16 vectors' lane sums, transposed as ROW_LANE says.
VNNI static inline __m512i sum_tree(__m512i v[GROUP_ROWS]) {
  __m512i halves[8], quarters[4], eighths[2];
  for (int i = 0; i < 8; i++) {
    __m512i x = v[2 * i], y = v[2 * i + 1];
    halves[i] = _mm512_add_epi32(_mm512_shuffle_i64x2(x, y, 0x44), _mm512_shuffle_i64x2(x, y, 0xEE));
  }
  for (int i = 0; i < 4; i++) {
    __m512i x = halves[2 * i], y = halves[2 * i + 1];
    quarters[i] = _mm512_add_epi32(_mm512_shuffle_i64x2(x, y, 0x88), _mm512_shuffle_i64x2(x, y, 0xDD));
  }
  for (int i = 0; i < 2; i++) {
    __m512i x = quarters[2 * i], y = quarters[2 * i + 1];
    eighths[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y));
  }
  return _mm512_add_epi32(_mm512_unpacklo_epi64(eighths[0], eighths[1]), _mm512_unpackhi_epi64(eighths[0], eighths[1]));
}

// One row's codes against one query's, 64 codes per instruction: 16 partial sums of the dot product.
VNNI static inline __m512i row_sums(const uint8_t *row, const uint8_t *query, uint32_t stride) {
  __m512i sum = _mm512_setzero_si512();
  for (uint32_t d = 0; d < stride; d += CHUNK_BYTES) sum = _mm512_dpbusd_epi32(sum, load_chunk(row + d, stride - d), load_chunk(query + d, stride - d));
  return sum;
}

// search.wat's `search`, with its arguments (offsets into `memory`).
VNNI static void search(uint8_t *memory, uint32_t codes, uint32_t rows, uint32_t stride, uint32_t scales, uint32_t at, uint32_t queries,
                        uint32_t offsets, uint32_t state, uint32_t count, uint32_t first) {
  const Candidates c = {memory, state, queries, count};
  const int32_t *offset = (const int32_t *)(memory + offsets);
  const float *scale = (const float *)(memory + scales);
  const uint8_t *query_codes = memory + at;
  // Lane r of the permuted sums takes the tree's lane that holds row r.
  const __m512i row_order = _mm512_loadu_si512(ROW_LANE);
  uint32_t row = 0;
  for (; row + GROUP_ROWS <= rows; row += GROUP_ROWS) {
    const uint8_t *group = memory + codes + (size_t)row * stride;
    const __m512 group_scales = _mm512_loadu_ps(scale + row);
    for (uint32_t q = 0; q < queries; q++) {
      const uint8_t *query = query_codes + (size_t)q * stride;
      __m512i sums[GROUP_ROWS];
      if (q == 0) {
        // Row by row, each front to back, the order the memory streams in (one query: 1.6x faster
        // than the order below); this brings the group into the L1 cache for the other queries.
        for (int r = 0; r < GROUP_ROWS; r++) sums[r] = row_sums(group + (size_t)r * stride, query, stride);
      } else {
        // From the cache, a step of the query's codes kept in a register for the 16 rows (eight
        // queries: 1.2x faster than row by row).
        for (int r = 0; r < GROUP_ROWS; r++) sums[r] = _mm512_setzero_si512();
        for (uint32_t d = 0; d < stride; d += CHUNK_BYTES) {
          const __m512i part = load_chunk(query + d, stride - d);
          for (int r = 0; r < GROUP_ROWS; r++) sums[r] = _mm512_dpbusd_epi32(sums[r], load_chunk(group + (size_t)r * stride + d, stride - d), part);
        }
      }
      const __m512i dots = _mm512_permutexvar_epi32(row_order, sum_tree(sums));
      const __m512 scores = _mm512_mul_ps(group_scales, _mm512_cvtepi32_ps(_mm512_sub_epi32(dots, _mm512_set1_epi32(offset[q]))));
      __mmask16 better = _mm512_cmp_ps_mask(scores, _mm512_set1_ps(*worst_of(&c, q)), _CMP_GT_OQ);
      if (better == 0) continue;
      float each[GROUP_ROWS];
      _mm512_storeu_ps(each, scores);
      for (int r = 0; r < GROUP_ROWS; r++) {
        if (better & (1u << r)) offer(&c, q, each[r], (int32_t)(first + row + (uint32_t)r));
      }
    }
  }
  // The last rows, fewer than a group, one at a time.
  for (; row < rows; row++) {
    const uint8_t *codes_of_row = memory + codes + (size_t)row * stride;
    for (uint32_t q = 0; q < queries; q++) {
      const int32_t dot = _mm512_reduce_add_epi32(row_sums(codes_of_row, query_codes + (size_t)q * stride, stride));
      offer(&c, q, scale[row] * (float)(dot - offset[q]), (int32_t)(first + row));
    }
  }
}

static bool cpu_has_vnni(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}

#define ARGUMENTS 11

// search(memory: Uint8Array over the whole shared memory, ...the ten offsets and counts of search.wat's search)
static napi_value Search(napi_env env, napi_callback_info info) {
  size_t argc = ARGUMENTS;
  napi_value argv[ARGUMENTS];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != ARGUMENTS) {
    napi_throw_type_error(env, NULL, "search takes the memory and ten numbers");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "search's memory must be a Uint8Array");
    return NULL;
  }
  uint32_t n[ARGUMENTS - 1];
  for (int i = 0; i < ARGUMENTS - 1; i++) {
    if (napi_get_value_uint32(env, argv[i + 1], &n[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "search's offsets and counts must be numbers");
      return NULL;
    }
  }
  const uint64_t stride = n[2], rows = n[1], queries = n[5], count = n[8];
  // The regions it reads and writes must lie inside the memory: a wrong offset is an error, not a crash.
  const bool inside = stride % 32 == 0 && (uint64_t)n[0] + rows * stride <= length && (uint64_t)n[3] + rows * 4 <= length &&
                      (uint64_t)n[4] + queries * stride <= length && (uint64_t)n[6] + queries * 4 <= length &&
                      (uint64_t)n[7] + queries * 8 + queries * count * 8 <= length;
  if (!inside) {
    napi_throw_range_error(env, NULL, "search's regions are out of bounds of its memory");
    return NULL;
  }
  search((uint8_t *)data, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9]);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value supported, search_fn;
  napi_get_boolean(env, cpu_has_vnni(), &supported);
  napi_set_named_property(env, exports, "supported", supported);
  napi_create_function(env, "search", NAPI_AUTO_LENGTH, Search, NULL, &search_fn);
  napi_set_named_property(env, exports, "search", search_fn);
  return exports;
}
