# vcpkg port of vmoer (header-only). Two ways to get the sources:
#
#  * Release (default): the tagged archive from GitHub. On a release, set REF to the
#    tag and SHA512 to the archive's hash (vcpkg prints the expected hash when it
#    differs; `vcpkg hash <file>` computes it).
#
#  * Local source tree (overlay port, no network needed for vmoer itself): point the
#    environment variable VCPKG_VMOER_SOURCE (or a triplet variable of that name) at a
#    vmoer checkout:
#      VCPKG_VMOER_SOURCE=/path/to/vmoer vcpkg install vmoer --overlay-ports=/path/to/vmoer/ports
#    vcpkg does not hash the tree, so disable binary caching for such builds
#    (--binarysource=clear, or --editable in classic mode) to pick up local edits.
#    On Windows add VCPKG_VMOER_SOURCE to VCPKG_KEEP_ENV_VARS.
# See docs/install.md.

if(NOT DEFINED VCPKG_VMOER_SOURCE AND DEFINED ENV{VCPKG_VMOER_SOURCE})
  set(VCPKG_VMOER_SOURCE "$ENV{VCPKG_VMOER_SOURCE}")
endif()

if(VCPKG_VMOER_SOURCE)
  file(REAL_PATH "${VCPKG_VMOER_SOURCE}" SOURCE_PATH)
  if(NOT EXISTS "${SOURCE_PATH}/include/vmoer/version.hpp")
    message(FATAL_ERROR "VCPKG_VMOER_SOURCE=${VCPKG_VMOER_SOURCE} is not a vmoer source tree")
  endif()
  # The port's version (vcpkg.json) must be the tree's (include/vmoer/version.hpp).
  file(STRINGS "${SOURCE_PATH}/include/vmoer/version.hpp" _vmoer_lines REGEX "#define VMOER_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_vmoer_line IN LISTS _vmoer_lines)
    string(REGEX MATCH "VMOER_VERSION_([A-Z]+) ([0-9]+)" _ "${_vmoer_line}")
    set(_vmoer_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
  endforeach()
  set(_vmoer_tree_version "${_vmoer_MAJOR}.${_vmoer_MINOR}.${_vmoer_PATCH}")
  if(NOT _vmoer_tree_version STREQUAL VERSION)
    message(FATAL_ERROR "ports/vmoer/vcpkg.json says ${VERSION}, but ${SOURCE_PATH} is vmoer ${_vmoer_tree_version}")
  endif()
  message(STATUS "vmoer: building from the local source tree ${SOURCE_PATH}")
else()
  vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO vmoer/vmoer
    REF "v${VERSION}"
    # Placeholder until the first release: replace with the SHA512 of the v${VERSION} archive.
    SHA512 0
    HEAD_REF main
  )
endif()

set(VCPKG_BUILD_TYPE release)  # header-only

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DVMOER_BUILD_TESTS=OFF
    -DVMOER_BUILD_BENCHMARKS=OFF
    -DVMOER_BUILD_EXAMPLES=OFF
    -DVMOER_BUILD_TOOLS=OFF
    -DVMOER_BUILD_TORCH=OFF
    -DVMOER_CUDA=OFF
    -DVMOER_NATIVE=OFF
    -DVMOER_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/vmoer)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/share/doc")

vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
