#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <exception>

namespace foley {
namespace {
thread_local bool t_inside_pool = false;
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    const char* env = std::getenv("FOLEY_THREADS");
    return env ? std::atoi(env) : 0;
  }());
  return pool;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = std::min<int64_t>((n + grain - 1) / grain, size() * 4);
  if (max_chunks <= 1 || workers_.empty() || t_inside_pool) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  std::exception_ptr error;
  std::mutex error_mutex;
  const std::function<void(int64_t, int64_t)> guarded = [&](int64_t b, int64_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &guarded;
    n_ = n;
    chunks_ = max_chunks;
    chunk_ = (n + max_chunks - 1) / max_chunks;
    next_chunk_ = 0;
    pending_ = max_chunks;
    ++generation_;
  }
  wake_.notify_all();
  t_inside_pool = true;
  for (;;) {
    int64_t c;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_chunk_ >= chunks_) break;
      c = next_chunk_++;
    }
    guarded(c * chunk_, std::min(n, (c + 1) * chunk_));
    std::lock_guard<std::mutex> lock(mutex_);
    if (--pending_ == 0) done_.notify_all();
  }
  t_inside_pool = false;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    task_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker_loop(int) {
  t_inside_pool = true;
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || (generation_ != seen && task_); });
    if (stop_) return;
    seen = generation_;
    while (task_ && next_chunk_ < chunks_) {
      const int64_t c = next_chunk_++;
      const auto* task = task_;
      const int64_t b = c * chunk_, e = std::min(n_, (c + 1) * chunk_);
      lock.unlock();
      (*task)(b, e);
      lock.lock();
      if (--pending_ == 0) done_.notify_all();
    }
  }
}

}  // namespace foley
