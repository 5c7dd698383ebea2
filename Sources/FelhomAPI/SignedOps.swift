import FelhomCore
import Foundation

/// Where a queued op is in its life: `pending_signature → signed → delivered → applied | rejected`,
/// `expired` for any unfinished op past its `expires_at`, `cancelled` by the operator before delivery.
public enum SignedOpStatus: String, Codable, Sendable, CaseIterable {
    case pendingSignature = "pending_signature"
    case signed, delivered, applied, rejected, expired, cancelled

    /// Not finished yet (may still expire).
    public var isOpen: Bool { [.pendingSignature, .signed, .delivered].contains(self) }
}

/// A registered operator public key.
public struct OperatorKeyView: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// `operational` or `recovery`.
    public var role: String
    public var fingerprint: String
    public var publicKey: String
    public var createdAt: Timestamp

    public init(id: String, name: String, role: String, fingerprint: String, publicKey: String, createdAt: Timestamp) {
        self.id = id
        self.name = name
        self.role = role
        self.fingerprint = fingerprint
        self.publicKey = publicKey
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, role, fingerprint
        case publicKey = "public_key"
        case createdAt = "created_at"
    }
}

/// `POST /api/v1/operator-keys`.
public struct NewOperatorKey: Codable, Sendable {
    /// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    public var publicKey: String
    public var role: String?
    public var name: String?

    public init(publicKey: String, role: String? = nil, name: String? = nil) {
        self.publicKey = publicKey
        self.role = role
        self.name = name
    }

    enum CodingKeys: String, CodingKey {
        case role, name
        case publicKey = "public_key"
    }
}

/// `{"operator_keys": [...]}`.
public struct OperatorKeyList: Codable, Sendable {
    public var operatorKeys: [OperatorKeyView]
    public init(operatorKeys: [OperatorKeyView]) { self.operatorKeys = operatorKeys }
    enum CodingKeys: String, CodingKey { case operatorKeys = "operator_keys" }
}

/// A queued op as the API shows it.
public struct SignedOpView: Codable, Sendable, Equatable {
    public var id: String
    public var hostID: String
    public var hostName: String
    public var customerID: String
    public var customerName: String
    public var guestID: String?
    public var op: String
    /// What will happen, in plain words (for the signing prompt and the dashboard). Hub text: the
    /// CLI shows what it decodes from `blob` itself, never this.
    public var summary: String
    /// The exact canonical bytes to sign (UTF-8 text).
    public var blob: String
    public var status: SignedOpStatus
    public var signature: String?
    public var signer: String?
    public var reason: String?
    public var expiresAt: Timestamp
    public var createdAt: Timestamp
    /// For `guest.restore`: the guest's volumes that its backups do not hold, from the host's last
    /// report (a restore over the guest would destroy them; the agent refuses). Context, not authority.
    public var volumesNotInBackups: [VolumeRef]?
    /// For an op still in flight: the other in-flight ops with the same host, guest and operation
    /// (a second destroy of the same guest is almost always a mistake).
    public var duplicateOf: [String]?
    /// The guest's name as the host last reported it (context for people, not authority).
    public var guestName: String?

    public struct VolumeRef: Codable, Sendable, Equatable {
        public var key: String
        public var volume: String
        public init(key: String, volume: String) {
            self.key = key
            self.volume = volume
        }
    }

    public init(
        id: String, hostID: String, hostName: String, customerID: String, customerName: String, guestID: String?, op: String, summary: String,
        blob: String, status: SignedOpStatus, signature: String?, signer: String?, reason: String?, expiresAt: Timestamp, createdAt: Timestamp,
        volumesNotInBackups: [VolumeRef]? = nil
    ) {
        self.id = id
        self.hostID = hostID
        self.hostName = hostName
        self.customerID = customerID
        self.customerName = customerName
        self.guestID = guestID
        self.op = op
        self.summary = summary
        self.blob = blob
        self.status = status
        self.signature = signature
        self.signer = signer
        self.reason = reason
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.volumesNotInBackups = volumesNotInBackups
    }

    enum CodingKeys: String, CodingKey {
        case id, op, summary, blob, status, signature, signer, reason
        case volumesNotInBackups = "volumes_not_in_backups"
        case duplicateOf = "duplicate_of"
        case guestName = "guest_name"
        case hostID = "host_id"
        case hostName = "host_name"
        case customerID = "customer_id"
        case customerName = "customer_name"
        case guestID = "guest_id"
        case expiresAt = "expires_at"
        case createdAt = "created_at"
    }
}

/// `POST /api/v1/signed-ops`: queue an op for the operator to sign.
public struct NewSignedOp: Codable, Sendable {
    public var hostID: String
    public var guestID: String?
    public var op: String
    public var params: [String: JSONValue]?
    /// Validity in seconds (default 1 h, at most 24 h).
    public var ttlSeconds: Int?
    public var keyID: String?

    public init(hostID: String, guestID: String?, op: String, params: [String: JSONValue]? = nil, ttlSeconds: Int? = nil, keyID: String? = nil) {
        self.hostID = hostID
        self.guestID = guestID
        self.op = op
        self.params = params
        self.ttlSeconds = ttlSeconds
        self.keyID = keyID
    }

    enum CodingKeys: String, CodingKey {
        case op, params
        case hostID = "host_id"
        case guestID = "guest_id"
        case ttlSeconds = "ttl_seconds"
        case keyID = "key_id"
    }
}

/// `{"signed_ops": [...]}`.
public struct SignedOpList: Codable, Sendable {
    public var signedOps: [SignedOpView]
    public init(signedOps: [SignedOpView]) { self.signedOps = signedOps }
    enum CodingKeys: String, CodingKey { case signedOps = "signed_ops" }
}

/// `GET /api/v1/signed-ops/next`: the next op for this host, or `{"op": null}`.
public struct NextSignedOp: Codable, Sendable {
    public var op: SignedOpView?

    public init(op: SignedOpView?) { self.op = op }

    enum CodingKeys: String, CodingKey { case op }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let op { try container.encode(op, forKey: .op) } else { try container.encodeNil(forKey: .op) }  // explicit null
    }
}

/// `POST /api/v1/signed-ops/{id}/signature`: an armored SSHSIG.
public struct SignatureUpload: Codable, Sendable {
    public var signature: String
    public init(signature: String) { self.signature = signature }
}

/// `POST /api/v1/signed-ops/{id}/result`: the agent's verdict, `applied` or `rejected` (with its error code as the reason).
public struct SignedOpResult: Codable, Sendable {
    public var outcome: String
    public var reason: String?

    public init(outcome: String, reason: String?) {
        self.outcome = outcome
        self.reason = reason
    }
}
