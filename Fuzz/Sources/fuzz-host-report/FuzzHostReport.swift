import FelhomCore
import Foundation
import FuzzDriver

@_cdecl("fuzz_host_report_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes as a HostReport (decoded and validated as its receiver does). What is accepted
/// encodes to JSON that decodes to an equal value: nothing the receiver stores changes on a re-read.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    guard let value = try? HostReport.decode(Data(bytes)) else { return 0 }
    let encoded = value.encoded()
    guard let again = try? HostReport.decode(encoded) else {
        fatalError("our own encoding does not decode: \(String(decoding: encoded, as: UTF8.self))")
    }
    require(again == value, "the value changed through its encoding")
    return 0
}
