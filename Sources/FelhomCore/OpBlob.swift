import Foundation

/// What the operator signs: one destructive operation for one host, valid for a short time, once.
///
/// `{op, target: {host_id, guest_id}, params, nonce, issued_at, expires_at, key_id}` serialized as
/// RFC 8785 canonical JSON. The hub, the CLI and the agent produce byte-identical bytes; the agent
/// verifies the signature over the bytes it received and only then parses them.
public struct OpBlob: Sendable, Equatable {
    /// The closed set of operations that need an operator signature.
    public enum Op: String, Sendable, CaseIterable {
        /// Destroy a guest and its disks. Params: none.
        case guestDestroy = "guest.destroy"
        /// Roll a guest back to a snapshot. Params: `snapshot`.
        case guestRollback = "guest.rollback"
        /// Restore a backup over an existing guest. Params: `backup` (volid).
        case guestRestore = "guest.restore"
        /// Retire a disk for good. Params: `disk_uuid`.
        case diskDecommission = "disk.decommission"
        /// Roll the agent back to an earlier version. Params: `version`.
        case agentRollback = "agent.rollback"
        /// Allow the controller of this host's guests to go back to an earlier version. Params: `version`.
        case controllerRollback = "controller.rollback"
        /// Restore a volume snapshot from object storage over the guest's volume (ADR 0011).
        /// Params: `volume_id` (a mount point of the guest), `snapshot_id`.
        case volumeRestore = "volume.restore"

        /// Parameters the op must carry (as strings).
        public var requiredParams: [String] {
            switch self {
            case .guestDestroy: return []
            case .guestRollback: return ["snapshot"]
            case .guestRestore: return ["backup"]
            case .diskDecommission: return ["disk_uuid"]
            case .agentRollback, .controllerRollback: return ["version"]
            case .volumeRestore: return ["snapshot_id", "volume_id"]
            }
        }

