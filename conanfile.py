"""Conan 2 recipe for vmoer, a header-only C++20 library of Bayesian MoE routers.

    conan create . --build=missing -s compiler.cppstd=20
    conan create . --build=missing -s compiler.cppstd=20 -tf tests/package/find_package

The version is read from include/vmoer/version.hpp, the library's single source of
its version (CMake, the vcpkg port and this recipe all agree on it; the packaging
ctest tests/package/check_packaging.py checks that they do).
"""

import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


def read_version(version_hpp):
    """Returns "MAJOR.MINOR.PATCH" from the VMOER_VERSION_* macros of version.hpp."""
    with open(version_hpp, encoding="utf-8") as f:
        text = f.read()
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(r"^\s*#\s*define\s+VMOER_VERSION_%s\s+(\d+)\s*$" % part, text, re.MULTILINE)
        if m is None:
            raise ValueError("%s: no #define VMOER_VERSION_%s" % (version_hpp, part))
        parts.append(str(int(m.group(1))))
    return ".".join(parts)


class VmoerConan(ConanFile):
    name = "vmoer"
    description = "Header-only Bayesian Mixture-of-Experts routers"
    license = "MIT"
    topics = ("mixture-of-experts", "moe", "routing", "bayesian", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "CMakeLists.txt", "cmake/*", "LICENSE"
    no_copy_source = True

    def set_version(self):
        self.version = self.version or read_version(
            os.path.join(self.recipe_folder, "include", "vmoer", "version.hpp"))

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Headers of both appear in vmoer's public headers: transitive.
        self.requires("eigen/3.4.0", transitive_headers=True)
        # xsimd 8.1 (Debian 12) and >= 9 (ConanCenter) both work: include/vmoer/backend/cpu/simd.hpp
        # maps the renamed reductions (hadd -> reduce_add).
        self.requires("xsimd/13.0.0", transitive_headers=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        for pattern in ("*.hpp", "*.cuh"):  # the CUDA backend's kernels are headers too
            copy(self, pattern, os.path.join(self.source_folder, "include"),
                 os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "vmoer")
        self.cpp_info.set_property("cmake_target_name", "vmoer::vmoer")
        self.cpp_info.set_property("pkg_config_name", "vmoer")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.requires = ["eigen::eigen", "xsimd::xsimd"]
