// The host side of the loader: the staging ring, parallel (direct or buffered) preads, page-cache
// residency, and the upload entry point of builds without CUDA.
#include "backend/device_upload.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/check.h"

namespace foley {
namespace {

constexpr size_t kIoAlign = 4096;  // O_DIRECT's offset/length/buffer alignment, and the blob's

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

[[noreturn]] void throw_errno(const std::string& what) {
  throw Error(ErrorKind::kInternal, what + ": " + std::strerror(errno));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Per page of the range: resident in the page cache? Empty when the range cannot be mapped.
std::vector<unsigned char> residency(const std::string& path, uint64_t offset, uint64_t size) {
  std::vector<unsigned char> pages;
  if (size == 0) return pages;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return pages;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page;
  const size_t len = static_cast<size_t>(offset + size - begin);
  void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), static_cast<off_t>(begin));
  if (p == MAP_FAILED) return pages;
  pages.resize((len + page - 1) / page);
  if (mincore(p, len, pages.data()) != 0) pages.clear();
  munmap(p, len);
  for (auto& b : pages) b &= 1;
  return pages;
}

// Reads exactly `want` bytes at `offset` (fewer only at end of file); returns the count.
size_t pread_full(int fd, uint8_t* dst, size_t want, uint64_t offset) {
  size_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(fd, dst + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return static_cast<size_t>(-1);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

}  // namespace

StagingRing::StagingRing(int slots, size_t slot_bytes) : slots_(slots), slot_bytes_(slot_bytes) {
  FOLEY_CHECK(slots > 0 && slot_bytes > 0 && slot_bytes % kIoAlign == 0,
              "staging ring of %d x %zu bytes", slots, slot_bytes);
  // Not populated here: the first reads fault the pages in (or cudaHostRegister does), in
  // parallel with context creation rather than before it.
  void* p = mmap(nullptr, total_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED) throw_errno("staging ring: mmap of " + std::to_string(total_bytes()));
  base_ = static_cast<uint8_t*>(p);
}

StagingRing::~StagingRing() { munmap(base_, total_bytes()); }

uint64_t cached_bytes(const std::string& path, uint64_t offset, uint64_t size) {
  const auto pages = residency(path, offset, size);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  uint64_t n = 0;
  for (unsigned char r : pages) n += r;
  return std::min<uint64_t>(n * page, size);
}

void evict_from_page_cache(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_errno(path + ": open");
  const int rc = posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  if (rc != 0) throw Error(ErrorKind::kInternal, path + ": posix_fadvise: " + std::strerror(rc));
}

void stream_file_range(const std::string& path, uint64_t offset, uint64_t size,
                       const RingOptions& options, StagingRing& ring, RingSink& sink,
                       UploadStats* stats) {
  FOLEY_CHECK(offset % kIoAlign == 0, "stream_file_range: offset %llu is not 4 KiB aligned",
              static_cast<unsigned long long>(offset));
  const size_t chunk = round_up(options.chunk_bytes, kIoAlign);
  FOLEY_CHECK(chunk <= ring.slot_bytes(), "chunk of %zu bytes exceeds the ring's %zu", chunk,
              ring.slot_bytes());
  Fd buffered(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (buffered.get() < 0)
    throw Error(errno == ENOENT ? ErrorKind::kNotFound : ErrorKind::kInvalidInput,
                path + ": cannot open: " + std::strerror(errno));
  // tmpfs and some network filesystems refuse O_DIRECT: those chunks go buffered.
  Fd direct(options.mode == ReadMode::kBuffered
                ? -1
                : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));

  const auto pages = options.mode == ReadMode::kAuto ? residency(path, offset, size)
                                                     : std::vector<unsigned char>();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  uint64_t resident_pages = 0;
  for (unsigned char r : pages) resident_pages += r;
  // `pages` starts at the page holding `offset` (which need not be a page boundary where pages
  // are larger than 4 KiB).
  const uint64_t lead = offset % page;
  auto chunk_cached = [&](uint64_t begin, size_t len) {
    if (pages.empty()) return false;
    const uint64_t first = (lead + begin) / page, last = (lead + begin + len - 1) / page;
    for (uint64_t p = first; p <= last && p < pages.size(); ++p)
      if (!pages[p]) return false;
    return true;
  };

  const uint64_t n_chunks = (size + chunk - 1) / chunk;
  std::atomic<uint64_t> next_chunk{0};
  std::atomic<uint64_t> direct_bytes{0};
  std::atomic<bool> failed{false};
  std::atomic<bool> direct_ok{direct.get() >= 0};
  std::mutex m, sink_mutex;
  std::condition_variable slot_freed;
  std::deque<int> free_slots;
  for (int i = 0; i < ring.slots(); ++i) free_slots.push_back(i);
  std::exception_ptr error;

  auto read_chunk = [&](uint64_t c, uint8_t* dst) {
    const uint64_t begin = c * chunk;
    const size_t len = static_cast<size_t>(std::min<uint64_t>(chunk, size - begin));
    bool use_direct = direct_ok.load() && options.mode != ReadMode::kBuffered &&
                      !(options.mode == ReadMode::kAuto && chunk_cached(begin, len));
    if (use_direct) {
      // Lengths must be block multiples: read past the blob's end up to 4 KiB (the slot has
      // room); end of file then gives a short read.
      const size_t got = pread_full(direct.get(), dst, round_up(len, kIoAlign), offset + begin);
      if (got == static_cast<size_t>(-1) && errno == EINVAL) {
        direct_ok = false;  // the filesystem refuses O_DIRECT after all
        use_direct = false;
      } else if (got == static_cast<size_t>(-1)) {
        throw_errno(path + ": read");
      } else if (got < len) {
        throw Error(ErrorKind::kInvalidInput, path + ": file is shorter than its header says");
      } else {
        direct_bytes += len;
      }
    }
    if (!use_direct) {
      const size_t got = pread_full(buffered.get(), dst, len, offset + begin);
      if (got == static_cast<size_t>(-1)) throw_errno(path + ": read");
      if (got < len)
        throw Error(ErrorKind::kInvalidInput, path + ": file is shorter than its header says");
    }
    return len;
  };

  auto reader = [&] {
    try {
      for (;;) {
        const uint64_t c = next_chunk.fetch_add(1);
        if (c >= n_chunks || failed) return;
        int slot;
        {
          std::unique_lock<std::mutex> lock(m);
          slot_freed.wait(lock, [&] { return !free_slots.empty() || failed; });
          if (failed) return;
          slot = free_slots.front();
          free_slots.pop_front();
        }
        sink.wait_slot(slot);  // the previous transfer out of this buffer has finished
        const size_t len = read_chunk(c, ring.slot(slot));
        {
          std::lock_guard<std::mutex> lock(sink_mutex);
          sink.submit(slot, ring.slot(slot), c * chunk, len);
        }
        {
          std::lock_guard<std::mutex> lock(m);
          free_slots.push_back(slot);
        }
        slot_freed.notify_one();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(m);
      if (!error) error = std::current_exception();
      failed = true;
      slot_freed.notify_all();
    }
  };

  const int n_readers =
      static_cast<int>(std::max<uint64_t>(1, std::min<uint64_t>(options.readers, n_chunks)));
  std::vector<std::thread> threads;
  for (int i = 0; i < n_readers; ++i) threads.emplace_back(reader);
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  sink.finish();
  if (stats) {
    stats->bytes = size;
    stats->direct_bytes = direct_bytes;
    stats->cached_bytes_at_start =
        pages.empty() ? 0 : std::min<uint64_t>(resident_pages * page, size);
    stats->readers = n_readers;
    stats->chunk_bytes = chunk;
    stats->slots = ring.slots();
  }
}

#if !defined(FOLEY_HAVE_CUDA)
DeviceBlob upload_file_range_to_cuda(const std::string&, uint64_t, uint64_t, int,
                                     const RingOptions&, UploadStats*) {
  throw Error(ErrorKind::kUnsupported, "this foley was built without CUDA");
}
bool cuda_memory_info(int, size_t*, size_t*) { return false; }
std::string cuda_device_name(int) { return {}; }
#endif

}  // namespace foley
