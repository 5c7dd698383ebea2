import FelhomSigning
import FuzzDriver

@_cdecl("fuzz_sshsig_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes as an SSHSIG blob and as armored text (what a hostile hub relays as a signature).
/// What parses re-encodes to a blob that parses to the same signature, and verifying it against a
/// message must throw or succeed, never crash (the key and signature bytes are attacker-chosen).
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    if let sig = try? SSHSignature(blob: bytes) { check(sig) }
    if let text = String(validating: bytes, as: UTF8.self), let sig = try? SSHSignature(armored: text) { check(sig) }
    return 0
}

func check(_ sig: SSHSignature) {
    guard let again = try? SSHSignature(blob: sig.blob) else { fatalError("our own blob does not parse") }
    require(again.blob == sig.blob && again.namespace == sig.namespace, "blob changed on the way")
    guard let unarmored = try? SSHSignature(armored: sig.armored) else { fatalError("our own armor does not parse") }
    require(unarmored.blob == sig.blob, "armor changed the blob")
    _ = try? sig.verify(message: Array("felhom".utf8))
}
