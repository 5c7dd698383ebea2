import FelhomCore
import FuzzDriver

@_cdecl("fuzz_secrets_file_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes as a TRC_SECRETS_V1 file (what the controller writes and apps read). A file that
/// parses renders to bytes that parse to the same entries, and rendering is a fixed point.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    guard let file = try? SecretsFile(parsing: bytes) else { return 0 }
    guard let rendered = try? file.render() else { fatalError("an accepted file does not render") }
    guard let again = try? SecretsFile(parsing: rendered) else { fatalError("our own rendering does not parse") }
    require(again == file, "the entries changed through rendering")
    require((try? again.render()) == rendered, "rendering is not a fixed point")
    _ = try? file.shellExport()
    return 0
}
