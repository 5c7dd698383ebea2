import FelhomCore
import Foundation
import Synchronization

/// A failure of the journal: the agent stops mutating rather than act without a record.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "journal: \(message)" }
}

/// One journal line: a step of a multi-step operation.
public struct JournalEntry: Sendable, Equatable, Codable {
    /// The operation (its idempotency key: a signed op's id, or `provision-<vmid>-<generation>`).
    public var op: String
    /// `provision`, `signed-op`, …
    public var kind: String
    /// `begin`, a named step, or one of the terminal steps `done`, `failed`, `compensated`.
    public var step: String
    public var at: Date
    /// Step details: vmid, UPID, reason.
    public var data: [String: String]

    public init(op: String, kind: String, step: String, at: Date, data: [String: String] = [:]) {
        self.op = op
        self.kind = kind
        self.step = step
        self.at = at
        self.data = data
    }

    public var isTerminal: Bool { ["done", "failed", "compensated"].contains(step) }
}

/// The operation journal (SPEC §4): append-only JSONL, each line fsync'd before the step it
/// records is acted on, so after a crash the agent knows what was in flight.
///
/// On open a torn last line (a crash mid-write) is cut off; every complete line is kept. An
/// operation whose last entry is not terminal is in flight: the agent resumes or compensates it.
/// An operation with a terminal entry has run: its idempotency key is never executed again.
public final class Journal: Sendable {
    public let path: String
    private struct State {
        var fd: Int32
        var ops: [String: [JournalEntry]]
        var order: [String]
    }
    private let state: Mutex<State>
    let clock: WallClock

    public init(path: String, clock: WallClock = SystemWallClock()) throws(JournalError) {
        self.path = path
        self.clock = clock
        var ops: [String: [JournalEntry]] = [:]
        var order: [String] = []
        if let data = FileManager.default.contents(atPath: path) {
            let bytes = [UInt8](data)
            var start = 0
            var good = 0
            let dec = JSONDecoder()
            dec.dateDecodingStrategy = .iso8601
            while let nl = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Data(bytes[start..<nl])
                if let e = try? dec.decode(JournalEntry.self, from: line) {
                    if ops[e.op] == nil { order.append(e.op) }
                    ops[e.op, default: []].append(e)
                }
                start = nl + 1
                good = start
            }
            if good < bytes.count, truncate(path, off_t(good)) != 0 {
                throw JournalError(message: "cannot cut the torn last line of '\(path)': \(String(cString: strerror(errno)))")
            }
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError(message: "cannot open '\(path)': \(String(cString: strerror(errno)))") }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
        state = Mutex(State(fd: fd, ops: ops, order: order))
    }

    deinit { state.withLock { _ = close($0.fd) } }

    /// Appends one step and fsyncs it. Only after this returns may the step be acted on.
    public func append(op: String, kind: String, step: String, data: [String: String] = [:]) throws(JournalError) {
        let e = JournalEntry(op: op, kind: kind, step: step, at: clock.now(), data: data)
        let enc = JSONEncoder()
        enc.dateEncodingStrategy = .iso8601
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var line = try? enc.encode(e) else { throw JournalError(message: "cannot encode entry") }
        line.append(UInt8(ascii: "\n"))
        let result: String? = state.withLock { s in
            let n = line.withUnsafeBytes { write(s.fd, $0.baseAddress, $0.count) }
            guard n == line.count else { return "cannot append to '\(path)': \(String(cString: strerror(errno)))" }
            guard fsync(s.fd) == 0 else { return "cannot fsync '\(path)': \(String(cString: strerror(errno)))" }
            if s.ops[op] == nil { s.order.append(op) }
            s.ops[op, default: []].append(e)
            return nil
        }
        if let result { throw JournalError(message: result) }
    }

    /// The entries of one operation, oldest first.
    public func entries(of op: String) -> [JournalEntry] { state.withLock { $0.ops[op] ?? [] } }

    /// Whether the operation reached a terminal step (so it must not run again).
    public func isFinished(_ op: String) -> Bool { entries(of: op).last?.isTerminal ?? false }

    /// Operations begun and not finished, in the order they began.
    public func inFlight() -> [(op: String, entries: [JournalEntry])] {
        state.withLock { s in
            s.order.compactMap { op in
                guard let list = s.ops[op], let last = list.last, !last.isTerminal else { return nil }
                return (op, list)
            }
        }
    }

    /// Every entry of every operation, in append order of operations (for reports and tests).
    public func allOperations() -> [(op: String, entries: [JournalEntry])] {
        state.withLock { s in s.order.map { ($0, s.ops[$0] ?? []) } }
    }
}
