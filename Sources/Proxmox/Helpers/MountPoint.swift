/// A container mount point property string (`rootfs` or `mpN`), parsed and printed as Proxmox does.
///
/// Example: `local-lvm:vm-100-disk-1,mp=/data,backup=1,size=32G`. The volume is the default key
/// (printed first, without `volume=`), `mp` is the required key (printed next), the rest are sorted
/// alphabetically (pve-common `print_property_string`). Volume mount points are backed up only with
/// `backup=1`; rootfs always is.
public struct MountPoint: Sendable, Equatable, CustomStringConvertible {
    /// `STORAGE:VOLUME`, `STORAGE:SIZE_GiB` on create, or a host path for bind mounts.
    public var volume: String
    /// The path inside the container (`mp=`); `nil` for rootfs.
    public var path: String?
    /// `backup=` when given.
    public var backup: Bool?
    /// `size=` as Proxmox prints it (`8G`, `512M`).
    public var size: String?
    /// Every other option, by key.
    public var options: [String: String]

    public init(volume: String, path: String? = nil, backup: Bool? = nil, size: String? = nil, options: [String: String] = [:]) {
        self.volume = volume
        self.path = path
        self.backup = backup
        self.size = size
        self.options = options
    }

    /// True for bind mounts (host paths) and device mounts, which are never backed up.
    public var isBindOrDevice: Bool { volume.hasPrefix("/") }

    /// Whether vzdump includes this mount point when it is `mpN` (rootfs is always included).
    public var includedInBackup: Bool { !isBindOrDevice && backup == true }

    /// The storage id of a `STORAGE:…` volume.
    public var storage: String? {
        guard !isBindOrDevice, let colon = volume.firstIndex(of: ":") else { return nil }
        return String(volume[..<colon])
    }

    /// The size in bytes, from `size=` (`K`, `M`, `G`, `T` suffixes; bare numbers are bytes).
    public var sizeBytes: Int64? {
        guard let size, let last = size.last else { return nil }
        let mult: Int64
        var digits = Substring(size)
        switch last {
        case "K": mult = 1 << 10
        case "M": mult = 1 << 20
        case "G": mult = 1 << 30
        case "T": mult = 1 << 40
        default: mult = 1
        }
        if mult != 1 { digits = digits.dropLast() }
        if let d = Double(digits) { return Int64(d * Double(mult)) }
        return nil
    }

    /// Parses a property string; throws `.invalidArgument` naming the bad part.
    public init(parsing text: String) throws {
        var volume: String?
        var path: String?
        var backup: Bool?
        var size: String?
        var options: [String: String] = [:]
        for (i, part) in text.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            guard let eq = part.firstIndex(of: "=") else {
                if i == 0, !part.isEmpty {
                    volume = String(part)
                    continue
                }
                throw PVEError(code: .invalidArgument, message: "mount point '\(text)': '\(part)' is not key=value")
            }
            let key = String(part[..<eq])
            let value = String(part[part.index(after: eq)...])
            switch key {
            case "volume": volume = value
            case "mp": path = value
            case "backup":
                guard value == "1" || value == "0" else {
                    throw PVEError(code: .invalidArgument, message: "mount point '\(text)': backup must be 0 or 1")
                }
                backup = value == "1"
            case "size": size = value
            default:
                guard options[key] == nil else {
                    throw PVEError(code: .invalidArgument, message: "mount point '\(text)': duplicate key '\(key)'")
                }
                options[key] = value
            }
        }
        guard let volume, !volume.isEmpty else {
            throw PVEError(code: .invalidArgument, message: "mount point '\(text)': missing volume")
        }
        self.init(volume: volume, path: path, backup: backup, size: size, options: options)
    }

    /// The property string: volume first, then `mp`, then the other keys sorted.
    public var description: String {
        var parts = [volume]
        if let path { parts.append("mp=\(path)") }
        var rest = options
        if let backup { rest["backup"] = backup ? "1" : "0" }
        if let size { rest["size"] = size }
        for (key, value) in rest.sorted(by: { $0.key < $1.key }) { parts.append("\(key)=\(value)") }
        return parts.joined(separator: ",")
    }
}
