import FelhomCore
import FelhomTestSupport
import Foundation
import Testing

@testable import FelhomSigning

@Suite struct NonceStoreTests {
    let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))

    @Test func durableAcrossReopen() throws {
        let path = try tempDir() + "/nonces.log"
        let exp = clock.now().addingTimeInterval(900)
        do {
            let s = try FileNonceStore(path: path, clock: clock)
            #expect(s.record("aaaaaaaaaaaaaaaa", expiresAt: exp) == .recorded)
            #expect(s.record("aaaaaaaaaaaaaaaa", expiresAt: exp) == .seen)
        }
        let again = try FileNonceStore(path: path, clock: clock)
        #expect(again.record("aaaaaaaaaaaaaaaa", expiresAt: exp) == .seen)
        #expect(again.record("bbbbbbbbbbbbbbbb", expiresAt: exp) == .recorded)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    /// The op that spent a nonce may record it again (verified again after a kill before it
    /// journaled); anyone else may not. Owners survive reopening and compaction, and the log keeps
    /// the two-field shape an older agent reads.
    @Test func theOwnerOfANonceMayRecordItAgainAndNoOneElse() throws {
        let path = try tempDir() + "/nonces.log"
        let exp = clock.now().addingTimeInterval(60)
        let s = try FileNonceStore(path: path, clock: clock, retention: 600, compactionSlack: 2)
        #expect(s.record("n000000000000001", expiresAt: exp, owner: "sop_a") == .recorded)
        #expect(s.record("n000000000000001", expiresAt: exp, owner: "sop_a") == .recorded)
        #expect(s.record("n000000000000001", expiresAt: exp, owner: "sop_b") == .seen)
        #expect(s.record("n000000000000001", expiresAt: exp) == .seen)
        // Hostile owner text is not written as an owner: the nonce is recorded ownerless.
        #expect(s.record("n000000000000002", expiresAt: exp, owner: "sop x\nn000000000000003 9") == .recorded)
        #expect(s.record("n000000000000002", expiresAt: exp, owner: "sop x\nn000000000000003 9") == .seen)
        #expect(s.record("owner:sop_a:n000000000000009", expiresAt: exp) != .recorded, "a nonce shaped like an owner line")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.split(separator: "\n").allSatisfy { $0.split(separator: " ").count == 2 }, "every line NONCE EXPIRES: \(text)")
        let reopened = try FileNonceStore(path: path, clock: clock, retention: 600, compactionSlack: 2)
        #expect(reopened.count == 2)
        #expect(reopened.record("n000000000000001", expiresAt: exp, owner: "sop_a") == .recorded)
        #expect(reopened.record("n000000000000001", expiresAt: exp, owner: "sop_b") == .seen)
        for i in 0..<6 { _ = reopened.record(String(format: "fill%012d", i), expiresAt: exp, owner: "sop_f\(i)") }  // compacts
        let compacted = try FileNonceStore(path: path, clock: clock)
        #expect(compacted.record("n000000000000001", expiresAt: exp, owner: "sop_a") == .recorded)
        #expect(compacted.record("fill000000000005", expiresAt: exp, owner: "sop_f5") == .recorded)
        #expect(compacted.record("fill000000000005", expiresAt: exp, owner: "sop_f4") == .seen)
        // An owner line without its nonce line (a crash between the two) records nothing.
        let torn = try tempDir() + "/nonces.log"
        try "owner:sop_z:n00000000000000z 1800000900\n".write(toFile: torn, atomically: true, encoding: .utf8)
        let fresh = try FileNonceStore(path: torn, clock: clock)
        #expect(fresh.count == 0)
        #expect(fresh.record("n00000000000000z", expiresAt: exp, owner: "sop_y") == .recorded)
    }

    @Test func tornLastLineIsCutAndTheRestKept() throws {
        let path = try tempDir() + "/nonces.log"
        try "good000000000001 1800000900\ntorn00000000".write(toFile: path, atomically: true, encoding: .utf8)
        let s = try FileNonceStore(path: path, clock: clock)
        #expect(s.count == 1)
        #expect(s.record("good000000000001", expiresAt: clock.now()) == .seen)
        #expect(s.record("next000000000001", expiresAt: clock.now().addingTimeInterval(60)) == .recorded)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == "good000000000001 1800000900\nnext000000000001 1800000060\n")
    }

    @Test func compactionDropsOnlyLongExpiredNonces() throws {
        let path = try tempDir() + "/nonces.log"
        let s = try FileNonceStore(path: path, clock: clock, retention: 600, compactionSlack: 3)
        #expect(s.record("old0000000000001", expiresAt: clock.now().addingTimeInterval(60)) == .recorded)
        #expect(s.record("new0000000000001", expiresAt: clock.now().addingTimeInterval(7200)) == .recorded)
        clock.advance(by: 3600)  // "old" expired 3540 s ago (> retention), "new" still valid
        try s.compact()
        #expect(s.count == 1)
        #expect(s.record("new0000000000001", expiresAt: clock.now()) == .seen)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new0000000000001 1800007200\n")
        // Automatic compaction when the log grows past the slack keeps every live nonce.
        for i in 0..<10 { _ = s.record(String(format: "auto%012d", i), expiresAt: clock.now().addingTimeInterval(900)) }
        let reopened = try FileNonceStore(path: path, clock: clock)
        #expect(reopened.count == 11)
        #expect(reopened.record("auto000000000003", expiresAt: clock.now()) == .seen)
    }

    @Test func ioErrorCountsAsSeen() throws {
        // /dev/full accepts the open and fails every write with ENOSPC: a real kernel I/O error.
        let s = try FileNonceStore(path: "/dev/full", clock: clock)
        guard case .unavailable(let why) = s.record("cccccccccccccccc", expiresAt: clock.now()) else {
            Issue.record("a failed write must not count as recorded")
            return
        }
        #expect(why.contains("/dev/full"))
        let key = SSHPrivateKey.generateEd25519()
        let blob = try OpBlob.new(op: .guestDestroy, hostID: "h", guestID: "101", params: [:], ttl: 60, keyID: "", now: clock.now()).canonicalBytes()
        let v = OpVerifier(signers: [PinnedSigner(name: "a", key: key.publicKey)], hostID: "h", nonces: s, clock: clock)
        let e = #expect(throws: SignatureError.self) {
            try v.verify(blob: blob, signature: try key.sign(message: blob, namespace: OpVerifier.namespace).armored)
        }
        #expect(e?.code == .replay)
        #expect(throws: NonceStoreError.self) { try FileNonceStore(path: NSTemporaryDirectory(), clock: clock) }
    }
}

