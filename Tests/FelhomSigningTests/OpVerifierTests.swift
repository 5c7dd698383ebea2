import FelhomCore
import Foundation
import Testing

@testable import FelhomSigning

/// The verification pipeline: each refusal has its own code, and only a fully valid op burns its nonce.
@Suite struct OpVerifierTests {
    let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
    let operatorKey = SSHPrivateKey.generateEd25519(comment: "op@felhom")
    let otherKey = SSHPrivateKey.generateEd25519(comment: "mallory")

    func blob(host: String = "box-1", issued: Date? = nil, ttl: TimeInterval = 900, op: OpBlob.Op = .guestDestroy, nonce: String? = nil) throws
        -> [UInt8]
    {
        var b = try OpBlob.new(
            op: op, hostID: host, guestID: "101", params: op == .guestRollback ? ["snapshot": "pre"] : [:], ttl: ttl,
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

    /// Found by fuzz-openssh-key: an empty option (`,,` in the options) indexed an empty array and
    /// crashed the agent reading its signers file. It is refused by name now.
    @Test func emptyOptionsAreRefusedNotACrash() throws {
        for options in [",,", ",namespaces=\"felhom-op-v1\"", "namespaces=\"felhom-op-v1\",,valid-after=\"20200101Z\"", "=x"] {
            let e = #expect(throws: SignatureError.self) { try AllowedSigners.parse("x@y \(options) \(operatorKey.publicKey.openSSHLine)") }
            #expect(e?.message.contains("option") == true, "\(options): \(e?.message ?? "")")
        }
        let found = "ali    ,,,,,,,,,,,,,,\u{0},,,,,\u{0}felhom-op-v1\" ssh-ed25519 A"
        #expect(throws: SignatureError.self) { try AllowedSigners.parse(found) }
        // Also found by fuzz-openssh-key: `""` as the principals made a signer with no name.
        let nameless = #expect(throws: SignatureError.self) { try AllowedSigners.parse("\"\" \(operatorKey.publicKey.openSSHLine)") }
        #expect(nameless?.message.contains("principals field is empty") == true, "\(nameless?.message ?? "")")
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
        if case .object(var o) = extra {
            o["sudo"] = true
            extra = .object(o)
        }
        let e = #expect(throws: OpBlobError.self) { try OpBlob(parsing: try CanonicalJSON.serialize(extra)) }
        #expect(e?.field == "sudo")
    }

    /// Issue 10 item 11: an exact parameter schema per op and strict id charsets, on every side
    /// (the agent parses with the same rules), so a hostile hub cannot smuggle a misleading op.
    @Test(arguments: [
        (OpBlob.Op.guestDestroy, "box-1", "120", ["force": JSONValue.bool(true)], "params.force"),
        (.guestDestroy, "box-1", "12a", [:], "target.guest_id"),
        (.guestDestroy, "box-1", "120\u{202E}1", [:], "target.guest_id"),
        (.guestDestroy, "box\u{1B}[2K", "120", [:], "target.host_id"),
        (.guestDestroy, "box-1", "99", [:], "target.guest_id"),
        (.guestRollback, "box-1", "120", ["snapshot": .string("pre\nDESTROY")], "params.snapshot"),
        (.guestRollback, "box-1", "120", ["snapshot": .string("pre"), "also": .string("x")], "params.also"),
        (.guestRestore, "box-1", "120", ["backup": .string("pbs:backup/ct/120/2026-01-01T00:00:00Z\u{7}")], "params.backup"),
        (.agentRollback, "box-1", "120", ["version": .string("0.1.0")], "target.guest_id"),
    ])
    func opBlobRefusesWhatItCannotShowExactly(op: OpBlob.Op, host: String, guest: String, params: [String: JSONValue], field: String) throws {
        let e = #expect(throws: OpBlobError.self) { try OpBlob.new(op: op, hostID: host, guestID: guest, params: params, ttl: 60, keyID: "") }
        #expect(e?.field == field)
        // The parser applies the same rules to received bytes.
        let good = try OpBlob.new(op: .guestDestroy, hostID: "box-1", guestID: "120", params: [:], ttl: 60, keyID: "")
        var doc = good.jsonValue
        if case .object(var o) = doc {
            o["op"] = .string(op.rawValue)
            o["target"] = ["host_id": .string(host), "guest_id": op.needsGuest ? .string(guest) : .string(guest)]
            o["params"] = .object(params)
            doc = .object(o)
        }
        #expect(throws: OpBlobError.self) { try OpBlob(parsing: try CanonicalJSON.serialize(doc)) }
    }

    @Test func validParamsPass() throws {
        _ = try OpBlob.new(op: .guestRollback, hostID: "box-1", guestID: "120", params: ["snapshot": "pre-update_1"], ttl: 60, keyID: "SHA256:abc+/=")
        _ = try OpBlob.new(
            op: .guestRestore, hostID: "box-1", guestID: "120", params: ["backup": "pbs-felhom:backup/ct/120/2026-11-30T02:00:00Z"], ttl: 60,
            keyID: "")
        _ = try OpBlob.new(op: .agentRollback, hostID: "box-1", guestID: nil, params: ["version": "0.2.0"], ttl: 60, keyID: "")
    }
}
