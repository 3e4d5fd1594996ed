// Turning a POST /v1/generations or /generate request (multipart upload, JSON naming a file
// under --media-root, or a text-only request with `seconds` and no video) into a validated
// JobRequest. The body is read as it arrives: the video part straight into a file in the uploads
// folder (never whole in memory), the other fields into small capped buffers. Field errors name
// the field (400); a body past the cap is 413; an upload that is not a readable video, or one
// longer than the server's limit that did not send max_seconds, is refused before it is queued
// (422); a full or read-only disk is 507/503.
#pragma once

#include <string>
#include <vector>

#include <httplib.h>

#include "job.h"

namespace foley_server {

struct RequestLimits {
  std::string uploads_dir;  // where uploads are stored, under generated names
  std::string media_root;   // realpath of --media-root; empty: JSON video_path refused
  // The operator's limit (--max-clip-seconds): the most video seconds a job uses, and the
  // longest text-only audio. Bounds max_seconds and seconds, and is max_seconds' default.
  double max_clip_seconds = 600.0;
  bool flac_available = true;
  int64_t max_upload_bytes = int64_t(256) << 20;
  // The registry's model names and the one a request that names none gets. Empty on a queue
  // front end: any well-formed name is passed on to the workers (and an absent one stays empty).
  std::vector<std::string> models;
  std::string default_model;
};

struct ParsedRequest {
  bool ok = false;
  JobRequest request;
  int status = 400;
  std::string code = "invalid_input";
  std::string message;
  int retry_after = 0;
};

ParsedRequest parse_generation_request(const httplib::Request& req,
                                       const httplib::ContentReader& body,
                                       const RequestLimits& limits);

// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_valid_utf8(const std::string& s);

}  // namespace foley_server
