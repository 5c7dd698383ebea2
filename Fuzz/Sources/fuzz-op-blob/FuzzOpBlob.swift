import FelhomCore
import FuzzDriver

@_cdecl("fuzz_op_blob_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes as an op blob (what the operator signs and the agent verifies). A blob that parses
/// has canonical bytes that parse to the same op: the signed bytes and the parsed op cannot disagree.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    guard let op = try? OpBlob(parsing: bytes) else { return 0 }
    guard let canonical = try? op.canonicalBytes() else { fatalError("an accepted op has no canonical bytes") }
    guard let again = try? OpBlob(parsing: canonical) else { fatalError("canonical bytes of an accepted op do not parse") }
    require(again == op, "the op changed through its canonical bytes")
    return 0
}
