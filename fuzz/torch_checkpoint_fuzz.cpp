// libFuzzer target: TorchCheckpoint::parse (zip directory, restricted unpickler, tensor checks)
// on arbitrary bytes. data.pkl's CRC check is off so that mutations reach the unpickler.
#include "fuzz_common.h"
#include "io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  foley::fuzz::expect_clean_failure([&] {
    foley::TorchCheckpoint::Options options;
    options.verify_pickle_crc = false;
    const foley::TorchCheckpoint ckpt =
        foley::TorchCheckpoint::parse(data, size, nullptr, "fuzz", options);
    uint32_t sink = 0;
    for (const auto& e : ckpt.entries()) {
      // The lowest and the highest byte the strided view can reach (stride-0 views may have
      // huge element counts, so elements are not walked one by one).
      const foley::Tensor t = ckpt.tensor(e.name);
      if (t.numel() == 0) continue;
      int64_t last = 0;
      for (int d = 0; d < t.rank(); ++d) last += (t.dim(d) - 1) * t.stride(d);
      const size_t esize = foley::dtype_size(t.dtype());
      sink += foley::fuzz::touch(t.raw(), esize);
      sink += foley::fuzz::touch(static_cast<const uint8_t*>(t.raw()) + last * esize, esize);
    }
    sink += static_cast<uint32_t>(ckpt.extra().dump().size());
    (void)sink;
  });
  return 0;
}
