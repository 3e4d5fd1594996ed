#include "io/pickle.h"

#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "foley/error.h"
#include "io/bytes.h"

namespace foley::io::pickle {

// Limits far above what any state dict needs (a 10 GB DiT checkpoint has ~10^5 objects) but
// low enough that a hostile pickle stays within a few hundred MB.
constexpr size_t kMaxObjects = size_t{1} << 21;
constexpr size_t kMaxStack = size_t{1} << 20;
constexpr size_t kMaxMarks = 4096;
constexpr size_t kMaxMemo = size_t{1} << 20;
constexpr size_t kMaxContainerItems = size_t{1} << 23;
constexpr size_t kMaxGlobalName = 256;

namespace {

struct AllowedGlobal {
  const char* module;
  const char* name;
  Callable callable;
  DType dtype;
};

constexpr AllowedGlobal kAllowed[] = {
    {"collections", "OrderedDict", Callable::kOrderedDict, DType::kU8},
    {"torch._utils", "_rebuild_tensor_v2", Callable::kRebuildTensorV2, DType::kU8},
    {"torch._utils", "_rebuild_parameter", Callable::kRebuildParameter, DType::kU8},
    {"torch", "FloatStorage", Callable::kStorageType, DType::kF32},
    {"torch", "DoubleStorage", Callable::kStorageType, DType::kF64},
    {"torch", "HalfStorage", Callable::kStorageType, DType::kF16},
    {"torch", "BFloat16Storage", Callable::kStorageType, DType::kBF16},
    {"torch", "LongStorage", Callable::kStorageType, DType::kI64},
    {"torch", "IntStorage", Callable::kStorageType, DType::kI32},
    {"torch", "ShortStorage", Callable::kStorageType, DType::kI16},
    {"torch", "CharStorage", Callable::kStorageType, DType::kI8},
    {"torch", "ByteStorage", Callable::kStorageType, DType::kU8},
    {"torch", "BoolStorage", Callable::kStorageType, DType::kBool},
};

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), so every string
// can later be rendered as JSON.
bool valid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

}  // namespace

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const std::string& label, Unpickled& out)
      : data_(data), size_(size), label_(label), out_(out) {}

  void run() {
    while (true) {
      op_pos_ = pos_;
      const uint8_t op = read_u8();
      if (step(op)) return;
    }
  }

 private:
  [[noreturn]] void fail(const std::string& reason) const {
    throw Error(ErrorKind::kInvalidInput,
                label_ + ": pickle " + reason + " (at byte " + std::to_string(op_pos_) + ")");
  }

  // --- reading operands ---
  const uint8_t* take(uint64_t n) {
    if (n > size_ - pos_) fail("is truncated");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint8_t read_u8() { return *take(1); }
  uint16_t read_u16() { return load_le16(take(2)); }
  uint32_t read_u32() { return load_le32(take(4)); }
  uint64_t read_u64() { return load_le64(take(8)); }
  std::string read_line() {
    const uint8_t* start = data_ + pos_;
    const size_t avail = size_ - pos_;
    const void* nl = std::memchr(start, '\n', avail < kMaxGlobalName ? avail : kMaxGlobalName);
    if (!nl) fail("has an unterminated or overlong GLOBAL name");
    const size_t len = static_cast<size_t>(static_cast<const uint8_t*>(nl) - start);
    pos_ += len + 1;
    return std::string(reinterpret_cast<const char*>(start), len);
  }

  // --- objects and the stack ---
  Object* make(Kind kind) {
    if (out_.objects_.size() >= kMaxObjects) fail("has too many objects");
    Object& o = out_.objects_.emplace_back();
    o.kind = kind;
    return &o;
  }
  Object* make_int(int64_t v) {
    Object* o = make(Kind::kInt);
    o->integer = v;
    return o;
  }
  void push(Object* o) {
    if (stack_.size() >= kMaxStack) fail("stack is too deep");
    stack_.push_back(o);
  }
  // Items below the innermost MARK belong to an enclosing construct and cannot be popped.
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Object* pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    Object* o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Object* top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<Object*> pop_mark() {
    if (marks_.empty()) fail("has no MARK to pop to");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Object*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void add_items(Object* container, const std::vector<Object*>& items) {
    container_items_ += items.size();
    if (container_items_ > kMaxContainerItems) fail("has too many container items");
    container->items.insert(container->items.end(), items.begin(), items.end());
  }
  void memo_put(uint64_t index) {
    if (memo_.size() >= kMaxMemo && !memo_.count(index)) fail("memo is too large");
    memo_[index] = top();
  }
  Object* memo_get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail("refers to missing memo entry " + std::to_string(index));
    return it->second;
  }

  Object* make_tuple(std::vector<Object*> items) {
    Object* t = make(Kind::kTuple);
    add_items(t, items);
    return t;
  }
  Object* make_string(uint64_t n, Kind kind) {
    const uint8_t* p = take(n);
    if (kind == Kind::kString && !valid_utf8(p, n)) fail("has a string that is not UTF-8");
    Object* o = make(kind);
    o->text.assign(reinterpret_cast<const char*>(p), n);
    return o;
  }

  // LONG1: little-endian two's complement of n bytes; must fit in int64.
  int64_t read_long1() {
    const uint8_t n = read_u8();
    const uint8_t* p = take(n);
    if (n == 0) return 0;
    const bool negative = p[n - 1] & 0x80;
    uint64_t v = negative ? ~uint64_t{0} : 0;
    for (size_t i = 0; i < n; ++i) {
      if (i < 8) {
        v = (v & ~(uint64_t{0xff} << (8 * i))) | (uint64_t{p[i]} << (8 * i));
      } else if (p[i] != (negative ? 0xff : 0x00)) {
        fail("has an integer wider than 64 bits");
      }
    }
    if (n > 8 && ((v >> 63) != 0) != negative) fail("has an integer wider than 64 bits");
    return static_cast<int64_t>(v);
  }

  Object* global(const std::string& module, const std::string& name) {
    for (const auto& g : kAllowed) {
      if (module == g.module && name == g.name) {
        Object* o = make(Kind::kGlobal);
        o->text = module + "." + name;
        o->callable = g.callable;
        o->storage_dtype = g.dtype;
        return o;
      }
    }
    fail("refers to foreign class " + printable(module + "." + name));
  }

  // --- the allow-listed callables ---
  static bool is_int(const Object* o) { return o->kind == Kind::kInt; }
  std::vector<int64_t> int_tuple(const Object* o, const char* what) {
    if (o->kind != Kind::kTuple) fail(std::string("tensor ") + what + " is not a tuple");
    std::vector<int64_t> v;
    for (const Object* i : o->items) {
      if (!is_int(i) || i->integer < 0) fail(std::string("tensor ") + what + " is not >= 0 ints");
      v.push_back(i->integer);
    }
    return v;
  }

  Object* rebuild_tensor(const std::vector<Object*>& args) {
    if (args.size() != 6 && args.size() != 7)
      fail("calls _rebuild_tensor_v2 with " + std::to_string(args.size()) + " arguments");
    if (args[0]->kind != Kind::kStorage) fail("calls _rebuild_tensor_v2 without a storage");
    if (!is_int(args[1]) || args[1]->integer < 0) fail("has a bad tensor storage offset");
    if (args[4]->kind != Kind::kBool) fail("has a non-boolean requires_grad");
    if (args[5]->kind != Kind::kDict) fail("has tensor backward hooks that are not a dict");
    if (args.size() == 7 && args[6]->kind != Kind::kDict && args[6]->kind != Kind::kNone)
      fail("has tensor metadata that is not a dict");
    TensorRef& t = out_.tensors_.emplace_back();
    t.storage = args[0]->storage;
    t.offset = args[1]->integer;
    t.size = int_tuple(args[2], "size");
    t.stride = int_tuple(args[3], "stride");
    if (t.size.size() != t.stride.size()) fail("has a tensor whose size and stride differ in rank");
    // The highest element the view touches must lie inside the storage.
    uint64_t numel = 1, last = static_cast<uint64_t>(t.offset);
    for (size_t i = 0; i < t.size.size(); ++i) {
      const uint64_t d = static_cast<uint64_t>(t.size[i]);
      if (mul_overflows(numel, d, &numel)) fail("has a tensor with too many elements");
      uint64_t reach;
      if (d > 0 && (mul_overflows(d - 1, static_cast<uint64_t>(t.stride[i]), &reach) ||
                    add_overflows(last, reach, &last)))
        fail("has a tensor extent that overflows");
    }
    // Stride-0 (expanded) views can have far more elements than their storage; keep byte counts
    // of the logical tensor representable.
    if (numel > (uint64_t{1} << 56)) fail("has a tensor with too many elements");
    const uint64_t storage_numel = static_cast<uint64_t>(t.storage->numel);
    if (numel == 0 ? static_cast<uint64_t>(t.offset) > storage_numel : last >= storage_numel)
      fail("has a tensor that reaches past its storage " + printable(t.storage->key));
    Object* o = make(Kind::kTensor);
    o->tensor = &t;
    return o;
  }

  Object* reduce(const Object* callable, const Object* args) {
    if (callable->kind != Kind::kGlobal) fail("calls something that is not an allowed global");
    if (args->kind != Kind::kTuple) fail("calls " + callable->text + " with non-tuple arguments");
    switch (callable->callable) {
      case Callable::kOrderedDict: {
        if (!args->items.empty()) fail("builds an OrderedDict from arguments");
        Object* d = make(Kind::kDict);
        d->ordered = true;
        return d;
      }
      case Callable::kRebuildTensorV2:
        return rebuild_tensor(args->items);
      case Callable::kRebuildParameter:
        // (data, requires_grad, backward_hooks): the parameter is its data tensor.
        if (args->items.size() != 3 || args->items[0]->kind != Kind::kTensor)
          fail("calls _rebuild_parameter with bad arguments");
        return args->items[0];
      case Callable::kStorageType:
        break;
    }
    fail("calls " + callable->text + ", which is not callable here");
  }

  // ('storage', <StorageType>, key, location, numel): torch.save's persistent id of a storage.
  Object* persistent_load(const Object* pid) {
    const auto& f = pid->items;
    if (pid->kind != Kind::kTuple || f.size() != 5 || f[0]->kind != Kind::kString ||
        f[0]->text != "storage")
      fail("has a persistent id that is not a ('storage', ...) tuple");
    if (f[1]->kind != Kind::kGlobal || f[1]->callable != Callable::kStorageType)
      fail("has a storage of unknown type");
    if (f[2]->kind != Kind::kString || f[3]->kind != Kind::kString)
      fail("has a storage whose key or location is not a string");
    if (!is_int(f[4]) || f[4]->integer < 0) fail("has a storage with a bad element count");
    uint64_t bytes;
    if (mul_overflows(static_cast<uint64_t>(f[4]->integer), dtype_size(f[1]->storage_dtype),
                      &bytes))
      fail("has a storage with a bad element count");
    const auto it = storage_index_.find(f[2]->text);
    const StorageRef* ref;
    if (it != storage_index_.end()) {
      ref = it->second;
      if (ref->dtype != f[1]->storage_dtype || ref->numel != f[4]->integer)
        fail("uses storage " + printable(ref->key) + " with two different types or sizes");
    } else {
      StorageRef& s = out_.storages_.emplace_back();
      s.dtype = f[1]->storage_dtype;
      s.key = f[2]->text;
      s.location = f[3]->text;
      s.numel = f[4]->integer;
      storage_index_[s.key] = &s;
      ref = &s;
    }
    Object* o = make(Kind::kStorage);
    o->storage = ref;
    return o;
  }

  // Executes one opcode; true at STOP.
  bool step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t v = read_u8();
        if (v > 5) fail("has unsupported protocol " + std::to_string(v));
        return false;
      }
      case 0x95: {  // FRAME: only a hint for buffered readers
        const uint64_t n = read_u64();
        if (n > size_ - pos_) fail("has a frame past its end");
        return false;
      }
      case '.': {  // STOP
        out_.root_ = pop();
        return true;
      }
      case '(':  // MARK
        if (marks_.size() >= kMaxMarks) fail("nests MARKs too deeply");
        marks_.push_back(stack_.size());
        return false;
      case '}':  // EMPTY_DICT
        push(make(Kind::kDict));
        return false;
      case ']':  // EMPTY_LIST
        push(make(Kind::kList));
        return false;
      case ')':  // EMPTY_TUPLE
        push(make(Kind::kTuple));
        return false;
      case 't':  // TUPLE
        push(make_tuple(pop_mark()));
        return false;
      case 0x85:    // TUPLE1
      case 0x86:    // TUPLE2
      case 0x87: {  // TUPLE3
        std::vector<Object*> items(static_cast<size_t>(op - 0x84));
        for (size_t i = items.size(); i-- > 0;) items[i] = pop();
        push(make_tuple(std::move(items)));
        return false;
      }
      case 'q':  // BINPUT
        memo_put(read_u8());
        return false;
      case 'r':  // LONG_BINPUT
        memo_put(read_u32());
        return false;
      case 0x94:  // MEMOIZE
        memo_put(memo_.size());
        return false;
      case 'h':  // BINGET
        push(memo_get(read_u8()));
        return false;
      case 'j':  // LONG_BINGET
        push(memo_get(read_u32()));
        return false;
      case 'J':  // BININT
        push(make_int(static_cast<int32_t>(read_u32())));
        return false;
      case 'K':  // BININT1
        push(make_int(read_u8()));
        return false;
      case 'M':  // BININT2
        push(make_int(read_u16()));
        return false;
      case 0x8a:  // LONG1
        push(make_int(read_long1()));
        return false;
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
        Object* o = make(Kind::kFloat);
        std::memcpy(&o->real, &bits, 8);
        push(o);
        return false;
      }
      case 'X':  // BINUNICODE
        push(make_string(read_u32(), Kind::kString));
        return false;
      case 0x8c:  // SHORT_BINUNICODE
        push(make_string(read_u8(), Kind::kString));
        return false;
      case 0x8d:  // BINUNICODE8
        push(make_string(read_u64(), Kind::kString));
        return false;
      case 'C':  // SHORT_BINBYTES
        push(make_string(read_u8(), Kind::kBytes));
        return false;
      case 'B':  // BINBYTES
        push(make_string(read_u32(), Kind::kBytes));
        return false;
      case 'N':  // NONE
        push(make(Kind::kNone));
        return false;
      case 0x88:    // NEWTRUE
      case 0x89: {  // NEWFALSE
        Object* o = make(Kind::kBool);
        o->boolean = op == 0x88;
        push(o);
        return false;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        const std::string module = read_line();
        const std::string name = read_line();
        push(global(module, name));
        return false;
      }
      case 0x93: {  // STACK_GLOBAL
        const Object* name = pop();
        const Object* module = pop();
        if (name->kind != Kind::kString || module->kind != Kind::kString)
          fail("has a STACK_GLOBAL whose names are not strings");
        push(global(module->text, name->text));
        return false;
      }
      case 'R': {  // REDUCE
        const Object* args = pop();
        const Object* callable = pop();
        push(reduce(callable, args));
        return false;
      }
      case 'b': {  // BUILD: only OrderedDict state (torch's `_metadata`), which is not needed
        const Object* state = pop();
        const Object* target = top();
        if (target->kind != Kind::kDict || !target->ordered || state->kind != Kind::kDict)
          fail("sets the state of something other than an OrderedDict");
        return false;
      }
      case 's': {  // SETITEM
        Object* value = pop();
        Object* key = pop();
        Object* dict = top();
        if (dict->kind != Kind::kDict) fail("sets an item on something other than a dict");
        add_items(dict, {key, value});
        return false;
      }
      case 'u': {  // SETITEMS
        const std::vector<Object*> items = pop_mark();
        Object* dict = top();
        if (dict->kind != Kind::kDict) fail("sets items on something other than a dict");
        if (items.size() % 2) fail("has SETITEMS with an odd number of items");
        add_items(dict, items);
        return false;
      }
      case 'a': {  // APPEND
        Object* value = pop();
        Object* list = top();
        if (list->kind != Kind::kList) fail("appends to something other than a list");
        add_items(list, {value});
        return false;
      }
      case 'e': {  // APPENDS
        const std::vector<Object*> items = pop_mark();
        Object* list = top();
        if (list->kind != Kind::kList) fail("appends to something other than a list");
        add_items(list, items);
        return false;
      }
      case 'Q':  // BINPERSID
        push(persistent_load(pop()));
        return false;
      case 'i':
        fail("uses the INST opcode, which is not allowed");
      case 'o':
        fail("uses the OBJ opcode, which is not allowed");
      case 0x81:
        fail("uses the NEWOBJ opcode, which is not allowed");
      case 0x92:
        fail("uses the NEWOBJ_EX opcode, which is not allowed");
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("uses unsupported opcode ") + hex);
      }
    }
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  const std::string& label_;
  Unpickled& out_;
  std::vector<Object*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Object*> memo_;
  std::unordered_map<std::string, const StorageRef*> storage_index_;
  size_t container_items_ = 0;
};

std::unique_ptr<Unpickled> unpickle(const uint8_t* data, size_t size, const std::string& label) {
  auto out = std::make_unique<Unpickled>();
  Machine(data, size, label, *out).run();
  return out;
}

}  // namespace foley::io::pickle
