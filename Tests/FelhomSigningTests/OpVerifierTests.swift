import FelhomCore
import Foundation
import Testing

@testable import FelhomSigning

/// The verification pipeline: each refusal has its own code, and only a fully valid op burns its nonce.
@Suite struct OpVerifierTests {
    let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
    let operatorKey = SSHPrivateKey.generateEd25519(comment: "op@felhom")
    let otherKey = SSHPrivateKey.generateEd25519(comment: "mallory")

    func blob(host: String = "box-1", issued: Date? = nil, ttl: TimeInterval = 900, op: OpBlob.Op = .guestDestroy, nonce: String? = nil) throws -> [UInt8] {
        var b = try OpBlob.new(op: op, hostID: host, guestID: "101", params: op == .guestRollback ? ["snapshot": "pre"] : [:], ttl: ttl,
                               keyID: operatorKey.publicKey.fingerprint, now: issued ?? clock.now())
        if let nonce { b.nonce = nonce }
        return try b.canonicalBytes()
    }

    func sign(_ m: [UInt8], with key: SSHPrivateKey? = nil, namespace: String = OpVerifier.namespace) throws -> String {
        try (key ?? operatorKey).sign(message: m, namespace: namespace).armored
    }

    func verifier(_ store: NonceStore = InMemoryNonceStore(), signers: [PinnedSigner]? = nil) -> OpVerifier {
        OpVerifier(signers: signers ?? [PinnedSigner(name: "alice", key: operatorKey.publicKey)], hostID: "box-1", nonces: store, clock: clock)
    }

    func code(_ body: () throws -> Void) -> SignatureError.Code? {
        do { try body() } catch let e as SignatureError { return e.code } catch { return nil }
        return nil
    }

    @Test func validOpIsAcceptedOnceAndDescribed() throws {
        let v = verifier()
        let m = try blob()
        let s = try sign(m)
        let ok = try v.verify(blob: m, signature: s)
        #expect(ok.op.op == .guestDestroy)
        #expect(ok.op.guestID == "101")
        #expect(ok.signer.name == "alice")
        #expect(ok.op.plainDescription.contains("DESTROY guest"))
        #expect(code { _ = try v.verify(blob: m, signature: s) } == .replay)
    }

    @Test func eachRefusalHasItsOwnCode() throws {
        let m = try blob()
        #expect(code { _ = try verifier().verify(blob: m, signature: "garbage") } == .malformed)
        #expect(code { _ = try verifier().verify(blob: m, signature: try sign(m, namespace: "file")) } == .namespace)
        #expect(code { _ = try verifier().verify(blob: m, signature: try sign(m, with: otherKey)) } == .unknownSigner)
        var tampered = m
        tampered[tampered.count - 3] ^= 0x01
        #expect(code { _ = try verifier().verify(blob: tampered, signature: try sign(m)) } == .badSignature)
        let other = try blob(host: "box-2")
        #expect(code { _ = try verifier().verify(blob: other, signature: try sign(other)) } == .target)
        let old = try blob(issued: clock.now().addingTimeInterval(-3600), ttl: 900)
        #expect(code { _ = try verifier().verify(blob: old, signature: try sign(old)) } == .expired)
        let future = try blob(issued: clock.now().addingTimeInterval(3600))
        #expect(code { _ = try verifier().verify(blob: future, signature: try sign(future)) } == .notYetValid)
        let long = try blob(ttl: 48 * 3600)
        #expect(code { _ = try verifier().verify(blob: long, signature: try sign(long)) } == .malformed)
        let junk = Array(#"{"op":"guest.destroy"}"#.utf8)
        #expect(code { _ = try verifier().verify(blob: junk, signature: try sign(junk)) } == .malformed)
    }

    @Test func clockSkewIsTolerated() throws {
        let slightlyFuture = try blob(issued: clock.now().addingTimeInterval(120))
        _ = try verifier().verify(blob: slightlyFuture, signature: try sign(slightlyFuture))
        let justExpired = try blob(issued: clock.now().addingTimeInterval(-1000), ttl: 900)
        _ = try verifier().verify(blob: justExpired, signature: try sign(justExpired))
    }

    @Test func aBadSignatureNeverBurnsTheNonce() throws {
        let store = InMemoryNonceStore()
        let v = verifier(store)
        let m = try blob(nonce: "0123456789abcdef0123")
        #expect(code { _ = try v.verify(blob: m, signature: try sign(m, with: otherKey)) } == .unknownSigner)
        var tampered = m
        tampered[tampered.count - 3] ^= 0x01
        #expect(code { _ = try v.verify(blob: tampered, signature: try sign(m)) } == .badSignature)
        _ = try v.verify(blob: m, signature: try sign(m))  // the genuine op still goes through
    }

    @Test func signerOptionsAndRoles() throws {
        let text = """
            # operators
            alice@felhom namespaces="felhom-op-v1" \(operatorKey.publicKey.openSSHLine) laptop
            carol@felhom valid-after="20990101Z" \(otherKey.publicKey.openSSHLine) role=recovery
            """
        let signers = try AllowedSigners.parse(text)
        #expect(signers.count == 2)
        #expect(signers[0].role == .operational)
        #expect(signers[1].role == .recovery)
        let m = try blob()
        #expect(code { _ = try verifier(signers: signers).verify(blob: m, signature: try sign(m, with: otherKey)) } == .unknownSigner)
        let e = #expect(throws: SignatureError.self) { try AllowedSigners.parse("x@y bogus-option \(operatorKey.publicKey.openSSHLine)") }
        #expect(e?.message.contains("line 1") == true)
        #expect(throws: SignatureError.self) { try AllowedSigners.parse("x@y \(operatorKey.publicKey.openSSHLine) role=admin") }
        #expect(throws: SignatureError.self) { try AllowedSigners.parse("x@y cert-authority \(operatorKey.publicKey.openSSHLine)") }
        let wrongNS = try AllowedSigners.parse("x@y namespaces=\"git\" \(operatorKey.publicKey.openSSHLine)")
        #expect(code { _ = try verifier(signers: wrongNS).verify(blob: m, signature: try sign(m)) } == .unknownSigner)
    }

    @Test func opBlobIsCanonicalAndStrict() throws {
        let m = try blob(op: .guestRollback)
        #expect(try CanonicalJSON.canonicalize(m) == m)
        let text = String(decoding: m, as: UTF8.self)
        #expect(text.hasPrefix(#"{"expires_at":""#))
        #expect(text.contains(#""params":{"snapshot":"pre"}"#))
        #expect(throws: OpBlobError.self) { try OpBlob.new(op: .guestRollback, hostID: "h", guestID: "1", params: [:], ttl: 60, keyID: "") }
        #expect(throws: OpBlobError.self) { try OpBlob.new(op: .guestDestroy, hostID: "h", guestID: nil, params: [:], ttl: 60, keyID: "") }
        var extra = try CanonicalJSON.parse(m)
        if case .object(var o) = extra { o["sudo"] = true; extra = .object(o) }
        let e = #expect(throws: OpBlobError.self) { try OpBlob(parsing: try CanonicalJSON.serialize(extra)) }
        #expect(e?.field == "sudo")
    }
}
