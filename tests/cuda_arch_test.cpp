// The compute-capability check of CUDA builds (src/backend/cuda_arch.h): pure host logic, run on
// CPU machines; the GPU path calls it through check_cuda_device() at backend/loader creation.
#include "backend/cuda_arch.h"

#include <gtest/gtest.h>

#include <string>

namespace foley {
namespace {

const std::string kDefault = "80-real,86-real,89-real,90a-real,90-virtual";

TEST(CudaArch, NativeSassForSupportedCards) {
  for (auto [major, minor] : {std::pair{8, 0}, {8, 6}, {8, 7}, {8, 9}, {9, 0}}) {
    const CudaArchDecision d = decide_cuda_arch(major, minor, kDefault);
    EXPECT_TRUE(d.ok) << major << "." << minor;
    EXPECT_FALSE(d.via_ptx) << major << "." << minor;
    EXPECT_TRUE(d.message.empty()) << d.message;
  }
}

TEST(CudaArch, OlderThanAmpereIsRefused) {
  for (auto [major, minor] : {std::pair{7, 5}, {7, 0}, {6, 1}}) {
    const CudaArchDecision d = decide_cuda_arch(major, minor, kDefault);
    EXPECT_FALSE(d.ok);
    const std::string cc = std::to_string(major) + "." + std::to_string(minor);
    EXPECT_NE(d.message.find("compute capability " + cc), std::string::npos) << d.message;
    EXPECT_NE(d.message.find("8.0"), std::string::npos) << d.message;
    EXPECT_NE(d.message.find("sm_80, sm_86, sm_89, sm_90a"), std::string::npos) << d.message;
  }
}

TEST(CudaArch, NewerCardsRunFromPtx) {
  // Blackwell (10.0 data centre, 12.0 consumer) and a future 11.0: no SASS, compute_90 PTX JIT.
  for (auto [major, minor] : {std::pair{10, 0}, {12, 0}, {11, 0}}) {
    const CudaArchDecision d = decide_cuda_arch(major, minor, kDefault);
    EXPECT_TRUE(d.ok);
    EXPECT_TRUE(d.via_ptx);
    const std::string cc = std::to_string(major) + "." + std::to_string(minor);
    EXPECT_NE(d.message.find("compute capability " + cc), std::string::npos) << d.message;
    EXPECT_NE(d.message.find("compute_90 PTX"), std::string::npos) << d.message;
    EXPECT_NE(d.message.find("first start is slower"), std::string::npos) << d.message;
  }
}

TEST(CudaArch, ArchSpecificSassRunsOnItsOwnCardOnly) {
  // sm_90a cubins do not run on a 10.0 card, and 90a PTX would not either: without the plain PTX
  // a Blackwell card is refused.
  const CudaArchDecision d = decide_cuda_arch(10, 0, "80-real;86-real;89-real;90a-real");
  EXPECT_FALSE(d.ok);
  EXPECT_NE(d.message.find("compute capability 10.0 cannot run this build"), std::string::npos)
      << d.message;
  EXPECT_NE(d.message.find("no PTX"), std::string::npos) << d.message;
  EXPECT_NE(d.message.find("100-real"), std::string::npos) << d.message;
  EXPECT_FALSE(decide_cuda_arch(10, 0, "90a").ok);
  // Plain SASS runs on later minors of its major only.
  EXPECT_TRUE(decide_cuda_arch(8, 9, "80-real").ok);
  EXPECT_FALSE(decide_cuda_arch(9, 0, "80-real").ok);
  EXPECT_FALSE(decide_cuda_arch(8, 0, "86-real").ok);
  // A PTX newer than the card cannot be JIT-compiled for it.
  EXPECT_FALSE(decide_cuda_arch(8, 9, "90-virtual").ok);
  EXPECT_TRUE(decide_cuda_arch(8, 9, "80").ok);
  EXPECT_FALSE(decide_cuda_arch(8, 9, "80").via_ptx);
}

TEST(CudaArch, UnparsedListsCheckOnlyTheFloor) {
  EXPECT_TRUE(decide_cuda_arch(12, 0, "native").ok);
  EXPECT_TRUE(decide_cuda_arch(8, 0, "all-major").ok);
  EXPECT_FALSE(decide_cuda_arch(7, 5, "native").ok);
}

TEST(CudaArch, BuildListShipsPtxFallback) {
#ifdef FOLEY_HAVE_CUDA
  const std::string built = cuda_built_archs();
  EXPECT_FALSE(built.empty());
  // Whatever the configured list, the default one ships a PTX for newer cards.
  if (built == kDefault) {
    EXPECT_TRUE(decide_cuda_arch(12, 0, built).via_ptx);
  }
#else
  EXPECT_STREQ(cuda_built_archs(), "");
#endif
}

}  // namespace
}  // namespace foley
