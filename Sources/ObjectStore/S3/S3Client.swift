import Crypto
import FelhomHTTP
import Foundation

/// Why an object-storage call failed. `code` is S3's own error code when the server sent one
/// (`SignatureDoesNotMatch`, `NoSuchBucket`, `RequestTimeTooSkewed`, `EntityTooSmall`…), else
/// one of ours (`transport`, `timeout`, `http_<status>`, `bad_answer`, `checksum_mismatch`). No
/// secret and no signature ever appears in it.
public struct S3Error: Error, Sendable, CustomStringConvertible, Equatable {
    public var code: String
    public var status: Int?
    public var message: String
    /// What was asked: `PUT bucket/key` (part number and upload id in the message, if any).
    public var request: String

    public init(code: String, status: Int? = nil, message: String, request: String) {
        self.code = code
        self.status = status
        self.message = message
        self.request = request
    }

    public var description: String {
        "\(code)\(status.map { " (HTTP \($0))" } ?? ""): \(message) [\(request)]"
    }

    /// Worth another try: a 5xx, S3's `SlowDown`/429, a timeout or a broken connection.
    public var isRetryable: Bool {
        if let status { return status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout" }
        return code == "transport" || code == "timeout"
    }
}

/// An S3-compatible bucket (AWS, MinIO, Ceph RGW, Garage, Backblaze B2, moto): AWS Signature V4
/// (``SigV4``), path-style or virtual-host addressing, single and multipart uploads that never
/// leave an orphan upload behind, ranged reads, listing and deletes; retries with backoff on 5xx
/// and timeouts. See docs/object-storage.md.
public struct S3Client: Sendable {
    public enum Addressing: String, Sendable, Codable {
        /// `https://endpoint/bucket/key` — works everywhere, including IP endpoints.
        case path
        /// `https://bucket.endpoint/key`.
        case virtualHost = "virtual"
    }

    public struct Settings: Sendable {
        /// `https://s3.eu-central-1.amazonaws.com`; plain `http://` only on loopback.
        public var endpoint: String
        public var region: String
        public var bucket: String
        public var credentials: SigV4.Credentials
        public var addressing: Addressing
        /// Connect here instead of resolving the endpoint's host name (tests; like curl `--resolve`).
        public var connectAddress: String?
        public var trust: TLSTrust
        public var timeout: Duration
        /// Attempts per request for retryable failures (default 4).
        public var attempts: Int
        /// The first back-off (doubled each time, with jitter).
        public var backoff: Duration

        public init(
            endpoint: String, region: String, bucket: String, credentials: SigV4.Credentials, addressing: Addressing = .path,
            connectAddress: String? = nil, trust: TLSTrust = .systemDefault, timeout: Duration = .seconds(120), attempts: Int = 4,
            backoff: Duration = .milliseconds(200)
        ) {
            self.endpoint = endpoint
            self.region = region
            self.bucket = bucket
            self.credentials = credentials
            self.addressing = addressing
            self.connectAddress = connectAddress
            self.trust = trust
            self.timeout = timeout
            self.attempts = attempts
            self.backoff = backoff
        }
    }

    /// One object of a listing or a `HEAD`.
    public struct ObjectInfo: Sendable, Equatable {
        public var key: String
        public var size: Int
        public var etag: String
    }

    public let settings: Settings
    let transport: any HTTPTransport
    let host: String
    let hostHeader: String
    /// The clock SigV4 signs with (tests move it to provoke `RequestTimeTooSkewed`).
    let now: @Sendable () -> Date

    public init(settings: Settings, transport: (any HTTPTransport)? = nil, now: @escaping @Sendable () -> Date = { Date() }) throws(S3Error) {
        let endpoint: HTTPEndpoint
        do { endpoint = try HTTPEndpoint(url: settings.endpoint, setting: "s3.endpoint") } catch {
            throw S3Error(code: "invalid_settings", message: error.message, request: "configure")
        }
        guard Self.isValidBucket(settings.bucket) else {
            throw S3Error(
                code: "invalid_settings",
                message: "s3.bucket '\(settings.bucket.prefix(70))' is not a valid bucket name (3–63 of a-z, 0-9, '.', '-')",
                request: "configure")
        }
        guard !settings.region.isEmpty, !settings.credentials.accessKeyID.isEmpty, !settings.credentials.secretAccessKey.isEmpty else {
            throw S3Error(
                code: "invalid_settings", message: "s3.region, s3.access_key_id and s3.secret_access_key are required", request: "configure")
        }
        self.settings = settings
        host = settings.addressing == .virtualHost ? "\(settings.bucket).\(endpoint.host)" : endpoint.host
        hostHeader = NIOHTTPTransport.hostHeader(host: host, port: endpoint.port)
        if let transport {
            self.transport = transport
        } else {
            var t = NIOHTTPTransport(
                host: host, port: endpoint.port, useTLS: endpoint.useTLS, trust: settings.trust, requestTimeout: settings.timeout)
            t.connectAddress = settings.connectAddress
            t.maxResponseBytes = 64 << 20
            self.transport = t
        }
        self.now = now
    }

