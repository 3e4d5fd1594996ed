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

// ---- foley bundles (what `foley convert` writes) ------------------------------------------------

struct DitSummary {
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t depth_double = 0;  // dual-stream (audio + visual) blocks: "triple_blocks" upstream
  int64_t depth_single = 0;  // single-stream blocks
  std::string dtype;         // storage of its matmul weights (BF16, F32, ...); "" if not recorded
};

// A bundle's summary, from its header alone (no tensor data is read).
struct BundleInfo {
  std::string format_version;  // as recorded ("1", ...)
  bool supported_version = false;  // whether this foley loads that version
  std::string converter;           // "foley <version>" that wrote it ("" if not recorded)
  // The DiT: "xxl" or "xl" (exactly the official configs' sizes), "custom" (other sizes, e.g. the
  // tiny test models), "unknown" (a DiT bundle converted before variants were recorded), "" (no
  // DiT in the bundle).
  std::string variant;
  std::vector<std::string> networks;  // as in the bundle config: clap, dac, dit, siglip2, ...
  std::map<std::string, uint64_t> parameters;  // network -> elements of its F32/BF16/F16 tensors
  uint64_t total_parameters = 0;
  bool has_dit = false;
  DitSummary dit;  // when has_dit
  // network -> "xxh64:<16 hex>": XXH64 over the network's converted tensors in file order (each
  // tensor's name, dtype, shape and bytes, length-prefixed; src/io/content_hash.h has the exact
  // stream). Equal for byte-identical networks of any two bundles, so a model registry can keep
  // one device copy per hash. Empty for bundles converted before hashes were recorded.
  std::map<std::string, std::string> content_hashes;
  uint64_t file_bytes = 0;
};

// Reads a bundle's header. Throws foley::Error (kInvalidInput) naming the problem for files that
// are not foley bundles or are damaged (what inspect_weights_file refuses, a missing "format" or
// "config", a config that is not a JSON object).
BundleInfo inspect_bundle(const std::string& path);

// Recomputes every network's content hash from the tensor bytes (reads the whole file) and
// returns the networks whose recorded hash differs: empty for an intact bundle. Networks without
// a recorded hash (older bundles) are not compared.
std::vector<std::string> verify_bundle_hashes(const std::string& path);

struct BundleEntry {
  std::string name;  // file name within the folder
  std::string path;
  uint64_t file_bytes = 0;
  std::string error;  // "" for a readable foley bundle; else why it is not one (or is damaged)
  BundleInfo info;    // when error is ""
};

// The *.safetensors files of a folder (not its subfolders), sorted by name, each inspected with
// inspect_bundle: files that are not bundles or are damaged are listed with the reason, not
// thrown. Throws kNotFound if `dir` is not a directory.
std::vector<BundleEntry> list_bundles(const std::string& dir);

}  // namespace foley
