# Driver of the packaging tests, run by ctest as
#   cmake -DSETTINGS=<package_test_settings.cmake> -DSTEP=<step> [-DCONFIG=<cfg>] -P run_package_test.cmake
# SETTINGS (written by tests/package/CMakeLists.txt) holds the parent build's generator,
# compiler, paths and prefix. Steps:
#   install          cmake --install the parent build tree into a fresh prefix, check the layout
#   find_package     configure/build/run tests/package/find_package against that prefix
#   find_package_no_openmp   the same with OpenMP unavailable to the consumer
#   add_subdirectory configure/build/run tests/package/add_subdirectory on the source tree
#   fetchcontent     the same consumer through FetchContent(SOURCE_DIR)
#   pkg_config       compile the program with $(pkg-config --cflags vmoer) against the prefix
cmake_minimum_required(VERSION 3.20)

if(NOT SETTINGS OR NOT STEP)
  message(FATAL_ERROR "usage: cmake -DSETTINGS=<file> -DSTEP=<step> -P run_package_test.cmake")
endif()
include("${SETTINGS}")
if(NOT CONFIG)
  set(CONFIG "${PKG_BUILD_TYPE}")
endif()

# run(<what> COMMAND...): runs a command, streaming its output, and fails on error.
function(run what)
  string(REPLACE ";" " " _shown "${ARGN}")
  message(STATUS "[${STEP}] ${what}: ${_shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "[${STEP}] ${what} failed (${_rc})")
  endif()
endfunction()

# The generator, compiler and search paths of the parent build, for a consumer configure.
set(_configure_args -G "${PKG_GENERATOR}")
if(PKG_GENERATOR_PLATFORM)
  list(APPEND _configure_args -A "${PKG_GENERATOR_PLATFORM}")
endif()
if(PKG_GENERATOR_TOOLSET)
  list(APPEND _configure_args -T "${PKG_GENERATOR_TOOLSET}")
endif()
if(PKG_MAKE_PROGRAM)
  list(APPEND _configure_args "-DCMAKE_MAKE_PROGRAM=${PKG_MAKE_PROGRAM}")
endif()
if(PKG_TOOLCHAIN_FILE)
  list(APPEND _configure_args "-DCMAKE_TOOLCHAIN_FILE=${PKG_TOOLCHAIN_FILE}")
endif()
list(APPEND _configure_args "-DCMAKE_CXX_COMPILER=${PKG_CXX_COMPILER}")
if(PKG_CXX_COMPILER_LAUNCHER)
  list(APPEND _configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${PKG_CXX_COMPILER_LAUNCHER}")
endif()
if(NOT PKG_MULTI_CONFIG)
  list(APPEND _configure_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
foreach(_dep IN ITEMS Eigen3 xsimd xtl)
  if(PKG_${_dep}_DIR)
    list(APPEND _configure_args "-D${_dep}_DIR=${PKG_${_dep}_DIR}")
  endif()
endforeach()

# consume(<name> <source dir> <prefix path> args...): fresh configure, build, run.
function(consume name source prefix_path)
  set(_bin "${PKG_WORK_DIR}/${name}")
  file(REMOVE_RECURSE "${_bin}")
  # The prefix path is a list: hand it over in an initial-cache script, not on the command line.
  file(WRITE "${_bin}-init.cmake" "set(CMAKE_PREFIX_PATH [==[${prefix_path}]==] CACHE STRING \"\")\n")
  run("configure" "${CMAKE_COMMAND}" -C "${_bin}-init.cmake" -S "${source}" -B "${_bin}" ${_configure_args} ${ARGN})
  run("build" "${CMAKE_COMMAND}" --build "${_bin}" --config "${CONFIG}")
  if(PKG_MULTI_CONFIG)
    set(_exe "${_bin}/${CONFIG}/route_batch${PKG_EXE_SUFFIX}")
  else()
    set(_exe "${_bin}/route_batch${PKG_EXE_SUFFIX}")
  endif()
  run("run" "${_exe}")
endfunction()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PKG_PREFIX}")
  run("install" "${CMAKE_COMMAND}" --install "${PKG_BINARY_DIR}" --prefix "${PKG_PREFIX}" --config "${CONFIG}")
  set(_expected
      "${PKG_INCLUDEDIR}/vmoer/vmoer.hpp"
      "${PKG_INCLUDEDIR}/vmoer/version.hpp"
      "${PKG_INCLUDEDIR}/vmoer/backend/cpu.hpp"
      "${PKG_CMAKEDIR}/vmoerConfig.cmake"
      "${PKG_CMAKEDIR}/vmoerConfigVersion.cmake"
      "${PKG_CMAKEDIR}/vmoerTargets.cmake"
      "${PKG_PKGCONFIGDIR}/vmoer.pc")
  foreach(_file IN LISTS _expected)
    if(NOT EXISTS "${PKG_PREFIX}/${_file}")
      message(FATAL_ERROR "[install] ${_file} is missing from the install prefix ${PKG_PREFIX}")
    endif()
  endforeach()
  # Every file of include/vmoer installed, and nothing else: a header with an extension
  # that cmake/vmoerInstall.cmake does not install (*.hpp, *.h, *.cuh, *.inl) fails here.
  file(GLOB_RECURSE _src_headers RELATIVE "${PKG_SOURCE_DIR}/include" "${PKG_SOURCE_DIR}/include/vmoer/*")
  file(GLOB_RECURSE _dst_headers RELATIVE "${PKG_PREFIX}/${PKG_INCLUDEDIR}" "${PKG_PREFIX}/${PKG_INCLUDEDIR}/vmoer/*")
  list(SORT _src_headers)
  list(SORT _dst_headers)
  if(NOT _src_headers STREQUAL _dst_headers)
    message(FATAL_ERROR "[install] installed headers differ from include/vmoer:\n"
                        "  source:    ${_src_headers}\n  installed: ${_dst_headers}")
  endif()
  # The package must be relocatable: no path of the source or build tree inside it.
  foreach(_file "${PKG_CMAKEDIR}/vmoerConfig.cmake" "${PKG_CMAKEDIR}/vmoerTargets.cmake" "${PKG_PKGCONFIGDIR}/vmoer.pc")
    file(READ "${PKG_PREFIX}/${_file}" _text)
    foreach(_tree IN ITEMS "${PKG_SOURCE_DIR}" "${PKG_BINARY_DIR}" "${PKG_PREFIX}")
      string(FIND "${_text}" "${_tree}" _at)
      if(NOT _at EQUAL -1)
        message(FATAL_ERROR "[install] ${_file} names the absolute path ${_tree}; the package must be relocatable")
      endif()
    endforeach()
  endforeach()
  list(LENGTH _dst_headers _n)
  message(STATUS "[install] ${_n} headers and the CMake/pkg-config package installed in ${PKG_PREFIX}")

elseif(STEP STREQUAL "find_package")
  consume(find_package "${PKG_SOURCE_DIR}/tests/package/find_package" "${PKG_PREFIX};${PKG_PREFIX_PATH}"
          "-DVMOER_EXPECTED_VERSION=${PKG_VERSION}" "-DVMOER_EXPECTED_PREFIX=${PKG_PREFIX}"
          "-DVMOER_EXPECT_OPENMP=${PKG_OPENMP}")

elseif(STEP STREQUAL "find_package_no_openmp")
  consume(find_package_no_openmp "${PKG_SOURCE_DIR}/tests/package/find_package" "${PKG_PREFIX};${PKG_PREFIX_PATH}"
          "-DVMOER_EXPECTED_VERSION=${PKG_VERSION}" "-DVMOER_EXPECTED_PREFIX=${PKG_PREFIX}"
          -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON -DVMOER_EXPECT_OPENMP=OFF)

elseif(STEP STREQUAL "add_subdirectory")
  consume(add_subdirectory "${PKG_SOURCE_DIR}/tests/package/add_subdirectory" "${PKG_PREFIX_PATH}"
          "-DVMOER_SOURCE_DIR=${PKG_SOURCE_DIR}")

elseif(STEP STREQUAL "fetchcontent")
  consume(fetchcontent "${PKG_SOURCE_DIR}/tests/package/add_subdirectory" "${PKG_PREFIX_PATH}"
          "-DVMOER_SOURCE_DIR=${PKG_SOURCE_DIR}" -DVMOER_VIA_FETCHCONTENT=ON)

elseif(STEP STREQUAL "pkg_config")
  if(NOT PKG_PKG_CONFIG)
    message(STATUS "VMOER_PACKAGE_TEST_SKIPPED: no pkg-config executable")
    return()
  endif()
  set(_pcdir "${PKG_PREFIX}/${PKG_PKGCONFIGDIR}")
  if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
    set(ENV{PKG_CONFIG_PATH} "${_pcdir}${PKG_PATH_SEP}$ENV{PKG_CONFIG_PATH}")
  else()
    set(ENV{PKG_CONFIG_PATH} "${_pcdir}")
  endif()
  execute_process(COMMAND "${PKG_PKG_CONFIG}" --print-errors --modversion vmoer
                  OUTPUT_VARIABLE _version OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0 OR NOT _version STREQUAL PKG_VERSION)
    message(FATAL_ERROR "[pkg_config] pkg-config --modversion vmoer gave '${_version}' (${_rc}), expected ${PKG_VERSION}")
  endif()
  execute_process(COMMAND "${PKG_PKG_CONFIG}" --print-errors --cflags vmoer
                  OUTPUT_VARIABLE _cflags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "[pkg_config] pkg-config --cflags vmoer failed (${_rc})")
  endif()
  message(STATUS "[pkg_config] pkg-config --cflags vmoer: ${_cflags}")
  separate_arguments(_cflags UNIX_COMMAND "${_cflags}")
  set(_bin "${PKG_WORK_DIR}/pkg_config")
  file(REMOVE_RECURSE "${_bin}")
  file(MAKE_DIRECTORY "${_bin}")
  set(_exe "${_bin}/route_batch${PKG_EXE_SUFFIX}")
  run("compile" "${PKG_CXX_COMPILER}" ${PKG_CXX20_FLAG} ${_cflags} -DVMOER_EXPECT_OPENMP=0
      "${PKG_SOURCE_DIR}/tests/package/route_batch.cpp" -o "${_exe}")
  run("run" "${_exe}")

else()
  message(FATAL_ERROR "unknown STEP '${STEP}'")
endif()
