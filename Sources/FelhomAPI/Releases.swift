import Foundation

/// `POST /api/v1/releases`: an operator-signed release manifest (its canonical JSON text, exactly
/// the signed bytes) and its SSHSIG signature (namespace `felhom-release-v1`).
public struct NewRelease: Codable, Sendable, Equatable {
    public var manifest: String
    public var signature: String
    public init(manifest: String, signature: String) {
        self.manifest = manifest
        self.signature = signature
    }
}

/// One release as the hub holds it: the signed manifest and signature verbatim (a box verifies
/// them itself), the fields read from the manifest, and whether the asset was uploaded.
public struct ReleaseView: Codable, Sendable, Equatable {
    public var component: String
    public var version: String
    public var sha256: String
    public var size: Int64
    public var manifest: String
    public var signature: String
    /// The SHA-256 fingerprint of the key that signed it (the box decides whether it trusts it).
    public var signer: String
    public var createdAt: Date
    /// When the asset was uploaded and matched the manifest; nil: not yet.
    public var uploadedAt: Date?
    /// Hosts it was rolled out to, per stage.
    public var rollout: [RolloutHost]?

    public init(
        component: String, version: String, sha256: String, size: Int64, manifest: String, signature: String, signer: String, createdAt: Date,
        uploadedAt: Date?, rollout: [RolloutHost]? = nil
    ) {
        self.component = component
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.manifest = manifest
        self.signature = signature
        self.signer = signer
        self.createdAt = createdAt
        self.uploadedAt = uploadedAt
        self.rollout = rollout
    }

    enum CodingKeys: String, CodingKey {
        case component, version, sha256, size, manifest, signature, signer, rollout
        case createdAt = "created_at"
        case uploadedAt = "uploaded_at"
    }
}

/// `GET /api/v1/releases`.
public struct ReleaseList: Codable, Sendable, Equatable {
    public var releases: [ReleaseView]
    public init(releases: [ReleaseView]) { self.releases = releases }
}

/// A host in a release's roll-out and where it stands.
public struct RolloutHost: Codable, Sendable, Equatable {
    public var hostID: String
    /// `canary` or `all`.
    public var stage: String
    /// `pending` (desired, not yet reported), `running` (the host reports this version),
    /// `failed` (the box reverted or refused it), `superseded` (a later roll-out of this component).
    public var state: String
    /// Why it failed (the box's reason), when it did.
    public var reason: String?

    public init(hostID: String, stage: String, state: String, reason: String? = nil) {
        self.hostID = hostID
        self.stage = stage
        self.state = state
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case stage, state, reason
        case hostID = "host_id"
    }
}

/// `POST /api/v1/releases/{component}/{version}/rollout`: `stage` `canary` with the canary
/// `hosts`, then `all` (every other host with a published desired state, or only `hosts` when
/// given) — refused until every canary host runs the version.
public struct RolloutRequest: Codable, Sendable, Equatable {
    public var stage: String
    public var hosts: [String]?
    public init(stage: String, hosts: [String]? = nil) {
        self.stage = stage
        self.hosts = hosts
    }
}

/// The answer to a roll-out step: the hosts whose desired state now names the version (with the
/// generation published for each) and those skipped, with why.
public struct RolloutView: Codable, Sendable, Equatable {
    public var component: String
    public var version: String
    public var stage: String
    public var published: [PublishedHost]
    public var skipped: [SkippedHost]

    public struct PublishedHost: Codable, Sendable, Equatable {
        public var hostID: String
        public var generation: Int64
        public init(hostID: String, generation: Int64) {
            self.hostID = hostID
            self.generation = generation
        }
        enum CodingKeys: String, CodingKey {
            case generation
            case hostID = "host_id"
        }
    }

    public struct SkippedHost: Codable, Sendable, Equatable {
        public var hostID: String
        public var reason: String
        public init(hostID: String, reason: String) {
            self.hostID = hostID
            self.reason = reason
        }
        enum CodingKeys: String, CodingKey {
            case reason
            case hostID = "host_id"
        }
    }

    public init(component: String, version: String, stage: String, published: [PublishedHost], skipped: [SkippedHost]) {
        self.component = component
        self.version = version
        self.stage = stage
        self.published = published
        self.skipped = skipped
    }
}
