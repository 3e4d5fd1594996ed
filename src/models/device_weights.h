// Getting a model's parameters onto the device its backend computes on.
//
// A WeightStore hands out host views of the mapped bundle, or views of a device copy of the whole
// bundle. Models accept both: a tensor already on the backend's device is used as it is
// (zero-copy), and a host tensor for a device backend is copied once into the model's own device
// arena, reserved up front in one block so that loading never doubles the reservation.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string_view>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/weight_store.h"

namespace foley {

// `t` on the backend's device: itself when it is already there, otherwise (a host tensor for a
// device backend) a copy in `arena`, which is created on first use with reserve() bytes. Throws
// when `t` lives on a device the backend cannot read.
Tensor place_weight(Backend& backend, const Tensor& t, std::unique_ptr<Arena>& arena,
                    const std::function<size_t()>& reserve);

// Arena bytes for every bundle tensor whose name starts with one of `prefixes`, plus `extra`
// bytes (tensors a model derives at load time).
size_t weight_arena_bytes(const WeightStore& store,
                          std::initializer_list<std::string_view> prefixes, size_t extra = 0);

// The host (mapped) view of a bundle tensor, for tables a model reads on the host (embedding
// lookups, folded embeddings, tokenizer files), also when the store hands out device views.
// Checks and marks it used like WeightStore::get.
Tensor host_weight(const WeightStore& store, const std::string& name, const Shape& shape,
                   std::initializer_list<DType> allowed = {});

}  // namespace foley
