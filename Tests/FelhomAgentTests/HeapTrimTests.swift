import Foundation
import Testing

@testable import FelhomAgent

/// `malloc_trim` holds each heap's lock while it walks the free chunks: in the whole test process
/// (hundreds of suites allocating at once) that stalled every other test for about 25 s, so this
/// suite runs alone, in its own process: `scripts/test` sets FELHOM_TEST_HEAP_TRIM=1 for it.
@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["FELHOM_TEST_HEAP_TRIM"] == "1",
        "runs alone (FELHOM_TEST_HEAP_TRIM=1 swift test --filter HeapTrimTests): a trim stalls every thread of a busy process"))
struct HeapTrimTests {
    /// The process's resident anonymous memory in KiB (`RssAnon` of /proc/self/status).
    private func residentAnonymousKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    @Test func freePagesInTheMiddleOfTheHeapGoBackToTheKernel() throws {
        #expect(HeapTrim.available, "glibc's malloc_trim was not found")
        // 32 MiB in 64 KiB blocks (under glibc's mmap threshold: they are heap chunks), written so
        // they are resident. Every 64th stays allocated, so the freed runs lie between live chunks:
        // free() alone only shrinks a heap's top and keeps them resident.
        let size = 65536
        let blocks = (0..<512).map { _ in UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16) }
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size) }
        let kept = blocks.enumerated().filter { $0.offset % 64 == 63 }.map(\.element)
        defer { for block in kept { block.deallocate() } }
        for (i, block) in blocks.enumerated() where i % 64 != 63 { block.deallocate() }

        let before = try residentAnonymousKiB()
        #expect(HeapTrim.run(), "malloc_trim said it gave nothing back")
        let after = try residentAnonymousKiB()
        // 504 freed blocks are 31.5 MiB; other tests allocate beside this one, so ask for half.
        #expect(before - after >= 16 * 1024, "resident anonymous memory went from \(before) KiB to \(after) KiB")
    }
}
