// SIGTERM and SIGINT for the long-running commands (serve, worker): blocked in every thread
// started from here on, so one thread can sigwait() for them; SIGPIPE ignored (a vanished
// client or Redis must not kill the process).
#pragma once

#include <pthread.h>

#include <csignal>

namespace foley_cli {

inline sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return signals;
}

}  // namespace foley_cli
