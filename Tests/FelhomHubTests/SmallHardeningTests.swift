import FelhomCore
import FelhomHTTP
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import FelhomHub

/// Issue 10 item 16: the smaller items, each with a check that fails without its fix.
@Suite struct SmallHardeningTests {
    @Test func emailAddressesAreReal() {
        for ok in ["anna@example.hu", "a.b+tag@sub.example.co.uk", "x@y.io"] { #expect(Pattern.isEmail(ok), "\(ok)") }
        for bad in [
            "anna@example.hu\r\nBcc: all@x.hu", "anna", "@example.hu", "anna@", "anna@localhost", "a b@example.hu", "<a@b.hu>",
            "anna@example.hu\n", String(repeating: "a", count: 65) + "@example.hu",
        ] {
            #expect(!Pattern.isEmail(bad), "\(bad)")
        }
    }

    @Test(arguments: TestStores.kinds)
    func customerDomainsAreUniqueAndEmailsValid(kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            #expect(
                try await client.call(
                    .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#
                ).status == .created)
            let dup = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"B","email":"b@example.hu","domain":"a.example.hu"}"#)
            #expect(dup.status == .conflict && dup.json?["error"]?["path"] == "$.domain", "\(String(decoding: dup.body, as: UTF8.self))")
            let crlf = try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"C","email":"c@example.hu\r\nBcc: x@y.hu","domain":"c.example.hu"}"#)
            #expect(crlf.status == .badRequest && crlf.json?["error"]?["path"] == "$.email")
        }
        await h.hub.store.close()
    }

    @Test func clearTextOnlyOnLoopback() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] { #expect(HTTPEndpoint.isLoopback(host), "\(host)") }
        for host in ["10.0.0.1", "127.0.0.1.evil.example", "128.0.0.1", "localhost.example", "0.0.0.0", ""] {
            #expect(!HTTPEndpoint.isLoopback(host), "\(host)")
        }
    }

    @Test func idsInOutboundPathsAreEncoded() {
        #expect(PathSegment.encode("sop_abc123") == "sop_abc123")
        #expect(PathSegment.encode("../hosts") == "..%2Fhosts")
        #expect(PathSegment.encode("..") == "%2E%2E")
        #expect(PathSegment.encode("x?admin=1#y") == "x%3Fadmin%3D1%23y")
        #expect(PathSegment.encode("a b/c") == "a%20b%2Fc")
    }

    /// A hostile server cannot make the outbound client buffer an endless answer.
    @Test func outboundAnswersAreCapped() async throws {
        let router = Router()
        router.get("/big") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: 0x41, count: 64 * 1024))) }
        router.get("/small") { _, _ -> String in "ok" }
        try await Application(router: router).test(.live) { client in
            var transport = NIOHTTPTransport(host: "127.0.0.1", port: client.port ?? 0, useTLS: false, trust: .systemDefault)
            transport.maxResponseBytes = 16 * 1024
            let e = await #expect(throws: HTTPClientError.self) { _ = try await transport.send(HTTPRequestSpec(method: "GET", target: "/big")) }
            #expect(e?.code == .tooLarge)
            let small = try await transport.send(HTTPRequestSpec(method: "GET", target: "/small"))
            #expect(small.status == 200)
        }
    }

    /// Issue 11: a known path asked with a method it does not answer gets 405 with `Allow`.
    @Test func undeclaredMethodsAre405WithAllow() async throws {
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let r = try await client.execute(uri: "/api/v1/customers", method: .delete, headers: [.authorization: "Bearer \(operatorKey)"]) { $0 }
            #expect(r.status == .methodNotAllowed)
            #expect(r.headers[.allow] == "GET, HEAD, POST")
            let p = try await client.execute(uri: "/api/v1/hosts/hst_x/block", method: .get) { $0 }
            #expect(p.status == .methodNotAllowed && p.headers[.allow] == "POST", "\(p.status) \(p.headers)")
            #expect(try await client.call(.get, "/api/v1/nothing-here", key: operatorKey).status == .notFound)
            // A literal segment beats a capture: /recovery/box (POST) is not /recovery/{id} (GET, PUT).
            let box = try await client.execute(uri: "/api/v1/recovery/box", method: .options) { $0 }
            #expect(box.status == .methodNotAllowed && box.headers[.allow] == "POST")
        }
        await h.hub.store.close()
    }
}