    static func isValidBucket(_ name: String) -> Bool {
        (3...63).contains(name.utf8.count)
            && name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2E || $0 == 0x2D }
            && !name.hasPrefix(".") && !name.hasPrefix("-") && !name.hasSuffix(".") && !name.hasSuffix("-")
    }

    // MARK: Objects

    /// `PutObject`; sends the body's SHA-256 as `x-amz-checksum-sha256` too (the server verifies
    /// it where it supports checksums). Returns the ETag.
    @discardableResult
    public func putObject(key: String, body: Data) async throws(S3Error) -> String {
        let sum = Data(SHA256.hash(data: body)).base64EncodedString()
        let answer = try await call("PUT", key: key, headers: [("x-amz-checksum-sha256", sum)], body: body)
        return answer.header("etag") ?? ""
    }

    /// `GetObject`, the whole object or the bytes in `range` (inclusive).
    public func getObject(key: String, range: ClosedRange<Int>? = nil) async throws(S3Error) -> Data {
        var headers: [(String, String)] = []
        if let range { headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let answer = try await call("GET", key: key, headers: headers, expect: range == nil ? [200] : [200, 206])
        if let range, answer.status == 206, answer.body.count != range.count {
            // Ranges past the end are cut by the server; anything else is a broken answer.
            let total = answer.header("content-range").flatMap { $0.split(separator: "/").last }.flatMap { Int($0) }
            guard let total, range.lowerBound + answer.body.count == total else {
                throw S3Error(
                    code: "bad_answer", message: "asked for \(range.count) bytes at \(range.lowerBound), got \(answer.body.count)",
                    request: "GET \(settings.bucket)/\(key)")
            }
        }
        return answer.body
    }

    /// `HeadObject`; nil when there is no such object.
    public func headObject(key: String) async throws(S3Error) -> ObjectInfo? {
        let answer = try await call("HEAD", key: key, expect: [200, 404])
        guard answer.status == 200 else { return nil }
        return ObjectInfo(key: key, size: Int(answer.header("content-length") ?? "") ?? 0, etag: answer.header("etag") ?? "")
    }

    /// `DeleteObject` (no error for a missing key, as S3).
    public func deleteObject(key: String) async throws(S3Error) {
        _ = try await call("DELETE", key: key, expect: [200, 204])
    }

    /// `DeleteObjects`, up to 1,000 keys per request; any key the server could not delete is an error naming it.
    public func deleteObjects(keys: [String]) async throws(S3Error) {
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(keys.count, start + 1000)]
            start += batch.count
            let xml =
                "<Delete><Quiet>true</Quiet>" + batch.map { "<Object><Key>\(MiniXML.escape($0))</Key></Object>" }.joined() + "</Delete>"
            let body = Data(xml.utf8)
            let md5 = Data(Insecure.MD5.hash(data: body)).base64EncodedString()
            let answer = try await call("POST", key: nil, query: [("delete", "")], headers: [("Content-MD5", md5)], body: body)
            let text = String(decoding: answer.body, as: UTF8.self)
            if let failed = MiniXML.blocks("Error", in: text).first {
                throw S3Error(
                    code: MiniXML.text("Code", in: failed) ?? "delete_failed",
                    message: "could not delete \(MiniXML.text("Key", in: failed) ?? "?"): \(MiniXML.text("Message", in: failed) ?? "")",
                    request: "POST \(settings.bucket)?delete")
            }
        }
    }

    /// `ListObjectsV2` under `prefix`, every page (`pageSize` keys per request; the server's default, 1,000, when nil).
    public func listObjects(prefix: String, pageSize: Int? = nil) async throws(S3Error) -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let pageSize { query.append(("max-keys", String(pageSize))) }
            if let token { query.append(("continuation-token", token)) }
            let answer = try await call("GET", key: nil, query: query)
            let text = String(decoding: answer.body, as: UTF8.self)
            for item in MiniXML.blocks("Contents", in: text) {
                guard let key = MiniXML.text("Key", in: item) else { continue }
                out.append(ObjectInfo(key: key, size: Int(MiniXML.text("Size", in: item) ?? "") ?? 0, etag: MiniXML.text("ETag", in: item) ?? ""))
            }
            token = MiniXML.text("IsTruncated", in: text[...]) == "true" ? MiniXML.text("NextContinuationToken", in: text[...]) : nil
        } while token != nil
        return out
    }

    // MARK: Multipart

    /// `CreateMultipartUpload`: the upload id.
    public func createMultipartUpload(key: String) async throws(S3Error) -> String {
        let answer = try await call("POST", key: key, query: [("uploads", "")])
        guard let id = MiniXML.text("UploadId", in: String(decoding: answer.body, as: UTF8.self)[...]), !id.isEmpty else {
            throw S3Error(code: "bad_answer", message: "no UploadId in the answer", request: "POST \(settings.bucket)/\(key)?uploads")
        }
        return id
    }

    /// `UploadPart` (numbers 1…10,000): the part's ETag.
    public func uploadPart(key: String, uploadID: String, number: Int, body: Data) async throws(S3Error) -> String {
        let answer = try await call("PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], body: body)
        guard let etag = answer.header("etag") else {
            throw S3Error(code: "bad_answer", message: "no ETag for part \(number)", request: "PUT \(settings.bucket)/\(key)")
        }
        return etag
    }

    /// `CompleteMultipartUpload` with the parts' numbers and ETags, in order. S3 can answer 200
    /// with an error in the body: that is an error here.
    @discardableResult
    public func completeMultipartUpload(key: String, uploadID: String, parts: [(number: Int, etag: String)]) async throws(S3Error) -> String {
        let xml =
            "<CompleteMultipartUpload>"
            + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(MiniXML.escape($0.etag))</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
        let answer = try await call("POST", key: key, query: [("uploadId", uploadID)], body: Data(xml.utf8))
        let text = String(decoding: answer.body, as: UTF8.self)
        if let error = MiniXML.blocks("Error", in: text).first {
            throw S3Error(
                code: MiniXML.text("Code", in: error) ?? "complete_failed", status: answer.status,
                message: MiniXML.text("Message", in: error) ?? "the upload did not complete", request: "POST \(settings.bucket)/\(key)?uploadId")
        }
        return MiniXML.text("ETag", in: text[...]) ?? ""
    }

    /// `AbortMultipartUpload`; an upload that is already gone is not an error.
    public func abortMultipartUpload(key: String, uploadID: String) async throws(S3Error) {
        _ = try await call("DELETE", key: key, query: [("uploadId", uploadID)], expect: [200, 204, 404])
    }

    /// `ListMultipartUploads` under `prefix`: `(key, upload id)` of every open upload.
    public func listMultipartUploads(prefix: String) async throws(S3Error) -> [(key: String, uploadID: String)] {
        let answer = try await call("GET", key: nil, query: [("uploads", ""), ("prefix", prefix)])
        let text = String(decoding: answer.body, as: UTF8.self)
        return MiniXML.blocks("Upload", in: text).compactMap { block in
            guard let key = MiniXML.text("Key", in: block), let id = MiniXML.text("UploadId", in: block) else { return nil }
            return (key, id)
        }
    }

    /// Uploads what `next` hands out, part by part (each at least 5 MiB but the last): one
    /// `PutObject` when it all fits in one part, else a multipart upload that is **aborted on any
    /// failure** (of `next` too), so no orphan upload is left behind. Returns the ETag and size.
    public func upload(key: String, next: () async throws -> Data?) async throws -> (etag: String, size: Int) {
        var part = try await next()
        guard part != nil else { return (try await putObject(key: key, body: Data()), 0) }
        var following = try await next()
        if following == nil, let only = part { return (try await putObject(key: key, body: only), only.count) }
        let uploadID = try await createMultipartUpload(key: key)
        do {
            // No look-ahead past the second part, and a part is let go before the next one is
            // asked for: one part in memory at a time.
            var parts: [(number: Int, etag: String)] = []
            var size = 0
            while part != nil {
                let number = parts.count + 1
                let sent = try await uploadTaking(&part, key: key, uploadID: uploadID, number: number)
                parts.append((number, sent.etag))
                size += sent.size
                part = following
                following = nil
                if part == nil { part = try await next() }
            }
            return (try await completeMultipartUpload(key: key, uploadID: uploadID, parts: parts), size)
        } catch {
            try? await abortMultipartUpload(key: key, uploadID: uploadID)
            throw error
        }
    }

    /// A multipart upload of what `next` hands out, when the caller knows it is more than one
    /// part (no look-ahead: one part in memory at a time). Aborted on any failure, so no orphan
    /// upload is left. Returns the ETag and size.
    public func uploadMultipart(key: String, next: () async throws -> Data?) async throws -> (etag: String, size: Int) {
        let uploadID = try await createMultipartUpload(key: key)
        do {
            var parts: [(number: Int, etag: String)] = []
            var size = 0
            var part = try await next()
            while part != nil {
                let number = parts.count + 1
                let sent = try await uploadTaking(&part, key: key, uploadID: uploadID, number: number)
                parts.append((number, sent.etag))
                size += sent.size
                part = try await next()
            }
            return (try await completeMultipartUpload(key: key, uploadID: uploadID, parts: parts), size)
        } catch {
            try? await abortMultipartUpload(key: key, uploadID: uploadID)
            throw error
        }
    }

    /// Uploads the part in `slot` and empties the slot, so the caller holds no copy of it.
    private func uploadTaking(_ slot: inout Data?, key: String, uploadID: String, number: Int) async throws(S3Error) -> (etag: String, size: Int) {
        let body = slot ?? Data()
        slot = nil
        return (try await uploadPart(key: key, uploadID: uploadID, number: number, body: body), body.count)
    }

    // MARK: The one request path

    struct Answer {
        var status: Int
        var headers: [(String, String)]
        var body: Data
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
    }

    /// Signs and sends one request, retrying retryable failures with back-off; a status outside
    /// `expect` is an ``S3Error`` with S3's code and message.
    func call(
        _ method: String, key: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [], body: Data? = nil,
        expect: Set<Int> = [200]
    ) async throws(S3Error) -> Answer {
        var path = settings.addressing == .path ? "/\(settings.bucket)" : ""
        if let key { path += "/" + key } else if path.isEmpty { path = "/" }
        let name = "\(method) \(settings.bucket)\(key.map { "/\($0)" } ?? "")\(query.first.map { "?\($0.0)" } ?? "")"
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await once(method, path: path, query: query, headers: extra, body: body, expect: expect, name: name)
            } catch let error {
                guard error.isRetryable, attempt < max(1, settings.attempts) else { throw error }
                let base = settings.backoff * (1 << min(attempt - 1, 8))
                let jitter = Double.random(in: 0.75...1.25)
                try? await Task.sleep(for: base * jitter)
            }
        }
    }

    func once(
        _ method: String, path: String, query: [(String, String)], headers extra: [(String, String)], body: Data?, expect: Set<Int>, name: String
    ) async throws(S3Error) -> Answer {
        let payload = body ?? Data()
        let hash = SigV4.hex(Array(SHA256.hash(data: payload)))
        let scope = SigV4.Scope(date: now(), region: settings.region, service: "s3")
        let signed = SigV4.signHeaders(
            method: method, path: path, query: query, headers: [("Host", hostHeader)] + extra, payloadHash: hash, credentials: settings.credentials,
            scope: scope, normalize: false, signPayloadHeader: true)
        let canonicalQuery = SigV4.canonicalQuery(query)
        let target = SigV4.uriEncode(path, keepSlash: true) + (canonicalQuery.isEmpty ? "" : "?" + canonicalQuery)
        let response: HTTPResponseSpec
        do {
            response = try await transport.send(
                HTTPRequestSpec(
                    method: method, target: target, headers: extra + signed.headers,
                    body: body ?? (method == "PUT" || method == "POST" ? Data() : nil)))
        } catch let e as HTTPClientError {
            throw S3Error(code: e.code == .timeout ? "timeout" : "transport", message: e.message, request: name)
        } catch {
            throw S3Error(code: "transport", message: "\(error)", request: name)
        }
        guard expect.contains(response.status) else {
            let text = String(decoding: response.body.prefix(64 << 10), as: UTF8.self)
            let code = MiniXML.text("Code", in: text[...]) ?? "http_\(response.status)"
            var message = MiniXML.text("Message", in: text[...]) ?? (response.reason.isEmpty ? "HTTP \(response.status)" : response.reason)
            if code == "RequestTimeTooSkewed" { message += " (this machine's clock: \(scope.amzDate); check NTP)" }
            if code == "NoSuchBucket" { message += " (bucket '\(settings.bucket)')" }
            throw S3Error(code: code, status: response.status, message: String(message.prefix(500)), request: name)
        }
        return Answer(status: response.status, headers: response.headers, body: response.body)
    }
}
