import FelhomSigning
import FuzzDriver

@_cdecl("fuzz_openssh_key_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes as an OpenSSH public key line, as key wire bytes and as an allowed_signers file (the
/// signers file the agent pins, and keys a hub relays). A key that parses prints a line that parses
/// to the same key; every signer parsed from a file has a key that survives the same round trip.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    if let key = try? SSHPublicKey(wireBytes: bytes) { check(key) }
    guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
    if let key = try? SSHPublicKey(openSSHLine: text) { check(key) }
    if let signers = try? AllowedSigners.parse(text) {
        for signer in signers {
            check(signer.key)
            require(!signer.name.isEmpty, "a signer without a name")
        }
    }
    return 0
}

func check(_ key: SSHPublicKey) {
    guard let again = try? SSHPublicKey(openSSHLine: key.openSSHLine) else { fatalError("our own line does not parse: \(key.openSSHLine)") }
    require(again == key && again.fingerprint == key.fingerprint, "the key changed on the way")
}
