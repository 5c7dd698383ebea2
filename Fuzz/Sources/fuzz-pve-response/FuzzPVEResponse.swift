import FelhomCore
import Foundation
import FuzzDriver

@testable import Proxmox

@_cdecl("fuzz_pve_response_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { data, size in fuzzOne(fuzzBytes(data, size)) }
}

/// Any bytes as a Proxmox VE API answer: the `{"data": …}` envelope decoded by every model the
/// client reads, an error body, and the strings inside answers the client parses further (UPIDs,
/// mount point property strings). Guest names, descriptions and mount points are written by
/// whoever controls a guest, so none of it may crash the agent: every path throws or decodes.
func fuzzOne(_ bytes: [UInt8]) -> Int32 {
    _ = PVEError.fromResponse(status: 500, reason: "fuzz", body: Data(bytes), request: "GET /fuzz")
    if let json = try? JSONValue.parse(Data(bytes)) {
        let data = json["data"] ?? json
        let items: [JSONValue]
        if case .array(let a) = data { items = a } else { items = [data] }
        for item in items {
            _ = try? PVEVersion(json: item)
            _ = try? PVENode(json: item)
            _ = try? PVENodeStatus(json: item)
            _ = try? PVEGuestStatus(json: item)
            if let config = try? PVEGuestConfig(json: item) {
                for key in config.raw.keys where key.hasPrefix("mp") || key == "rootfs" {
                    if let text = config.value(key) { _ = try? MountPoint(parsing: text) }
                }
            }
            _ = try? PVEInterface(json: item)
            _ = try? PVEStorageConfig(json: item)
            _ = try? PVENodeStorage(json: item)
            _ = try? PVEStorageContent(json: item)
            _ = try? PVESnapshot(json: item)
            _ = try? PVETaskStatus(json: item)
            _ = try? PVETaskLogLine(json: item)
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
    if let upid = try? UPID(parsing: text) {
        guard let again = try? UPID(parsing: upid.description) else { fatalError("our own UPID does not parse: \(upid)") }
        require(again == upid, "the UPID changed on the way")
    }
    if let mount = try? MountPoint(parsing: text) {
        require((try? MountPoint(parsing: mount.description)) != nil, "our own mount point string does not parse: \(mount)")
    }
    _ = GuestDescription.normalized(text)
    return 0
}
