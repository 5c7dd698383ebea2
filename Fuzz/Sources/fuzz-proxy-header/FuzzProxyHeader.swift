import FelhomCore
import FuzzDriver

/// SwiftPM calls an executable target's entry `<module>_main`: hand over to libFuzzer's driver.
@_cdecl("fuzz_proxy_header_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes into the PROXY header parser. It must never crash, and whatever it accepts must be
/// consistent: the length it reports lies within the input, and a v2 header it accepts
/// re-encodes (addresses and UNIQUE_ID) to a header that parses again with the same UNIQUE_ID.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    guard let (header, length) = try? ProxyHeader.parse(bytes) else { return 0 }
    require(length > 0 && length <= bytes.count, "parse reported \(length) bytes of \(bytes.count)")
    if header.version == 2, let source = header.source, let destination = header.destination {
        let again = ProxyHeader.encodeV2(source: source, destination: destination, uniqueID: header.uniqueID, crc32c: true)
        guard let reparsed = try? ProxyHeader.parse(again) else { fatalError("our own header does not parse") }
        require(reparsed.header.uniqueID == header.uniqueID, "UNIQUE_ID changed on the way")
    }
    return 0
}
