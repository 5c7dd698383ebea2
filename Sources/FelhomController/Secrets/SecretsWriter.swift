import FelhomCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Writes secret bundles into the guest as `<secrets.dir>/<bundle>.env` (SPEC §6, ADR 0010):
/// `TRC_SECRETS_V1` bytes, owned by root, mode 0400 — or 0440 with a named group when a stack
/// using the bundle opted in. Atomic and durable (temporary file created with the final mode,
/// fsync, rename, directory fsync): an app reads the old file or the new one, never a part.
///
/// The bytes come from the hub, which may be hostile: the bundle name must match
/// `^[a-z0-9_-]{1,64}$` and the bytes must parse as `TRC_SECRETS_V1`, else nothing is written and
/// the error names the bundle (never a value).
public struct SecretsWriter: Sendable {
    /// `secrets.dir`.
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// Whether `name` is an acceptable bundle name (`^[a-z0-9_-]{1,64}$`).
    public static func isValidBundleName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
            }
    }

    /// The file of `bundle`.
    public func path(of bundle: String) -> String { directory + "/" + bundle + ".env" }

    /// The bytes now on disk for `bundle` (nil when there is no such file).
    public func current(_ bundle: String) -> [UInt8]? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path(of: bundle), isDirectory: &isDir), !isDir.boolValue else { return nil }
        return FileManager.default.contents(atPath: path(of: bundle)).map { Array($0) }
    }

    /// Checks a bundle from the hub: its name and its bytes. Returns the parsed file.
    public static func check(bundle: String, bytes: [UInt8]) throws(ControllerError) -> SecretsFile {
        guard isValidBundleName(bundle) else {
            throw ControllerError(
                .secrets, "refused a secret bundle named '\(TerminalText.escaped(String(bundle.prefix(80))))': names are 1–64 of a-z 0-9 _ -")
        }
        do { return try SecretsFile(parsing: bytes) } catch {
            throw ControllerError(.secrets, "secret bundle '\(bundle)' is not a valid TRC_SECRETS_V1 file (\(error)); the old file is kept")
        }
    }

    /// Writes `bytes` as bundle `bundle`; `group` makes it 0440 root:group. Returns false when the
    /// file already has exactly these bytes, mode and group (nothing written).
    @discardableResult
    public func write(bundle: String, bytes: [UInt8], group: gid_t? = nil) throws(ControllerError) -> Bool {
        _ = try Self.check(bundle: bundle, bytes: bytes)
        let file = path(of: bundle)
        let mode: mode_t = group == nil ? 0o400 : 0o440
        let user: uid_t = geteuid() == 0 ? 0 : geteuid()
        let wantGroup: gid_t = group ?? (geteuid() == 0 ? 0 : getegid())
        var st = stat()
        if lstat(file, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR {
                throw ControllerError(
                    .secrets,
                    "\(file) is a directory (Docker creates one when a stack bind-mounts a secrets file that does not exist yet): remove it, then sync again"
                )
            }
            if (st.st_mode & 0o7777) == mode, st.st_uid == user, st.st_gid == wantGroup, current(bundle) == bytes { return false }
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        } catch { throw ControllerError(.secrets, "cannot create secrets.dir '\(directory)': \(error.localizedDescription)") }
        do throws(AppendLogError) {
            try DurableFile.write(bytes, to: file, mode: mode, owner: (user, wantGroup))
        } catch {
            throw ControllerError(.secrets, "cannot write secret bundle '\(bundle)': \(error.message)")
        }
        return true
    }

    /// The group id of `name`; an unknown group is an error naming it.
    public static func groupID(_ name: String) throws(ControllerError) -> gid_t {
        guard let entry = getgrnam(name) else {
            throw ControllerError(.secrets, "group '\(TerminalText.escaped(name))' does not exist in this guest (secrets_groups)")
        }
        return entry.pointee.gr_gid
    }
}