/// Crash safety with a real process: `felhom op verify` is killed with SIGKILL right after it
/// recorded the nonce; a second run must still refuse the replay.
@Suite struct NonceCrashTests {
    @Test func replayIsRefusedAfterKill9() async throws {
        // Fails (never passes silently) when the binary is missing: swift build / swift test build it.
        let felhom = try #require(FelhomBinary.path, "the felhom executable is not built (run swift build)")
        let dir = try tempDir()
        let key = SSHPrivateKey.generateEd25519(comment: "op")
        let blob = try OpBlob.new(op: .guestDestroy, hostID: "box-9", guestID: "101", params: [:], ttl: 600, keyID: "").canonicalBytes()
        try Data(blob).write(to: URL(fileURLWithPath: dir + "/op.json"))
        try key.sign(message: blob, namespace: OpVerifier.namespace).armored.write(toFile: dir + "/op.sig", atomically: true, encoding: .utf8)
        try "op@felhom \(key.publicKey.openSSHLine)\n".write(toFile: dir + "/signers", atomically: true, encoding: .utf8)
        let args = [
            "op", "verify", "--signers", dir + "/signers", "--host", "box-9", "--nonce-store", dir + "/nonces.log", dir + "/op.json", dir + "/op.sig",
        ]

        let p = Process()
        p.executableURL = URL(fileURLWithPath: felhom)
        p.arguments = args + ["--hold-after-record", "60"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        var seen = ""
        let deadline = Date().addingTimeInterval(60)
        while !seen.contains("nonce recorded"), Date() < deadline {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        #expect(seen.contains("nonce recorded"), "\(seen)")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)

        let replay = try await run(felhom, args)
        #expect(replay.status == 1)
        #expect(replay.stderr.contains("rejected: replay"), "\(replay.stderr)")
    }
}

/// Issue 10 item 2: a failed append must not leave a fragment that fuses with the next nonce
/// (after a restart the fused line would be unreadable and the nonce forgotten).
@Suite struct NonceLogFaultTests {
    let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))

    @Test func aTornAppendDoesNotSwallowTheNextNonce() throws {
        let path = try tempDir() + "/nonces.log"
        let io = FaultyIO()
        let exp = clock.now().addingTimeInterval(900)
        do {
            let s = try FileNonceStore(path: path, clock: clock, io: io)
            #expect(s.record("first00000000001", expiresAt: exp) == .recorded)
            io.faults.withLock { $0.shortWriteThenFail = 5 }
            guard case .unavailable = s.record("lost000000000001", expiresAt: exp) else {
                Issue.record("a failed append must answer unavailable")
                return
            }
            #expect(s.record("third00000000001", expiresAt: exp) == .recorded)
        }
        let again = try FileNonceStore(path: path, clock: clock)
        #expect(again.record("first00000000001", expiresAt: exp) == .seen)
        #expect(again.record("third00000000001", expiresAt: exp) == .seen)
        #expect(again.count == 2)
    }

    @Test func aDamagedLineInTheMiddleFailsClosed() throws {
        let path = try tempDir() + "/nonces.log"
        try "good000000000001 1800000900\ngarbage\ngood000000000002 1800000900\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: NonceStoreError.self) { try FileNonceStore(path: path, clock: clock) }
    }

    @Test func failedCompactionKeepsRecording() throws {
        let path = try tempDir() + "/nonces.log"
        let io = FaultyIO()
        let s = try FileNonceStore(path: path, clock: clock, retention: 0, compactionSlack: 1000, io: io)
        #expect(s.record("a000000000000001", expiresAt: clock.now().addingTimeInterval(900)) == .recorded)
        io.faults.withLock { $0.failOpenContaining = ".rewrite" }
        #expect(throws: NonceStoreError.self) { try s.compact() }
        #expect(s.record("b000000000000001", expiresAt: clock.now().addingTimeInterval(900)) == .recorded)
        let again = try FileNonceStore(path: path, clock: clock)
        #expect(again.count == 2)
    }
}
