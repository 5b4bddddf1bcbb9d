// Owning wrappers for C handles: the handle is owned in the statement that creates it.
#pragma once

#include <memory>

namespace agent {

template <auto Fn>
struct CDeleter {
  template <class T>
  void operator()(T* p) const noexcept {
    if (p) Fn(p);
  }
};

template <class T, auto Fn>
using CHandle = std::unique_ptr<T, CDeleter<Fn>>;

}  // namespace agent
