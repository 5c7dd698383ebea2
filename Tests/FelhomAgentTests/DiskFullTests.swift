import FelhomCore
import FelhomSigning
import Foundation
import Testing

@testable import FelhomAgent

/// Fault injection with a real kernel: the journal and the nonce log on a 64 KiB tmpfs that fills
/// up. A write that runs out of space part-way (a real short write, then ENOSPC) must leave no
/// fragment behind; the error says the disk is full; a signed op whose nonce cannot be recorded is
/// refused; and once space is back, both files reopen with exactly what was acknowledged.
@Suite(.serialized) struct DiskFullTests {
    @Test(.enabled(if: getuid() == 0, "mounts a 64 KiB tmpfs as the full disk"))
    func aFullDiskLeavesNoTornLineAndNoUnrecordedOp() throws {
        let dir = NSTemporaryDirectory() + "felhom-diskfull-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir])
        defer {
            try? run("/bin/umount", [dir])
            try? FileManager.default.removeItem(atPath: dir)
        }
        let journal = try Journal(path: dir + "/journal.jsonl")
        let nonces = try FileNonceStore(path: dir + "/nonces.log")
        try journal.append(op: "op-1", kind: "signed-op", step: "begin")
        #expect(nonces.record("nonce-before-full-1", expiresAt: Date().addingTimeInterval(600)) == .recorded)

        // Fill every free page with a filler file, then ask for more than one page at once: the
        // kernel writes what fits in the journal's last page and fails the rest with ENOSPC.
        let filler = dir + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
        try #require(fd >= 0)
        let page = [UInt8](repeating: 0x78, count: 4096)
        var written = 0
        while page.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 { written += 1 }
        close(fd)
        #expect(written > 0 && written < 17, "the filler took the free pages (\(written))")
        let journalBefore = try Data(contentsOf: URL(fileURLWithPath: dir + "/journal.jsonl"))
        let big = String(repeating: "d", count: 6000)
        let e = #expect(throws: JournalError.self) { try journal.append(op: "op-1", kind: "signed-op", step: "applied", data: ["detail": big]) }
        #expect(e?.description.contains("No space left on device") == true, "\(String(describing: e))")
        #expect(e?.description.contains(big) == false, "the error does not carry the record")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/journal.jsonl")) == journalBefore, "no fragment of the failed line")
        #expect(journal.entries(of: "op-1").map(\.step) == ["begin"], "a failed append is not recorded in memory either")

        // A signed op whose nonce cannot be made durable is refused: it is never applied unrecorded.
        let key = SSHPrivateKey.generateEd25519()
        let blob = try OpBlob.new(op: .guestDestroy, hostID: "h", guestID: "101", params: [:], ttl: 600, keyID: "").canonicalBytes()
        let verifier = OpVerifier(signers: [PinnedSigner(name: "a", key: key.publicKey)], hostID: "h", nonces: nonces)
        let signature = try key.sign(message: blob, namespace: OpVerifier.namespace).armored
        var refused = false
        // The nonce log's last page may still hold one short line: fill it up by recording until a write fails.
        for i in 0..<200 {
            if case .unavailable = nonces.record(String(format: "filler-nonce-%06d", i), expiresAt: Date().addingTimeInterval(600)) {
                refused = true
                break
            }
        }
        #expect(refused, "the nonce log reports the full disk")
        let v = #expect(throws: SignatureError.self) { try verifier.verify(blob: blob, signature: signature) }
        #expect(v?.code == .replay, "an op whose nonce is not recorded is refused")

        // Space comes back: both files reopen with every acknowledged record and no damage.
        try FileManager.default.removeItem(atPath: filler)
        try journal.append(op: "op-1", kind: "signed-op", step: "done")
        let reopened = try Journal(path: dir + "/journal.jsonl")
        #expect(reopened.entries(of: "op-1").map(\.step) == ["begin", "done"])
        let reopenedNonces = try FileNonceStore(path: dir + "/nonces.log")
        #expect(reopenedNonces.record("nonce-before-full-1", expiresAt: Date().addingTimeInterval(600)) == .seen)
        #expect(reopenedNonces.count == nonces.count, "every recorded nonce, and only those, read back")
        _ = try verifier.verify(blob: blob, signature: signature)  // now it records and passes
    }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "\(tool) \(arguments.joined(separator: " "))")
    }
}
