// Running one job's request on a Generator and writing its result files: the part that is the
// same whether the job came from the local queue (Scheduler) or from Redis (`foley worker`).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "foley/foley.h"
#include "job.h"

namespace foley_server {

struct WrittenResult {
  std::string audio, video;  // video: the muxed clip, when muxing worked
  int64_t bytes = 0;
  int64_t clipped = 0;
};

struct GenerationOutcome {
  std::optional<foley::GenerationResult> result;  // set when the result files were written
  WrittenResult written;
  bool cancelled = false;  // stopped at a cancel check (job.cancel)
  int error_status = 0;    // otherwise, why it failed
  std::string error_code, error_message;
};

// Generates (from the video, or from the prompt alone for a text-only request), reporting
// progress into `job` (a "progress" event each; `on_progress` runs after, outside the job's lock)
// and reading `job.cancel`; then writes STEM.wav|flac (and STEM.mp4 when the request muxes a
// video) into `results_dir`. A full or read-only disk is a 507/503 error, not
// "internal".
GenerationOutcome generate_and_write(foley::Generator& generator, Job& job,
                                     const std::string& results_dir, const std::string& stem,
                                     const std::function<void()>& on_progress = {});

// The same for several jobs of one model at once (Generator::generate_batch: jobs whose clips
// have equal lengths are denoised together): one outcome per job, in order. Each job has its own
// progress events, cancel flag, result files (named by its id) and errors: one failing does not
// fail the others.
// `stems` name the result files (default: the job ids); `on_progress` runs after any job's
// progress event.
std::vector<GenerationOutcome> generate_batch_and_write(
    foley::Generator& generator, const std::vector<Job*>& jobs, const std::string& results_dir,
    const std::vector<std::string>& stems = {}, const std::function<void()>& on_progress = {});

// The job succeeded with the outcome's result (state, time, files, timings); the caller holds
// job.mutex and has checked outcome.result.
void record_success_locked(Job& job, const GenerationOutcome& outcome);

void delete_written(const WrittenResult& w);

}  // namespace foley_server
