// Built by the ctest test bad_input.fast_math with -ffast-math, which must fail to compile
// with vmoer's message (include/vmoer/config.hpp).
#include <vmoer/vmoer.hpp>

int main() { return 0; }
