// Row-major walks over strided views, shared by the binary, select, copy and fill kernels.
// Adjacent axes that are contiguous for every operand are merged first, so most walks become
// one long row or a matrix of rows; rows run in parallel (a single row is split instead).
#pragma once
#include <algorithm>
#include <array>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace graft {

template <size_t K>
struct Walk {
  std::vector<int64_t> shape;                  // collapsed sizes, at least one axis
  std::array<std::vector<int64_t>, K> strides;  // per operand, per collapsed axis
  std::array<int64_t, K> offset;
  int64_t rows() const {
    int64_t r = 1;
    for (size_t d = 0; d + 1 < shape.size(); d++) r *= shape[d];
    return r;
  }
  int64_t inner() const { return shape.back(); }
  int64_t numel() const { return rows() * inner(); }
};

// `views` all have `shape`'s rank; axes of size 1 are dropped. The walk is elementwise, so its
// axes are taken in the order of the first operand's (the destination's) strides, largest first:
// a channels-last destination then walks its own rows, and axes contiguous in every operand merge.
template <size_t K>
Walk<K> collapse(const std::vector<int64_t>& shape, const std::array<const View*, K>& views) {
  Walk<K> w;
  for (size_t o = 0; o < K; o++) w.offset[o] = views[o]->offset;
  std::vector<size_t> order(shape.size());
  for (size_t d = 0; d < order.size(); d++) order[d] = d;
  const std::vector<int64_t>& lead = views[0]->strides;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lead[a] > lead[b]; });
  for (size_t d : order) {
    if (shape[d] == 1) continue;
    bool merge = !w.shape.empty();
    for (size_t o = 0; o < K && merge; o++) merge = w.strides[o].back() == views[o]->strides[d] * shape[d];
    if (merge) {
      w.shape.back() *= shape[d];
      for (size_t o = 0; o < K; o++) w.strides[o].back() = views[o]->strides[d];
    } else {
      w.shape.push_back(shape[d]);
      for (size_t o = 0; o < K; o++) w.strides[o].push_back(views[o]->strides[d]);
    }
  }
  bool empty = std::find(shape.begin(), shape.end(), 0) != shape.end();
  if (empty || w.shape.empty()) {
    w.shape.assign(1, empty ? 0 : 1);
    for (size_t o = 0; o < K; o++) w.strides[o].assign(1, 0);
  }
  return w;
}

// The operands' element offsets at the start of row r (all axes but the last).
template <size_t K>
inline void row_offsets(const Walk<K>& w, int64_t r, int64_t (&off)[K]) {
  for (size_t o = 0; o < K; o++) off[o] = w.offset[o];
  for (int64_t d = static_cast<int64_t>(w.shape.size()) - 2; d >= 0; d--) {
    int64_t idx = r % w.shape[d];
    r /= w.shape[d];
    for (size_t o = 0; o < K; o++) off[o] += idx * w.strides[o][d];
  }
}

// row(r, off, lo, hi) for elements [lo, hi) of every row r; off holds the operands' offsets at the
// row's start. The flat row-major index of element i of row r is r·inner + i.
template <size_t K, typename F>
void for_rows(const Walk<K>& w, F row) {
  int64_t rows = w.rows(), inner = w.inner();
  if (rows == 1) {
    int64_t off[K];
    for (size_t o = 0; o < K; o++) off[o] = w.offset[o];
    parallel_chunks(inner, inner, [&](int64_t lo, int64_t hi) { row(int64_t{0}, off, lo, hi); });
    return;
  }
  parallel_chunks(rows, rows * inner, [&](int64_t lo, int64_t hi) {
    int64_t off[K];
    for (int64_t r = lo; r < hi; r++) {
      row_offsets(w, r, off);
      row(r, off, int64_t{0}, inner);
    }
  });
}

}  // namespace graft
