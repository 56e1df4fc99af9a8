#!/usr/bin/env python3
"""Well-formedness checks of vmoer's packaging, standard library only.

    python3 tests/package/check_packaging.py [<vmoer source root>]

Checks that
  * ports/vmoer/vcpkg.json is valid JSON with the expected fields, and its literal
    "version-semver" equals the version in include/vmoer/version.hpp;
  * ports/vmoer/portfile.cmake fixes up the CMake package where cmake/vmoerInstall.cmake
    installs it, and ports/vmoer/usage exists;
  * conanfile.py (and tests/package/find_package/conanfile.py) compile, and the recipe,
    executed against a recording stand-in for the `conan` module (Conan itself is not
    needed), computes the same version and declares the expected package metadata;
  * CHANGELOG.md has a section for the version, and LICENSE is the MIT license.
Exits 1 listing every failed check.
"""

import json
import os
import py_compile
import re
import sys
import tempfile
import types

FAILURES = []


def check(ok, message):
    if not ok:
        FAILURES.append(message)
    return ok


def read(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def header_version(root):
    text = read(root, "include/vmoer/version.hpp")
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(r"^#define VMOER_VERSION_%s (\d+)$" % part, text, re.MULTILINE)
        if not m:
            sys.exit("include/vmoer/version.hpp: no '#define VMOER_VERSION_%s <n>' line" % part)
        parts.append(str(int(m.group(1))))
    return ".".join(parts)


def check_vcpkg(root, version):
    try:
        manifest = json.loads(read(root, "ports/vmoer/vcpkg.json"))
    except (OSError, ValueError) as e:
        check(False, "ports/vmoer/vcpkg.json: %s" % e)
        return
    check(manifest.get("name") == "vmoer", "vcpkg.json: name is %r, expected 'vmoer'" % manifest.get("name"))
    check(manifest.get("version-semver") == version,
          "vcpkg.json: version-semver is %r, include/vmoer/version.hpp says %r"
          % (manifest.get("version-semver"), version))
    others = [k for k in ("version", "version-string", "version-date") if k in manifest]
    check(not others, "vcpkg.json: use only version-semver, found %s" % others)
    check(manifest.get("license") == "MIT", "vcpkg.json: license is %r, expected 'MIT'" % manifest.get("license"))
    deps = {}
    for d in manifest.get("dependencies", []):
        if isinstance(d, str):
            deps[d] = False
        else:
            deps[d.get("name")] = bool(d.get("host"))
    for name, host in (("eigen3", False), ("xsimd", False), ("vcpkg-cmake", True), ("vcpkg-cmake-config", True)):
        check(name in deps, "vcpkg.json: missing dependency %s" % name)
        check(name not in deps or deps[name] == host,
              "vcpkg.json: dependency %s must%s be a host dependency" % (name, "" if host else " not"))

    portfile = read(root, "ports/vmoer/portfile.cmake")
    install = read(root, "cmake/vmoerInstall.cmake")
    m = re.search(r'set\(VMOER_INSTALL_CMAKEDIR\s+"\$\{CMAKE_INSTALL_DATADIR\}/([^"]+)"', install)
    if check(m, "cmake/vmoerInstall.cmake: cannot find the default VMOER_INSTALL_CMAKEDIR"):
        where = "share/" + m.group(1)
        check(re.search(r"vcpkg_cmake_config_fixup\(\s*CONFIG_PATH\s+%s\s*\)" % re.escape(where), portfile),
              "portfile.cmake: vcpkg_cmake_config_fixup must use CONFIG_PATH %s (where the package installs)" % where)
    for needle in ("vcpkg_from_github", "VCPKG_VMOER_SOURCE", "vcpkg_cmake_configure", "vcpkg_cmake_install",
                   "set(VCPKG_BUILD_TYPE release)", "vcpkg_install_copyright", "-DVMOER_BUILD_TESTS=OFF",
                   "-DVMOER_BUILD_BENCHMARKS=OFF", "-DVMOER_BUILD_EXAMPLES=OFF"):
        check(needle in portfile, "portfile.cmake: no %s" % needle)
    check(os.path.isfile(os.path.join(root, "ports/vmoer/usage")), "ports/vmoer/usage is missing")


def compiles(root, rel):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            py_compile.compile(os.path.join(root, rel), cfile=os.path.join(tmp, "out.pyc"), doraise=True)
            return True
        except py_compile.PyCompileError as e:
            check(False, "%s does not compile: %s" % (rel, e.msg))
            return False


class Recorder:
    """Records calls; stands in for any conan.* function the recipe imports."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __call__(self, *args, **kwargs):
        self.calls.append((self.name, args, kwargs))


class FakeCppInfo:
    def __init__(self):
        self.properties = {}
        self.bindirs = ["bin"]
        self.libdirs = ["lib"]
        self.requires = []
        self.components = {}

    def set_property(self, key, value):
        self.properties[key] = value


class FakeInfo:
    def __init__(self):
        self.cleared = False

    def clear(self):
        self.cleared = True


def fake_conan(calls):
    """A minimal `conan` package: ConanFile plus recording functions for everything else."""

    class ConanFile:
        version = None

        def __init__(self):
            self.requirements_seen = []

        def requires(self, ref, **traits):
            self.requirements_seen.append((ref, traits))

    def module(name):
        mod = types.ModuleType(name)
        mod.__getattr__ = lambda attr: Recorder("%s.%s" % (name, attr), calls)  # PEP 562
        return mod

    mods = {n: module(n) for n in ("conan", "conan.tools", "conan.tools.build", "conan.tools.files",
                                   "conan.tools.layout", "conan.tools.cmake", "conan.tools.scm",
                                   "conan.errors")}
    mods["conan"].ConanFile = ConanFile
    return mods, ConanFile


def load_recipe(path, calls):
    mods, base = fake_conan(calls)
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        namespace = {"__name__": "conanfile", "__file__": path}
        with open(path, encoding="utf-8") as f:
            exec(compile(f.read(), path, "exec"), namespace)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    recipes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, base) and v is not base]
    return namespace, recipes


def call(recipe, method):
    """Calls recipe.<method>(), reporting a missing method or an exception as a failure."""
    fn = getattr(recipe, method, None)
    if not check(callable(fn), "conanfile.py: no %s() method" % method):
        return False
    try:
        fn()
        return True
    except Exception as e:  # noqa: BLE001 - report whatever the recipe raised
        check(False, "conanfile.py: %s() raised %r" % (method, e))
        return False


def check_conan(root, version):
    if not compiles(root, "conanfile.py"):
        return
    calls = []
    try:
        namespace, recipes = load_recipe(os.path.join(root, "conanfile.py"), calls)
    except Exception as e:  # noqa: BLE001 - report whatever the recipe raised
        check(False, "conanfile.py: executing it against the conan stand-in failed: %r" % e)
        return
    if not check(len(recipes) == 1, "conanfile.py: expected one ConanFile subclass, found %d" % len(recipes)):
        return
    cls = recipes[0]
    check("read_version" in namespace and callable(namespace["read_version"]),
          "conanfile.py: no module-level read_version()")
    expected = {"name": "vmoer", "package_type": "header-library", "no_copy_source": True, "license": "MIT"}
    for attr, value in expected.items():
        check(getattr(cls, attr, None) == value,
              "conanfile.py: %s is %r, expected %r" % (attr, getattr(cls, attr, None), value))
    check(tuple(getattr(cls, "settings", ())) == ("os", "arch", "compiler", "build_type"),
          "conanfile.py: settings must be os, arch, compiler, build_type")
    sources = tuple(getattr(cls, "exports_sources", ()))
    for pattern in ("include/*", "CMakeLists.txt", "cmake/*", "LICENSE"):
        check(pattern in sources, "conanfile.py: exports_sources lacks %s" % pattern)

    recipe = cls()
    recipe.recipe_folder = root
    if call(recipe, "set_version"):
        check(recipe.version == version,
              "conanfile.py: set_version() gives %r, include/vmoer/version.hpp says %r" % (recipe.version, version))

    if call(recipe, "requirements"):
        refs = [ref for ref, _ in recipe.requirements_seen]
        check(any(r.startswith("eigen/3.4") for r in refs), "conanfile.py: no eigen/3.4.x requirement (%s)" % refs)
        check(any(r.startswith("xsimd/") for r in refs), "conanfile.py: no xsimd requirement (%s)" % refs)

    recipe.info = FakeInfo()
    if call(recipe, "package_id"):
        check(recipe.info.cleared, "conanfile.py: package_id() must call self.info.clear()")

    del calls[:]
    if call(recipe, "validate"):
        check(any(n.endswith("check_min_cppstd") and len(a) >= 2 and str(a[1]) == "20" for n, a, _ in calls),
              "conanfile.py: validate() must call check_min_cppstd(self, 20)")

    recipe.cpp_info = FakeCppInfo()
    if not call(recipe, "package_info"):
        return
    props = recipe.cpp_info.properties
    check(props.get("cmake_file_name") == "vmoer", "conanfile.py: cmake_file_name is %r" % props.get("cmake_file_name"))
    check(props.get("cmake_target_name") == "vmoer::vmoer",
          "conanfile.py: cmake_target_name is %r" % props.get("cmake_target_name"))
    check(recipe.cpp_info.bindirs == [] and recipe.cpp_info.libdirs == [],
          "conanfile.py: bindirs and libdirs must be empty for a header-only package")
    check(sorted(recipe.cpp_info.requires) == ["eigen::eigen", "xsimd::xsimd"],
          "conanfile.py: cpp_info.requires is %r" % recipe.cpp_info.requires)

    test_recipe = "tests/package/find_package/conanfile.py"
    if os.path.exists(os.path.join(root, test_recipe)):
        compiles(root, test_recipe)


def check_docs(root, version):
    changelog = read(root, "CHANGELOG.md")
    check(re.search(r"^## \[%s\]" % re.escape(version), changelog, re.MULTILINE),
          "CHANGELOG.md: no '## [%s]' section" % version)
    license_text = read(root, "LICENSE")
    check(license_text.startswith("MIT License") and "the vmoer authors" in license_text,
          "LICENSE: expected the MIT license, copyright the vmoer authors")


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    version = header_version(root)
    check_vcpkg(root, version)
    check_conan(root, version)
    check_docs(root, version)
    if FAILURES:
        print("packaging checks FAILED for vmoer %s:" % version)
        for f in FAILURES:
            print("  - " + f)
        return 1
    print("packaging checks passed for vmoer %s (vcpkg.json, portfile.cmake, conanfile.py, CHANGELOG.md, LICENSE)"
          % version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
