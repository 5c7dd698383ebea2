import FelhomCore
import FelhomTestSupport
import Foundation
import Synchronization
import Testing

@testable import FelhomAgent

@Suite struct JournalTests {
    func tempPath() -> String {
        let dir = NSTemporaryDirectory() + "felhom-journal-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/journal.jsonl"
    }

    @Test func survivesReopenAndKnowsWhatIsInFlight() throws {
        let path = tempPath()
        do {
            let j = try Journal(path: path)
            try j.append(op: "a", kind: "provision", step: "begin", data: ["vmid": "120"])
            try j.append(op: "a", kind: "provision", step: "restore_started", data: ["upid": "UPID:x"])
            try j.append(op: "b", kind: "provision", step: "begin")
            try j.append(op: "b", kind: "provision", step: "done")
        }
        let j = try Journal(path: path)
        #expect(j.inFlight().map(\.op) == ["a"])
        #expect(j.entries(of: "a").map(\.step) == ["begin", "restore_started"])
        #expect(j.isFinished("b") && !j.isFinished("a"))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func aTornLastLineIsSkippedAndCut() throws {
        let path = tempPath()
        do {
            let j = try Journal(path: path)
            try j.append(op: "a", kind: "provision", step: "begin")
        }
        // A crash in the middle of writing the next line.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data(#"{"op":"a","kind":"provision","step":"restore_sta"#.utf8))
        try h.close()
        let j = try Journal(path: path)
        #expect(j.entries(of: "a").map(\.step) == ["begin"])
        // The next append starts on a fresh line and both survive another reopen.
        try j.append(op: "a", kind: "provision", step: "done")
        let again = try Journal(path: path)
        #expect(again.entries(of: "a").map(\.step) == ["begin", "done"])
        #expect(again.inFlight().isEmpty)
    }

    /// Issue 10 item 2: a failed append leaves no fragment for the next line to fuse with, so a
    /// terminal step written after it survives a restart (the op is not run again).
    @Test func aFailedAppendDoesNotEatTheNextLine() throws {
        let path = tempPath()
        let io = FaultyIO()
        do {
            let j = try Journal(path: path, io: io)
            try j.append(op: "a", kind: "signed-op", step: "begin")
            io.faults.withLock { $0.shortWriteThenFail = 7 }
            #expect(throws: JournalError.self) { try j.append(op: "a", kind: "signed-op", step: "task_started", data: ["upid": "UPID:x"]) }
            try j.append(op: "a", kind: "signed-op", step: "done")
        }
        let again = try Journal(path: path)
        #expect(again.entries(of: "a").map(\.step) == ["begin", "done"])
        #expect(again.isFinished("a"))
    }

    @Test func aDamagedLineBeforeTheLastFailsClosed() throws {
        let path = tempPath()
        do {
            let j = try Journal(path: path)
            try j.append(op: "a", kind: "provision", step: "begin")
        }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data("{not json\n".utf8))
        try h.close()
        do {
            let j = try Journal(path: path)
            try j.append(op: "a", kind: "provision", step: "done")
        }
        // "{not json" was the last line when the journal reopened (torn): cut. Now damage the middle.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"begin\"", with: "\"beg")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: JournalError.self) { try Journal(path: path) }
    }

    @Test func anUnwritableJournalIsAnError() {
        #expect(throws: JournalError.self) { try Journal(path: "/proc/felhom-cannot-write/journal.jsonl") }
    }
}

@Suite struct GuestQueueTests {
    /// A one-shot latch a test opens by hand (no timers).
    final class Latch: Sendable {
        let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { c in
                let resumeNow = state.withLock { s -> Bool in
                    if s.open { return true }
                    s.waiters.append(c)
                    return false
                }
                if resumeNow { c.resume() }
            }
        }
        func open() {
            let ws = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.open = true
                defer { s.waiters = [] }
                return s.waiters
            }
            for waiter in ws { waiter.resume() }
        }
    }

    final class Recorder: Sendable {
        let m = Mutex<[String]>([])
        func append(_ s: String) { m.withLock { $0.append(s) } }
        var all: [String] { m.withLock { $0 } }
    }

    @Test func sameGuestInOrderOtherGuestsInParallel() async throws {
        let q = GuestQueue()
        let order = Recorder()
        let holdFirst = Latch()
        let firstStarted = Latch()
        async let first: Void = q.run(vmid: 100) {
            order.append("100-a start")
            firstStarted.open()
            await holdFirst.wait()
            order.append("100-a end")
        }
        await firstStarted.wait()
        async let second: Void = q.run(vmid: 100) { order.append("100-b") }
        // A different guest runs while 100-a is still held.
        try await q.run(vmid: 200) { order.append("200") }
        #expect(order.all == ["100-a start", "200"])
        holdFirst.open()
        _ = try await (first, second)
        #expect(order.all == ["100-a start", "200", "100-a end", "100-b"])
    }

    @Test func aFailureDoesNotBlockTheNextWorkForThatGuest() async throws {
        struct Boom: Error {}
        let q = GuestQueue()
        await #expect(throws: Boom.self) { try await q.run(vmid: 1) { throw Boom() } }
        #expect(try await q.run(vmid: 1) { 42 } == 42)
        await q.drain()
        await #expect(throws: CancellationError.self) { try await q.run(vmid: 1) { 1 } }
    }
}
