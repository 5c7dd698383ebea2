import Crypto
import FelhomHTTP
import FelhomTestSupport
import Foundation
import ObjectStore
import Testing

/// Fails chosen requests with a 500 before they reach moto (the server's own answer otherwise).
final class FaultyTransport: HTTPTransport, @unchecked Sendable {
    let inner: any HTTPTransport
    let lock = NSLock()
    var failures: [String: Int]
    var seen: [String: Int] = [:]

    /// `failures`: how many times each matching request (`"partNumber=2"`…) fails first.
    init(_ inner: any HTTPTransport, failures: [String: Int]) {
        self.inner = inner
        self.failures = failures
    }

    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        let fail = lock.withLock { () -> Bool in
            for (needle, left) in failures where request.target.contains(needle) {
                seen[needle, default: 0] += 1
                if left > 0 {
                    failures[needle] = left - 1
                    return true
                }
            }
            return false
        }
        if fail {
            return HTTPResponseSpec(
                status: 500, reason: "Internal Server Error",
                body: Data("<Error><Code>InternalError</Code><Message>injected</Message></Error>".utf8))
        }
        return try await inner.send(request)
    }
}

@Suite(.enabled(if: Moto.runSuites), .serialized)
struct S3ClientMotoTests {
    @Test func objectsRoundTrip() async throws {
        let s3 = try Moto.client()
        let p = Moto.prefix()
        try await s3.putObject(key: p + "a b/c~x.txt", body: Data("hello".utf8))
        try await s3.putObject(key: p + "empty", body: Data())
        #expect(try await s3.getObject(key: p + "a b/c~x.txt") == Data("hello".utf8))
        #expect(try await s3.getObject(key: p + "a b/c~x.txt", range: 1...3) == Data("ell".utf8))
        #expect(try await s3.getObject(key: p + "empty") == Data())
        #expect(try await s3.headObject(key: p + "a b/c~x.txt")?.size == 5)
        #expect(try await s3.headObject(key: p + "missing") == nil)
        #expect(Set(try await s3.listObjects(prefix: p).map(\.key)) == [p + "a b/c~x.txt", p + "empty"])
        try await s3.deleteObjects(keys: [p + "a b/c~x.txt", p + "empty"])
        #expect(try await s3.listObjects(prefix: p).isEmpty)
        try await s3.deleteObject(key: p + "missing")
    }

    @Test func listingPagesThrough() async throws {
        let s3 = try Moto.client()
        let p = Moto.prefix()
        for i in 0..<7 { try await s3.putObject(key: p + "k\(i)", body: Data(repeating: 0, count: i)) }
        let listed = try await s3.listObjects(prefix: p, pageSize: 2)
        #expect(listed.map(\.key) == (0..<7).map { p + "k\($0)" }, "four pages of at most two, in order")
        #expect(listed.map(\.size) == Array(0..<7))
        try await s3.deleteObjects(keys: listed.map(\.key))
    }

    @Test func aWrongSecretOrKeyIsRefusedByTheServer() async throws {
        let bad = try Moto.client(secret: "not-the-secret")
        let e = await #expect(throws: S3Error.self) { try await bad.putObject(key: "x", body: Data()) }
        #expect(e?.code == "SignatureDoesNotMatch" && e?.status == 403)
        #expect(e.map { "\($0)" }?.contains("not-the-secret") == false, "the secret never appears in an error")
        var unknown = try Moto.settings()
        unknown.credentials.accessKeyID = "AKIDNOTKNOWN"
        let e2 = await #expect(throws: S3Error.self) { try await S3Client(settings: unknown).headObject(key: "x") }
        #expect(e2?.status == 403)
    }

    @Test func aMissingBucketIsNamed() async throws {
        let s3 = try Moto.client(bucket: "no-such-bucket-here")
        let e = await #expect(throws: S3Error.self) { try await s3.putObject(key: "x", body: Data("x".utf8)) }
        #expect(e?.code == "NoSuchBucket" && e?.message.contains("no-such-bucket-here") == true)
    }

    @Test func virtualHostAddressing() async throws {
        let s3 = try S3Client(settings: try Moto.settings(addressing: .virtualHost))
        let p = Moto.prefix()
        try await s3.putObject(key: p + "v", body: Data("virtual".utf8))
        #expect(try await Moto.client().getObject(key: p + "v") == Data("virtual".utf8), "the same object through path style")
        try await s3.deleteObject(key: p + "v")
    }

    @Test func failedPartsAreRetried() async throws {
        let faulty = Box<FaultyTransport>()
        let s3 = try Moto.client { t in
            let f = FaultyTransport(t, failures: ["partNumber=2": 2])
            faulty.value = f
            return f
        }
        let p = Moto.prefix()
        var parts = [Data(repeating: 1, count: 5 << 20), Data(repeating: 2, count: 5 << 20), Data("tail".utf8)][...]
        let result = try await s3.upload(key: p + "big") { parts.popFirst() }
        #expect(result.size == (10 << 20) + 4)
        #expect(faulty.value?.seen["partNumber=2"] == 3, "two injected 500s, then the part went through")
        let back = try await s3.getObject(key: p + "big", range: (5 << 20)...((5 << 20) + 3))
        #expect(back == Data(repeating: 2, count: 4))
        try await s3.deleteObject(key: p + "big")
    }

