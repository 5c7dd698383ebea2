import Foundation

/// What the operator's release key signs for one agent or controller release (SPEC §4
/// "Self-update"): `{component, version, sha256, size, created_at}` as RFC 8785 canonical JSON,
/// signed with SSHSIG in the namespace ``ReleaseManifest/namespace``. The hub stores the bytes and
/// the signature verbatim and cannot forge either; the box verifies the signature over the bytes it
/// received against its pinned release keys, only then parses them, and checks the asset's size
/// and SHA-256 against them before installing anything.
public struct ReleaseManifest: Sendable, Equatable {
    /// The SSHSIG namespace of release manifests (distinct from ops: an op signature is never a
    /// release signature and the other way round).
    public static let namespace = "felhom-release-v1"

    /// What a release installs.
    public enum Component: String, Sendable, CaseIterable, Codable {
        /// The host agent binary (A/B slots, the gate).
        case agent
        /// The in-guest controller binary (pushed into each guest, journaled, rolled back on failure).
        case controller
    }

    public var component: Component
    public var version: String
    /// Lower-case hex SHA-256 of the asset.
    public var sha256: String
    /// The asset's size in bytes (1 … 2 GiB).
    public var size: Int64
    public var createdAt: Date

    /// The largest asset a release may have.
    public static let maxSize: Int64 = 2 << 30

    public init(component: Component, version: String, sha256: String, size: Int64, createdAt: Date) {
        self.component = component
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.createdAt = createdAt
    }

    /// The JSON value (before canonicalization).
    public var jsonValue: JSONValue {
        [
            "component": .string(component.rawValue), "version": .string(version), "sha256": .string(sha256), "size": .int(size),
            "created_at": .string(RFC3339.format(createdAt)),
        ]
    }

    /// The canonical bytes: what is signed, stored and shipped.
    public func canonicalBytes() throws(ReleaseError) -> [UInt8] {
        try validate()
        do { return try CanonicalJSON.serialize(jsonValue) } catch { throw ReleaseError(field: "$", message: "\(error)") }
    }

    /// Parses received bytes strictly: canonical-JSON parser, exact member set, valid values.
    public init(parsing bytes: [UInt8]) throws(ReleaseError) {
        let doc: JSONValue
        do { doc = try CanonicalJSON.parse(bytes) } catch { throw ReleaseError(field: "$", message: "\(error)") }
        guard case .object(let o) = doc else { throw ReleaseError(field: "$", message: "must be an object") }
        let expected: Set<String> = ["component", "version", "sha256", "size", "created_at"]
        if let extra = Set(o.keys).subtracting(expected).sorted().first { throw ReleaseError(field: extra, message: "unknown member") }
        func str(_ k: String) throws(ReleaseError) -> String {
            guard case .string(let s)? = o[k] else { throw ReleaseError(field: k, message: "must be a string") }
            return s
        }
        let name = try str("component")
        guard let component = Component(rawValue: name) else {
            throw ReleaseError(field: "component", message: "must be agent or controller, not '\(name)'")
        }
        guard case .int(let size)? = o["size"] else { throw ReleaseError(field: "size", message: "must be an integer") }
        guard let created = RFC3339.parse(try str("created_at")) else {
            throw ReleaseError(field: "created_at", message: "must be an RFC 3339 time")
        }
        self.init(component: component, version: try str("version"), sha256: try str("sha256"), size: size, createdAt: created)
        try validate()
    }

    /// Checks every field; throws ``ReleaseError`` naming the field.
    public func validate() throws(ReleaseError) {
        guard ReleaseVersion(version) != nil else {
            throw ReleaseError(field: "version", message: "must be a version like 1.2.3 (optionally -pre or +build), not '\(version)'")
        }
        guard Pattern.whole(sha256, "[0-9a-f]{64}") else { throw ReleaseError(field: "sha256", message: "must be 64 lower-case hex digits") }
        guard size > 0 && size <= Self.maxSize else { throw ReleaseError(field: "size", message: "must be 1 … \(Self.maxSize) bytes") }
    }
}

/// A manifest that breaks a rule; `field` is its JSON member.
public struct ReleaseError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var message: String
    public var description: String { "release manifest \(field): \(message)" }
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
}

/// A release version `MAJOR.MINOR.PATCH[-pre][+build]`, ordered as semantic versioning orders
/// them (a pre-release sorts before its release; build metadata does not order). Used to refuse
/// silent downgrades.
public struct ReleaseVersion: Sendable, Comparable, CustomStringConvertible {
    /// The one version syntax (also in the OpenAPI document and the rollback ops' params).
    public static let pattern = #"[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}([-+][0-9A-Za-z.-]{1,64})?"#

    public var core: [Int]
    public var prerelease: String?
    public let description: String

    public init?(_ text: String) {
        guard Pattern.whole(text, Self.pattern) else { return nil }
        var rest = Substring(text)
        if let plus = rest.firstIndex(of: "+") { rest = rest[..<plus] }
        var pre: String?
        if let dash = rest.firstIndex(of: "-") {
            pre = String(rest[rest.index(after: dash)...])
            rest = rest[..<dash]
        }
        let parts = rest.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        core = parts
        prerelease = pre
        description = text
    }

    public static func < (a: ReleaseVersion, b: ReleaseVersion) -> Bool {
        if a.core != b.core { return a.core.lexicographicallyPrecedes(b.core) }
        switch (a.prerelease, b.prerelease) {
        case (nil, nil), (nil, _?): return false
        case (_?, nil): return true
        case (let x?, let y?): return comparePrerelease(x, y)
        }
    }

    public static func == (a: ReleaseVersion, b: ReleaseVersion) -> Bool { a.core == b.core && a.prerelease == b.prerelease }

    /// Semantic versioning's pre-release order: dot-separated identifiers, numeric ones compared
    /// as numbers and before alphanumeric ones; a shorter list that is a prefix sorts first.
    static func comparePrerelease(_ x: String, _ y: String) -> Bool {
        let xs = x.split(separator: ".")
        let ys = y.split(separator: ".")
        for (p, q) in zip(xs, ys) where p != q {
            switch (Int(p), Int(q)) {
            case (let m?, let n?): return m < n
            case (_?, nil): return true
            case (nil, _?): return false
            default: return p < q
            }
        }
        return xs.count < ys.count
    }
}
