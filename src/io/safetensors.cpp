#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "foley/error.h"
#include "io/bytes.h"

namespace foley {
namespace {

using io::printable;

// The reference implementation's limit; a larger header is an attack, not a model.
constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;
// Top-level object (0), tensor record (1), shape/offset arrays (2): nothing nests deeper.
constexpr int kMaxJsonDepth = 3;

[[noreturn]] void fail(const std::string& label, const std::string& reason) {
  throw Error(ErrorKind::kInvalidInput, label + ": " + reason);
}

// Thrown from the JSON parser callback to stop at the first structural violation, before a
// hostile header can make the parser build a deep or duplicate-keyed document.
struct HeaderViolation {
  std::string reason;
};

nlohmann::json parse_header(const uint8_t* text, size_t length, const std::string& label) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  const auto check = [&keys](int depth, nlohmann::json::parse_event_t event,
                             nlohmann::json& value) {
    using Event = nlohmann::json::parse_event_t;
    if ((event == Event::object_start || event == Event::array_start) && depth >= kMaxJsonDepth)
      throw HeaderViolation{"header JSON nests deeper than a safetensors header can"};
    if (event == Event::object_start) keys.emplace_back();
    if (event == Event::object_end) keys.pop_back();
    if (event == Event::key && !keys.empty() &&
        !keys.back().insert(value.get<std::string>()).second)
      throw HeaderViolation{"header JSON repeats the key \"" + printable(value.get<std::string>()) +
                            "\""};
    return true;
  };
  try {
    return nlohmann::json::parse(text, text + length, check);
  } catch (const HeaderViolation& v) {
    fail(label, v.reason);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann's messages are one line and say where the syntax broke.
    fail(label, std::string("header is not valid JSON: ") + e.what());
  }
}

uint64_t json_u64(const nlohmann::json& v, const std::string& label, const std::string& what) {
  if (!v.is_number_unsigned()) fail(label, what + " is not a non-negative integer");
  return v.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& v, uint64_t blob_size,
                             const std::string& label) {
  const std::string who = "tensor \"" + printable(name) + "\"";
  if (!v.is_object()) fail(label, who + " is not described by a JSON object");
  const auto dtype_it = v.find("dtype");
  const auto shape_it = v.find("shape");
  const auto offsets_it = v.find("data_offsets");
  if (dtype_it == v.end() || shape_it == v.end() || offsets_it == v.end())
    fail(label, who + " lacks dtype, shape or data_offsets");
  if (!dtype_it->is_string()) fail(label, who + ": dtype is not a string");
  const auto dtype = dtype_from_name(dtype_it->get_ref<const std::string&>());
  if (!dtype)
    fail(label,
         who + ": unknown dtype \"" + printable(dtype_it->get_ref<const std::string&>()) + "\"");
  if (!shape_it->is_array()) fail(label, who + ": shape is not an array");
  if (shape_it->size() > static_cast<size_t>(kMaxRank))
    fail(label, who + ": rank " + std::to_string(shape_it->size()) + " exceeds " +
                    std::to_string(kMaxRank));
  if (!offsets_it->is_array() || offsets_it->size() != 2)
    fail(label, who + ": data_offsets is not a [begin, end] pair");

  SafetensorsEntry e;
  e.name = name;
  e.dtype = *dtype;
  uint64_t nbytes = dtype_size(*dtype);
  for (const auto& d : *shape_it) {
    const uint64_t dim = json_u64(d, label, who + ": a shape dimension");
    // Dimensions above 2^62 cannot be an int64 shape; the product check catches the rest.
    if (dim > (uint64_t{1} << 62) || io::mul_overflows(nbytes, dim, &nbytes))
      fail(label, who + ": shape is too large");
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  e.begin = json_u64((*offsets_it)[0], label, who + ": data_offsets[0]");
  e.end = json_u64((*offsets_it)[1], label, who + ": data_offsets[1]");
  if (e.begin > e.end) fail(label, who + ": data_offsets end before they begin");
  if (e.end > blob_size)
    fail(label, who + ": data_offsets end at " + std::to_string(e.end) + ", past the " +
                    std::to_string(blob_size) + "-byte data section");
  if (e.end - e.begin != nbytes)
    fail(label, who + ": data_offsets span " + std::to_string(e.end - e.begin) +
                    " bytes, dtype and shape need " + std::to_string(nbytes));
  return e;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const auto file = MappedFile::open(path);
  return parse(file->data(), file->size(), file, path);
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size,
                                       std::shared_ptr<const void> keep, const std::string& label) {
  if (size < 8) fail(label, "file too short for a safetensors header");
  const uint64_t header_len = io::load_le64(data);
  if (header_len > kMaxHeaderBytes)
    fail(label, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > size - 8)
    fail(label, "header length " + std::to_string(header_len) + " runs past the end of the " +
                    std::to_string(size) + "-byte file");
  if (header_len < 2 || data[8] != '{') fail(label, "header is not a JSON object");
  const nlohmann::json header = parse_header(data + 8, header_len, label);
  if (!header.is_object()) fail(label, "header is not a JSON object");

  SafetensorsFile file;
  file.keep_ = std::move(keep);
  file.label_ = label;
  file.data_offset_ = 8 + header_len;
  file.blob_ = data + file.data_offset_;
  const uint64_t blob_size = size - file.data_offset_;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(label, "__metadata__ is not a JSON object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string())
          fail(label, "__metadata__ value \"" + printable(k) + "\" is not a string");
        file.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    file.entries_.push_back(parse_entry(name, value, blob_size, label));
  }
  // File order is data order (JSON objects are unordered).
  std::sort(file.entries_.begin(), file.entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin
                              : (a.end != b.end ? a.end < b.end : a.name < b.name);
  });
  uint64_t covered = 0;  // end of the furthest data range so far
  const SafetensorsEntry* previous = nullptr;
  for (const auto& e : file.entries_) {
    if (e.begin == e.end) continue;  // empty tensors occupy no bytes
    if (e.begin < covered)
      fail(label, "tensors \"" + printable(previous->name) + "\" and \"" + printable(e.name) +
                      "\" overlap");
    covered = e.end;
    previous = &e;
  }
  // Gaps between tensors are allowed (foley aligns tensors), trailing bytes are not.
  if (covered != blob_size)
    fail(label, "data section holds " + std::to_string(blob_size - covered) +
                    " bytes after the last tensor");
  for (size_t i = 0; i < file.entries_.size(); ++i) file.index_[file.entries_[i].name] = i;
  return file;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end())
    throw Error(ErrorKind::kNotFound, label_ + ": no tensor named " + printable(name));
  return entries_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  return Tensor(const_cast<uint8_t*>(blob_ + e.begin), e.dtype, e.shape, DeviceKind::kCPU,
                std::const_pointer_cast<void>(keep_));
}

}  // namespace foley
