import Crypto
import Foundation

/// The keys of volume snapshots (docs/object-storage.md "Keys"):
///
/// - a random 256-bit **data key** per snapshot, which encrypts the object (``SnapshotFormat``);
/// - the box's **snapshot master key**, which wraps every data key. It is derived from the box's
///   PBS encryption key — HKDF-SHA256(ikm = the raw PBS key, salt = `"felhom-snap-master-v1"`,
///   info = empty) — so it is made and held on the box and escrowed exactly like the PBS key: the
///   recovery code (or the operator key) that restores the PBS key restores this one too;
/// - the **wrapped data key** the hub stores: `v1.` + base64(nonce (12) ‖ AES-256-GCM(master
///   key, nonce, data key, aad) ‖ tag (16)), aad = `"felhom-snap-key-v1\n" + volume id + "\n" +
///   snapshot id`, so a wrapped key moved to another snapshot's record does not open.
///
/// The hub holds only wrapped keys and key ids: it cannot decrypt anything.
public enum SnapshotKeys {
    public struct KeyError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// The box's snapshot master key from its raw 32-byte PBS key.
    public static func masterKey(pbsKey: Data) throws(KeyError) -> SymmetricKey {
        guard pbsKey.count == 32 else { throw KeyError(message: "the PBS key must be 32 bytes (got \(pbsKey.count))") }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: pbsKey), salt: Array("felhom-snap-master-v1".utf8), info: [UInt8](), outputByteCount: 32)
    }

    /// The master key's public id (`snapkey:` + 16 hex digits of a SHA-256 over it): which key
    /// wraps a snapshot, without saying anything about the key.
    public static func keyID(_ master: SymmetricKey) -> String {
        let digest = master.withUnsafeBytes { SHA256.hash(data: Array("felhom-snap-key-id\n".utf8) + Array($0)) }
        return "snapkey:" + SigV4.hex(Array(digest).prefix(8))
    }

    /// A fresh random data key.
    public static func newDataKey() -> SymmetricKey { SymmetricKey(size: .bits256) }

    static func aad(volumeID: String, snapshotID: String) -> [UInt8] {
        Array("felhom-snap-key-v1\n\(volumeID)\n\(snapshotID)".utf8)
    }

    /// Wraps `dataKey` for the hub's record of (`volumeID`, `snapshotID`).
    public static func wrap(_ dataKey: SymmetricKey, master: SymmetricKey, volumeID: String, snapshotID: String) throws(KeyError) -> String {
        do {
            let raw = dataKey.withUnsafeBytes { Data($0) }
            let box = try AES.GCM.seal(raw, using: master, authenticating: aad(volumeID: volumeID, snapshotID: snapshotID))
            guard let combined = box.combined else { throw KeyError(message: "AES-GCM gave no combined form") }
            return "v1." + combined.base64EncodedString()
        } catch let e as KeyError {
            throw e
        } catch {
            throw KeyError(message: "cannot wrap the data key: \(error)")
        }
    }

    /// Unwraps a data key; a wrong master key, another record's wrapped key, or a changed one all
    /// fail the same way.
    public static func unwrap(_ wrapped: String, master: SymmetricKey, volumeID: String, snapshotID: String) throws(KeyError) -> SymmetricKey {
        guard wrapped.hasPrefix("v1."), wrapped.utf8.count <= 200, let combined = Data(base64Encoded: String(wrapped.dropFirst(3))),
            combined.count == 12 + 32 + 16
        else { throw KeyError(message: "the wrapped data key is not a v1 key (v1. + base64 of 60 bytes)") }
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            let raw = try AES.GCM.open(box, using: master, authenticating: aad(volumeID: volumeID, snapshotID: snapshotID))
            return SymmetricKey(data: raw)
        } catch {
            throw KeyError(
                message: "the wrapped data key of \(volumeID) snapshot \(snapshotID) does not open with this box's snapshot master key")
        }
    }
}
