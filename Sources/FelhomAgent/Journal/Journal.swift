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

/// The operation journal (SPEC §4): append-only JSONL on an ``AppendLog``, each line fsync'd
/// before the step it records is acted on, so after a crash the agent knows what was in flight.
///
/// On open a torn last line (a crash mid-write) is cut off; every complete line is kept; a
/// malformed line before the last fails closed (the agent refuses to act on a damaged record). An
/// operation whose last entry is not terminal is in flight: the agent resumes or compensates it.
/// An operation with a terminal entry has run: its idempotency key is never executed again.
public final class Journal: Sendable {
    public let path: String
    private struct State {
        var ops: [String: [JournalEntry]]
        var order: [String]
    }
    private let log: AppendLog
    private let state: Mutex<State>
    let clock: WallClock

    public init(path: String, clock: WallClock = SystemWallClock(), io: any AppendLogIO = POSIXAppendLogIO()) throws(JournalError) {
        self.path = path
        self.clock = clock
        var ops: [String: [JournalEntry]] = [:]
        var order: [String] = []
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        do {
            log = try AppendLog(path: path, io: io) { line in
                guard let e = try? dec.decode(JournalEntry.self, from: Data(line)) else { return false }
                if ops[e.op] == nil { order.append(e.op) }
                ops[e.op, default: []].append(e)
                return true
            }
        } catch {
            throw JournalError(message: error.message)
        }
        state = Mutex(State(ops: ops, order: order))
    }

    /// Appends one step and fsyncs it. Only after this returns may the step be acted on. A failed
    /// append leaves the journal as it was (the step is not recorded and must not be acted on).
    public func append(op: String, kind: String, step: String, data: [String: String] = [:]) throws(JournalError) {
        let e = JournalEntry(op: op, kind: kind, step: step, at: clock.now(), data: data)
        let enc = JSONEncoder()
        enc.dateEncodingStrategy = .iso8601
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let line = try? enc.encode(e) else { throw JournalError(message: "cannot encode entry") }
        let result: String? = state.withLock { s in
            do throws(AppendLogError) { try log.append([UInt8](line)) } catch { return error.message }
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
