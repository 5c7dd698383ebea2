import Crypto
import FelhomCore
import Foundation

/// AWS Signature Version 4 (docs/object-storage.md): the canonical request, the string to sign,
/// the signing key and the signature, for `Authorization`-header requests, presigned URLs and
/// the chunk chain of a streaming upload. Pure functions; every published vector (the AWS SigV4
/// suite and the S3 worked examples, in `Tests/ObjectStoreTests/Fixtures/sigv4/`) is checked.
///
/// S3 rules (WAVE2-FACTS §3.3): the path is URI-encoded **once** and never normalized
/// (`normalize: false`), and `x-amz-content-sha256` is always signed.
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// The payload hash of an empty body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// An access key. The secret never appears in `description` (logs, errors).
    public struct Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        public var accessKeyID: String
        public var secretAccessKey: String
        public var sessionToken: String?

        public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }

        public var description: String { "access key \(accessKeyID) (secret hidden)" }
        public var debugDescription: String { description }
    }

    /// When, where and for which service a request is signed.
    public struct Scope: Sendable, Equatable {
        public var date: Date
        public var region: String
        public var service: String

        public init(date: Date, region: String, service: String) {
            self.date = date
            self.region = region
            self.service = service
        }

        /// `20150830T123600Z`.
        public var amzDate: String { Self.format(date, time: true) }
        /// `20150830`.
        public var dateStamp: String { Self.format(date, time: false) }
        /// `20150830/us-east-1/service/aws4_request`.
        public var credentialScope: String { "\(dateStamp)/\(region)/\(service)/aws4_request" }

        static func format(_ date: Date, time: Bool) -> String {
            var t = time_t(Int(date.timeIntervalSince1970.rounded(.down)))
            var parts = tm()
            gmtime_r(&t, &parts)
            let day = String(format: "%04d%02d%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday))
            guard time else { return day }
            return day + String(format: "T%02d%02d%02dZ", Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
        }
    }

    /// What a signature is made of, kept for tests and for error reports (no secret in it).
    public struct Signed: Sendable {
        /// Headers to add to the request (`X-Amz-Date`, `X-Amz-Content-SHA256`, the session
        /// token, `Authorization`), or empty for a presigned URL.
        public var headers: [(String, String)]
        /// The canonical query with the signature appended, for a presigned URL.
        public var query: String?
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var authorization: String?
    }

    // MARK: The pieces

    /// Percent-encodes every byte but `A-Z a-z 0-9 - . _ ~` (and `/` when `keepSlash`), as SigV4 wants.
    public static func uriEncode(_ text: String, keepSlash: Bool = false) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// The canonical URI of a decoded path: encoded once; with `normalize` (not S3), `.`/`..`
    /// segments removed and repeated slashes collapsed first.
    public static func canonicalPath(_ path: String, normalize: Bool) -> String {
        var p = path.isEmpty ? "/" : path
        if normalize {
            var segments: [Substring] = []
            for segment in p.split(separator: "/", omittingEmptySubsequences: true) {
                if segment == "." { continue }
                if segment == ".." {
                    _ = segments.popLast()
                    continue
                }
                segments.append(segment)
            }
            // As botocore (`posixpath.normpath`, then the slash put back): a trailing slash stays.
            let trailing = p.hasSuffix("/") && !segments.isEmpty
            p = "/" + segments.joined(separator: "/") + (trailing ? "/" : "")
        }
        return uriEncode(p, keepSlash: true)
    }

    /// The canonical query of decoded pairs: each name and value encoded, sorted by encoded name
    /// then value; a name without a value (`?lifecycle`) becomes `lifecycle=`.
    public static func canonicalQuery(_ pairs: [(String, String)]) -> String {
        let encoded: [(name: String, value: String)] = pairs.map { (uriEncode($0.0), uriEncode($0.1)) }
        let sorted = encoded.sorted { (a, b) -> Bool in a.name == b.name ? a.value < b.value : a.name < b.name }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    /// Lower-case names, sorted; values trimmed with inner runs of whitespace made one space;
    /// repeated names joined with `,` in order. Returns the header block and the signed-header list.
    public static func canonicalHeaders(_ headers: [(String, String)]) -> (block: String, signed: String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let clean = value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
            merged[name.lowercased(), default: []].append(clean)
        }
        let names = merged.keys.sorted()
        let block = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    public static func canonicalRequest(
        method: String, canonicalPath: String, canonicalQuery: String, headers: [(String, String)], payloadHash: String
    )
        -> String
    {
        let (block, signed) = canonicalHeaders(headers)
        return [method, canonicalPath, canonicalQuery, block, signed, payloadHash].joined(separator: "\n")
    }

    public static func stringToSign(canonicalRequest: String, scope: Scope) -> String {
        [algorithm, scope.amzDate, scope.credentialScope, hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
    }

    /// HMAC chain `"AWS4" + secret` → date → region → service → `aws4_request`.
    public static func signingKey(secret: String, scope: Scope) -> SymmetricKey {
        var key = SymmetricKey(data: Data(("AWS4" + secret).utf8))
        for part in [scope.dateStamp, scope.region, scope.service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    public static func signature(stringToSign: String, key: SymmetricKey) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
    }

    // MARK: Signing a request

    /// Signs a request in the `Authorization` header. `path` and `query` are decoded (the wire
    /// form is their ``uriEncode(_:keepSlash:)``); `headers` must hold `Host`. Adds `X-Amz-Date`,
    /// the session token (signed unless `signToken` is false — then added after signing) and, with
    /// `signPayloadHeader`, `X-Amz-Content-SHA256` (always for S3).
    public static func signHeaders(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String,
        credentials: Credentials, scope: Scope, normalize: Bool, signPayloadHeader: Bool, signToken: Bool = true
    ) -> Signed {
        var all = headers
        var added: [(String, String)] = [("X-Amz-Date", scope.amzDate)]
        if signPayloadHeader { added.append(("X-Amz-Content-SHA256", payloadHash)) }
        if let token = credentials.sessionToken, signToken { added.append(("X-Amz-Security-Token", token)) }
        all += added
        let request = canonicalRequest(
            method: method, canonicalPath: canonicalPath(path, normalize: normalize), canonicalQuery: canonicalQuery(query), headers: all,
            payloadHash: payloadHash)
        let sts = stringToSign(canonicalRequest: request, scope: scope)
        let sig = signature(stringToSign: sts, key: signingKey(secret: credentials.secretAccessKey, scope: scope))
        let authorization =
            "\(algorithm) Credential=\(credentials.accessKeyID)/\(scope.credentialScope), SignedHeaders=\(canonicalHeaders(all).signed), Signature=\(sig)"
        if let token = credentials.sessionToken, !signToken { added.append(("X-Amz-Security-Token", token)) }
        added.append(("Authorization", authorization))
        return Signed(headers: added, query: nil, canonicalRequest: request, stringToSign: sts, signature: sig, authorization: authorization)
    }

    /// A presigned request (`X-Amz-Algorithm … X-Amz-Signature` in the query), valid `expires`
    /// seconds. S3 uses `UNSIGNED-PAYLOAD` as the payload hash.
    public static func presign(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String,
        credentials: Credentials, scope: Scope, expires: Int, normalize: Bool, signToken: Bool = true
    ) -> Signed {
        var params = query
        params += [
            ("X-Amz-Algorithm", algorithm), ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope.credentialScope)"),
            ("X-Amz-Date", scope.amzDate), ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", canonicalHeaders(headers).signed),
        ]
        if let token = credentials.sessionToken, signToken { params.append(("X-Amz-Security-Token", token)) }
        let request = canonicalRequest(
            method: method, canonicalPath: canonicalPath(path, normalize: normalize), canonicalQuery: canonicalQuery(params), headers: headers,
            payloadHash: payloadHash)
        let sts = stringToSign(canonicalRequest: request, scope: scope)
        let sig = signature(stringToSign: sts, key: signingKey(secret: credentials.secretAccessKey, scope: scope))
        if let token = credentials.sessionToken, !signToken { params.append(("X-Amz-Security-Token", token)) }
        // The signature goes last, after the sorted parameters (as AWS prints presigned URLs).
        return Signed(
            headers: [], query: canonicalQuery(params) + "&X-Amz-Signature=" + sig, canonicalRequest: request, stringToSign: sts, signature: sig,
            authorization: nil)
    }

    /// One link of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` upload's chain: the signature of
    /// `chunk` after `previous` (the seed is the request's own signature).
    public static func chunkSignature(previous: String, chunk: Data, scope: Scope, key: SymmetricKey) -> (stringToSign: String, signature: String) {
        let sts = [
            "AWS4-HMAC-SHA256-PAYLOAD", scope.amzDate, scope.credentialScope, previous, emptyPayloadHash, hex(SHA256.hash(data: chunk)),
        ].joined(separator: "\n")
        return (sts, signature(stringToSign: sts, key: key))
    }

    /// Lower-case hex of a digest or MAC (``FelhomCore/Hex``).
    public static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 { Hex.encode(bytes) }

    static func hex(_ digest: SHA256.Digest) -> String { hex(Array(digest)) }
    static func hex(_ mac: HMAC<SHA256>.MAC) -> String { hex(Array(mac)) }
}
