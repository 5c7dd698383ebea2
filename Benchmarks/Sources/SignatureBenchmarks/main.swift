// Signature verification throughput per key type and the cost of recording a nonce.
// Run: scripts/bench (release build). Figures: docs/performance.md.
import Benchmark
import FelhomCore
import FelhomSigning
import Foundation

let message = Array(#"{"expires_at":"2026-01-01T00:15:00Z","issued_at":"2026-01-01T00:00:00Z","key_id":"","nonce":"00112233445566778899aabbccddeeff","op":"guest.destroy","params":{},"target":{"guest_id":"101","host_id":"box-1"}}"#.utf8)
let fixtures = ProcessInfo.processInfo.environment["FELHOM_BENCH_KEYS"] ?? "Benchmarks/keys"

/// Keys are made by ssh-keygen (scripts/bench) so every type, including RSA, is signed by us.
func loadKey(_ name: String) -> SSHPrivateKey {
    let path = "\(fixtures)/id_\(name)"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), let key = try? SSHPrivateKey(openSSHText: text) else {
        fatalError("cannot load \(path); run scripts/bench")
    }
    return key
}

for name in ["ed25519", "ecdsa", "rsa3072"] {
    let key = loadKey(name)
    let sig = try! key.sign(message: message, namespace: OpVerifier.namespace)
    let armored = sig.armored
    benchmark("verify \(name) (parse armor + verify)") {
        let s = try! SSHSignature(armored: armored)
        try! s.verify(message: message)
    }
    benchmark("sign \(name)") {
        _ = try! key.sign(message: message, namespace: OpVerifier.namespace)
    }
}

let pipelineKey = loadKey("ed25519")
let memoryVerifier = OpVerifier(signers: [PinnedSigner(name: "bench", key: pipelineKey.publicKey)], hostID: "box-1", nonces: InMemoryNonceStore(),
                                clock: ManualClock(start: Date(timeIntervalSince1970: 1_767_225_700)))
var counter = 0
benchmark("full op pipeline, ed25519, in-memory nonces") {
    counter += 1
    let blob = try! OpBlob(op: .guestDestroy, hostID: "box-1", guestID: "101", params: [:], nonce: String(format: "%032x", counter),
                           issuedAt: Date(timeIntervalSince1970: 1_767_225_600), expiresAt: Date(timeIntervalSince1970: 1_767_226_500), keyID: "").canonicalBytes()
    let sig = try! pipelineKey.sign(message: blob, namespace: OpVerifier.namespace).armored
    _ = try! memoryVerifier.verify(blob: blob, signature: sig)
}

let dir = NSTemporaryDirectory() + "felhom-bench-\(getpid())"
try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
let durable = try! FileNonceStore(path: dir + "/nonces.log", retention: 600, compactionSlack: 1 << 30)
var n = 0
benchmark("durable nonce record (append + fsync)") {
    n += 1
    _ = durable.record(String(format: "bench%027d", n), expiresAt: Date().addingTimeInterval(900))
}
let memory = InMemoryNonceStore()
var m = 0
benchmark("in-memory nonce record") {
    m += 1
    _ = memory.record(String(format: "bench%027d", m), expiresAt: Date())
}

Benchmark.main()
