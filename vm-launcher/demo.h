// `vmwarden demo`: a real guest under the full sandbox, end to end. It builds
// the small guest image if needed, writes a definition with a read-only and
// a read-write share, boots it through `vmwarden supervise`, lets the guest
// prove what it can and cannot do, asks it to power off, and reports.
#pragma once

#include <chrono>
#include <filesystem>

#include "common/locations.h"

namespace vmwarden::vm {

struct DemoOptions {
  Locations locations;
  std::filesystem::path vmwarden;       // this binary, run as `vmwarden supervise`
  std::filesystem::path image_builder;  // tools/build-guest-image
  std::chrono::seconds timeout{180};    // for the guest to report, TCG included
};

// Everything goes below STATE_DIR/demo. Prints each step to stdout and
// returns 0 when the guest behaved as the sandbox promises (ro share
// readable but not writable, rw share writable with files owned by the VM's
// UID, clean power-off on SIGTERM), 1 otherwise.
int run_demo(const DemoOptions& options);

// Where the image builder is: VMWARDEN_IMAGE_BUILDER, the source tree this
// binary was built from, or the installed copy. Empty if none exists.
std::filesystem::path find_image_builder();

}  // namespace vmwarden::vm
