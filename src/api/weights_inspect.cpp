// foley inspect: lists a weight file's tensors without loading a model. The format is detected
// from the content, not the file name, since .bin files and renamed downloads are common.
#include "foley/error.h"
#include "foley/weights.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"
#include "io/zip_reader.h"

namespace foley {

FileListing inspect_weights_file(const std::string& path) {
  const auto file = MappedFile::open(path);
  FileListing listing;
  if (io::looks_like_zip(file->data(), file->size()) ||
      (file->size() >= 2 && file->data()[0] == 0x80)) {  // legacy torch pickle: refused inside
    const TorchCheckpoint ckpt = TorchCheckpoint::parse(file->data(), file->size(), file, path);
    listing.format = "torch-zip";
    for (const auto& e : ckpt.entries())
      listing.tensors.push_back({e.name, dtype_name(e.dtype),
                                 std::vector<int64_t>(e.shape.begin(), e.shape.end()), e.nbytes});
    // Non-tensor content, one JSON value per top-level key (DAC's "metadata", say).
    for (const auto& [key, value] : ckpt.extra().items()) listing.metadata[key] = value.dump();
    return listing;
  }
  // safetensors: 8 bytes of header length, then the JSON object. A damaged length still parses
  // as safetensors so that the message names the actual problem.
  if (file->size() >= 9 && file->data()[8] != '{')
    throw Error(ErrorKind::kInvalidInput,
                path + ": not a weight file (neither a torch.save zip nor safetensors)");
  const SafetensorsFile st = SafetensorsFile::parse(file->data(), file->size(), file, path);
  listing.format = "safetensors";
  for (const auto& e : st.entries())
    listing.tensors.push_back({e.name, dtype_name(e.dtype),
                               std::vector<int64_t>(e.shape.begin(), e.shape.end()),
                               e.end - e.begin});
  listing.metadata = st.metadata();
  return listing;
}

}  // namespace foley
