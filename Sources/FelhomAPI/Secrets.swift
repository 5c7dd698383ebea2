import FelhomCore
import Foundation

/// One secret value in a bundle upload: text as is, or `{"base64": "…"}` for bytes.
public enum SecretValue: Codable, Sendable, Equatable {
    case text(String)
    case bytes([UInt8])

    public var bytes: [UInt8] {
        switch self {
        case .text(let t): Array(t.utf8)
        case .bytes(let b): b
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let text = try? c.decode(String.self) {
            self = .text(text)
            return
        }
        struct Encoded: Decodable { var base64: String }
        let encoded = try c.decode(Encoded.self)
        guard let data = Data(base64Encoded: encoded.base64) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "base64 must be standard padded base64")
        }
        self = .bytes(Array(data))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let t): try c.encode(t)
        case .bytes(let b): try c.encode(["base64": Data(b).base64EncodedString()])
        }
    }
}

/// `PUT /api/v1/guests/{id}/secrets/{bundle}`: a new version of a guest's secret bundle (operator).
public struct SecretBundleUpload: Codable, Sendable, Equatable {
    public var secrets: [String: SecretValue]
    public init(secrets: [String: SecretValue]) { self.secrets = secrets }

    /// The bundle as a `TRC_SECRETS_V1` file, keys sorted; a bad key is an error naming it.
    public func file() throws(SecretsFileError) -> SecretsFile {
        let file = SecretsFile(entries: secrets.sorted { $0.key < $1.key }.map { .init(key: $0.key, value: $0.value.bytes) })
        _ = try file.render()
        return file
    }
}

/// A bundle version as stored (the answer to an upload; listings).
public struct SecretBundleView: Codable, Sendable, Equatable {
    public var bundle: String
    public var version: Int64
    public var createdAt: Timestamp
    /// The exact `TRC_SECRETS_V1` file bytes, base64 — only to the guest's own key.
    public var file: String?
    /// The keys it holds (never the values) — to the operator.
    public var keys: [String]?

    public init(bundle: String, version: Int64, createdAt: Timestamp, file: String? = nil, keys: [String]? = nil) {
        self.bundle = bundle
        self.version = version
        self.createdAt = createdAt
        self.file = file
        self.keys = keys
    }

    enum CodingKeys: String, CodingKey {
        case bundle, version, file, keys
        case createdAt = "created_at"
    }
}

/// `GET /api/v1/guests/{id}/secrets`: the latest version of each bundle.
public struct SecretBundleList: Codable, Sendable, Equatable {
    public var bundles: [SecretBundleView]
    public init(bundles: [SecretBundleView]) { self.bundles = bundles }
}
