// WeightStore's per-network device copies (DeviceSegment), which let two bundles share the copy
// of a network they hold byte for byte: checked here with host memory standing in for the
// device (the mapping is the same arithmetic), on the tiny model's bundle.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "models/weight_store.h"
#include "tiny_pipeline.h"

namespace foley::test {
namespace {

TEST(WeightSegments, EveryTensorIsReadThroughItsNetworksCopy) {
  TINY_OR_SKIP();
  const auto store = WeightStore::open(tiny->bundle);
  const std::vector<std::string> networks = store->tensor_networks();
  EXPECT_EQ(networks, (std::vector<std::string>{"clap", "dac", "dit", "siglip2", "synchformer"}));
  const SafetensorsEntry& first = store->file().entries().front();
  const uint8_t* blob =
      static_cast<const uint8_t*>(store->file().tensor(first.name).raw()) - first.begin;
  std::vector<DeviceSegment> segments;
  uint64_t covered = 0;
  for (const std::string& n : networks) {
    const auto [lo, hi] = store->network_range(n);
    ASSERT_LT(lo, hi) << n;
    covered += hi - lo;
    // A copy whose first byte is the network's, at an address unrelated to the blob's.
    std::shared_ptr<uint8_t> copy(new uint8_t[hi - lo + 64], std::default_delete<uint8_t[]>());
    std::memcpy(copy.get() + 64, blob + lo, hi - lo);
    DeviceSegment s;
    s.begin = lo;
    s.end = hi;
    s.blob.memory = copy;
    s.blob.data = copy.get() + 64;
    s.blob.bytes = hi - lo;
    s.blob.device = DeviceKind::kCPU;
    segments.push_back(s);
  }
  EXPECT_LE(covered, store->blob_bytes());  // networks do not overlap
  const auto segmented = store->with_device_segments(segments);
  for (const auto& e : store->file().entries()) {
    const Tensor want = store->get_host(e.name, e.shape, {e.dtype});
    const Tensor got = segmented->get(e.name, e.shape, {e.dtype});
    ASSERT_NE(got.raw(), want.raw()) << e.name << " was not read from its copy";
    ASSERT_EQ(0, std::memcmp(got.raw(), want.raw(), want.nbytes())) << e.name;
  }
  // A copy that misses a network is refused.
  segments.pop_back();
  EXPECT_THROW(store->with_device_segments(segments), Error);
  // The layout key names each tensor's place within its network, and differs between networks.
  EXPECT_NE(store->network_layout("dac"), store->network_layout("clap"));
  EXPECT_EQ(store->network_layout("dac"), WeightStore::open(tiny->bundle)->network_layout("dac"));
}

}  // namespace
}  // namespace foley::test
