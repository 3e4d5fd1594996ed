// Positions and rotary tables for the MMDiT (model-spec §2.6), computed on the host in F32 the
// way the official code computes them, so that angles match to the last bit where it matters
// (the products pos·freq reach ~1500 rad, where one ulp of freq is already 1e-4 rad).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace foley {

// torch "nearest-exact" source index for output index i when resampling n_in -> n_out:
// min(floor((i + 0.5) · (n_in / n_out)), n_in − 1), with the scale rounded to F32 first.
int64_t nearest_exact_source(int64_t i, int64_t n_in, int64_t n_out);

// Positions of the joint self-attention sequence [visual (Tv); audio (Ta)] under the
// "interleaved audio-visual RoPE": the official code builds a 2·Ta table, puts audio token i at
// slot 2i and the visual stream, nearest-exact upsampled to Ta, at the odd slots, rotates, and
// downsamples visual back. The net effect is visual token j at 2·up(j) + 1 with
// up(j) = nearest_exact_source(j, Ta, Tv).
std::vector<float> joint_self_positions(int64_t tv, int64_t ta);
// Cross-attention query positions of [visual; audio]: 0..Tv−1 then 0..Ta−1.
std::vector<float> joint_cross_positions(int64_t tv, int64_t ta);
// 0..n−1.
std::vector<float> linear_positions(int64_t n);

// Host F32 cos/sin [positions, head_dim/2] for adjacent-pair RoPE with theta 1e4:
// freq_i = 10000^(−2i/head_dim) (F32 pow), angle = pos·freq_i (F32 product).
struct HostRope {
  Tensor cos;
  Tensor sin;
};
HostRope rope_table_host(const std::vector<float>& positions, int64_t head_dim);

}  // namespace foley
