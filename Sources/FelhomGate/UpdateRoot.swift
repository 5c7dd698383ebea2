import FelhomCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The agent's A/B install root (`/opt/felhom/agent` in production; any directory in tests):
///
/// ```
/// a/felhom-agent  a/release.json      one slot: a verified release and its signed manifest
/// b/felhom-agent  b/release.json      the other slot
/// current -> a                        what systemd starts (`current/felhom-agent`)
/// gate.json                           ``GateState``: last good slot, committed version, the pending flip
/// health.json                         ``HealthRecord``, written by a running agent after a good cycle
/// result.json                         ``GateResult``, the gate's last decision, for the agent to report
/// gate.lock                           serializes read-modify-write of gate.json (agent and gate)
/// ```
///
/// Every write is atomic and durable (temp file, fsync, rename, directory fsync); the `current`
/// symlink is replaced by renaming a fresh link over it, so it always points at a whole slot.
public struct UpdateRoot: Sendable {
    /// The two slots.
    public static let slots = ["a", "b"]
    /// The agent's executable name inside a slot.
    public static let executable = "felhom-agent"

    public let path: String

    public init(path: String) {
        self.path = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
    }

    public var currentLink: String { path + "/current" }
    public var statePath: String { path + "/gate.json" }
    public var healthPath: String { path + "/health.json" }
    public var resultPath: String { path + "/result.json" }
    public var lockPath: String { path + "/gate.lock" }
    public func slotDirectory(_ slot: String) -> String { path + "/" + slot }
    public func executable(in slot: String) -> String { slotDirectory(slot) + "/" + Self.executable }
    public func manifestPath(in slot: String) -> String { slotDirectory(slot) + "/release.json" }

    /// The other slot.
    public static func other(_ slot: String) -> String { slot == "a" ? "b" : "a" }

    /// The slot `current` points at, or nil when the link is missing or points elsewhere.
    public func currentSlot() -> String? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: currentLink) else { return nil }
        let name = (target as NSString).lastPathComponent
        return Self.slots.contains(name) ? name : nil
    }

    /// Points `current` at `slot` atomically: a new relative link next to it, renamed over it,
    /// then the directory fsync'd.
    public func point(at slot: String) throws(UpdateRootError) {
        guard Self.slots.contains(slot) else { throw UpdateRootError(.invalid, "no such slot '\(slot)'") }
        let tmp = path + "/.current.tmp-\(getpid())"
        unlink(tmp)
        guard symlink(slot, tmp) == 0 else { throw UpdateRootError(.io, "cannot create a link at '\(tmp)': \(Self.errnoText())") }
        guard rename(tmp, currentLink) == 0 else {
            let why = Self.errnoText()
            unlink(tmp)
            throw UpdateRootError(.io, "cannot replace '\(currentLink)': \(why)")
        }
        guard AppendLog.fsyncDirectory(path) else { throw UpdateRootError(.io, "cannot fsync '\(path)': \(Self.errnoText())") }
    }

    /// Reads gate.json; a missing file is nil, a damaged one an error (never guessed at).
    public func readState() throws(UpdateRootError) -> GateState? { try read(GateState.self, at: statePath) }
    public func writeState(_ state: GateState?) throws(UpdateRootError) {
        guard let state else {
            if unlink(statePath) != 0 && errno != ENOENT { throw UpdateRootError(.io, "cannot remove '\(statePath)': \(Self.errnoText())") }
            return
        }
        try write(state, at: statePath)
    }
    public func readHealth() throws(UpdateRootError) -> HealthRecord? { try read(HealthRecord.self, at: healthPath) }
    public func writeHealth(_ record: HealthRecord) throws(UpdateRootError) { try write(record, at: healthPath) }
    public func readResult() throws(UpdateRootError) -> GateResult? { try read(GateResult.self, at: resultPath) }
    public func writeResult(_ result: GateResult) throws(UpdateRootError) { try write(result, at: resultPath) }

    /// Runs `body` holding gate.lock (waiting for the other process's short critical section).
    public func locked<T>(_ body: () throws(UpdateRootError) -> T) throws(UpdateRootError) -> T {
        let lock: FileLock
        do { lock = try FileLock(path: lockPath, wait: true) } catch { throw UpdateRootError(.io, error.message) }
        defer { lock.release() }
        return try body()
    }

    func read<T: Decodable>(_ type: T.Type, at file: String) throws(UpdateRootError) -> T? {
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else { throw UpdateRootError(.io, "cannot read '\(file)'") }
        do { return try GateCoding.decoder.decode(T.self, from: data) } catch {
            throw UpdateRootError(.damaged, "'\(file)' is not a valid \(T.self): \(error)")
        }
    }

    func write<T: Encodable>(_ value: T, at file: String) throws(UpdateRootError) {
        let data: Data
        do { data = try GateCoding.encoder.encode(value) } catch { throw UpdateRootError(.invalid, "cannot encode \(T.self)") }
        do { try DurableFile.write([UInt8](data) + [0x0A], to: file, mode: 0o644) } catch { throw UpdateRootError(.io, error.message) }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

enum GateCoding {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

/// A failure of the gate or of the install root, with a code.
public struct UpdateRootError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case io, damaged, invalid }
    public var code: Code
    public var message: String
    public var description: String { message }
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}
