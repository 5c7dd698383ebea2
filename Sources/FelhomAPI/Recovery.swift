import FelhomCore
import Foundation

/// Operator-set disaster-recovery fields of a host (`PUT /api/v1/recovery/{id}`).
public struct DRRecord: Codable, Sendable {
    public var pbsNamespace: String?
    public var repositoryFingerprint: String?
    /// The backup encryption key, wrapped by the customer's recovery code (opaque to the hub).
    public var wrappedEscrowKey: String?
    /// Where the tunnel token is kept (a reference, never the token).
    public var tunnelTokenRef: String?

    public init(pbsNamespace: String? = nil, repositoryFingerprint: String? = nil, wrappedEscrowKey: String? = nil, tunnelTokenRef: String? = nil) {
        self.pbsNamespace = pbsNamespace
        self.repositoryFingerprint = repositoryFingerprint
        self.wrappedEscrowKey = wrappedEscrowKey
        self.tunnelTokenRef = tunnelTokenRef
    }

    enum CodingKeys: String, CodingKey {
        case pbsNamespace = "pbs_namespace"
        case repositoryFingerprint = "repository_fingerprint"
        case wrappedEscrowKey = "wrapped_escrow_key"
        case tunnelTokenRef = "tunnel_token_ref"
    }
}

/// `POST /api/v1/recovery/box`: what a box reports about its own storage for DR.
public struct BoxRecoveryReport: Codable, Sendable {
    public var storageManifest: JSONValue
    public var pbsFingerprint: String?
    /// The box's escrow envelope (`felhom-escrow-v1`, docs/formats.md): its PBS key wrapped under
    /// the customer's recovery code. Opaque to the hub; absent: the stored one is kept.
    public var wrappedEscrowKey: JSONValue?

    public init(storageManifest: JSONValue, pbsFingerprint: String? = nil, wrappedEscrowKey: JSONValue? = nil) {
        self.storageManifest = storageManifest
        self.pbsFingerprint = pbsFingerprint
        self.wrappedEscrowKey = wrappedEscrowKey
    }

    enum CodingKeys: String, CodingKey {
        case storageManifest = "storage_manifest"
        case pbsFingerprint = "pbs_fingerprint"
        case wrappedEscrowKey = "wrapped_escrow_key"
    }
}

/// `POST /api/v1/retrieve`: a customer's passphrase retrieval (`what`: `recovery` or `config`).
public struct RetrieveRequest: Codable, Sendable {
    public var domain: String
    public var passphrase: String
    public var what: String

    public init(domain: String, passphrase: String, what: String) {
        self.domain = domain
        self.passphrase = passphrase
        self.what = what
    }
}

/// `POST /api/v1/customers/{id}/retrieval-unlock`: the lock-out is lifted.
public struct RetrievalUnlocked: Codable, Sendable {
    /// Failed attempts forgotten.
    public var clearedFailedAttempts: Int
    public init(clearedFailedAttempts: Int) { self.clearedFailedAttempts = clearedFailedAttempts }
    enum CodingKeys: String, CodingKey { case clearedFailedAttempts = "cleared_failed_attempts" }
}

/// `POST /api/v1/customers/{id}/passphrase`: the new retrieval passphrase (shown once).
public struct IssuedPassphrase: Codable, Sendable {
    public var passphrase: String
    public init(passphrase: String) { self.passphrase = passphrase }
}

/// `PUT /api/v1/customers/{id}/geo`.
public struct GeoRequest: Codable, Sendable {
    public var zoneID: String?
    public var countries: [String]

    public init(zoneID: String?, countries: [String]) {
        self.zoneID = zoneID
        self.countries = countries
    }

    enum CodingKeys: String, CodingKey {
        case countries
        case zoneID = "zone_id"
    }
}

/// `PUT /api/v1/customers/{id}/geo`: the countries now allowed.
public struct GeoAllowed: Codable, Sendable {
    public var allowedCountries: [String]
    public init(allowedCountries: [String]) { self.allowedCountries = allowedCountries }
    enum CodingKeys: String, CodingKey { case allowedCountries = "allowed_countries" }
}

/// `DELETE /api/v1/customers/{id}/geo`.
public struct GeoDisabled: Codable, Sendable {
    public var enabled: Bool
    public init(enabled: Bool) { self.enabled = enabled }
}

/// `POST /api/v1/customers/{id}/geo/remove-all`: how many rules were removed.
public struct GeoRemoved: Codable, Sendable {
    public var removed: Int
    public init(removed: Int) { self.removed = removed }
}

/// A write that answers only that it was saved.
public struct Saved: Codable, Sendable {
    public var saved: Bool
    public init(saved: Bool) { self.saved = saved }
}

/// `PUT /api/v1/hosts/{id}/tunnel-token`: the host's Cloudflare tunnel connector token (the token
/// `cloudflared tunnel run --token` takes — not a Cloudflare API token, which stays on the hub).
public struct TunnelTokenUpload: Codable, Sendable {
    public var connectorToken: String

    public init(connectorToken: String) { self.connectorToken = connectorToken }

    enum CodingKeys: String, CodingKey {
        case connectorToken = "connector_token"
    }
}

/// `GET /api/v1/hosts/{id}/tunnel-token`: whether a connector token is set and which (its
/// fingerprint); the token itself only to the host's own key.
public struct TunnelTokenView: Codable, Sendable, Equatable {
    public var hostID: String
    public var set: Bool
    /// `sha256:` and the first 16 hex digits of the token's SHA-256: names the token, never reveals it.
    public var fingerprint: String?
    /// The tunnel the token runs (the token's `t`), for the operator to match with Cloudflare.
    public var tunnelID: String?
    public var updatedAt: Timestamp?
    /// The token, to the host's own key only.
    public var connectorToken: String?

    public init(
        hostID: String, set: Bool, fingerprint: String? = nil, tunnelID: String? = nil, updatedAt: Timestamp? = nil, connectorToken: String? = nil
    ) {
        self.hostID = hostID
        self.set = set
        self.fingerprint = fingerprint
        self.tunnelID = tunnelID
        self.updatedAt = updatedAt
        self.connectorToken = connectorToken
    }

    enum CodingKeys: String, CodingKey {
        case set, fingerprint
        case hostID = "host_id"
        case tunnelID = "tunnel_id"
        case updatedAt = "updated_at"
        case connectorToken = "connector_token"
    }
}
