import Crypto
import Foundation
import ObjectStore
import Testing

/// Every SigV4 vector (`Fixtures/sigv4/`, copied from `shared/vectors/sigv4/`: the AWS test suite
/// as kept in aws-c-auth, and the S3 worked examples): canonical request, string to sign and
/// signature, for header signing, presigned URLs and the chunk chain.
struct SigV4VectorTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sigv4")

    struct Case {
        var dir: URL
        var method: String
        var path: String
        var query: [(String, String)]
        var headers: [(String, String)]
        var body: Data
        var credentials: SigV4.Credentials
        var scope: SigV4.Scope
        var normalize: Bool
        var signBody: Bool
        var omitToken: Bool
        var expires: Int

        func file(_ name: String) throws -> String { try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8) }
        func has(_ name: String) -> Bool { FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path) }
    }

    static func load(_ group: String, _ name: String) throws -> Case {
        let dir = root.appendingPathComponent(group).appendingPathComponent(name)
        let context = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("context.json"))) as! [String: Any]
        let creds = context["credentials"] as! [String: String]
        let raw = try Data(contentsOf: dir.appendingPathComponent("request.txt"))
        let text = String(decoding: raw, as: UTF8.self)
        let split = text.range(of: "\n\n")
        let head = split.map { String(text[..<$0.lowerBound]) } ?? text
        let body = split.map { Data(text[$0.upperBound...].utf8) } ?? Data()
        var lines = head.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let requestLine = lines.removeFirst()
        let method = String(requestLine.prefix { $0 != " " })
        let target = String(requestLine.dropFirst(method.count + 1).dropLast(" HTTP/1.1".count))
        var path = String(target.prefix { $0 != "?" })
        let queryText = target.contains("?") ? String(target.drop { $0 != "?" }.dropFirst()) : ""
        if group == "s3" { path = path.removingPercentEncoding ?? path }
        let query: [(String, String)] =
            queryText.isEmpty
            ? []
            : queryText.split(separator: "&").map { item in
                let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                // Shown decoded, except `get-vanilla-query-order-encoded`, which is encoded already.
                let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
                let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
                return (name, value)
            }
        var headers: [(String, String)] = []
        for line in lines where !line.isEmpty {
            if line.first == " " || line.first == "\t" {
                headers[headers.count - 1].1 += "\n" + line
            } else {
                let colon = line.firstIndex(of: ":")!
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        let date = ISO8601DateFormatter().date(from: context["timestamp"] as! String)!
        return Case(
            dir: dir, method: method, path: path, query: query, headers: headers, body: body,
            credentials: .init(accessKeyID: creds["access_key_id"]!, secretAccessKey: creds["secret_access_key"]!, sessionToken: creds["token"]),
            scope: .init(date: date, region: context["region"] as! String, service: context["service"] as! String),
            normalize: context["normalize"] as? Bool ?? true, signBody: context["sign_body"] as? Bool ?? false,
            omitToken: context["omit_session_token"] as? Bool ?? false, expires: context["expiration_in_seconds"] as? Int ?? 3600)
    }

    static func cases(_ group: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(group).path)) ?? []).sorted()
    }

    @Test func theFixturesAreAllThere() {
        #expect(Self.cases("generic").count == 38)
        #expect(Self.cases("s3").count == 6)
    }

    @Test(arguments: cases("generic"))
    func genericHeaderSigning(_ name: String) throws {
        let c = try Self.load("generic", name)
        let hash = SigV4.hex(Array(SHA256.hash(data: c.body)))
        let signed = SigV4.signHeaders(
            method: c.method, path: c.path, query: c.query, headers: c.headers, payloadHash: hash, credentials: c.credentials, scope: c.scope,
            normalize: c.normalize, signPayloadHeader: c.signBody, signToken: !c.omitToken)
        #expect(signed.canonicalRequest == (try c.file("header-canonical-request.txt")), "\(name)")
        #expect(signed.stringToSign == (try c.file("header-string-to-sign.txt")), "\(name)")
        #expect(signed.signature == (try c.file("header-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines), "\(name)")
        #expect(signed.authorization == (try c.file("header-authorization.txt")).trimmingCharacters(in: .whitespacesAndNewlines), "\(name)")
    }

    @Test(arguments: cases("generic"))
    func genericPresigning(_ name: String) throws {
        let c = try Self.load("generic", name)
        let hash = SigV4.hex(Array(SHA256.hash(data: c.body)))
        let signed = SigV4.presign(
            method: c.method, path: c.path, query: c.query, headers: c.headers, payloadHash: hash, credentials: c.credentials, scope: c.scope,
            expires: c.expires, normalize: c.normalize, signToken: !c.omitToken)
        #expect(signed.canonicalRequest == (try c.file("query-canonical-request.txt")), "\(name)")
        #expect(signed.stringToSign == (try c.file("query-string-to-sign.txt")), "\(name)")
        #expect(signed.signature == (try c.file("query-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines), "\(name)")
    }

    @Test(arguments: cases("s3"))
    func s3Examples(_ name: String) throws {
        let c = try Self.load("s3", name)
        let key = SigV4.signingKey(secret: c.credentials.secretAccessKey, scope: c.scope)
        if c.has("query-canonical-request.txt") {
            let signed = SigV4.presign(
                method: c.method, path: c.path, query: c.query, headers: c.headers, payloadHash: SigV4.unsignedPayload, credentials: c.credentials,
                scope: c.scope, expires: c.expires, normalize: false)
            #expect(signed.canonicalRequest == (try c.file("query-canonical-request.txt")))
            #expect(signed.stringToSign == (try c.file("query-string-to-sign.txt")))
            #expect(signed.signature == (try c.file("query-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
            #expect((try c.file("query-signed-url.txt")).contains(signed.query!))
            return
        }
        // The request carries its own x-amz-date and x-amz-content-sha256: sign it as it is.
        let payload = try #require(c.headers.first { $0.0.lowercased() == "x-amz-content-sha256" }?.1)
        let request = SigV4.canonicalRequest(
            method: c.method, canonicalPath: SigV4.canonicalPath(c.path, normalize: false), canonicalQuery: SigV4.canonicalQuery(c.query),
            headers: c.headers, payloadHash: payload)
        #expect(request == (try c.file("header-canonical-request.txt")))
        let sts = SigV4.stringToSign(canonicalRequest: request, scope: c.scope)
        #expect(sts == (try c.file("header-string-to-sign.txt")))
        let signature = SigV4.signature(stringToSign: sts, key: key)
        #expect(signature == (try c.file("header-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
        // The chunk chain of a streaming upload: 64 KiB, 1 KiB, then the empty final chunk.
        var previous = signature
        for (i, size) in [65536, 1024, 0].enumerated() where c.has("chunk1-signature.txt") {
            let link = SigV4.chunkSignature(previous: previous, chunk: Data(repeating: 0x61, count: size), scope: c.scope, key: key)
            #expect(link.stringToSign == (try c.file("chunk\(i + 1)-string-to-sign.txt")))
            #expect(link.signature == (try c.file("chunk\(i + 1)-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
            previous = link.signature
        }
    }

    @Test func theSecretNeverPrints() {
        let c = SigV4.Credentials(accessKeyID: "AKID", secretAccessKey: "very-secret-value")
        #expect(!"\(c)".contains("very-secret") && !String(reflecting: c).contains("very-secret"))
    }
}
