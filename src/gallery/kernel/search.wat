;; The gallery search kernel: scores the 7-bit codes of stored faces against a batch of 7-bit
;; query codes and keeps, per query, the best rows in a small heap. Compiled at start by wabt
;; (dot-kernel.ts) and run by one worker thread per core, all on one shared memory. Where relaxed
;; SIMD is missing or inexact (Node 20), dot-kernel.ts spells each relaxed dot product in plain
;; SIMD: keep their two operands `local.get`s.
;;
;; Codes. A stored row is `stride` bytes (its dimension rounded up to 32): each component as
;; c + 64, c in -63..63, so that every byte is in 0..127, the range in which
;; i16x8.relaxed_dot_i8x16_i7x16_s is exact on every CPU. A query is `stride` signed bytes in
;; -63..63. The dot product of the codes is then sum((c + 64) * q) - 64 * sum(q): the caller
;; passes 64 * sum(q) per query in `offsets`.
;;
;; Steps. A row is read 32 bytes (two vectors) at a time: each vector's 16-bit dot product with the
;; query holds sums of two products, the two are added in 16 bits (four products of at most
;; 127 x 63 each: 32,004 < 32,767) and widened to 32 bits once per step (i32x4.dot_i16x8_s with
;; ones), not once per vector: three multiplies per step instead of four, and no constant rebuilt
;; per product (on an AVX-512 CPU without AVX-VNNI, 2026-12-06: eight queries over a million
;; faces 1.33-1.36x faster, one 1.10-1.12x). With AVX-VNNI or an ARM CPU's dot product, one
;; i32x4.relaxed_dot_i8x16_i7x16_add_s per vector is one instruction and may be faster: dot-kernel.ts
;; derives that form from each step (keep a step's text as it is) and times both at start.
;;
;; Tiles. Rows are read four at a time (a tile) and each tile is scored against the queries two
;; at a time (an odd one out alone), so that every 16 bytes loaded feed two to four products; the
;; rows of a tile stay in the L1 cache while the queries loop, so the codes are read from memory
;; once per batch. A share may end inside its last tile: rows past `rows` are scored but never kept.
;;
;; Candidates (`state`, for `queries` queries and `count` places each):
;;   worst[queries] f32   the score a row must beat: the caller's floor, then the heap's root
;;   used[queries]  i32   places filled, 0 at the start
;;   kept[queries][count] f32, then found[queries][count] i32: a min-heap of scores and row numbers
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; Puts (score, row) into the heap at `place` (the next free one) and moves it up past worse parents.
  (func $siftUp (param $kept i32) (param $found i32) (param $place i32) (param $score f32) (param $row i32)
    (local $parent i32)
    (block $placed
      (loop $up
        (br_if $placed (i32.eqz (local.get $place)))
        (local.set $parent (i32.shr_u (i32.sub (local.get $place) (i32.const 1)) (i32.const 1)))
        (br_if $placed (f32.le (call $keptAt (local.get $kept) (local.get $parent)) (local.get $score)))
        (call $move (local.get $kept) (local.get $found) (local.get $parent) (local.get $place))
        (local.set $place (local.get $parent))
        (br $up)))
    (call $put (local.get $kept) (local.get $found) (local.get $place) (local.get $score) (local.get $row)))

  ;; Replaces the heap's root (its worst score) by (score, row) and moves it down past better children.
  (func $siftDown (param $kept i32) (param $found i32) (param $count i32) (param $score f32) (param $row i32)
    (local $place i32) (local $child i32)
    (block $placed
      (loop $down
        (local.set $child (i32.add (i32.shl (local.get $place) (i32.const 1)) (i32.const 1)))
        (br_if $placed (i32.ge_u (local.get $child) (local.get $count)))
        ;; the worse of the two children
        (if (i32.lt_u (i32.add (local.get $child) (i32.const 1)) (local.get $count))
          (then
            (if (f32.lt (call $keptAt (local.get $kept) (i32.add (local.get $child) (i32.const 1)))
                        (call $keptAt (local.get $kept) (local.get $child)))
              (then (local.set $child (i32.add (local.get $child) (i32.const 1)))))))
        (br_if $placed (f32.ge (call $keptAt (local.get $kept) (local.get $child)) (local.get $score)))
        (call $move (local.get $kept) (local.get $found) (local.get $child) (local.get $place))
        (local.set $place (local.get $child))
        (br $down)))
    (call $put (local.get $kept) (local.get $found) (local.get $place) (local.get $score) (local.get $row)))

  (func $keptAt (param $kept i32) (param $place i32) (result f32)
    (f32.load (i32.add (local.get $kept) (i32.shl (local.get $place) (i32.const 2)))))

  (func $put (param $kept i32) (param $found i32) (param $place i32) (param $score f32) (param $row i32)
    (f32.store (i32.add (local.get $kept) (i32.shl (local.get $place) (i32.const 2))) (local.get $score))
    (i32.store (i32.add (local.get $found) (i32.shl (local.get $place) (i32.const 2))) (local.get $row)))

  (func $move (param $kept i32) (param $found i32) (param $from i32) (param $to i32)
    (f32.store (i32.add (local.get $kept) (i32.shl (local.get $to) (i32.const 2)))
      (f32.load (i32.add (local.get $kept) (i32.shl (local.get $from) (i32.const 2)))))
    (i32.store (i32.add (local.get $found) (i32.shl (local.get $to) (i32.const 2)))
      (i32.load (i32.add (local.get $found) (i32.shl (local.get $from) (i32.const 2))))))

  ;; Offers row `row`'s `score` to query `q`'s candidates.
  (func $offer (param $state i32) (param $queries i32) (param $count i32) (param $q i32) (param $score f32) (param $row i32)
    (local $worstAt i32) (local $usedAt i32) (local $kept i32) (local $found i32) (local $used i32)
    (local.set $worstAt (i32.add (local.get $state) (i32.shl (local.get $q) (i32.const 2))))
    (if (i32.eqz (f32.gt (local.get $score) (f32.load (local.get $worstAt)))) (then (return)))
    (local.set $usedAt (i32.add (local.get $worstAt) (i32.shl (local.get $queries) (i32.const 2))))
    (local.set $kept (i32.add (i32.add (local.get $state) (i32.shl (local.get $queries) (i32.const 3)))
                              (i32.shl (i32.mul (local.get $q) (local.get $count)) (i32.const 3))))
    (local.set $found (i32.add (local.get $kept) (i32.shl (local.get $count) (i32.const 2))))
    (local.set $used (i32.load (local.get $usedAt)))
    (if (i32.lt_u (local.get $used) (local.get $count))
      (then
        (call $siftUp (local.get $kept) (local.get $found) (local.get $used) (local.get $score) (local.get $row))
        (local.set $used (i32.add (local.get $used) (i32.const 1)))
        (i32.store (local.get $usedAt) (local.get $used))
        ;; Full: from now on a row must beat the worst kept.
        (if (i32.eq (local.get $used) (local.get $count))
          (then (f32.store (local.get $worstAt) (f32.load (local.get $kept))))))
      (else
        (call $siftDown (local.get $kept) (local.get $found) (local.get $count) (local.get $score) (local.get $row))
        (f32.store (local.get $worstAt) (f32.load (local.get $kept))))))

;; Offers the four scores of a tile's rows (from `row`) to query q, but none past `end`: the
  ;; rare path, taken when one of them beats the query's worst kept score.
  (func $offerTile (param $state i32) (param $queries i32) (param $count i32) (param $q i32)
        (param $scores v128) (param $row i32) (param $end i32)
    (call $offerUpTo (local.get $state) (local.get $queries) (local.get $count) (local.get $q) (f32x4.extract_lane 0 (local.get $scores)) (local.get $row) (local.get $end))
    (call $offerUpTo (local.get $state) (local.get $queries) (local.get $count) (local.get $q) (f32x4.extract_lane 1 (local.get $scores)) (i32.add (local.get $row) (i32.const 1)) (local.get $end))
    (call $offerUpTo (local.get $state) (local.get $queries) (local.get $count) (local.get $q) (f32x4.extract_lane 2 (local.get $scores)) (i32.add (local.get $row) (i32.const 2)) (local.get $end))
    (call $offerUpTo (local.get $state) (local.get $queries) (local.get $count) (local.get $q) (f32x4.extract_lane 3 (local.get $scores)) (i32.add (local.get $row) (i32.const 3)) (local.get $end)))

  (func $offerUpTo (param $state i32) (param $queries i32) (param $count i32) (param $q i32) (param $score f32) (param $row i32) (param $end i32)
    (if (i32.lt_u (local.get $row) (local.get $end))
      (then (call $offer (local.get $state) (local.get $queries) (local.get $count) (local.get $q) (local.get $score) (local.get $row)))))

  ;; Scores `rows` rows of codes at `codes` (their scales, f32, at `scales`) against `queries`
  ;; queries (`stride` bytes each, at `at`; 64 * sum of each one's codes at `offsets`), keeping
  ;; each query's best in `state`. Rows are numbered from `first`. The loops call no function
  ;; (Node 20 does not inline them) but to offer a row.
  (func (export "search") (param $codes i32) (param $rows i32) (param $stride i32) (param $scales i32)
        (param $at i32) (param $queries i32) (param $offsets i32) (param $state i32) (param $count i32) (param $first i32)
    (local $tile i32) (local $end i32) (local $q i32) (local $pair i32) (local $query i32) (local $lane i32) (local $laneEnd i32)
    (local $stride2 i32) (local $stride3 i32) (local $tileScales v128) (local $scores v128) (local $ab v128) (local $cd v128)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local $y0 v128) (local $y1 v128) (local $y2 v128) (local $y3 v128)
    (local $xa v128) (local $xb v128) (local $ya v128) (local $yb v128) (local $ra v128) (local $rb v128) (local $ones v128)
    (local.set $stride2 (i32.shl (local.get $stride) (i32.const 1)))
    (local.set $stride3 (i32.add (local.get $stride2) (local.get $stride)))
    (local.set $ones (v128.const i16x8 1 1 1 1 1 1 1 1))
    (local.set $end (i32.add (local.get $first) (local.get $rows)))
    (block $done
      (loop $tiles
        (br_if $done (i32.ge_u (local.get $tile) (local.get $rows)))
        (local.set $tileScales (v128.load (i32.add (local.get $scales) (i32.shl (local.get $tile) (i32.const 2)))))
        (local.set $laneEnd (i32.add (local.get $codes) (local.get $stride)))
        (local.set $q (i32.const 0))
        (block $tileDone
          (loop $queriesLoop
            (br_if $tileDone (i32.ge_u (local.get $q) (local.get $queries)))
            (local.set $query (i32.add (local.get $at) (i32.mul (local.get $q) (local.get $stride))))
            (local.set $pair (i32.lt_u (i32.add (local.get $q) (i32.const 1)) (local.get $queries)))
            ;; x0..x3: the four rows against query q; y0..y3: against query q + 1; xa, xb (ya, yb): a step of
            ;; query q's (q + 1's) codes; ra, rb: of a row
            (local.set $x0 (v128.const i32x4 0 0 0 0)) (local.set $x1 (v128.const i32x4 0 0 0 0))
            (local.set $x2 (v128.const i32x4 0 0 0 0)) (local.set $x3 (v128.const i32x4 0 0 0 0))
            (local.set $y0 (v128.const i32x4 0 0 0 0)) (local.set $y1 (v128.const i32x4 0 0 0 0))
            (local.set $y2 (v128.const i32x4 0 0 0 0)) (local.set $y3 (v128.const i32x4 0 0 0 0))
            (local.set $lane (local.get $codes))
            (if (local.get $pair)
              (then
                (loop $pairLanes
                  (local.set $xa (v128.load (local.get $query)))
                  (local.set $xb (v128.load offset=16 (local.get $query)))
                  (local.set $ya (v128.load (i32.add (local.get $query) (local.get $stride))))
                  (local.set $yb (v128.load offset=16 (i32.add (local.get $query) (local.get $stride))))
                  (local.set $ra (v128.load (local.get $lane)))
                  (local.set $rb (v128.load offset=16 (local.get $lane)))
                  (local.set $x0 (i32x4.add (local.get $x0) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $y0 (i32x4.add (local.get $y0) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $ya) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $yb) (local.get $rb))) (local.get $ones))))
                  (local.set $ra (v128.load (i32.add (local.get $lane) (local.get $stride))))
                  (local.set $rb (v128.load offset=16 (i32.add (local.get $lane) (local.get $stride))))
                  (local.set $x1 (i32x4.add (local.get $x1) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $y1 (i32x4.add (local.get $y1) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $ya) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $yb) (local.get $rb))) (local.get $ones))))
                  (local.set $ra (v128.load (i32.add (local.get $lane) (local.get $stride2))))
                  (local.set $rb (v128.load offset=16 (i32.add (local.get $lane) (local.get $stride2))))
                  (local.set $x2 (i32x4.add (local.get $x2) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $y2 (i32x4.add (local.get $y2) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $ya) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $yb) (local.get $rb))) (local.get $ones))))
                  (local.set $ra (v128.load (i32.add (local.get $lane) (local.get $stride3))))
                  (local.set $rb (v128.load offset=16 (i32.add (local.get $lane) (local.get $stride3))))
                  (local.set $x3 (i32x4.add (local.get $x3) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $y3 (i32x4.add (local.get $y3) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $ya) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $yb) (local.get $rb))) (local.get $ones))))
                  (local.set $query (i32.add (local.get $query) (i32.const 32)))
                  (local.set $lane (i32.add (local.get $lane) (i32.const 32)))
                  (br_if $pairLanes (i32.lt_u (local.get $lane) (local.get $laneEnd)))))
              (else
                ;; An odd query out (the only one when an image shows one face): the same, alone.
                (loop $singleLanes
                  (local.set $xa (v128.load (local.get $query)))
                  (local.set $xb (v128.load offset=16 (local.get $query)))
                  (local.set $ra (v128.load (local.get $lane)))
                  (local.set $rb (v128.load offset=16 (local.get $lane)))
                  (local.set $x0 (i32x4.add (local.get $x0) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $ra (v128.load (i32.add (local.get $lane) (local.get $stride))))
                  (local.set $rb (v128.load offset=16 (i32.add (local.get $lane) (local.get $stride))))
                  (local.set $x1 (i32x4.add (local.get $x1) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $ra (v128.load (i32.add (local.get $lane) (local.get $stride2))))
                  (local.set $rb (v128.load offset=16 (i32.add (local.get $lane) (local.get $stride2))))
                  (local.set $x2 (i32x4.add (local.get $x2) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $ra (v128.load (i32.add (local.get $lane) (local.get $stride3))))
                  (local.set $rb (v128.load offset=16 (i32.add (local.get $lane) (local.get $stride3))))
                  (local.set $x3 (i32x4.add (local.get $x3) (i32x4.dot_i16x8_s (i16x8.add (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xa) (local.get $ra)) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $xb) (local.get $rb))) (local.get $ones))))
                  (local.set $query (i32.add (local.get $query) (i32.const 32)))
                  (local.set $lane (i32.add (local.get $lane) (i32.const 32)))
                  (br_if $singleLanes (i32.lt_u (local.get $lane) (local.get $laneEnd))))))
            ;; Query q's four scores from x0..x3, then, for a pair, query q + 1's from y0..y3.
            (loop $finish
              ;; [sum of x0's lanes, of x1's, of x2's, of x3's]: first [x0.0 + x0.2, x1.0 + x1.2,
              ;; x0.1 + x0.3, x1.1 + x1.3] and the same for x2, x3
              (local.set $ab (i32x4.add
                (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $x0) (local.get $x1))
                (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $x0) (local.get $x1))))
              (local.set $cd (i32x4.add
                (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $x2) (local.get $x3))
                (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $x2) (local.get $x3))))
              (local.set $scores (i32x4.add
                (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $ab) (local.get $cd))
                (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $ab) (local.get $cd))))
              (local.set $scores (f32x4.mul (local.get $tileScales) (f32x4.convert_i32x4_s (i32x4.sub (local.get $scores)
                (v128.load32_splat (i32.add (local.get $offsets) (i32.shl (local.get $q) (i32.const 2))))))))
              ;; One comparison for four rows: past the first rows, few beat the worst kept.
              (if (v128.any_true (f32x4.gt (local.get $scores)
                    (v128.load32_splat (i32.add (local.get $state) (i32.shl (local.get $q) (i32.const 2))))))
                (then (call $offerTile (local.get $state) (local.get $queries) (local.get $count) (local.get $q)
                  (local.get $scores) (i32.add (local.get $first) (local.get $tile)) (local.get $end))))
              (local.set $q (i32.add (local.get $q) (i32.const 1)))
              (if (local.get $pair)
                (then
                  (local.set $x0 (local.get $y0)) (local.set $x1 (local.get $y1))
                  (local.set $x2 (local.get $y2)) (local.set $x3 (local.get $y3))
                  (local.set $pair (i32.const 0))
                  (br $finish))))
            (br $queriesLoop)))
        (local.set $codes (i32.add (local.get $codes) (i32.shl (local.get $stride) (i32.const 2))))
        (local.set $tile (i32.add (local.get $tile) (i32.const 4)))
        (br $tiles))))
)
