// Precompiled for every command file: CLI11 is header-only and its parse
// was most of each file's compile time.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>
