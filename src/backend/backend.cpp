#include "backend/backend.h"

namespace foley {

#ifndef FOLEY_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) { return nullptr; }
#endif

}  // namespace foley
