// libFuzzer target: SafetensorsFile::parse on arbitrary bytes.
#include "fuzz_common.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  foley::fuzz::expect_clean_failure([&] {
    const foley::SafetensorsFile f = foley::SafetensorsFile::parse(data, size, nullptr, "fuzz");
    uint32_t sink = 0;
    for (const auto& e : f.entries()) {
      const foley::Tensor t = f.tensor(e.name);
      sink += foley::fuzz::touch(t.raw(), t.nbytes());
    }
    for (const auto& [k, v] : f.metadata()) sink += static_cast<uint32_t>(k.size() + v.size());
    (void)sink;
  });
  return 0;
}
