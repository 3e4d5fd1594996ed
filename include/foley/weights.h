// Reading checkpoint and weight files without loading a model: what `foley inspect` shows.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace foley {

struct TensorListing {
  std::string name;
  std::string dtype;  // safetensors spelling: F32, BF16, F16, I64, ...
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
};

struct FileListing {
  std::string format;  // "safetensors", "torch-zip"
  std::vector<TensorListing> tensors;        // in file order
  std::map<std::string, std::string> metadata;  // safetensors __metadata__, or a torch file's
                                                // non-tensor entries rendered as JSON
};

// Parses .safetensors, .pth and .bin (torch.save zip) files. Throws foley::Error with a one-line
// message naming the problem for damaged or foreign files; never executes anything from a pickle.
FileListing inspect_weights_file(const std::string& path);

}  // namespace foley
