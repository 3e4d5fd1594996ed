// Turning a POST /v1/generations or /generate request (multipart upload, or JSON naming a file
// under --media-root) into a validated JobRequest. Field errors name the field (400); an upload
// that is not a readable video is refused before it is queued (422).
#pragma once

#include <string>

#include <httplib.h>

#include "job.h"

namespace foley_server {

struct RequestLimits {
  std::string uploads_dir;  // where uploads are stored, under generated names
  std::string media_root;   // realpath of --media-root; empty: JSON video_path refused
  double max_clip_seconds = 15.0;
  bool flac_available = true;
};

struct ParsedRequest {
  bool ok = false;
  JobRequest request;
  int status = 400;
  std::string code = "invalid_input";
  std::string message;
};

ParsedRequest parse_generation_request(const httplib::Request& req, const RequestLimits& limits);

}  // namespace foley_server
