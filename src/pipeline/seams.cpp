// The seam measure of long clips (pipeline.h: seam_ratio).
#include <algorithm>
#include <cstdlib>

#include "core/check.h"
#include "pipeline/pipeline.h"

namespace foley::pipeline {
namespace {

// Mean squared first difference over `half` samples each side of `center`.
double roughness(const std::vector<float>& a, int64_t center, int64_t half) {
  double s = 0;
  for (int64_t i = center - half; i < center + half; ++i) {
    const double d = double(a[size_t(i + 1)]) - double(a[size_t(i)]);
    s += d * d;
  }
  return s / double(2 * half);
}

}  // namespace

double seam_ratio(const std::vector<float>& audio, const std::vector<FlowWindow>& windows, int hop,
                  int sample_rate) {
  std::vector<int64_t> joins;
  for (size_t k = 1; k < windows.size(); ++k) {
    joins.push_back(windows[k].audio_begin * hop);
    joins.push_back((windows[k - 1].audio_begin + windows[k - 1].audio_len) * hop);
  }
  const int64_t half = sample_rate / 200, step = sample_rate / 10;  // ±5 ms, every 0.1 s
  const int64_t n = static_cast<int64_t>(audio.size());
  if (joins.empty() || n < 4 * step) return 1.0;
  double at_joins = 0;
  int counted = 0;
  for (int64_t j : joins)
    if (j - half >= 0 && j + half + 1 < n) at_joins += roughness(audio, j, half), ++counted;
  FOLEY_CHECK(counted > 0, "seam_ratio: no join inside the audio");
  at_joins /= counted;
  std::vector<double> rest;
  for (int64_t c = step; c + step < n; c += step) {
    bool near = false;
    for (int64_t j : joins) near |= std::llabs(c - j) < step;
    if (!near) rest.push_back(roughness(audio, c, half));
  }
  FOLEY_CHECK(!rest.empty(), "seam_ratio: no place away from the joins");
  std::nth_element(rest.begin(), rest.begin() + rest.size() / 2, rest.end());
  const double median = rest[rest.size() / 2];
  return median > 0 ? at_joins / median : (at_joins > 0 ? 1e9 : 1.0);
}

}  // namespace foley::pipeline
