import FelhomCore
import Foundation
import FuzzDriver

@_cdecl("fuzz_canonical_json_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes into the strict RFC 8785 parser (and the lenient `JSONValue.parse` beside it). What
/// the strict parser accepts serializes, and the canonical form is a fixed point: it parses to the
/// same value and canonicalizes to itself. Depth is bounded, so no input may exhaust the stack.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    _ = try? JSONValue.parse(Data(bytes))
    guard let value = try? CanonicalJSON.parse(bytes) else { return 0 }
    // A value the parser accepted may still hold a number canonical JSON cannot print (it must throw, not crash).
    guard let canonical = try? CanonicalJSON.serialize(value) else { return 0 }
    guard let again = try? CanonicalJSON.parse(canonical) else {
        fatalError("canonical output does not parse: \(String(decoding: canonical, as: UTF8.self))")
    }
    require((try? CanonicalJSON.serialize(again)) == canonical, "canonical form is not a fixed point")
    return 0
}
