// Package wine runs gopyk's Windows builds under Debian's wine in tests, so
// that the Windows side is exercised and not only compiled.
//
// Debian 12's wine 8 lacks two things Go 1.26 programs use: bcryptprimitives.dll
// (the runtime's ProcessPrng, needed before main) and
// FileDispositionInformationEx (os.RemoveAll). New makes a prefix with a
// bcryptprimitives.dll that forwards ProcessPrng to advapi32's RtlGenRandom,
// which has the same contract; test binaries built with `-tags wine
// -ldflags=-checklinkname=0` import this package on Windows, which switches
// os.RemoveAll to the deletion call wine has (fix_windows.go). Neither is
// part of a gopyk release.
//
// Wine runs headless here: DISPLAY is removed, and the Mono and Gecko
// installers a new prefix would offer are turned off.
package wine
