#include "io/torch_checkpoint.h"

#include <array>
#include <unordered_map>
#include <utility>

#include "foley/error.h"
#include "io/bytes.h"
#include "io/pickle.h"
#include "io/zip_reader.h"

namespace foley {
namespace {

using io::printable;
using io::pickle::Kind;
using io::pickle::Object;

// Rendering non-tensor values is bounded as well: pickles can share objects (a DAG renders
// exponentially) or even contain cycles.
constexpr int kMaxRenderDepth = 64;
constexpr size_t kMaxRenderNodes = size_t{1} << 20;

[[noreturn]] void fail(const std::string& label, const std::string& reason) {
  throw Error(ErrorKind::kInvalidInput, label + ": " + reason);
}

// The key as Python's str() would show it, for dict keys that become JSON object keys or names.
std::string key_string(const Object* k) {
  switch (k->kind) {
    case Kind::kString:
      return k->text;
    case Kind::kInt:
      return std::to_string(k->integer);
    case Kind::kBool:
      return k->boolean ? "True" : "False";
    case Kind::kNone:
      return "None";
    case Kind::kFloat:
      return std::to_string(k->real);
    default:
      return "<key>";
  }
}

// A dict's items with Python's semantics for repeated keys: the last value wins, the first
// position stays.
std::vector<std::pair<std::string, const Object*>> dict_items(const Object* dict) {
  std::vector<std::pair<std::string, const Object*>> items;
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
    std::string key = key_string(dict->items[i]);
    const auto [it, fresh] = seen.emplace(key, items.size());
    if (fresh)
      items.emplace_back(std::move(key), dict->items[i + 1]);
    else
      items[it->second].second = dict->items[i + 1];
  }
  return items;
}

class Renderer {
 public:
  explicit Renderer(const std::string& label) : label_(label) {}

  nlohmann::json render(const Object* o, int depth = 0) {
    if (depth > kMaxRenderDepth) fail(label_, "pickle nests values too deeply");
    if (++nodes_ > kMaxRenderNodes) fail(label_, "pickle holds too many values to render");
    switch (o->kind) {
      case Kind::kNone:
        return nullptr;
      case Kind::kBool:
        return o->boolean;
      case Kind::kInt:
        return o->integer;
      case Kind::kFloat:
        return o->real;
      case Kind::kString:
        return o->text;
      case Kind::kBytes:
        return "<bytes " + std::to_string(o->text.size()) + ">";
      case Kind::kTuple:
      case Kind::kList: {
        nlohmann::json a = nlohmann::json::array();
        for (const Object* i : o->items) a.push_back(render(i, depth + 1));
        return a;
      }
      case Kind::kDict: {
        nlohmann::json d = nlohmann::json::object();
        for (const auto& [k, v] : dict_items(o)) d[k] = render(v, depth + 1);
        return d;
      }
      case Kind::kGlobal:
        return "<global " + o->text + ">";
      case Kind::kStorage:
        return "<storage>";
      case Kind::kTensor:
        return "<tensor>";
    }
    return nullptr;
  }

