// A restricted unpickler for the data.pkl of torch.save archives.
//
// It is a data parser, not a Python VM: it knows the opcodes that state dicts are written with
// (protocol 2, plus the few protocol 4 ones a newer pickler could use) and a fixed allow-list of
// globals (collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
// typed storage classes). The globals are never resolved to code; REDUCE on them builds plain
// values. Any other global or opcode (INST, OBJ, NEWOBJ, ...) is refused. Memo, stack, mark depth
// and object counts are bounded so a hostile pickle cannot exhaust memory, and nothing recurses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace foley::io::pickle {

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,  // str
  kBytes,   // bytes
  kTuple,
  kList,
  kDict,     // dict or collections.OrderedDict (`ordered`)
  kGlobal,   // an allow-listed class or function, as a value
  kStorage,  // a persistent-id storage reference
  kTensor,   // the result of _rebuild_tensor_v2 / _rebuild_parameter
};

enum class Callable : uint8_t { kOrderedDict, kRebuildTensorV2, kRebuildParameter, kStorageType };

struct StorageRef {
  DType dtype = DType::kU8;
  std::string key;       // the archive member <root>/data/<key>
  std::string location;  // "cpu", "cuda:0", ... (informational)
  int64_t numel = 0;     // elements of `dtype`
};

struct TensorRef {
  const StorageRef* storage = nullptr;
  int64_t offset = 0;  // in elements
  std::vector<int64_t> size;
  std::vector<int64_t> stride;  // in elements
};

// One Python value. Containers hold pointers because pickles share objects through the memo
// (and may even make cycles); all objects live in the Unpickled that produced them.
struct Object {
  Kind kind = Kind::kNone;
  bool ordered = false;  // kDict: an OrderedDict
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;            // kString, kBytes; kGlobal: "module.name"
  std::vector<Object*> items;  // kTuple, kList; kDict: key0, value0, key1, value1, ...
  Callable callable = Callable::kOrderedDict;  // kGlobal
  DType storage_dtype = DType::kU8;            // kGlobal of kind kStorageType
  const StorageRef* storage = nullptr;         // kStorage
  const TensorRef* tensor = nullptr;           // kTensor
};

class Unpickled {
 public:
  const Object* root() const { return root_; }
  // Storages in order of first reference; each key appears once.
  const std::deque<StorageRef>& storages() const { return storages_; }

 private:
  friend class Machine;
  const Object* root_ = nullptr;
  std::deque<Object> objects_;  // deque: stable addresses while growing
  std::deque<StorageRef> storages_;
  std::deque<TensorRef> tensors_;
};

// Runs the pickle in `data`. Throws Error(kInvalidInput, "<label>: pickle ...") on any refused or
// malformed content. Every tensor's extent is checked against its storage's element count.
std::unique_ptr<Unpickled> unpickle(const uint8_t* data, size_t size, const std::string& label);

}  // namespace foley::io::pickle
