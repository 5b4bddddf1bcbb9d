// libFuzzer target: the JSON files the agent reads back from disk - its journal (undo.json,
// agent/load/journal.h), a build cache entry's result.json and failed.json (agent/build/cache.h), the
// image's bundle-manifest.json (agent/facts/bundle_manifest.h) and the status the readiness probe
// reads (agent/base/json_input.h). Whatever a disk, a hand edit or another
// tool left there is an error naming the file, never a crash, a leak or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agent/base/json_input.h"
#include "agent/build/cache.h"
#include "agent/facts/bundle_manifest.h"
#include "agent/load/journal.h"

using namespace agent;

namespace {
void expect_named(const Error& e, const char* file) {
  if (e.path != file || e.message.empty()) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The journal of this boot: the id the seeds use, so that the fields are read.
  if (auto j = parse_journal(text, "5b1f8f6e-6a2e-4c27-9d55-1b2c3d4e5f60", "fuzz/undo.json"); !j) {
    expect_named(j.error(), "fuzz/undo.json");
  } else {
    for (const auto& i : j->inserted)
      if (!valid_module_name(i.name)) std::abort();
    (void)to_json(*j).dump();
    KernelNow now;
    now.loaded["agent_test_nic"] = "cd34";
    (void)reconcile(*j, now);
  }
  for (bool failed : {false, true}) {
    if (auto r = parse_cache_record(text, "fuzz/result.json", failed); !r) {
      expect_named(r.error(), "fuzz/result.json");
    } else if (!failed && r->modules.empty()) {
      std::abort();
    }
  }
  if (auto m = parse_bundle_manifest(text, "fuzz/bundle-manifest.json"); !m) expect_named(m.error(), "fuzz/bundle-manifest.json");
  if (auto s = parse_json_object(text, "fuzz/status.json"); s) {
    const JsonFields f(*s, "fuzz/status.json");
    if (auto p = f.string("phase"); !p) expect_named(p.error(), "fuzz/status.json");
  }
  return 0;
}
