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
  // Each join against its own neighbourhood, so that louder or quieter passages elsewhere do not
  // count: ±5 ms at the join over the median of the same at 25, 50, ..., 250 ms either side.
  const int64_t half = sample_rate / 200, step = sample_rate / 40;
  const int64_t n = static_cast<int64_t>(audio.size());
  double sum = 0;
  int counted = 0;
  for (int64_t j : joins) {
    std::vector<double> around;
    for (int k = 1; k <= 10; ++k)
      for (int64_t c : {j - k * step, j + k * step})
        if (c - half >= 0 && c + half + 1 < n) around.push_back(roughness(audio, c, half));
    if (around.size() < 5 || j - half < 0 || j + half + 1 >= n) continue;
    std::nth_element(around.begin(), around.begin() + around.size() / 2, around.end());
    const double median = around[around.size() / 2];
    const double at = roughness(audio, j, half);
    sum += median > 0 ? at / median : (at > 0 ? 1e9 : 1.0);
    ++counted;
  }
  return counted > 0 ? sum / counted : 1.0;
}

}  // namespace foley::pipeline
