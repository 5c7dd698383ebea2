import Crypto
import FelhomCore
import Foundation
import _CryptoExtras

/// A Proxmox Backup Server encryption key file (`proxmox-backup-client key create --kdf none`, the
/// form PVE uses: `/etc/pve/priv/storage/<ID>.enc`) and its fingerprint, computed as PBS does
/// (WAVE2-FACTS §5): `id_key = PBKDF2-HMAC-SHA256(raw key, "_id_key", 10 rounds, 32 bytes)`,
/// fingerprint = `SHA-256(SHA-256("Proxmox Backup Encryption Key Fingerprint") ‖ id_key)`, shown
/// as 32 lowercase hex bytes joined by `:`. The agent reads the key only to know its fingerprint;
/// the key never leaves the box.
public struct PBSKey: Sendable, Equatable {
    /// The full fingerprint, `xx:xx:…` (32 bytes).
    public let fingerprint: String

    /// Reads a key file's JSON. Refused: not JSON, a KDF-protected key (PVE cannot use one), `data`
    /// that is not 32 bytes of base64, or a stored `fingerprint` that does not match the key.
    public init(json: Data) throws(BackupError) {
        guard let doc = try? JSONValue.parse(json), case .object(let o) = doc else {
            throw BackupError(.keyUnreadable, "the PBS key file is not JSON")
        }
        if let kdf = o["kdf"], kdf != .null {
            throw BackupError(.keyUnreadable, "the PBS key file is protected by a passphrase (kdf): PVE needs a key made with --kdf none")
        }
        guard let text = o["data"]?.stringValue, let raw = Data(base64Encoded: text), raw.count == 32 else {
            throw BackupError(.keyUnreadable, "the PBS key file's data is not a base64 32-byte key")
        }
        let computed = Self.fingerprint(rawKey: Array(raw))
        if let stored = o["fingerprint"]?.stringValue, Self.normalized(stored) != computed {
            throw BackupError(.keyUnreadable, "the PBS key file names fingerprint \(stored) but its key has \(computed)")
        }
        fingerprint = computed
    }

    /// Reads the key file at `path`.
    public init(file path: String) throws(BackupError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BackupError(.keyUnreadable, "cannot read the PBS key file '\(path)'")
        }
        try self.init(json: data)
    }

    /// The raw 32-byte key of a key file (checked as ``init(file:)`` checks it), for deriving the
    /// snapshot master key (``SnapshotKeys/masterKey(pbsKey:)``). Never logged or sent anywhere.
    public static func rawKey(file path: String) throws(BackupError) -> Data {
        _ = try PBSKey(file: path)
        guard let data = FileManager.default.contents(atPath: path), let doc = try? JSONValue.parse(data),
            let text = doc["data"]?.stringValue, let raw = Data(base64Encoded: text), raw.count == 32
        else { throw BackupError(.keyUnreadable, "cannot read the PBS key file '\(path)'") }
        return raw
    }

    /// The fingerprint of a raw 32-byte key.
    public static func fingerprint(rawKey: [UInt8]) -> String {
        let idKey: SymmetricKey
        do {
            idKey = try KDF.Insecure.PBKDF2.deriveKey(
                from: rawKey, salt: Array("_id_key".utf8), using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: 10)
        } catch {
            preconditionFailure("PBKDF2 with fixed parameters cannot fail: \(error)")
        }
        var input = Data(SHA256.hash(data: Data("Proxmox Backup Encryption Key Fingerprint".utf8)))
        idKey.withUnsafeBytes { input.append(contentsOf: $0) }
        return SHA256.hash(data: input).map { String(format: "%02x", $0) }.joined(separator: ":")
    }

    /// `AA:BB…` or `aabb…` → `aa:bb:…` (PVE and PBS print lowercase with colons).
    public static func normalized(_ fingerprint: String) -> String {
        let hex = fingerprint.lowercased().filter { $0 != ":" }
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { return fingerprint.lowercased() }
        var parts: [String] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            parts.append(String(hex[i..<j]))
            i = j
        }
        return parts.joined(separator: ":")
    }
}

/// A backup failure with the reason code the hub's `backup_failed` event carries.
public struct BackupError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The target storage has no encryption key configured.
        case encryptionKeyMissing = "encryption_key_missing"
        /// The target's key is not the one this box holds.
        case encryptionKeyMismatch = "encryption_key_mismatch"
        /// The backup was stored without encryption or with another key (counted as failed).
        case unencrypted = "backup_unencrypted"
        /// The box's own key file cannot be read.
        case keyUnreadable = "key_unreadable"
        /// The target is not a PBS storage, or does not exist.
        case badTarget = "bad_target"
        /// PBS cannot be reached.
        case storageUnreachable = "storage_unreachable"
        /// Not enough free space on the target.
        case noSpace = "no_space"
        /// The vzdump task failed.
        case taskFailed = "task_failed"
        /// PBS verification of the new backup failed.
        case verificationFailed = "verification_failed"
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}
