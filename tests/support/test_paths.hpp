// Where the programs under test are. The paths are defined in one source
// file that CMake generates (tests/CMakeLists.txt), not as -D definitions on
// every test object: the build's absolute paths then stay out of the other
// objects, so ccache reuses them for a clone in another folder.
#pragma once

namespace taskexec::test_paths {
extern const char* const test_helper;  ///< taskexec-test-helper
extern const char* const taskexecd;    ///< the daemon
extern const char* const cli;          ///< taskexec
extern const char* const stress;       ///< taskexec-stress
extern const char* const embed_check;  ///< taskexec-embed-check
extern const char* const source_dir;   ///< the source tree's root
}  // namespace taskexec::test_paths

#define TASKEXEC_TEST_HELPER ::taskexec::test_paths::test_helper
#define TASKEXECD ::taskexec::test_paths::taskexecd
#define BENCH_TASKEXECD ::taskexec::test_paths::taskexecd
#define TASKEXEC_CLI ::taskexec::test_paths::cli
#define TASKEXEC_STRESS ::taskexec::test_paths::stress
#define TASKEXEC_EMBED_CHECK ::taskexec::test_paths::embed_check
#define TASKEXEC_SOURCE_DIR ::taskexec::test_paths::source_dir
