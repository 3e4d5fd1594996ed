#include "core/thread_pool.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>

namespace foley {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) {
    const char* env = std::getenv("FOLEY_THREADS");
    threads = env ? std::atoi(env) : 0;
  }
  threads_ = threads > 0 ? threads : std::max(1, omp_get_max_threads());
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool(0);
  return pool;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // A few chunks per thread balance uneven work without much scheduling overhead.
  const int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t{threads_} * 4);
  if (chunks <= 1 || threads_ == 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + chunks - 1) / chunks;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  const int team = static_cast<int>(std::min<int64_t>(threads_, chunks));
#pragma omp parallel num_threads(team)
  {
    for (;;) {
      const int64_t c = next.fetch_add(1);
      if (c >= chunks) break;
      try {
        fn(c * chunk, std::min(n, (c + 1) * chunk));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace foley