        /// The exact pattern of each parameter's value (the whole value must match). Any other
        /// parameter is refused: what is signed is exactly what the agent will do.
        public var paramPatterns: [String: String] {
            switch self {
            case .guestDestroy: return [:]
            case .guestRollback: return ["snapshot": #"[A-Za-z][A-Za-z0-9_-]{0,39}"#]
            case .guestRestore: return ["backup": #"[A-Za-z][A-Za-z0-9._-]{0,63}:backup/[A-Za-z0-9._+:/-]{1,200}"#]
            case .diskDecommission:
                return ["disk_uuid": #"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}"#]
            case .agentRollback, .controllerRollback: return ["version": ReleaseVersion.pattern]
            case .volumeRestore:
                return [
                    "volume_id": #"[A-Za-z][A-Za-z0-9._-]{0,63}:[A-Za-z0-9][A-Za-z0-9._+-]{0,126}"#,
                    "snapshot_id": #"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}"#,
                ]
            }
        }

        /// Whether the op acts on one guest (so `target.guest_id` is required).
        public var needsGuest: Bool {
            switch self {
            case .guestDestroy, .guestRollback, .guestRestore, .volumeRestore: return true
            case .diskDecommission, .agentRollback, .controllerRollback: return false
            }
        }

        /// What it does, for confirmation prompts.
        public var summary: String {
            switch self {
            case .guestDestroy: return "DESTROY guest (all its disks and data)"
            case .guestRollback: return "ROLL BACK guest to a snapshot (later changes are lost)"
            case .guestRestore: return "RESTORE a backup over the guest (its current data is replaced)"
            case .diskDecommission: return "DECOMMISSION disk (it will not be used again)"
            case .agentRollback: return "ROLL BACK the host agent to an earlier version"
            case .controllerRollback: return "ROLL BACK the guests' controller to an earlier version"
            case .volumeRestore: return "RESTORE a volume snapshot over the guest's volume (its current data is replaced)"
            }
        }
    }

    public var op: Op
    public var hostID: String
    public var guestID: String?
    public var params: [String: JSONValue]
    /// Random, unique per op; the agent refuses a nonce it has seen.
    public var nonce: String
    public var issuedAt: Date
    public var expiresAt: Date
    /// The signing key's fingerprint, informational (signers are matched by key bytes).
    public var keyID: String

    public init(op: Op, hostID: String, guestID: String?, params: [String: JSONValue], nonce: String, issuedAt: Date, expiresAt: Date, keyID: String)
    {
        self.op = op
        self.hostID = hostID
        self.guestID = guestID
        self.params = params
        self.nonce = nonce
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.keyID = keyID
    }

    /// A fresh op with a random 128-bit nonce, valid from `now` for `ttl` seconds (whole seconds).
    public static func new(
        op: Op, hostID: String, guestID: String?, params: [String: JSONValue], ttl: TimeInterval, keyID: String, now: Date = Date()
    ) throws -> OpBlob {
        var rng = SystemRandomNumberGenerator()
        let nonce = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        let issued = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let blob = OpBlob(
            op: op, hostID: hostID, guestID: guestID, params: params, nonce: nonce, issuedAt: issued,
            expiresAt: issued.addingTimeInterval(ttl.rounded(.up)), keyID: keyID)
        try blob.validate()
        return blob
    }

    /// Checks the rules every op obeys; throws ``OpBlobError`` naming the field.
    public func validate() throws {
        func bad(_ field: String, _ why: String) -> OpBlobError { OpBlobError(field: field, message: why) }
        guard Pattern.whole(hostID, #"[A-Za-z0-9_-]{1,128}"#) else { throw bad("target.host_id", "must be 1–128 characters of [A-Za-z0-9_-]") }
        if op.needsGuest {
            guard let g = guestID, !g.isEmpty else { throw bad("target.guest_id", "\(op.rawValue) needs a guest") }
            guard Pattern.whole(g, #"[1-9][0-9]{2,8}"#) else { throw bad("target.guest_id", "must be a PVE vmid (100…999999999)") }
        } else if guestID != nil {
            throw bad("target.guest_id", "\(op.rawValue) acts on no guest: must be null")
        }
        let patterns = op.paramPatterns
        if let extra = Set(params.keys).subtracting(patterns.keys).sorted().first {
            throw bad("params.\(extra)", "\(op.rawValue) takes no parameter '\(extra)' (it takes: \(patterns.keys.sorted().joined(separator: ", ")))")
        }
        for p in op.requiredParams {
            guard case .string(let v)? = params[p], !v.isEmpty else { throw bad("params.\(p)", "\(op.rawValue) needs a non-empty string") }
            guard let pattern = patterns[p], Pattern.whole(v, pattern) else { throw bad("params.\(p)", "is not a valid \(p)") }
        }
        guard Pattern.whole(keyID, #"[A-Za-z0-9+/=:_.-]{0,128}"#) else { throw bad("key_id", "must be at most 128 characters of [A-Za-z0-9+/=:_.-]") }
        guard nonce.count >= 16, nonce.count <= 128,
            nonce.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_") })
        else { throw bad("nonce", "must be 16–128 characters of [A-Za-z0-9_-]") }
        guard expiresAt > issuedAt else { throw bad("expires_at", "must be after issued_at") }
    }

    static let timeFormat: Date.ISO8601FormatStyle = .iso8601

    /// The JSON value (before canonicalization).
    public var jsonValue: JSONValue {
        let t = Self.timeFormat
        return [
            "op": .string(op.rawValue),
            "target": ["host_id": .string(hostID), "guest_id": guestID.map(JSONValue.string) ?? .null],
            "params": .object(params),
            "nonce": .string(nonce),
            "issued_at": .string(issuedAt.formatted(t)),
            "expires_at": .string(expiresAt.formatted(t)),
            "key_id": .string(keyID),
        ]
    }

    /// The canonical bytes: what is signed and shipped.
    public func canonicalBytes() throws -> [UInt8] {
        try CanonicalJSON.serialize(jsonValue)
    }

    /// Parses received bytes strictly (canonical-JSON parser, exact member set, valid values).
    public init(parsing bytes: [UInt8]) throws {
        let doc: JSONValue
        do { doc = try CanonicalJSON.parse(bytes) } catch { throw OpBlobError(field: "$", message: "\(error)") }
        guard case .object(let o) = doc else { throw OpBlobError(field: "$", message: "must be an object") }
        let expected: Set<String> = ["op", "target", "params", "nonce", "issued_at", "expires_at", "key_id"]
        if let extra = Set(o.keys).subtracting(expected).sorted().first { throw OpBlobError(field: extra, message: "unknown member") }
        func str(_ k: String) throws -> String {
            guard case .string(let s)? = o[k] else { throw OpBlobError(field: k, message: "must be a string") }
            return s
        }
        func time(_ k: String) throws -> Date {
            guard let d = try? Self.timeFormat.parse(try str(k)) else {
                throw OpBlobError(field: k, message: "must be an RFC 3339 UTC time like 2026-01-01T00:00:00Z")
            }
            return d
        }
        let opName = try str("op")
        guard let op = Op(rawValue: opName) else {
            throw OpBlobError(field: "op", message: "unknown op '\(opName)' (known: \(Op.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard case .object(let target)? = o["target"] else { throw OpBlobError(field: "target", message: "must be an object") }
        if let extra = Set(target.keys).subtracting(["host_id", "guest_id"]).sorted().first {
            throw OpBlobError(field: "target.\(extra)", message: "unknown member")
        }
        guard case .string(let host)? = target["host_id"] else { throw OpBlobError(field: "target.host_id", message: "must be a string") }
        let guest: String?
        switch target["guest_id"] {
        case .string(let g)?: guest = g
        case .null?, nil: guest = nil
        default: throw OpBlobError(field: "target.guest_id", message: "must be a string or null")
        }
        guard case .object(let params)? = o["params"] else { throw OpBlobError(field: "params", message: "must be an object") }
        self.init(
            op: op, hostID: host, guestID: guest, params: params, nonce: try str("nonce"), issuedAt: try time("issued_at"),
            expiresAt: try time("expires_at"), keyID: try str("key_id"))
        try validate()
    }

    /// The op in plain words.
    public var plainDescription: String {
        var s = "\(op.rawValue): \(op.summary)"
        s += guestID.map { " — guest \($0) on host \(hostID)" } ?? " — host \(hostID)"
        if !params.isEmpty {
            s +=
                " ("
                + params.keys.sorted().map { "\($0)=\(params[$0].map { $0.stringValue ?? $0.serializedString() } ?? "")" }.joined(separator: ", ")
                + ")"
        }
        s += "; valid \(issuedAt.formatted(Self.timeFormat)) – \(expiresAt.formatted(Self.timeFormat))"
        return s
    }
}

/// An op blob that breaks a rule; `field` is its JSON path.
public struct OpBlobError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var message: String
    public var description: String { "op blob \(field): \(message)" }
}
