// GET /openapi.json: the API description, written by hand next to the handlers it describes.
#include <cstdio>

#include "app.h"

namespace foley_server {

namespace {

const char* const kOpenApi = R"json({
  "openapi": "3.0.3",
  "info": {
    "title": "foley serve",
    "version": "1",
    "description": "Video + text prompt -> Foley audio (HunyuanVideo-Foley), or audio from the prompt alone (seconds). Jobs are queued (bounded), run by a fixed set of workers, and their results kept for a TTL. A server may hold several models (GET /v1/models): a request names one in the field model (default: the server's default model); a model that is not loaded is loaded when a job needs it (the job reports the progress stage loading_model meanwhile), and least-recently-used idle models are unloaded to stay within the server's --vram-budget. With --max-batch above 1, queued jobs of one model and clip length are denoised together (each with its own prompt, seed, progress and cancel, and the audio it would get alone). When the server runs with --token, /v1/*, /generate and /metrics need 'Authorization: Bearer <token>'."
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
        "required": ["code", "message"], "properties": {
          "code": {"type": "string", "enum": ["invalid_input", "not_found", "too_large", "queue_full", "unauthorized", "cancelled", "unavailable", "timeout", "insufficient_storage", "storage_unavailable", "model_too_large", "model_busy", "internal"]},
          "message": {"type": "string"}}}}},
      "Progress": {"type": "object", "properties": {
        "stage": {"type": "string", "nullable": true, "enum": ["loading_model", "decode", "visual", "sync", "text", "denoise", "vae"], "description": "loading_model: the job waits while its model is loaded (and, within the budget, others are unloaded); its progress event then also carries the model's name in model"},
        "model": {"type": "string", "description": "in the loading_model progress event: the model being loaded"},
        "step": {"type": "integer", "description": "finished denoising steps (during denoise)"},
        "total_steps": {"type": "integer"},
        "window": {"type": "integer", "minimum": 0, "description": "during denoise of a clip longer than 15 s: windows finished within the step now running (0 for a short clip and right after a step)"},
        "total_windows": {"type": "integer", "minimum": 1, "description": "overlapping windows the clip is denoised in; 1 for a clip of at most 15 s. The denoising fraction is (step + window / total_windows) / total_steps"},
        "fraction": {"type": "number", "minimum": 0, "maximum": 1, "description": "rough overall completion"}}},
      "GenerationFields": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "maxLength": 4096, "description": "required; may be empty"},
        "model": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$", "description": "the model to run (a name from GET /v1/models); absent or empty: the server's default model. An unknown name is refused (400, listing the known ones) and no job is created. On a --queue front end the name is passed to the workers, which serve one model each: a job for another model fails"},
        "negative_prompt": {"type": "string", "maxLength": 4096, "default": "noisy, harsh"},
        "steps": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        "guidance": {"type": "number", "minimum": 0, "maximum": 30, "default": 4.5, "description": "<= 1 disables classifier-free guidance"},
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "max_seconds": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": @LIMIT@, "description": "seconds of the video used, from its start; default and maximum: this server's --max-clip-seconds (@LIMIT@). A video longer than that is refused (422) unless max_seconds is sent. Beyond 15 s the clip is generated in overlapping windows. Not with seconds"},
        "seconds": {"type": "number", "minimum": 0.64, "maximum": @LIMIT@, "description": "text-only generation: the length of audio made from the prompt alone, sent instead of a video (not with one); at most this server's --max-clip-seconds (@LIMIT@). The job makes audio only (no video_url)"},
        "format": {"type": "string", "enum": ["wav", "flac"], "default": "wav"},
        "sample_format": {"type": "string", "enum": ["f32", "s16"], "default": "f32", "description": "WAV samples: 32-bit float (exact) or 16-bit PCM (rounded to nearest, no dither; values outside [-1, 1] are clipped and counted in the job's clipped_samples)"}}},
      "Upload": {"allOf": [{"$ref": "#/components/schemas/GenerationFields"}, {"type": "object",
        "properties": {"video": {"type": "string", "format": "binary", "description": "any container FFmpeg reads; required unless seconds is sent (text-only)"}}}]},
      "ServerFile": {"allOf": [{"$ref": "#/components/schemas/GenerationFields"}, {"type": "object",
        "properties": {"video_path": {"type": "string", "description": "a file under the server's --media-root, relative to it or absolute (403 without --media-root; 404 when missing or outside it); required unless seconds is sent (text-only)"}}}]},
      "Job": {"type": "object", "required": ["id", "state"], "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "progress": {"$ref": "#/components/schemas/Progress"},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}, "description": "seconds per stage; load_model: the time the job waited for its model to be loaded (present only when it had to)"},
        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time", "nullable": true},
        "finished_at": {"type": "string", "format": "date-time", "nullable": true},
        "audio_seconds": {"type": "number"},
        "text_only": {"type": "boolean", "description": "made from the prompt alone (seconds): audio only"},
        "windows": {"type": "integer", "description": "when succeeded: the overlapping windows the clip was denoised in (1 up to 15 s)"},
        "batch_size": {"type": "integer", "description": "when succeeded: jobs denoised together with this one, itself included (1: alone; --max-batch); its audio is what it would be alone"},
        "clipped_samples": {"type": "integer", "description": "integer formats (s16 WAV, FLAC): samples clamped to [-1, 1]"},
        "status_url": {"type": "string"}, "events_url": {"type": "string"},
        "audio_url": {"type": "string"},
        "video_url": {"type": "string", "description": "present when a muxed MP4 is (or will be) available; never for a text-only job"},
        "params": {"type": "object", "description": "the request's fields; max_seconds for a video job, seconds for a text-only one; model: the model that runs it (null on a queue front end when the request named none)"}}},
      "Model": {"type": "object", "required": ["name", "state"], "properties": {
        "name": {"type": "string"},
        "bundle": {"type": "string", "description": "the bundle's file name (no directory)"},
        "dit_summary": {"type": "string", "description": "the DiT's size, e.g. depth and width"},
        "parameters": {"type": "integer"},
        "file_bytes": {"type": "integer", "description": "size of the bundle file"},
        "state": {"type": "string", "enum": ["loaded", "loading", "unloaded", "unloading"]},
        "bytes": {"type": "integer", "description": "memory the model holds now: weights plus its generators' work memory (device memory on CUDA, host memory on the CPU); its reservation while it loads; 0 when unloaded"},
        "requests": {"type": "integer", "description": "jobs that ran on it since start"},
        "running": {"type": "integer", "description": "jobs running on it now"},
        "loads": {"type": "integer"},
        "evictions": {"type": "integer", "description": "times it was unloaded to make room for another model"},
        "last_load_seconds": {"type": "number", "description": "how long its last load took (with warm-up)"},
        "last_used": {"type": "number", "nullable": true, "description": "Unix time of its last use; null if never used"},
        "last_error": {"type": "string", "nullable": true, "description": "why its last load failed; null if it did not"},
        "default": {"type": "boolean", "description": "the model of requests that name none"}}},
      "Models": {"type": "object", "required": ["models"], "properties": {
        "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        "default": {"type": "string"},
        "budget_bytes": {"type": "integer", "description": "--vram-budget in bytes; 0: no limit"},
        "used_bytes": {"type": "integer", "description": "memory the loaded models hold now"}}}
    },
    "responses": {
      "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "QueueFull": {"description": "queue full; see Retry-After", "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "parameters": {"id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
      "name": {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "a model's name"}}
  },
  "security": [{"bearer": []}],
  "paths": {
    "/": {"get": {"summary": "The browser page", "security": [], "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
    "/health/live": {"get": {"summary": "Liveness (200 from the first moment)", "security": [],
      "responses": {"200": {"description": "{\"status\":\"live\"}"}}}},
    "/health/ready": {"get": {"summary": "Readiness: 200 once the preloaded models (--preload, default the first --model) are loaded and warmed; other models load when a job needs them", "security": [],
      "responses": {"200": {"description": "{\"status\":\"ready\"}"}, "503": {"description": "{\"status\":\"loading\"}, {\"status\":\"draining\"}, or on a --queue front end {\"status\":\"queue_unreachable\"} (Redis does not answer)"}}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.0"}}}},
    "/metrics": {"get": {"summary": "Prometheus text metrics", "responses": {"200": {"description": "foley_queue_depth, foley_jobs, foley_jobs_total, foley_stage_seconds, foley_request_seconds, foley_job_batch_size (jobs denoised together, per succeeded job), foley_warmup_seconds, foley_device_memory_bytes, foley_ready, foley_http_connections, foley_http_refused_total; per model (label model): foley_model_loaded, foley_model_bytes, foley_model_requests_total, foley_model_loads_total, foley_model_evictions_total, foley_model_load_seconds (the last load); foley_models_budget_bytes, foley_models_used_bytes",
      "content": {"text/plain": {}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/v1/generations": {"post": {"summary": "Queue a generation: a video (multipart field video, or video_path in JSON), or text-only audio (seconds, no video), on the model the field model names (400 for an unknown one). A job whose model is larger than the whole --vram-budget fails (model_too_large). The body needs a Content-Length or chunked encoding (411 otherwise) and is refused above --max-upload-mb before it is read (413); the upload is streamed to disk (507 when the server's disk is full, 503 when it cannot write)",
      "requestBody": {"required": true, "content": {
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/ServerFile"}}}},
      "responses": {
        "202": {"description": "queued", "headers": {"Location": {"schema": {"type": "string"}}},
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"}, "411": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"},
        "422": {"description": "the video cannot be read, or it is longer than --max-clip-seconds and max_seconds was not sent", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "429": {"$ref": "#/components/responses/QueueFull"},
        "503": {"$ref": "#/components/responses/Error"}, "507": {"$ref": "#/components/responses/Error"}}}},
    "/v1/generations/{id}": {
      "parameters": [{"$ref": "#/components/parameters/id"}],
      "get": {"summary": "State, progress, timings and error of a job",
        "responses": {"200": {"description": "job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
          "404": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Cancel: a queued job is dropped, a running one stops at its next step and ends cancelled even if its work was already done (202 always means it will end cancelled); a finished job is forgotten and its files deleted",
        "responses": {"202": {"description": "cancelled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
          "200": {"description": "finished job deleted"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/v1/generations/{id}/events": {
      "parameters": [{"$ref": "#/components/parameters/id"}],
      "get": {"summary": "Server-Sent Events (at most --max-streams at once: 503 + Retry-After beyond): the current state first, then queued, running, progress (data = Progress; stage loading_model while the job's model is loaded), done (data = Job), failed (data = {error}), cancelled; the stream ends after a terminal event; ': keep-alive' comments every 10 s",
        "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/v1/generations/{id}/audio": {
      "parameters": [{"$ref": "#/components/parameters/id"}],
      "get": {"summary": "The generated audio (attachment); a single byte Range gets 206",
        "responses": {"200": {"description": "audio", "content": {"audio/wav": {}, "audio/flac": {}}},
          "206": {"description": "the requested byte range"}, "416": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/v1/generations/{id}/video": {
      "parameters": [{"$ref": "#/components/parameters/id"}],
      "get": {"summary": "The uploaded clip with the generated audio muxed in (video stream copied); a single byte Range gets 206",
        "responses": {"200": {"description": "MP4", "content": {"video/mp4": {}}},
          "206": {"description": "the requested byte range"}, "416": {"$ref": "#/components/responses/Error"},
          "404": {"description": "unknown or expired job, or no muxed video (a text-only job, or a clip MP4 cannot hold)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}, "409": {"$ref": "#/components/responses/Error"}}}},
    "/v1/models": {"get": {"summary": "The server's models: state, memory, use counts; the budget and the memory in use. 404 on a --queue front end (its workers each serve one model)",
      "responses": {"200": {"description": "models", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Models"}}}},
        "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/v1/models/{name}/load": {
      "parameters": [{"$ref": "#/components/parameters/name"}],
      "post": {"summary": "Load and warm a model now (synchronous: answers once it is loaded; at once if it already was). Least-recently-used idle models are unloaded to make room within the budget (it waits for busy ones to finish their jobs). No body",
        "responses": {"200": {"description": "loaded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}},
          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
          "500": {"description": "the load failed (the message says why; also the model's last_error)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "503": {"$ref": "#/components/responses/Error"},
          "507": {"description": "model_too_large: the model alone needs more than --vram-budget", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/v1/models/{name}/unload": {
      "parameters": [{"$ref": "#/components/parameters/name"}],
      "post": {"summary": "Unload an idle model now, freeing its memory (200 also when it was not loaded); a later job for it loads it again. No body",
        "responses": {"200": {"description": "unloaded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}},
          "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"},
          "409": {"description": "model_busy: it is running jobs, or loading; the message says which", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
          "503": {"$ref": "#/components/responses/Error"}}}},
    "/generate": {"post": {"summary": "Synchronous convenience: same fields as POST /v1/generations, answers with the audio. Waits at most --sync-timeout (then 504 and the job is cancelled); a client that disconnects cancels its job",
      "requestBody": {"required": true, "content": {
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/ServerFile"}}}},
      "responses": {"200": {"description": "audio", "content": {"audio/wav": {}, "audio/flac": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
        "422": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/QueueFull"},
        "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"},
        "504": {"$ref": "#/components/responses/Error"}, "507": {"$ref": "#/components/responses/Error"}}}}
  }
})json";

}  // namespace

std::string openapi_json(double max_clip_seconds) {
  char limit[32];
  std::snprintf(limit, sizeof limit, "%g", max_clip_seconds);
  std::string text = kOpenApi;
  const std::string mark = "@LIMIT@";
  for (size_t at = text.find(mark); at != std::string::npos; at = text.find(mark, at))
    text.replace(at, mark.size(), limit);
  return text;
}

}  // namespace foley_server
