import FelhomCore
import Foundation
import Subprocess

/// Tells which filesystem is mounted at a storage path, to notice a disk that was disconnected
/// and recognise the same disk when it comes back.
public protocol StorageProbe: Sendable {
    /// The identity of the filesystem mounted exactly at `path` — its UUID, or `SOURCE (FSTYPE)` for
    /// one without a UUID — or nil when nothing is mounted there (or the path is gone).
    func mountIdentity(_ path: String) async -> String?
}

/// The real probe: `findmnt -J -o UUID,SOURCE,FSTYPE --mountpoint PATH` (util-linux), JSON only.
public struct FindmntProbe: StorageProbe {
    public init() {}

    public func mountIdentity(_ path: String) async -> String? {
        guard FileManager.default.fileExists(atPath: path),
            let result = try? await Subprocess.run(
                .name("findmnt"), arguments: ["-J", "-o", "UUID,SOURCE,FSTYPE", "--mountpoint", path], output: .string(limit: 1 << 20),
                error: .discarded),
            result.terminationStatus.isSuccess
        else { return nil }
        return Self.identity(findmntJSON: result.standardOutput ?? "")
    }

    /// The identity from findmnt's JSON (`{"filesystems": [{"uuid", "source", "fstype"}]}`).
    public static func identity(findmntJSON: String) -> String? {
        guard let doc = try? JSONValue.parse(Data(findmntJSON.utf8)), let first = doc["filesystems"]?.arrayValue?.first else { return nil }
        if let uuid = first["uuid"]?.stringValue, !uuid.isEmpty { return uuid }
        let source = first["source"]?.stringValue ?? "?"
        return "\(source) (\(first["fstype"]?.stringValue ?? "?"))"
    }
}