 private:
  const std::string& label_;
  size_t nodes_ = 0;
};

// torch.save names every member <root>/...; the root is the file's stem when it was saved.
std::string find_root(const io::ZipReader& zip, const std::string& label) {
  std::string root;
  const std::string suffix = "/data.pkl";
  for (const auto& e : zip.entries()) {
    if (e.name.size() <= suffix.size() ||
        e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string prefix = e.name.substr(0, e.name.size() - suffix.size());
    if (prefix.find('/') != std::string::npos) continue;
    if (!root.empty()) fail(label, "zip holds more than one data.pkl");
    root = prefix;
  }
  if (root.empty()) fail(label, "zip archive without <name>/data.pkl: not a torch.save checkpoint");
  return root;
}

}  // namespace

TorchCheckpoint TorchCheckpoint::open(const std::string& path) {
  const auto file = MappedFile::open(path);
  return parse(file->data(), file->size(), file, path);
}

TorchCheckpoint TorchCheckpoint::parse(const uint8_t* data, size_t size,
                                       std::shared_ptr<const void> keep, const std::string& label) {
  return parse(data, size, std::move(keep), label, Options());
}

TorchCheckpoint TorchCheckpoint::parse(const uint8_t* data, size_t size,
                                       std::shared_ptr<const void> keep, const std::string& label,
                                       const Options& options) {
  if (!io::looks_like_zip(data, size)) {
    // Before 1.6, torch.save wrote a bare pickle stream (magic number first) or a tar file.
    if (size >= 2 && data[0] == 0x80 && data[1] <= 5)
      fail(label,
           "legacy (non-zip) torch.save format is not supported; re-save it with torch >= 1.6");
    fail(label, "not a torch.save zip checkpoint");
  }
  const io::ZipReader zip = io::ZipReader::parse(data, size, label);
  const std::string root = find_root(zip, label);

  if (const io::ZipEntry* order = zip.find(root + "/byteorder")) {
    const uint8_t* p = zip.stored_data(*order);
    const std::string value(reinterpret_cast<const char*>(p), order->size);
    if (value != "little") fail(label, "byte order '" + printable(value) + "' is not supported");
  }

  const io::ZipEntry* pkl = zip.find(root + "/data.pkl");
  const uint8_t* pkl_data = zip.stored_data(*pkl);
  if (options.verify_pickle_crc && io::crc32(pkl_data, pkl->size) != pkl->crc32)
    fail(label, "data.pkl fails its CRC check (damaged file)");
  const auto pickled = io::pickle::unpickle(pkl_data, pkl->size, label);

  TorchCheckpoint ckpt;
  ckpt.keep_ = std::move(keep);
  ckpt.label_ = label;
  for (const auto& s : pickled->storages()) {
    const io::ZipEntry* e = zip.find(root + "/data/" + s.key);
    if (!e) fail(label, "storage " + printable(s.key) + " is missing from the zip");
    const uint8_t* bytes = zip.stored_data(*e);
    // The pickle's element count was checked for overflow when it was read.
    const uint64_t expected = static_cast<uint64_t>(s.numel) * dtype_size(s.dtype);
    if (e->size != expected)
      fail(label, "storage " + printable(s.key) + " holds " + std::to_string(e->size) +
                      " bytes, the pickle says " + std::to_string(expected));
    ckpt.storages_[s.key] = {bytes, static_cast<size_t>(e->size)};
  }

  const Object* top = pickled->root();
  if (top->kind != Kind::kDict) fail(label, "checkpoint does not hold a dict (a state dict)");
  // DAC (audiotools) saves {"state_dict": OrderedDict, "metadata": {...}}; others a flat dict.
  const Object* state = top;
  Renderer renderer(label);
  ckpt.extra_ = nlohmann::json::object();
  for (const auto& [k, v] : dict_items(top)) {
    if (k == "state_dict" && v->kind == Kind::kDict) state = v;
  }
  if (state != top) {
    for (const auto& [k, v] : dict_items(top))
      if (v != state) ckpt.extra_[k] = renderer.render(v, 1);
  }

  nlohmann::json state_extra = nlohmann::json::object();
  for (const auto& [name, v] : dict_items(state)) {
    if (v->kind != Kind::kTensor) {
      state_extra[name] = renderer.render(v, 1);
      continue;
    }
    const io::pickle::TensorRef& t = *v->tensor;
    if (t.size.size() > static_cast<size_t>(kMaxRank))
      fail(label, "tensor " + printable(name) + " has rank " + std::to_string(t.size.size()) +
                      "; at most " + std::to_string(kMaxRank) + " is supported");
    TorchTensorEntry entry;
    entry.name = name;
    entry.dtype = t.storage->dtype;
    entry.shape = Shape(t.size.begin(), t.size.end());
    entry.strides = t.stride;
    entry.storage_key = t.storage->key;
    entry.storage_offset = t.offset;
    // The unpickler proved the extent lies inside the storage, so this cannot overflow.
    entry.nbytes = static_cast<uint64_t>(entry.shape.numel()) * dtype_size(entry.dtype);
    ckpt.index_[name] = ckpt.entries_.size();
    ckpt.entries_.push_back(std::move(entry));
  }
  if (!state_extra.empty()) {
    if (state == top)
      ckpt.extra_ = std::move(state_extra);
    else
      ckpt.extra_["state_dict"] = std::move(state_extra);
  }
  return ckpt;
}

const TorchTensorEntry& TorchCheckpoint::entry(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end())
    throw Error(ErrorKind::kNotFound, label_ + ": no tensor named " + printable(name));
  return entries_[it->second];
}

Tensor TorchCheckpoint::tensor(const std::string& name) const {
  const TorchTensorEntry& e = entry(name);
  const auto& [bytes, length] = storages_.at(e.storage_key);
  (void)length;
  auto* data =
      const_cast<uint8_t*>(bytes) + e.storage_offset * static_cast<int64_t>(dtype_size(e.dtype));
  std::array<int64_t, kMaxRank> strides{};
  for (size_t i = 0; i < e.strides.size(); ++i) strides[i] = e.strides[i];
  const Tensor contiguous(data, e.dtype, e.shape, DeviceKind::kCPU,
                          std::const_pointer_cast<void>(keep_));
  return contiguous.as_strided(e.shape, strides);
}

}  // namespace foley
