import FelhomCore
import Foundation
import PVESimulator
import Testing

@testable import FelhomHTTP
@testable import Proxmox

/// Real TLS handshakes against the simulator's HTTPS server with certificates made in the test.
@Suite struct TLSTrustTests {
    func withServer(_ tls: TLSMaterial, _ body: (Int, String) async throws -> Void) async throws {
        var options = PVESimulator.Options()
        options.port = 0
        options.tls = tls
        let sim = try await PVESimulator.start(options)
        do {
            try await body(sim.port, sim.secret(for: SimSeed.agentTokenID) ?? "")
        } catch {
            await sim.shutdown()
            throw error
        }
        await sim.shutdown()
    }

    func client(_ port: Int, _ secret: String, _ trust: TLSTrust, host: String = "127.0.0.1") throws -> PVEClient {
        PVEClient(
            connection: try PVEConnection(
                host: host, port: port, tokenID: SimSeed.agentTokenID, tokenSecret: Secret(secret), trust: trust,
                requestTimeout: .seconds(20)))
    }

    @Test func aFingerprintWithFullWidthDigitsIsRefusedNotACrash() {
        // "１" (U+FF11) is a hex digit to Character.isHexDigit but not to a radix-16 parse.
        let fullWidth = String(repeating: "\u{FF11}", count: 64)
        #expect(throws: HTTPClientError.self) { _ = try CertificateFingerprint(parsing: fullWidth) }
        #expect((try? CertificateFingerprint(parsing: String(repeating: "ab", count: 32))) != nil)
    }

    @Test func pinnedSelfSignedLeafIsAccepted() async throws {
        let tls = try TLSMaterial.selfSigned(commonName: "pve1")
        try await withServer(tls) { port, secret in
            let v = try await client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: tls.fingerprint))).version()
            #expect(v.release == "9.1")
            // The node list reports the same fingerprint, as PVE's ssl_fingerprint does.
            let nodes = try await client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: tls.fingerprint))).nodes()
            #expect(nodes.first?.sslFingerprint == tls.fingerprint)
        }
    }

    @Test func wrongPinIsRefusedWithBothFingerprints() async throws {
        let tls = try TLSMaterial.selfSigned(commonName: "pve1")
        let other = try TLSMaterial.selfSigned(commonName: "pve1")
        try await withServer(tls) { port, secret in
            let e = await #expect(throws: PVEError.self) {
                _ = try await client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: other.fingerprint))).version()
            }
            #expect(e?.code == .tls, "\(String(describing: e))")
            #expect(e?.message.contains(tls.fingerprint) == true)
            #expect(e?.message.contains(other.fingerprint) == true)
            #expect(e?.message.contains(secret) == false)
        }
    }

    /// One client keeps one TLS context (no trust store parsed per request) and still checks the
    /// pin on every new connection: a cached context never turns a refusal into an acceptance.
    @Test func oneClientReusesItsTLSContextAndChecksThePinEveryTime() async throws {
        let tls = try TLSMaterial.selfSigned(commonName: "pve1")
        let other = try TLSMaterial.selfSigned(commonName: "pve1")
        try await withServer(tls) { port, secret in
            let good = try client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: tls.fingerprint)))
            for _ in 0..<3 { #expect(try await good.version().release == "9.1") }
            let bad = try client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: other.fingerprint)))
            for _ in 0..<3 {
                let e = await #expect(throws: PVEError.self) { _ = try await bad.version() }
                #expect(e?.code == .tls)
            }
        }
        let cache = SSLContextCache()
        let first = try cache.context(for: .systemDefault)
        #expect(try cache.context(for: .systemDefault) === first)
        // A CA file that cannot be read is still a clear error on every try (nothing cached).
        let unreadable = SSLContextCache()
        for _ in 0..<2 { #expect(throws: HTTPClientError.self) { _ = try unreadable.context(for: .caFile("/nonexistent/ca.pem")) } }
    }

    @Test func caSignedLeafVerifiesWithCAFileAndCanAlsoBePinned() async throws {
        let ca = try TLSMaterial.certificateAuthority(commonName: "Felhom Test CA")
        let leaf = try TLSMaterial.leaf(commonName: "pve1", issuer: ca)
        let caPath = NSTemporaryDirectory() + "felhom-ca-\(UUID().uuidString).pem"
        try ca.material.certificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)
        try await withServer(leaf) { port, secret in
            _ = try await client(port, secret, .caFile(caPath)).version()
            _ = try await client(port, secret, .caFile(caPath), host: "localhost").version()
            _ = try await client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: leaf.fingerprint))).version()
            // Pinning the CA instead of the leaf is not the same thing: refused.
            await #expect(throws: PVEError.self) {
                _ = try await client(port, secret, .pinnedLeafSHA256(try CertificateFingerprint(parsing: ca.material.fingerprint))).version()
            }
        }
    }

    @Test func selfSignedIsRefusedByCAFileAndSystemTrust() async throws {
        let tls = try TLSMaterial.selfSigned(commonName: "pve1")
        let ca = try TLSMaterial.certificateAuthority(commonName: "Unrelated CA")
        let caPath = NSTemporaryDirectory() + "felhom-ca-\(UUID().uuidString).pem"
        try ca.material.certificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)
        try await withServer(tls) { port, secret in
            for trust in [TLSTrust.caFile(caPath), .systemDefault] {
                let e = await #expect(throws: PVEError.self) { _ = try await client(port, secret, trust).version() }
                #expect(e?.code == .tls)
            }
        }
    }

    @Test func insecureSwitchAcceptsAnything() async throws {
        let tls = try TLSMaterial.selfSigned(commonName: "pve1")
        try await withServer(tls) { port, secret in
            _ = try await client(port, secret, .insecureSkipVerification).version()
        }
    }

    @Test func unreadableCAFileIsAClearError() async throws {
        let e = await #expect(throws: PVEError.self) {
            _ = try await client(1, "s", .caFile("/nonexistent/ca.pem")).version()
        }
        #expect(e?.message.contains("/nonexistent/ca.pem") == true)
    }

    @Test func connectionRefusedIsTransport() async throws {
        let e = await #expect(throws: PVEError.self) {
            _ = try await client(1, "s", .insecureSkipVerification).version()
        }
        #expect(e?.code == .transport)
    }
}
