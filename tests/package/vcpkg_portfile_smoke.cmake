# Runs ports/vmoer/portfile.cmake without vcpkg, against stand-ins for the vcpkg helper
# functions it calls, on the local source tree (the overlay-port path, VCPKG_VMOER_SOURCE):
#   cmake -DSETTINGS=<package_test_settings.cmake> -P vcpkg_portfile_smoke.cmake
# It checks that the portfile parses, that its version (ports/vmoer/vcpkg.json) matches
# the tree's, that configure/install with its options succeed and put the CMake package
# at the CONFIG_PATH it fixes up, the pkg-config file and the license where it expects.
# What vcpkg itself does (downloads, path rewriting in vcpkg_cmake_config_fixup, ABI
# hashing, post-build lints) is not emulated: that needs a real vcpkg run (docs/install.md).
cmake_minimum_required(VERSION 3.20)
include("${SETTINGS}")

file(READ "${PKG_SOURCE_DIR}/ports/vmoer/vcpkg.json" _manifest)
string(JSON VERSION GET "${_manifest}" version-semver)
set(PORT vmoer)
set(_root "${PKG_WORK_DIR}/vcpkg_smoke")
set(CURRENT_PACKAGES_DIR "${_root}/packages/vmoer")
set(CURRENT_BUILDTREES_DIR "${_root}/buildtrees/vmoer")
file(REMOVE_RECURSE "${_root}")
set(VCPKG_VMOER_SOURCE "${PKG_SOURCE_DIR}")

function(_smoke_run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "vcpkg stand-in: '${ARGN}' failed (${_rc})")
  endif()
endfunction()

function(vcpkg_from_github)
  message(FATAL_ERROR "vcpkg stand-in: the portfile tried to download although VCPKG_VMOER_SOURCE is set")
endfunction()

function(vcpkg_cmake_configure)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "SOURCE_PATH" "OPTIONS")
  if(NOT VCPKG_BUILD_TYPE STREQUAL "release")
    message(FATAL_ERROR "vcpkg stand-in: set(VCPKG_BUILD_TYPE release) must come before vcpkg_cmake_configure")
  endif()
  set(_args -G "${PKG_GENERATOR}" "-DCMAKE_CXX_COMPILER=${PKG_CXX_COMPILER}" -DCMAKE_BUILD_TYPE=Release
            "-DCMAKE_INSTALL_PREFIX=${CURRENT_PACKAGES_DIR}")
  if(PKG_MAKE_PROGRAM)
    list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${PKG_MAKE_PROGRAM}")
  endif()
  foreach(_dep IN ITEMS Eigen3 xsimd xtl)
    if(PKG_${_dep}_DIR)
      list(APPEND _args "-D${_dep}_DIR=${PKG_${_dep}_DIR}")
    endif()
  endforeach()
  _smoke_run("${CMAKE_COMMAND}" -S "${arg_SOURCE_PATH}" -B "${CURRENT_BUILDTREES_DIR}/rel" ${_args} ${arg_OPTIONS})
  # The options must really switch the project's own programs off.
  file(STRINGS "${CURRENT_BUILDTREES_DIR}/rel/CMakeCache.txt" _on REGEX "^VMOER_(BUILD_[A-Z]+|CUDA):BOOL=ON$")
  if(_on)
    message(FATAL_ERROR "vcpkg stand-in: the port builds more than the library: ${_on}")
  endif()
endfunction()

function(vcpkg_cmake_install)
  _smoke_run("${CMAKE_COMMAND}" --build "${CURRENT_BUILDTREES_DIR}/rel")
  _smoke_run("${CMAKE_COMMAND}" --install "${CURRENT_BUILDTREES_DIR}/rel")
endfunction()

function(vcpkg_cmake_config_fixup)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "CONFIG_PATH;PACKAGE_NAME" "")
  foreach(_f vmoerConfig.cmake vmoerConfigVersion.cmake vmoerTargets.cmake)
    if(NOT EXISTS "${CURRENT_PACKAGES_DIR}/${arg_CONFIG_PATH}/${_f}")
      message(FATAL_ERROR "vcpkg stand-in: CONFIG_PATH ${arg_CONFIG_PATH} has no ${_f}")
    endif()
  endforeach()
  file(RENAME "${CURRENT_PACKAGES_DIR}/${arg_CONFIG_PATH}" "${CURRENT_PACKAGES_DIR}/share/${PORT}")
endfunction()

function(vcpkg_fixup_pkgconfig)
  if(NOT EXISTS "${CURRENT_PACKAGES_DIR}/share/pkgconfig/vmoer.pc")
    message(FATAL_ERROR "vcpkg stand-in: no share/pkgconfig/vmoer.pc to fix up")
  endif()
endfunction()

function(vcpkg_install_copyright)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "FILE_LIST")
  foreach(_f IN LISTS arg_FILE_LIST)
    if(NOT EXISTS "${_f}")
      message(FATAL_ERROR "vcpkg stand-in: copyright file ${_f} does not exist")
    endif()
  endforeach()
  configure_file("${arg_FILE_LIST}" "${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright" COPYONLY)
endfunction()

# The portfile's CMAKE_CURRENT_LIST_DIR is the port directory, as under vcpkg.
include("${PKG_SOURCE_DIR}/ports/vmoer/portfile.cmake")

foreach(_f include/vmoer/vmoer.hpp share/vmoer/vmoerConfig.cmake share/vmoer/copyright share/vmoer/usage)
  if(NOT EXISTS "${CURRENT_PACKAGES_DIR}/${_f}")
    message(FATAL_ERROR "vcpkg stand-in: the port did not produce ${_f}")
  endif()
endforeach()
file(GLOB _left "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/share/cmake/*")
if(_left)
  message(FATAL_ERROR "vcpkg stand-in: the port left ${_left} behind")
endif()
message(STATUS "portfile.cmake produced vmoer ${VERSION} in ${CURRENT_PACKAGES_DIR}")
