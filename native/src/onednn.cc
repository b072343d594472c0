// oneDNN engine, per-thread streams and the least-recently-used primitive cache.
#include "onednn.h"

#include <list>
#include <stdexcept>
#include <unordered_map>

namespace graft::onednn {

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& stream() {
  static thread_local dnnl::stream s(engine());
  return s;
}

namespace {

constexpr size_t kCapacity = 256;

struct Cache {
  std::list<std::pair<std::string, Primitive>> order;  // most recently used first
  std::unordered_map<std::string, std::list<std::pair<std::string, Primitive>>::iterator> index;
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

const Primitive& cached(const std::string& key, const std::function<Primitive()>& build) {
  Cache& c = cache();
  auto it = c.index.find(key);
  if (it != c.index.end()) {
    c.order.splice(c.order.begin(), c.order, it->second);
    return it->second->second;
  }
  c.order.emplace_front(key, build());
  c.index[key] = c.order.begin();
  if (c.order.size() > kCapacity) {
    c.index.erase(c.order.back().first);
    c.order.pop_back();
  }
  return c.order.front().second;
}

void pack_weights(float* packed, int64_t length, const memory::desc& from, const float* w, const memory::desc& to) {
  if (length < packed_length(to)) throw std::invalid_argument("the packed buffer is shorter than the packed length for this geometry");
  std::memcpy(packed, &to.data, sizeof(dnnl_memory_desc_t));
  memory src = mem(from, w), dst = mem(to, packed + kPackHeader);
  dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to)).execute(stream(), src, dst);
  stream().wait();
}

bool packed_as(const float* packed, int64_t length, const memory::desc& md) {
  if (length < packed_length(md)) return false;
  dnnl_memory_desc_t header;
  std::memcpy(&header, packed, sizeof header);
  return memory::desc(header) == md;
}

}  // namespace graft::onednn
