import Foundation
import Testing

@testable import FelhomAgent

@Suite struct HeapTrimTests {
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
