// Result downloads: the file is opened under the job's lock and streamed from the descriptor
// after it is released, so a slow client never holds the lock, the janitor can delete the file
// meanwhile, and nothing is read whole into memory. A single byte range (players seek) gets 206,
// an unsatisfiable one 416; several ranges are ignored (the whole file, as RFC 7233 allows).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <httplib.h>

#include "job.h"

namespace foley_server {

struct ResultFile {
  std::shared_ptr<int> fd;  // closed when the last response using it is done
  int64_t size = 0;
  std::string content_type, extension;
  explicit operator bool() const { return fd != nullptr; }
};

// The job's audio (or muxed video) opened for reading; empty when it is gone. Caller holds
// job.mutex.
ResultFile open_result_locked(const Job& job, bool video);

void serve_file(const httplib::Request& req, httplib::Response& res, const ResultFile& file,
                const std::string& download_name);

}  // namespace foley_server
