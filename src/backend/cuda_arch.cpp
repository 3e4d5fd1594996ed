#include "backend/cuda_arch.h"

#include <cctype>
#include <vector>

namespace foley {
namespace {

struct Arch {
  int cc = 0;                  // 90 for "90a"
  bool arch_specific = false;  // "a" or "f" suffix: sm_90a runs on 9.0 only
  bool real = false, virt = false;
  std::string name;  // "90a"
};

// False if some entry is not of the form NN[a|f][-real|-virtual].
bool parse(const std::string& built, std::vector<Arch>& out) {
  size_t pos = 0;
  while (pos <= built.size()) {
    size_t end = built.find_first_of(",;", pos);
    if (end == std::string::npos) end = built.size();
    std::string e = built.substr(pos, end - pos);
    pos = end + 1;
    while (!e.empty() && std::isspace(static_cast<unsigned char>(e.back()))) e.pop_back();
    while (!e.empty() && std::isspace(static_cast<unsigned char>(e.front()))) e.erase(0, 1);
    if (e.empty()) continue;
    Arch a;
    size_t i = 0;
    while (i < e.size() && std::isdigit(static_cast<unsigned char>(e[i])))
      a.cc = a.cc * 10 + (e[i++] - '0');
    if (i == 0 || a.cc > 10000) return false;
    if (i < e.size() && (e[i] == 'a' || e[i] == 'f')) {
      a.arch_specific = true;
      ++i;
    }
    a.name = e.substr(0, i);
    const std::string kind = e.substr(i);
    if (kind.empty()) {
      a.real = a.virt = true;
    } else if (kind == "-real") {
      a.real = true;
    } else if (kind == "-virtual") {
      a.virt = true;
    } else {
      return false;
    }
    out.push_back(a);
  }
  return true;
}

std::string cc_text(int cc) {
  return std::to_string(cc / 10) + "." + std::to_string(cc % 10);
}

// "SASS for sm_80, sm_86 and PTX for compute_90"
std::string describe(const std::vector<Arch>& archs) {
  std::string sass, ptx;
  for (const Arch& a : archs) {
    if (a.real) sass += (sass.empty() ? "sm_" : ", sm_") + a.name;
    if (a.virt) ptx += (ptx.empty() ? "compute_" : ", compute_") + a.name;
  }
  std::string s = sass.empty() ? "no SASS" : "SASS for " + sass;
  s += ptx.empty() ? " and no PTX" : " and PTX for " + ptx;
  return s;
}

}  // namespace

CudaArchDecision decide_cuda_arch(int cc_major, int cc_minor, const std::string& built) {
  CudaArchDecision d;
  const int cc = cc_major * 10 + cc_minor;
  std::vector<Arch> archs;
  const bool known = parse(built, archs);
  const std::string card = "GPU compute capability " + cc_text(cc);
  const std::string has = known ? "this build has " + describe(archs)
                                : "this build's architectures are '" + built + "'";
  if (cc < kMinCudaCapability) {
    d.message = card + " is not supported: foley's CUDA kernels need " +
                cc_text(kMinCudaCapability) + " (Ampere) or newer (" + has + ")";
    return d;
  }
  if (!known || archs.empty()) {  // "native", "all", ...: nothing to check against
    d.ok = true;
    return d;
  }
  for (const Arch& a : archs) {
    if (!a.real) continue;
    const bool runs = a.arch_specific ? a.cc == cc : (a.cc / 10 == cc / 10 && a.cc <= cc);
    if (runs) {
      d.ok = true;
      return d;
    }
  }
  const Arch* ptx = nullptr;  // the newest PTX the card can JIT
  for (const Arch& a : archs)
    if (a.virt && (a.arch_specific ? a.cc == cc : a.cc <= cc) && (!ptx || a.cc > ptx->cc)) ptx = &a;
  if (ptx) {
    d.ok = true;
    d.via_ptx = true;
    d.message = card + " has no native code in this build (" + has +
                "): its kernels run from the compute_" + ptx->name +
                " PTX, JIT-compiled by the driver, so the first start is slower (the driver "
                "caches the result). For native code, build with -DCMAKE_CUDA_ARCHITECTURES=" +
                std::to_string(cc) + "-real added";
    return d;
  }
  d.message = card + " cannot run this build (" + has + "); rebuild with " +
              "-DCMAKE_CUDA_ARCHITECTURES including " + std::to_string(cc) + "-real";
  return d;
}

const char* cuda_built_archs() {
#ifdef FOLEY_CUDA_ARCHS
  return FOLEY_CUDA_ARCHS;
#else
  return "";
#endif
}

}  // namespace foley