    @Test func aFailureAbortsTheUploadSoNothingIsLeft() async throws {
        // A part that keeps failing: after its attempts, the upload is aborted.
        let s3 = try Moto.client { t in FaultyTransport(t, failures: ["partNumber=2": 99]) }
        let p = Moto.prefix()
        var parts = [Data(repeating: 1, count: 5 << 20), Data(repeating: 2, count: 5 << 20), Data("tail".utf8)][...]
        let e = await #expect(throws: S3Error.self) { _ = try await s3.upload(key: p + "big") { parts.popFirst() } }
        #expect(e?.code == "InternalError")
        #expect(try await s3.listMultipartUploads(prefix: p).isEmpty, "aborted: no orphan upload")
        // The producer failing (a read error on the volume) aborts it too (a client without faults:
        // parts 1 and 2 go through, the third read fails).
        struct ReadFailed: Error {}
        var count = 0
        let healthy = try Moto.client()
        await #expect(throws: ReadFailed.self) {
            _ = try await healthy.upload(key: p + "big2") {
                count += 1
                if count == 3 { throw ReadFailed() }
                return Data(repeating: 3, count: 5 << 20)
            }
        }
        #expect(try await s3.listMultipartUploads(prefix: p).isEmpty)
        #expect(try await s3.listObjects(prefix: p).isEmpty)
    }

    @Test(arguments: [0, 1, 1 << 20, (1 << 20) + 1, 200 << 20])
    func encryptedSnapshotsRoundTrip(_ size: Int) async throws {
        let s3 = try Moto.client()
        let key = SymmetricKey(size: .bits256)
        let objectKey = Moto.prefix() + "vol-\(size).felsnap"
        // The volume: deterministic bytes, made and hashed on the fly (never all in memory).
        let pattern = Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) })
        var sealer = SnapshotSealer(dataKey: key, header: try SnapshotFormat.Header(snapshotID: "snap-\(size)"))
        var pending = Data(sealer.header.bytes)
        var produced = 0
        var plainHash = SHA256()
        var objectHash = SHA256()
        var done = false
        let partSize = 5 << 20
        let uploaded = try await s3.upload(key: objectKey) { () throws -> Data? in
            while pending.count < partSize && !done {
                if produced < size {
                    let n = min(1 << 20, size - produced)
                    // A random pattern made once, marked with the block's offset: cheap in a debug build
                    // (the whole suite runs at once on 2 cores; timers in other suites must not starve).
                    var block = pattern.prefix(n)
                    withUnsafeBytes(of: UInt64(produced).bigEndian) { mark in block.replaceSubrange(0..<min(8, n), with: mark.prefix(min(8, n))) }
                    produced += n
                    plainHash.update(data: block)
                    pending += try sealer.add(block)
                } else {
                    pending += try sealer.finish()
                    done = true
                }
            }
            guard !pending.isEmpty else { return nil }
            let part = pending.prefix(partSize)
            pending = pending.dropFirst(part.count)
            objectHash.update(data: part)
            return Data(part)
        }
        // Back, in ranges, verified chunk by chunk.
        var opener = SnapshotOpener(dataKey: key)
        var restored = SHA256()
        var offset = 0
        while offset < uploaded.size {
            let piece = try await s3.getObject(key: objectKey, range: offset...min(uploaded.size - 1, offset + (8 << 20) - 1))
            offset += piece.count
            restored.update(data: try opener.add(piece))
        }
        restored.update(data: try opener.finish())
        #expect(restored.finalize() == plainHash.finalize())
        #expect(try await s3.headObject(key: objectKey)?.size == uploaded.size)
        _ = objectHash.finalize()
        try await s3.deleteObject(key: objectKey)
    }
}

/// S3 answers that moto does not give (it does not check the clock), as AWS sends them.
struct S3ErrorMappingTests {
    struct Canned: HTTPTransport {
        let status: Int
        let body: String
        func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
            HTTPResponseSpec(status: status, reason: "", body: Data(body.utf8))
        }
    }

    func client(_ status: Int, _ body: String) throws -> S3Client {
        try S3Client(
            settings: .init(
                endpoint: "https://s3.eu-central-1.amazonaws.com", region: "eu-central-1", bucket: "felhom-backups",
                credentials: .init(accessKeyID: "AKID", secretAccessKey: "top-secret"), attempts: 2, backoff: .milliseconds(1)),
            transport: Canned(status: status, body: body))
    }

    @Test func aSkewedClockIsNamed() async throws {
        let s3 = try client(
            403,
            "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>"
        )
        let e = await #expect(throws: S3Error.self) { try await s3.putObject(key: "k", body: Data()) }
        #expect(e?.code == "RequestTimeTooSkewed" && e?.message.contains("check NTP") == true)
        #expect(e?.isRetryable == false)
    }

    @Test func a200WithAnErrorInsideIsAnError() async throws {
        let s3 = try client(200, "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>")
        let e = await #expect(throws: S3Error.self) { try await s3.completeMultipartUpload(key: "k", uploadID: "u", parts: [(1, "\"e\"")]) }
        #expect(e?.code == "InternalError")
    }

    @Test func badSettingsAreRefusedNamingTheKey() {
        let creds = SigV4.Credentials(accessKeyID: "AKID", secretAccessKey: "s")
        #expect(throws: S3Error.self) {
            try S3Client(settings: .init(endpoint: "http://s3.example.com", region: "r", bucket: "b-1", credentials: creds))
        }
        #expect(throws: S3Error.self) {
            try S3Client(settings: .init(endpoint: "https://s3.example.com", region: "r", bucket: "Bad_Bucket", credentials: creds))
        }
        #expect(throws: S3Error.self) {
            try S3Client(
                settings: .init(
                    endpoint: "https://s3.example.com", region: "r", bucket: "b-1", credentials: .init(accessKeyID: "", secretAccessKey: "")))
        }
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T?
}
