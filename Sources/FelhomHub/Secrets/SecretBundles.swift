import Crypto
import FelhomAPI
import FelhomCore
import Foundation

/// Guests' secret bundles (SPEC §6, issue 13): versioned, sealed at rest with AES-GCM under the
/// hub's `secrets_key` (the associated data binds each ciphertext to its guest, bundle and version,
/// so rows cannot be swapped), served in clear only to that guest's own key. The operator uploads
/// versions and sees bundle names, versions and key names — never a value.
extension Hub {
    static let bundleNamePattern = "[a-z0-9_-]{1,64}"

    func secretsKey() throws -> Data {
        guard let text = settings.secretsKey?.reveal(), let bytes = Data(base64Encoded: text), bytes.count == 32 else {
            throw HubError(.conflict, "secrets_key_unset", "this hub has no secrets_key: set it (openssl rand -base64 32) to store secret bundles")
        }
        return bytes
    }

    static func associatedData(guestID: String, bundle: String, version: Int64) -> Data {
        Data("felhom-secrets-v1|\(guestID)|\(bundle)|\(version)".utf8)
    }

    /// Stores a new version of `bundle` for the guest; answers its number (operator only).
    public func putSecretBundle(guestID: String, bundle: String, upload: SecretBundleUpload, by principal: Principal) async throws
        -> SecretBundleView
    {
        guard principal == .operator else { throw HubError.forbidden("upload secret bundles (operator only)") }
        guard Pattern.whole(bundle, Self.bundleNamePattern) else {
            throw HubError.badRequest("a bundle name is 1–64 characters of a-z 0-9 _ -", path: "bundle")
        }
        let file: SecretsFile
        let bytes: [UInt8]
        do {
            file = try upload.file()
            bytes = try file.render()
        } catch {
            throw HubError.badRequest(error.message.replacingOccurrences(of: "line \(error.line ?? 0): ", with: ""), path: "$.secrets")
        }
        guard bytes.count <= 256 * 1024 else { throw HubError.badRequest("a bundle is at most 256 KiB", path: "$.secrets") }
        let key = try secretsKey()
        let now = self.now
        let keys = file.entries.map(\.key).joined(separator: ",")
        guard let hostID = try await store.withDB({ db in try await GuestsTable.hostID(ofGuest: guestID, in: db) }) else {
            throw HubError.notFound("guest \(guestID)")
        }
        let customerID = try await hostRow(hostID)?.customerID
        let version = try await store.transaction { db in
            let version = try await SecretsTable.insertNextVersion(
                guestID: guestID, bundle: bundle,
                sealed: { version in
                    let box = try AES.GCM.seal(
                        bytes, using: SymmetricKey(data: key), authenticating: Self.associatedData(guestID: guestID, bundle: bundle, version: version)
                    )
                    guard let combined = box.combined else { throw HubError(.internalServerError, "internal", "cannot seal the bundle") }
                    return combined.base64EncodedString()
                }, keys: keys, at: now, in: db)
            // Names and version only: never a value.
            try await recordEvent(
                "secrets_rotated", hostID: hostID, guestID: guestID, customerID: customerID,
                data: ["bundle": .string(bundle), "version": .int(version)], at: now, in: db)
            return version
        }
        logger.notice("secret bundle stored", metadata: ["guest": "\(guestID)", "bundle": "\(bundle)", "version": "\(version)"])
        return SecretBundleView(bundle: bundle, version: version, createdAt: Timestamp(secondsSince1970: now), keys: file.entries.map(\.key))
    }

    /// The latest version of each bundle: with the file bytes for the guest itself, with key names
    /// only for the operator.
    public func secretBundles(guestID: String, by principal: Principal) async throws -> [SecretBundleView] {
        let forGuest: Bool
        switch principal {
        case .operator: forGuest = false
        case .guest(let g, _, _) where g == guestID: forGuest = true
        default: throw HubError.forbidden("read this guest's secrets")
        }
        let rows = try await store.withDB { db -> [(String, Int64, String, String, Int64)] in
            guard try await GuestsTable.find(guestID, in: db) != nil else { throw HubError.notFound("guest \(guestID)") }
            return try await SecretsTable.latest(guestID: guestID, in: db)
        }
        let key = forGuest && !rows.isEmpty ? try secretsKey() : nil
        return try rows.map { bundle, version, sealed, keys, createdAt in
            var view = SecretBundleView(bundle: bundle, version: version, createdAt: Timestamp(secondsSince1970: createdAt))
            if let key {
                guard let combined = Data(base64Encoded: sealed), let box = try? AES.GCM.SealedBox(combined: combined),
                    let clear = try? AES.GCM.open(
                        box, using: SymmetricKey(data: key), authenticating: Self.associatedData(guestID: guestID, bundle: bundle, version: version))
                else {
                    throw HubError(
                        .internalServerError, "secrets_unreadable", "bundle \(bundle) v\(version) cannot be opened with this hub's secrets_key")
                }
                view.file = clear.base64EncodedString()
            } else {
                view.keys = keys.split(separator: ",").map(String.init)
            }
            return view
        }
    }
}
