// /v1/models: the registry's models (GET), and loading or unloading one by hand (POST
// .../load, .../unload). Jobs load the model they name on their own; these let an operator warm
// a model before traffic arrives or free its memory.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "app.h"
#include "http_errors.h"
#include "model_specs.h"

namespace foley_server {

namespace {

nlohmann::json status_json(const foley::RegistryModelStatus& s, bool is_default) {
  return {{"name", s.name},
          // The bundle's file name: the API tells no server paths.
          {"bundle", std::filesystem::path(s.bundle_path).filename().string()},
          {"dit_summary", s.dit_summary},
          {"parameters", s.parameters},
          {"file_bytes", s.file_bytes},
          {"state", foley::model_state_name(s.state)},
          {"bytes", s.bytes},
          {"requests", s.requests},
          {"running", s.running},
          {"loads", s.loads},
          {"evictions", s.evictions},
          {"last_load_seconds", s.last_load_seconds},
          {"last_used", s.last_used_unix > 0 ? nlohmann::json(s.last_used_unix) : nullptr},
          {"last_error", s.last_error.empty() ? nlohmann::json(nullptr)
                                              : nlohmann::json(scrub_paths(s.last_error))},
          {"default", is_default}};
}

}  // namespace

nlohmann::json App::model_entry(const std::string& name) const {
  for (const auto& s : registry_->status())
    if (s.name == name) return status_json(s, name == registry_->default_model());
  return nullptr;
}

bool App::known_model_or_404(const std::string& name, httplib::Response& res) {
  if (!registry_) {
    send_error(res, 404, "not_found",
               "this server is a front end of a queue and has no models of its own: each "
               "`foley worker` serves the model of its --model");
    return false;
  }
  if (registry_->has(name)) return true;
  std::string known;
  for (const auto& n : limits_.models) known += (known.empty() ? "" : ", ") + n;
  send_error(res, 404, "not_found",
             (is_valid_model_name(name) ? "no model named \"" + name + "\""
                                        : std::string("no such model")) +
                 " (this server has: " + known + ")");
  return false;
}

void App::get_models(const httplib::Request&, httplib::Response& res) {
  if (!known_model_or_404(limits_.default_model, res)) return;
  nlohmann::json models = nlohmann::json::array();
  for (const auto& s : registry_->status())
    models.push_back(status_json(s, s.name == registry_->default_model()));
  send_json(res, 200,
            {{"models", models},
             {"default", registry_->default_model()},
             {"budget_bytes", registry_->options().budget_bytes},
             {"used_bytes", registry_->used_bytes()}});
}

// Synchronous: answers once the model is loaded. The load itself runs on a thread of its own,
// so a stopping server (or a client that left) does not wait for it.
void App::post_model_load(const httplib::Request& req, httplib::Response& res) {
  const std::string name = req.matches[1];
  if (!known_model_or_404(name, res)) return;
  struct Pending {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    int status = 200;
    std::string code, message;
  };
  auto pending = std::make_shared<Pending>();
  ++*loads_in_flight_;
  std::thread([registry = registry_, name, pending, in_flight = loads_in_flight_,
               cancel = loads_cancel_] {
    int status = 200;
    std::string code, message;
    try {
      registry->load(name, cancel.get());
    } catch (const foley::Error& e) {
      switch (e.kind()) {
        case foley::ErrorKind::kUnsupported:
          status = 507, code = "model_too_large",
          message = "model larger than the budget: " + scrub_paths(e.what());
          break;
        case foley::ErrorKind::kCancelled:
          status = 503, code = "unavailable", message = "the server is shutting down";
          break;
        case foley::ErrorKind::kNotFound:
          status = 404, code = "not_found", message = scrub_paths(e.what());
          break;
        default:
          std::fprintf(stderr, "foley serve: loading model %s: %s\n", name.c_str(), e.what());
          status = 500, code = "internal", message = scrub_paths(e.what());
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "foley serve: loading model %s: %s\n", name.c_str(), e.what());
      status = 500, code = "internal", message = "internal error (see the server log)";
    }
    {
      std::lock_guard<std::mutex> lock(pending->mutex);
      pending->done = true;
      pending->status = status;
      pending->code = code;
      pending->message = message;
    }
    pending->done_cv.notify_all();
    --*in_flight;
  }).detach();
  std::unique_lock<std::mutex> lock(pending->mutex);
  while (!pending->done) {
    pending->done_cv.wait_for(lock, std::chrono::milliseconds(200));
    if (pending->done) break;
    if (stopping_) {
      lock.unlock();
      res.set_header("Retry-After", "30");
      return send_error(res, 503, "unavailable", "the server is shutting down");
    }
    if (FrontServer::client_gone()) return;  // nobody reads the answer; the load goes on
  }
  if (pending->status != 200) {
    const int status = pending->status;
    const std::string code = pending->code, message = pending->message;
    lock.unlock();
    return send_error(res, status, code, message);
  }
  lock.unlock();
  send_json(res, 200, model_entry(name));
}

void App::post_model_unload(const httplib::Request& req, httplib::Response& res) {
  const std::string name = req.matches[1];
  if (!known_model_or_404(name, res)) return;
  if (registry_->unload(name)) return send_json(res, 200, model_entry(name));
  const nlohmann::json entry = model_entry(name);
  const std::string state = entry.value("state", "");
  const int running = entry.value("running", 0);
  std::string why;
  if (running > 0)
    why = "the model \"" + name + "\" is running " + std::to_string(running) +
          (running == 1 ? " request" : " requests") + "; unload it once they end";
  else if (state == "loading")
    why = "the model \"" + name + "\" is loading; unload it once it is loaded";
  else
    why = "the model \"" + name + "\" is " + state + "; retry shortly";
  send_error(res, 409, "model_busy", why);
}

}  // namespace foley_server
