import FelhomHTTP
import Foundation
import ObjectStore

/// Thrown when a suite needs moto and `FELHOM_TEST_S3_URL` is not set.
public struct MotoMissing: Error, CustomStringConvertible {
    public var description: String { "scripts/test starts moto (scripts/moto) and sets FELHOM_TEST_S3_URL" }
}

/// The moto S3 server `scripts/test` starts (scripts/moto, SigV4 checking on); with
/// FELHOM_TEST_S3=1 a missing server is a failure, not a skip.
public enum Moto {
    public static let env = ProcessInfo.processInfo.environment
    public static let required = env["FELHOM_TEST_S3"] == "1"
    public static let url = env["FELHOM_TEST_S3_URL"]
    public static var runSuites: Bool {
        if url == nil && !required { print("note: FELHOM_TEST_S3_URL not set: S3 suites skipped (scripts/moto starts moto)") }
        return url != nil || required
    }

    public static func settings(secret: String? = nil, bucket: String? = nil, addressing: S3Client.Addressing = .path) throws -> S3Client.Settings {
        guard let url = Self.url else { throw MotoMissing() }
        var s = S3Client.Settings(
            endpoint: url, region: "us-east-1", bucket: bucket ?? env["FELHOM_TEST_S3_BUCKET"] ?? "felhom-test",
            credentials: .init(
                accessKeyID: env["FELHOM_TEST_S3_ACCESS_KEY"] ?? "", secretAccessKey: secret ?? env["FELHOM_TEST_S3_SECRET_KEY"] ?? ""),
            addressing: addressing, attempts: 4, backoff: .milliseconds(200))
        if addressing == .virtualHost { s.connectAddress = "127.0.0.1" }
        return s
    }

    public static func client(secret: String? = nil, bucket: String? = nil, transport: ((NIOHTTPTransport) -> any HTTPTransport)? = nil) throws
        -> S3Client
    {
        let s = try settings(secret: secret, bucket: bucket)
        let plain = try S3Client(settings: s)
        guard let transport else { return plain }
        let endpoint = try HTTPEndpoint(url: s.endpoint, setting: "s3.endpoint")
        var t = NIOHTTPTransport(host: endpoint.host, port: endpoint.port, useTLS: false, trust: .systemDefault)
        t.maxResponseBytes = 64 << 20
        return try S3Client(settings: s, transport: transport(t))
    }

    /// A key prefix per test. No `/` in it, and no `+` or non-ASCII in keys: moto's signature
    /// check decodes the query and the path before re-signing, so it refuses botocore's own
    /// requests for those (boto3 gets `SignatureDoesNotMatch` too); real S3 does not. The
    /// encoding itself is proven by the AWS vectors.
    public static func prefix() -> String { "t\(UUID().uuidString.prefix(8).lowercased())-" }
}
