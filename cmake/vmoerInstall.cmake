# Install rules for the header-only vmoer::vmoer target: the headers, a relocatable
# CMake package (vmoerConfig.cmake, vmoerConfigVersion.cmake, vmoerTargets.cmake) and
# a pkg-config file. Included from the top-level CMakeLists.txt when VMOER_INSTALL is ON.
#
# Layout under the install prefix (all arch-independent, since nothing is compiled):
#   ${CMAKE_INSTALL_INCLUDEDIR}/vmoer/**            headers
#   ${CMAKE_INSTALL_DATADIR}/cmake/vmoer/           CMake package
#   ${CMAKE_INSTALL_DATADIR}/pkgconfig/vmoer.pc     pkg-config file
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(VMOER_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/vmoer"
    CACHE STRING "Where the vmoer CMake package files are installed, relative to the prefix")
set(VMOER_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Where vmoer.pc is installed, relative to the prefix")
mark_as_advanced(VMOER_INSTALL_CMAKEDIR VMOER_INSTALL_PKGCONFIGDIR)

# The target's INSTALL_INTERFACE include directory is spelled with
# ${CMAKE_INSTALL_INCLUDEDIR}, so GNUInstallDirs must be included before add_library.
get_target_property(_vmoer_incs vmoer INTERFACE_INCLUDE_DIRECTORIES)
if("${_vmoer_incs}" MATCHES "\\$<INSTALL_INTERFACE:>")
  message(FATAL_ERROR "vmoer: include(GNUInstallDirs) must come before add_library(vmoer) in CMakeLists.txt")
endif()
unset(_vmoer_incs)

# OpenMP is optional for consumers: the headers only use it under #if defined(_OPENMP).
# The build tree links OpenMP::OpenMP_CXX when it was found; in the exported target that
# link becomes $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>, which vmoerConfig.cmake tries
# to satisfy with find_package(OpenMP) and which is dropped when the consumer has none.
get_target_property(_vmoer_links vmoer INTERFACE_LINK_LIBRARIES)
set(VMOER_EXPORT_OPENMP OFF)
if(_vmoer_links AND "OpenMP::OpenMP_CXX" IN_LIST _vmoer_links)
  set(VMOER_EXPORT_OPENMP ON)
  list(TRANSFORM _vmoer_links
       REPLACE "^OpenMP::OpenMP_CXX$"
               "$<BUILD_INTERFACE:OpenMP::OpenMP_CXX>;$<INSTALL_INTERFACE:$<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>>")
  set_property(TARGET vmoer PROPERTY INTERFACE_LINK_LIBRARIES "${_vmoer_links}")
endif()
# The spelling of xsimd's target that the exported vmoer::vmoer names (see vmoerConfig.cmake.in).
if(_vmoer_links AND "xsimd::xsimd" IN_LIST _vmoer_links)
  set(VMOER_EXPORT_XSIMD_TARGET xsimd::xsimd)
else()
  set(VMOER_EXPORT_XSIMD_TARGET xsimd)
endif()
unset(_vmoer_links)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/vmoer"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT vmoer_Development
        FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.cuh" PATTERN "*.inl")

install(TARGETS vmoer EXPORT vmoerTargets)
install(EXPORT vmoerTargets
        NAMESPACE vmoer::
        DESTINATION "${VMOER_INSTALL_CMAKEDIR}"
        COMPONENT vmoer_Development)

configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/vmoerConfig.cmake.in"
                              "${PROJECT_BINARY_DIR}/vmoerConfig.cmake"
                              INSTALL_DESTINATION "${VMOER_INSTALL_CMAKEDIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/vmoerConfigVersion.cmake"
                                 VERSION "${PROJECT_VERSION}"
                                 COMPATIBILITY SameMajorVersion
                                 ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/vmoerConfig.cmake" "${PROJECT_BINARY_DIR}/vmoerConfigVersion.cmake"
        DESTINATION "${VMOER_INSTALL_CMAKEDIR}"
        COMPONENT vmoer_Development)

# pkg-config: the prefix is computed from the .pc file's own location, so the file
# stays correct under `cmake --install --prefix`, DESTDIR staging and vcpkg/conda moves.
if(IS_ABSOLUTE "${VMOER_INSTALL_PKGCONFIGDIR}")
  set(VMOER_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  set(_vmoer_pc_up "${VMOER_INSTALL_PKGCONFIGDIR}")
  set(VMOER_PC_PREFIX "\${pcfiledir}")
  while(NOT _vmoer_pc_up STREQUAL "" AND NOT _vmoer_pc_up STREQUAL ".")
    get_filename_component(_vmoer_pc_up "${_vmoer_pc_up}" DIRECTORY)
    string(APPEND VMOER_PC_PREFIX "/..")
  endwhile()
  unset(_vmoer_pc_up)
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(VMOER_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(VMOER_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/vmoer.pc.in" "${PROJECT_BINARY_DIR}/vmoer.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/vmoer.pc"
        DESTINATION "${VMOER_INSTALL_PKGCONFIGDIR}"
        COMPONENT vmoer_Development)

install(FILES "${PROJECT_SOURCE_DIR}/LICENSE"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/vmoer"
        COMPONENT vmoer_Development)
