// The single source of the library's version: CMake, the vcpkg port and the
// Conan recipe all read these three lines.
#pragma once

#define VMOER_VERSION_MAJOR 0
#define VMOER_VERSION_MINOR 1
#define VMOER_VERSION_PATCH 0

#define VMOER_VERSION (VMOER_VERSION_MAJOR * 10000 + VMOER_VERSION_MINOR * 100 + VMOER_VERSION_PATCH)
