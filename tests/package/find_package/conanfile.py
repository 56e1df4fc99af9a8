"""Conan 2 test_package for the vmoer recipe: builds and runs the find_package consumer.

    conan create . --build=missing -s compiler.cppstd=20 -tf tests/package/find_package
"""

import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout


class VmoerTestPackage(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    generators = "CMakeDeps"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["VMOER_EXPECTED_VERSION"] = str(self.dependencies["vmoer"].ref.version)
        # vmoer's own vmoerConfig.cmake is not what Conan consumers load (CMakeDeps writes one).
        tc.cache_variables["VMOER_CHECK_PACKAGE_CONTRACT"] = False
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if can_run(self):
            self.run(os.path.join(self.cpp.build.bindir, "route_batch"), env="conanrun")
