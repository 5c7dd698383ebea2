import FelhomCore
import Foundation

/// The controller's files in `state_dir` (settings, the quiesce marker, locks): one place that
/// creates the directory (0700) and writes JSON whole and durably (temporary file, fsync, rename,
/// directory fsync; mode 0600) with ISO 8601 dates.
enum StateFiles {
    /// Creates `stateDir` (0700) when missing.
    static func ensureDirectory(_ stateDir: String) throws(ControllerError) {
        do {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch { throw ControllerError(.config, "cannot create state_dir '\(stateDir)': \(error.localizedDescription)") }
    }

    /// Writes `value` as JSON to `path` inside `stateDir`; `what` names it in errors.
    static func write(_ value: some Encodable, to path: String, in stateDir: String, what: String, pretty: Bool = false) throws(ControllerError) {
        try ensureDirectory(stateDir)
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let bytes: [UInt8]
        do { bytes = Array(try encoder.encode(value)) } catch { throw ControllerError(.config, "cannot encode \(what): \(error)") }
        do throws(AppendLogError) { try DurableFile.write(bytes, to: path, mode: 0o600) } catch {
            throw ControllerError(.config, "cannot write \(what) '\(path)': \(error.message)")
        }
    }

    /// Reads `path` as `T`; nil when the file does not exist; `damaged` is the error text for a
    /// file that exists but does not decode (never silently replaced by defaults).
    static func read<T: Decodable>(_ type: T.Type, from path: String, damaged: (Error) -> String) throws(ControllerError) -> T? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode(T.self, from: data) } catch { throw ControllerError(.config, damaged(error)) }
    }
}
