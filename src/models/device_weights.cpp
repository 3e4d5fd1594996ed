#include "models/device_weights.h"

#include "core/check.h"

namespace foley {

Tensor place_weight(Backend& backend, const Tensor& t, std::unique_ptr<Arena>& arena,
                    const std::function<size_t()>& reserve) {
  if (t.device() == backend.device()) return t;
  FOLEY_CHECK(t.device() == DeviceKind::kCPU, "weight %s is on a device the %s backend cannot use",
              t.describe().c_str(), backend.name().c_str());
  FOLEY_CHECK(t.is_contiguous(), "weight %s is not contiguous", t.describe().c_str());
  if (!arena) arena = std::make_unique<Arena>(backend.block_allocator(), reserve());
  Tensor dev = arena->alloc(t.shape(), t.dtype());
  backend.copy_from_host(dev, t);
  return dev;
}

size_t weight_arena_bytes(const WeightStore& store,
                          std::initializer_list<std::string_view> prefixes, size_t extra) {
  auto rounded = [](size_t b) {
    return (b + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
  };
  size_t total = rounded(extra);
  for (const SafetensorsEntry& e : store.file().entries())
    for (std::string_view p : prefixes)
      if (std::string_view(e.name).substr(0, p.size()) == p) {
        total += rounded(static_cast<size_t>(e.end - e.begin));
        break;
      }
  return total;
}

Tensor host_weight(const WeightStore& store, const std::string& name, const Shape& shape,
                   std::initializer_list<DType> allowed) {
  const Tensor t = store.get(name, shape, allowed);
  if (t.device() == DeviceKind::kCPU) return t;
  return store.file().tensor(name);  // the same bytes in the mapped file
}

}  // namespace foley
