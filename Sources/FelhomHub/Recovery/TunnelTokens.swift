import Crypto
import FelhomAPI
import FelhomCore
import Foundation
import SQLKit

/// The host's Cloudflare tunnel connector token (issue 20; seed review S4/S5): the box runs
/// `cloudflared` as a host service with it. Sealed at rest with AES-GCM under the hub's
/// `secrets_key` (the associated data binds it to its host, so rows cannot be swapped), kept with
/// the host's DR record (durable), handed in clear only to the host's own key: in the enrollment
/// answer (first and recovery enrollments alike) and on `GET /api/v1/hosts/{id}/tunnel-token`.
/// The operator sees whether one is set, its fingerprint and tunnel id — never the token.
extension Hub {
    static func tunnelAssociatedData(hostID: String) -> Data { Data("felhom-tunnel-token-v1|\(hostID)".utf8) }

    /// `sha256:` and 16 hex digits: names a token in views and events without revealing it.
    static func tunnelFingerprint(_ token: String) -> String {
        "sha256:" + Hex.encode(SHA256.hash(data: Data(token.utf8)).prefix(8))
    }

    /// Checks that `token` is a connector token — base64 of a JSON object with the account tag
    /// `a`, the tunnel id `t` and the secret `s` — and answers the tunnel id. Never echoes the token.
    static func tunnelID(ofConnectorToken token: String) throws -> String {
        let path = "$.connector_token"
        guard !token.isEmpty, token.utf8.count <= 4096 else { throw HubError.badRequest("must be 1…4096 characters", path: path) }
        guard
            token.unicodeScalars.allSatisfy({
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "+/=-_".unicodeScalars.contains($0))
            })
        else {
            throw HubError.badRequest("must be the base64 text `cloudflared tunnel token NAME` prints (no spaces or other characters)", path: path)
        }
        var b64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        b64 = b64.trimmingCharacters(in: CharacterSet(charactersIn: "="))
        b64 += String(repeating: "=", count: (4 - b64.count % 4) % 4)
        guard let data = Data(base64Encoded: b64), let json = try? JSONValue.parse(data), case .object(let o) = json,
            let account = o["a"]?.stringValue, !account.isEmpty, let tunnel = o["t"]?.stringValue, let secret = o["s"]?.stringValue, !secret.isEmpty
        else {
            throw HubError.badRequest(
                "is not a tunnel connector token (base64 JSON with a, t and s): give what `cloudflared tunnel token NAME` prints, not a Cloudflare API token",
                path: path)
        }
        guard UUID(uuidString: tunnel) != nil else { throw HubError.badRequest("its tunnel id (t) must be a UUID", path: path) }
        return tunnel.lowercased()
    }

    /// Stores (replaces) the host's connector token, sealed (operator only).
    public func setTunnelToken(hostID: String, _ upload: TunnelTokenUpload, by principal: Principal) async throws -> TunnelTokenView {
        guard principal == .operator else { throw HubError.forbidden("set tunnel tokens (operator only)") }
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        let token = upload.connectorToken
        let tunnel = try Self.tunnelID(ofConnectorToken: token)
        let key = try secretsKey()
        let box = try AES.GCM.seal(Data(token.utf8), using: SymmetricKey(data: key), authenticating: Self.tunnelAssociatedData(hostID: hostID))
        guard let combined = box.combined else { throw HubError(.internalServerError, "internal", "cannot seal the tunnel token") }
        let fingerprint = Self.tunnelFingerprint(token)
        let now = self.now
        try await store.transaction { db in
            try await RecoveryTable.saveTunnelToken(
                hostID: hostID,
                .init(sealed: combined.base64EncodedString(), fingerprint: fingerprint, tunnelID: tunnel, updatedAt: now), at: now, in: db)
            try await recordEvent(
                "tunnel_token_set", hostID: hostID, customerID: host.customerID,
                data: ["fingerprint": .string(fingerprint), "tunnel_id": .string(tunnel)], at: now, in: db)
        }
        logger.notice("tunnel token stored", metadata: ["host": "\(hostID)", "fingerprint": "\(fingerprint)"])
        return TunnelTokenView(hostID: hostID, set: true, fingerprint: fingerprint, tunnelID: tunnel, updatedAt: Timestamp(secondsSince1970: now))
    }

    /// Removes the host's connector token (operator); true when there was one.
    @discardableResult
    public func removeTunnelToken(hostID: String, by principal: Principal) async throws -> Bool {
        guard principal == .operator else { throw HubError.forbidden("remove tunnel tokens (operator only)") }
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        let now = self.now
        return try await store.transaction { db in
            guard let old = try await RecoveryTable.tunnelToken(hostID: hostID, in: db) else { return false }
            try await RecoveryTable.saveTunnelToken(hostID: hostID, nil, at: now, in: db)
            try await recordEvent(
                "tunnel_token_removed", severity: .warning, hostID: hostID, customerID: host.customerID,
                data: ["fingerprint": .string(old.fingerprint)], at: now, in: db)
            return true
        }
    }

    /// The token's view: with the token itself for the host's own key, without for the operator.
    public func tunnelToken(hostID: String, by principal: Principal) async throws -> TunnelTokenView {
        let reveal: Bool
        switch principal {
        case .operator: reveal = false
        case .host(let own, _) where own == hostID: reveal = true
        case .host: throw HubError.notFound("host \(hostID)")
        default: throw HubError.forbidden("read tunnel tokens (operator key or the host's own key)")
        }
        guard try await hostRow(hostID) != nil else { throw HubError.notFound("host \(hostID)") }
        let row = try await store.withDB { db in try await RecoveryTable.tunnelToken(hostID: hostID, in: db) }
        guard let row else { return TunnelTokenView(hostID: hostID, set: false) }
        return TunnelTokenView(
            hostID: hostID, set: true, fingerprint: row.fingerprint, tunnelID: row.tunnelID.isEmpty ? nil : row.tunnelID,
            updatedAt: Timestamp(secondsSince1970: row.updatedAt),
            connectorToken: reveal ? try openTunnelToken(hostID: hostID, sealed: row.sealed) : nil)
    }

    /// The host's token in clear (for its enrollment answer), or nil when none is set.
    func revealedTunnelToken(hostID: String, in db: any SQLDatabase) async throws -> String? {
        guard let row = try await RecoveryTable.tunnelToken(hostID: hostID, in: db) else { return nil }
        return try openTunnelToken(hostID: hostID, sealed: row.sealed)
    }

    func openTunnelToken(hostID: String, sealed: String) throws -> String {
        let key = try secretsKey()
        guard let data = Data(base64Encoded: sealed), let box = try? AES.GCM.SealedBox(combined: data),
            let plain = try? AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: Self.tunnelAssociatedData(hostID: hostID))
        else {
            throw HubError(
                .internalServerError, "secrets_unreadable", "the tunnel token of host \(hostID) cannot be opened with this hub's secrets_key")
        }
        return String(decoding: plain, as: UTF8.self)
    }
}
