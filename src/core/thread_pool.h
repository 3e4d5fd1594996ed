// The CPU worker threads. parallel_for splits [0, n) into contiguous chunks and runs them on a
// team of threads (the caller included), returning when all are done.
//
// The team is OpenMP's: oneDNN (Debian's build) already runs its GEMMs on OpenMP threads, and a
// second set of threads would fight them for the cores — libgomp's threads spin for a while
// after each GEMM, which made small steps 30× slower on 2 cores with a separate pool. One
// threading system keeps the cores for whoever runs next. Nested calls run serially.
#pragma once

#include <cstdint>
#include <functional>

namespace foley {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads <= 0: FOLEY_THREADS or the OpenMP default
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // fn(begin, end) over chunks of at least `grain` items. An exception thrown by fn is
  // rethrown in the caller after every chunk has finished.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  static ThreadPool& global();

 private:
  int threads_;
};

inline void parallel_for(int64_t n, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& fn) {
  ThreadPool::global().parallel_for(n, grain, fn);
}

}  // namespace foley
