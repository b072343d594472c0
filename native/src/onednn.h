// The oneDNN context every oneDNN-backed kernel shares: one CPU engine, one stream, and a bounded
// cache of built primitives. Building a primitive descriptor costs far more than running a small
// primitive (a 64³ matmul runs in ~5 µs), so each is built once per shape and reused.
// oneDNN 2.x API: the op-descriptor + primitive_desc constructors used throughout differ in 3.x.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <string>
#include <vector>

namespace graft::onednn {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& engine();
// The stream of the calling thread (kernels run on the JavaScript thread; attention also
// executes primitives from OpenMP worker threads, each on its own stream).
dnnl::stream& stream();

// A built primitive with the memory descriptors its arguments use, for primitives built with
// a user-managed scratchpad the scratchpad size in bytes, and any helper primitives (such as
// reorders between the caller's layouts and the primitive's) that run alongside it.
struct Primitive {
  dnnl::primitive prim;
  std::vector<memory::desc> mds;
  size_t scratchpad = 0;
  std::vector<dnnl::primitive> aux = {};
};

// The primitive cached under `key`, built by `build` on a miss; least recently used entries are
// dropped beyond 256. Not thread-safe: call it outside parallel regions, and copy the Primitive
// (its handles are reference-counted) before using it from several threads.
const Primitive& cached(const std::string& key, const std::function<Primitive()>& build);

// Cache keys are built on every call, so without a stream (an ostringstream costs microseconds).
inline void keyPart(std::string& s, bool v) { s += v ? ",1" : ",0"; }
inline void keyPart(std::string& s, const char* v) {
  s += ',';
  s += v;
}
inline void keyPart(std::string& s, const std::string& v) {
  s += ',';
  s += v;
}
// Floating-point parts by their bit pattern: distinct values never share a key.
inline void keyPart(std::string& s, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof v);
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, bits, 16);
  s += ",f";
  s.append(buf, r.ptr);
}
inline void keyPart(std::string& s, float v) { keyPart(s, static_cast<double>(v)); }
template <typename T>
void keyPart(std::string& s, T v) {
  static_assert(std::is_integral_v<T> || std::is_enum_v<T>, "cache key parts are integers, enums, bools or strings");
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
  s += ',';
  s.append(buf, r.ptr);
}

template <typename... T>
std::string key(const char* name, T... parts) {
  std::string s(name);
  s.reserve(96);
  (keyPart(s, parts), ...);
  return s;
}

inline memory mem(const memory::desc& md, const void* p) { return memory(md, engine(), const_cast<void*>(p)); }

// Packed weights (conv.cc, matmul.cc): weights reordered once into the layout a primitive picked
// for them (format_tag::any), behind a header of kPackHeader floats that holds that layout's
// memory descriptor. Each call compares the header with its primitive's weights descriptor, so
// weights packed for another layout are never misread.
constexpr size_t kPackHeader = (sizeof(dnnl_memory_desc_t) + 63) / 64 * 16;
// Floats a packed copy of weights in layout `md` takes, header included.
inline int64_t packed_length(const memory::desc& md) { return static_cast<int64_t>(kPackHeader + (md.get_size() + sizeof(float) - 1) / sizeof(float)); }
// Reorders `from` (the plain weights at w) into `packed` in layout `to`, header first.
void pack_weights(float* packed, int64_t length, const memory::desc& from, const float* w, const memory::desc& to);
// Whether `packed` (of `length` floats) holds weights in layout `md`.
bool packed_as(const float* packed, int64_t length, const memory::desc& md);

}  // namespace graft::onednn
